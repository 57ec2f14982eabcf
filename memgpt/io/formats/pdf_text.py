"""PDF text by page (pypdf); refuses encrypted files and files without a text layer."""

from __future__ import annotations

import logging
from pathlib import Path

from ...errors import MemGPTError
from .sourcemap import Loaded, TextBuilder


def load(path: Path, max_bytes: int) -> Loaded:
    import pypdf
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf warns on stderr about recoverable damage
    try:
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted:
            raise MemGPTError(f"{path} is an encrypted PDF; decrypt it first")
        out = TextBuilder("pdf")
        for page in reader.pages:
            out.page()
            for paragraph in page.extract_text().split("\n\n"):
                out.block(paragraph)
    except MemGPTError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, RecursionError) as e:
        raise MemGPTError(f"{path} is a corrupt PDF ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})") from None
    loaded = out.result()
    if not loaded.text.strip():
        raise MemGPTError(f"{path} has no text layer (a scanned PDF?); OCR is not supported")
    return loaded
