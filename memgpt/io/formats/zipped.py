"""Zip containers (DOCX, EPUB) opened safely: bounded uncompressed size, no DOCTYPE (external entities)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from ...errors import MemGPTError


def check_zip(path: Path, max_bytes: int, what: str) -> None:
    """Refuse a corrupt zip, one that inflates past 8 x `max_bytes`, or XML members with a DOCTYPE."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            if sum(i.file_size for i in infos) > 8 * max_bytes:
                raise MemGPTError(f"{path} inflates past {8 * max_bytes / (1 << 20):.0f} MiB (a zip bomb?)")
            bad = z.testzip()
            if bad is not None:
                raise MemGPTError(f"{path} is a corrupt {what} (member {bad!r} fails its checksum)")
            for info in infos:
                if info.filename.lower().endswith((".xml", ".rels", ".opf", ".ncx", ".html", ".xhtml", ".htm")):
                    with z.open(info) as f:
                        head = f.read(4096).lower()
                    if b"<!doctype" in head and b"<!entity" in head or b"<!entity" in head:
                        raise MemGPTError(f"{path}: {info.filename} declares XML entities; refused (external entities)")
    except MemGPTError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
        raise MemGPTError(f"{path} is a corrupt {what} ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None
