"""What a memory was made with: the backbone's readable name and a fingerprint of its weights.

Every memory file (kv blocks, latent vectors, compressed vectors) records both and is refused by a
model whose name or fingerprint differs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..errors import MemGPTError

SCHEME = "w2"  # the fingerprint's algorithm; files of an older one are refused with a clear message
SAMPLES = 4096  # values hashed per tensor at most (an odd stride through the rest)


def backbone_name(model: torch.nn.Module) -> str:
    """A readable name of the (text) backbone: its folder/hub name, else architecture and size."""
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    name = getattr(text, "name_or_path", "") or getattr(config, "name_or_path", "") or ""
    if name:
        return Path(str(name)).name
    return f"{text.model_type}-{text.num_hidden_layers}x{text.hidden_size}"


def fingerprint(model: torch.nn.Module, layout: str = "") -> str:
    """A hash of every weight tensor's name, shape and a strided sample of its values (at bf16
    precision, so fp32 and bf16 loads of the same weights agree), plus `layout` (settings that give
    the weights their meaning). Any fine-tuning that moves a tensor changes it."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().reshape(-1)
        stride = max(1, flat.numel() // SAMPLES) | 1  # odd: never in step with a power-of-two row length
        sample = flat[::stride].to(torch.bfloat16).view(torch.int16).cpu().contiguous()
        h.update(f"{name}|{tuple(tensor.shape)}|".encode())
        h.update(sample.numpy().tobytes())
    h.update(layout.encode())
    return f"{SCHEME}-{h.hexdigest()[:16]}"


def check_fingerprint(path: str | Path, stored: str | None, current: str, mismatch: str) -> None:
    """Refuse a memory file whose fingerprint is not `current`: `mismatch` says why, or the file has a
    fingerprint of another scheme (another memgpt version made it) and must be made again."""
    if stored == current:
        return
    if not (stored or "").startswith(f"{SCHEME}-"):
        raise MemGPTError(f"{path} was written by another memgpt version (another weights "
                          f"fingerprint scheme): make it again from the document")
    raise MemGPTError(mismatch)
