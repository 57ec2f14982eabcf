"""Temporary files for atomic writes: created beside their target, renamed onto it when complete."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


def temp_beside(path: Path, suffix: str = "") -> tuple[int, str]:
    """An open temporary file in `path`'s folder, as `(fd, name)`, with the permissions a plain
    `open()` would give (mkstemp's 0600 would make every result private after the rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    usual_permissions(tmp)
    return fd, tmp


def usual_permissions(path: str | Path, folder: bool = False) -> None:
    """Give `path` the permissions a plain `open()` (or `mkdir()`) would: 0666 (0777) minus the umask."""
    try:
        os.chmod(path, (0o777 if folder else 0o666) & ~_UMASK)
    except OSError:
        pass  # a filesystem without permissions keeps what it has


def temp_dir_in(parent: Path, prefix: str) -> Path:
    """A new temporary folder in `parent`, with the permissions a plain `mkdir()` would give."""
    folder = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    usual_permissions(folder, folder=True)
    return folder


def write_text_atomic(path: Path, text: str, before_rename: Callable[[], None] | None = None) -> None:
    """Write `text` to `path` so a reader sees the old file or the new one, never half of one.
    `before_rename` runs once the data is on disk, before it replaces `path` (a test hook)."""
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:  # the bytes readers decode, on any locale
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if before_rename:
            before_rename()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
