"""Memory files: a memory state of any kind saved as `.safetensors` (named tensors + string metadata),
to read a document once and query it later. Written atomically; refused clearly when truncated,
foreign or of another kind. `apps.memories` saves and loads the states of every memory kind."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..io.atomic import temp_beside, usual_permissions
from ..errors import MemGPTError

FORMAT_VERSION = "1"


def write_state_file(path: str | Path, kind: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write a memory state of any kind (tensors + string metadata) to `path` atomically."""
    path = Path(path)
    if os.path.isdir(path):
        raise MemGPTError(f"{path} is a directory")
    if not os.path.isdir(path.parent):
        raise MemGPTError(f"folder {path.parent} does not exist")
    meta = {"format": "memgpt-memory", "format_version": FORMAT_VERSION, "kind": kind, **metadata}
    tmp = None
    try:
        fd, tmp = temp_beside(path, suffix=".tmp")
        os.close(fd)
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=meta)
        usual_permissions(tmp)  # safetensors writes a file of its own
        os.replace(tmp, path)
    except (OSError, SafetensorError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
        raise MemGPTError(f"cannot write {path}: {reason}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def read_state_meta(path: str | Path) -> dict[str, str]:
    """A memory file's metadata only (cheap for any size); refuse truncated or foreign-format files."""
    path = Path(path)
    if not os.path.isfile(path):
        raise MemGPTError(f"{path} does not exist or is not a file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise MemGPTError(f"{path} is not a readable memory file (truncated or corrupt?): {e}") from None
    if meta.get("format") != "memgpt-memory":
        raise MemGPTError(f"{path} is not a memgpt memory file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise MemGPTError(f"{path} has memory format {meta.get('format_version')}, this memgpt reads {FORMAT_VERSION}")
    return meta


def read_state_file(path: str | Path, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a memory file's tensors and metadata; refuse truncated, foreign-format or other-kind files."""
    meta = read_state_meta(path)
    if kind is not None and meta.get("kind") != kind:
        raise MemGPTError(f"{path} holds a {meta.get('kind')!r} memory, not a {kind!r} one")
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise MemGPTError(f"{path} is not a readable memory file (truncated or corrupt?): {e}") from None
    return tensors, meta
