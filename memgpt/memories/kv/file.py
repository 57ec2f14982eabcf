"""kv memory files: a `KVStore` as one safetensors file, written block by block (a memory larger than
RAM never has to be in RAM) and read back memory-mapped (asking costs the question, not the reading).

Per layer `i`: `l{i}.blocks` `[nb, 2, Hkv, B, D]` (keys, values; storage dtype), `l{i}.reps`
`[nb, Hkv, r, D]`, `l{i}.scales` `[nb, 2, Hkv, B]` (int8 storage only), `l{i}.block_pos` `[nb]`, `l{i}.sink` `[2, Hkv, S, D]`, `l{i}.local` `[2, Hkv, L, D]`,
`l{i}.local_score` `[L]`, `l{i}.local_start` `[1]`.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from pathlib import Path

import torch

from ...io.atomic import temp_beside
from ...errors import MemGPTError
from .store import BlockArena, KVSettings, KVStore, LayerStore, map_array, tensor_bytes

SAFETENSORS_DTYPE = {torch.float32: "F32", torch.bfloat16: "BF16", torch.int64: "I64", torch.int8: "I8", torch.uint8: "U8"}
DTYPE_OF = {v: k for k, v in SAFETENSORS_DTYPE.items()}
MAX_HEADER = 64 << 20


def _entries(store: KVStore) -> list[tuple[str, torch.dtype, tuple[int, ...], Iterable[torch.Tensor]]]:
    entries = []
    for i, layer in enumerate(store.layers):
        reps = layer.all_reps()
        nb = layer.num_blocks
        entries += [
            (f"l{i}.blocks", layer.blocks.dtype, (nb, *layer.blocks.block_shape), layer.blocks.pieces()),
            (f"l{i}.reps", reps.dtype, tuple(reps.shape), [reps]),
            *([(f"l{i}.scales", torch.float32, (nb, *layer.scales.block_shape), layer.scales.pieces())]
              if layer.scales is not None else []),
            (f"l{i}.block_pos", torch.int64, tuple(layer.block_pos.shape), [layer.block_pos]),
            (f"l{i}.sink", torch.float32, (2, *layer.sink_k.shape), [torch.stack([layer.sink_k, layer.sink_v])]),
            (f"l{i}.local", torch.float32, (2, *layer.local_k.shape), [torch.stack([layer.local_k, layer.local_v])]),
            (f"l{i}.local_score", torch.float32, tuple(layer.local_score.shape), [layer.local_score.float()]),
            (f"l{i}.local_start", torch.int64, (1,), [torch.tensor([layer.local_start])]),
        ]
    return entries


def save_store(path: str | Path, store: KVStore, metadata: dict[str, str],
               extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Write `store` (and `extra` tensors, e.g. the document index) with string `metadata` to `path`
    atomically (a valid safetensors file)."""
    path = Path(path)
    if os.path.isdir(path):
        raise MemGPTError(f"{path} is a directory")
    if not os.path.isdir(path.parent):
        raise MemGPTError(f"folder {path.parent} does not exist")
    entries = _entries(store) + [(name, t.dtype, tuple(t.shape), [t]) for name, t in (extra or {}).items()]
    header: dict = {"__metadata__": metadata}
    offset = 0
    for name, dtype, shape, _ in entries:
        size = dtype.itemsize
        for n in shape:
            size *= n
        header[name] = {"dtype": SAFETENSORS_DTYPE[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    fd, tmp = temp_beside(path, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            for name, dtype, _, pieces in entries:
                for piece in pieces:
                    f.write(tensor_bytes(piece.to(dtype)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise MemGPTError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def read_header(path: str | Path) -> tuple[dict, int]:
    """The safetensors header of `path` and where its data starts; refuse a malformed or truncated file."""
    path = Path(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if not 0 < n <= min(MAX_HEADER, size - 8):
                raise MemGPTError(f"{path} is not a readable memory file (truncated or corrupt?)")
            header = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError):
        raise MemGPTError(f"{path} is not a readable memory file (truncated or corrupt?)") from None
    if not isinstance(header, dict):
        raise MemGPTError(f"{path} is not a readable memory file (truncated or corrupt?)")
    start = 8 + n
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = entry["data_offsets"]
            count = 1
            for d in entry["shape"]:
                count *= int(d)
            ok = entry["dtype"] in DTYPE_OF and 0 <= begin <= end and end - begin == count * DTYPE_OF[entry["dtype"]].itemsize
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise MemGPTError(f"{path} is corrupt: bad entry {name!r}")
        if start + end > size:
            raise MemGPTError(f"{path} is truncated: it ends before its data does")
    return header, start


def map_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, memory-mapped (nothing is read until it is used)."""
    header, start = read_header(path)
    return {name: map_array(path, start + e["data_offsets"][0], DTYPE_OF[e["dtype"]], tuple(e["shape"]))
            for name, e in header.items() if name != "__metadata__"}


def store_from_tensors(tensors: dict[str, torch.Tensor], settings: KVSettings, num_layers: int, where: str) -> KVStore:
    """A `KVStore` over (memory-mapped) tensors of a memory file; refuses inconsistent shapes."""
    def get(name: str) -> torch.Tensor:
        if name not in tensors:
            raise MemGPTError(f"{where} is a corrupt kv memory file (no {name})")
        return tensors[name]

    first = get("l0.sink")
    heads, head_dim = first.shape[1], first.shape[3]
    store = KVStore(num_layers, heads, head_dim, settings)
    B, r = settings.block_tokens, settings.rep_keys
    for i, layer in enumerate(store.layers):
        blocks, reps, pos = get(f"l{i}.blocks"), get(f"l{i}.reps"), get(f"l{i}.block_pos")
        sink, local, score, start = get(f"l{i}.sink"), get(f"l{i}.local"), get(f"l{i}.local_score"), get(f"l{i}.local_start")
        nb = blocks.shape[0] if blocks.dim() == 5 else -1
        ok = (tuple(blocks.shape[1:]) == (2, heads, B, head_dim) and tuple(reps.shape) == (nb, heads, r, head_dim)
              and tuple(pos.shape) == (nb,) and sink.dim() == 4 and tuple(sink.shape[:2]) == (2, heads)
              and sink.shape[3] == head_dim and local.dim() == 4 and tuple(local.shape[:2]) == (2, heads)
              and local.shape[3] == head_dim and tuple(score.shape) == (local.shape[2],) and start.numel() == 1
              and blocks.dtype == layer.blocks.dtype and reps.dtype == layer.reps.dtype)
        if layer.scales is not None:
            scales = get(f"l{i}.scales")
            ok = ok and tuple(scales.shape) == (nb, 2, heads, B) and scales.dtype == torch.float32
        if not ok:
            raise MemGPTError(f"{where} is a corrupt kv memory file (layer {i} does not fit its settings)")
        layer.blocks = BlockArena(layer.blocks.block_shape, layer.blocks.dtype, layer.blocks.ram_blocks, store.spill, base=blocks)
        if layer.scales is not None:
            layer.scales = BlockArena(layer.scales.block_shape, torch.float32, layer.scales.ram_blocks, store.spill, base=scales)
        layer.reps, layer.block_pos = reps, pos.clone()
        layer.sink_k, layer.sink_v = sink[0].float().clone(), sink[1].float().clone()
        layer.local_k, layer.local_v = local[0].float().clone(), local[1].float().clone()
        layer.local_score, layer.local_start = score.float().clone(), int(start[0])
        if not all(bool(torch.isfinite(t).all()) for t in (layer.sink_k, layer.local_k, layer.local_v, reps.float())):
            raise MemGPTError(f"{where} is corrupt: its keys are not finite numbers")
    return store


__all__ = ["LayerStore", "map_tensors", "read_header", "save_store", "store_from_tensors"]
