"""Documents as people have them: PDF, HTML, DOCX, EPUB and Markdown read into text with a source map
(offset -> page, heading path). Chosen by content (magic bytes), then by extension; plain text is not
handled here (None), so it streams as before."""

from __future__ import annotations

import zipfile
from pathlib import Path

from ...errors import MemGPTError
from .sourcemap import Heading, Loaded, SourceMap

__all__ = ["Heading", "Loaded", "SourceMap", "detect", "load_document"]


def detect(path: Path, suffix: str | None = None) -> str | None:
    """'pdf', 'docx', 'epub', 'html', 'markdown', or None for plain text. `suffix` ('.md'): the extension
    to go by where the content does not decide (default: the path's; an upload's file has another name)."""
    with open(path, "rb") as f:
        head = f.read(1024)
    suffix = (path.suffix if suffix is None else suffix).lower()
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        if head[30:38] == b"mimetype" and b"application/epub+zip" in head[:100]:
            return "epub"
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise MemGPTError(f"{path} is a corrupt zip file ({str(e).splitlines()[0][:120]})") from None
        if "word/document.xml" in names:
            return "docx"
        if "META-INF/container.xml" in names or suffix == ".epub":
            return "epub"
        raise MemGPTError(f"{path} is a zip file that is neither DOCX nor EPUB")
    if suffix in (".docx", ".epub"):
        raise MemGPTError(f"{path} is not a valid {suffix[1:].upper()} file (not a zip archive)")
    if suffix == ".pdf":
        raise MemGPTError(f"{path} is not a valid PDF file (no %PDF header)")
    sniff = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if suffix in (".html", ".htm", ".xhtml") or sniff.startswith((b"<!doctype html", b"<html")):
        return "html"
    if suffix in (".md", ".markdown"):
        return "markdown"
    return None


def load_document(path: Path, max_bytes: int, suffix: str | None = None) -> Loaded | None:
    """The text and source map of a formatted document at `path`, or None for plain text. Refuses a file
    over `max_bytes` before reading it; `suffix` as in `detect`."""
    size = path.stat().st_size
    if size > max_bytes:
        raise MemGPTError(f"{path} is {size / (1 << 20):.1f} MiB, over the {max_bytes / (1 << 20):.0f} MiB input limit "
                          "(raise it with --max-input-mb / max_bytes=)")
    kind = detect(path, suffix)
    if kind is None:
        return None
    from . import docx_text, epub_text, html_text, markdown_text, pdf_text

    reader = {"pdf": pdf_text.load, "docx": docx_text.load, "epub": epub_text.load, "html": html_text.load,
              "markdown": markdown_text.load}[kind]
    try:
        loaded = reader(path, max_bytes)
    except MemGPTError:
        raise
    except Exception as e:  # noqa: BLE001 - a hostile file can raise anything from a reader library; one line, not a traceback
        raise MemGPTError(f"{path} is a damaged {kind.upper() if kind != 'markdown' else 'Markdown'} file "
                          f"({type(e).__name__})") from None
    if not loaded.text.strip():
        raise MemGPTError(f"{path} holds no text")
    return loaded
