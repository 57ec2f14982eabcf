"""DOCX (python-docx): paragraphs and tables in order, Heading styles kept as the map."""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import MemGPTError
from .sourcemap import Loaded, TextBuilder
from .zipped import check_zip

_LEVEL = re.compile(r"^(?:heading|title)\s*(\d?)$", re.I)


def load(path: Path, max_bytes: int) -> Loaded:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    check_zip(path, max_bytes, "DOCX")
    try:
        document = docx.Document(str(path))
        out = TextBuilder("docx")
        for item in document.iter_inner_content():
            if isinstance(item, Paragraph):
                style = _LEVEL.match((item.style.name if item.style is not None else "") or "")
                out.block(item.text, (int(style.group(1) or 1) if style.group(1) else 1) if style else None)
            elif isinstance(item, Table):
                for row in item.rows:
                    out.block(" | ".join(cell.text.strip() for cell in row.cells))
    except MemGPTError:
        raise
    except Exception as e:  # noqa: BLE001 - python-docx raises KeyError, lxml errors, ValueError on damage
        raise MemGPTError(f"{path} is a corrupt DOCX ({type(e).__name__})") from None
    return out.result()
