"""Memory files: a memory state of any kind saved as `.safetensors` (named tensors + string metadata),
to read a document once and query it later. Written atomically; refused clearly when truncated,
foreign or of another kind. `apps.memories` saves and loads the states of every memory kind."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..io.atomic import temp_beside, usual_permissions
from ..errors import MemGPTError
from ..model.modeling_memgpt import MemGPTForCausalLM

FORMAT_VERSION = "1"


def memory_fingerprint(model: MemGPTForCausalLM) -> str:
    """A hash of what gives a memory its meaning: the memory parameters, backbone and layout."""
    h = hashlib.sha256()
    for tensor in (model.memory_init, model.memory_gain):
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    cfg = model.config
    layout = f"{backbone_id(model)}|{cfg.num_mem_tokens}|{cfg.segment_size}|{cfg.memory_update}|{cfg.memory_norm}"
    if cfg.associative_heads:  # (kept out of the layout string without one: older memory files stay valid)
        layout += f"|{cfg.associative_heads}x{cfg.associative_size}|{cfg.associative_conv}"
        if cfg.associative_features != "plain":
            layout += f"|{cfg.associative_features}"
        if cfg.associative_layers:
            layout += f"|layers{cfg.associative_layers}"
        for tensor in model.memory_associative.state_dict().values():
            h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    h.update(layout.encode())
    return h.hexdigest()[:16]


def backbone_id(model: MemGPTForCausalLM) -> str:
    """A readable name of the backbone: its name/path, else architecture and size."""
    text = model.config.text_config
    name = getattr(text, "name_or_path", "") or ""
    if name:
        return Path(name).name
    return f"{text.model_type}-{text.num_hidden_layers}x{text.hidden_size}"


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
