"""EPUB (ebooklib): the spine's documents in reading order, each through the HTML path."""

from __future__ import annotations

import warnings
from pathlib import Path

from ...errors import MemGPTError
from .html_text import load_markup
from .sourcemap import Loaded, TextBuilder
from .zipped import check_zip


def load(path: Path, max_bytes: int) -> Loaded:
    import ebooklib
    from ebooklib import epub

    check_zip(path, max_bytes, "EPUB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            book = epub.read_epub(str(path), {"ignore_ncx": True})
        out = TextBuilder("epub")
        for item_id, _ in book.spine:
            item = book.get_item_with_id(item_id)
            if item is not None and item.get_type() == ebooklib.ITEM_DOCUMENT:
                load_markup(item.get_content().decode("utf-8", errors="replace"), out)
    except MemGPTError:
        raise
    except Exception as e:  # noqa: BLE001 - ebooklib raises KeyError, lxml errors, EpubException on damage
        raise MemGPTError(f"{path} is a corrupt EPUB ({type(e).__name__})") from None
    return out.result()
