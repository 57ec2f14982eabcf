"""What the kv memory keeps per layer: sink tokens, a local window, and past tokens in blocks with a few
representative keys each. Keys are kept *unrotated* (RoPE is applied at attention time, at the
positions the settings choose). Blocks beyond a RAM budget go to a spill file on disk and are read
back (memory-mapped) only when retrieved.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ...errors import MemGPTError

POSITIONS = ("contiguous", "fixed", "true")
STORAGE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.int8}
NUMPY_OF = {torch.float32: np.float32, torch.bfloat16: np.uint16, torch.int64: np.int64, torch.float16: np.float16,
            torch.int8: np.int8, torch.uint8: np.uint8}


@dataclass
class KVSettings:
    """How much the kv memory attends to: `sink_tokens` + `top_blocks` x `block_tokens` retrieved +
    `local_tokens` + the chunk itself (`chunk_tokens` at a time while reading)."""

    sink_tokens: int = 64
    local_tokens: int = 2048
    block_tokens: int = 128
    top_blocks: int = 8
    rep_keys: int = 4  # representative keys per block (the most attended while in the local window)
    chunk_tokens: int = 512
    positions: str = "contiguous"  # of retrieved tokens: contiguous | fixed | true (see memgpt.memories.kv.attention)
    sticky: bool = True  # answer tokens attend to the blocks their question retrieved (not their own top-k)
    storage: str = "bf16"  # of blocks in RAM, on disk and in memory files: bf16 | fp32 | int8 (+ a scale per token)
    ram_blocks_mb: int = 256  # blocks of all layers held in RAM before the rest goes to a spill file

    def validate(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, int) and not isinstance(v, bool) and v < (0 if f.name in ("sink_tokens", "ram_blocks_mb") else 1):
                raise MemGPTError(f"kv setting {f.name} must be >= 1, got {v}")
        if self.positions not in POSITIONS:
            raise MemGPTError(f"kv positions must be one of {', '.join(POSITIONS)}, got {self.positions!r}")
        if self.storage not in STORAGE_DTYPES:
            raise MemGPTError(f"kv storage must be one of {', '.join(STORAGE_DTYPES)}, got {self.storage!r}")
        if self.rep_keys > self.block_tokens:
            raise MemGPTError("kv rep_keys cannot exceed block_tokens")

    def as_info(self) -> dict[str, str]:
        return {f"kv.{k}": str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_info(cls, info: dict[str, str]) -> KVSettings:
        kwargs = {}
        for f in fields(cls):
            raw = info.get(f"kv.{f.name}")
            if raw is None:
                raise MemGPTError(f"kv memory setting {f.name} missing")
            kwargs[f.name] = raw == "True" if f.type in (bool, "bool") else raw if f.type in (str, "str") else int(raw)
        settings = cls(**kwargs)
        settings.validate()
        return settings


class BlockArena:
    """Blocks of one layer, each `[2, Hkv, B, D]` (keys, values): a read-only memory-mapped base (from
    a memory file), then blocks in RAM up to `ram_blocks`, then blocks in a spill file."""

    def __init__(self, block_shape: tuple[int, ...], dtype: torch.dtype, ram_blocks: int, spill: SpillDir,
                 base: torch.Tensor | None = None):
        self.block_shape, self.dtype, self.ram_blocks, self.spill = block_shape, dtype, ram_blocks, spill
        self.base = base if base is not None else torch.zeros(0, *block_shape, dtype=dtype)
        self.ram: list[torch.Tensor] = []
        self.disk_count = 0
        self._disk_file: Path | None = None
        self._disk_view: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.base) + len(self.ram) + self.disk_count

    def append(self, block: torch.Tensor) -> None:
        block = block.to(self.dtype).contiguous()
        if len(self.ram) < self.ram_blocks:
            self.ram.append(block)
            return
        if self._disk_file is None:
            self._disk_file = self.spill.new_file()
        with open(self._disk_file, "ab") as f:
            f.write(tensor_bytes(block))
        self.disk_count += 1

    def _disk(self) -> torch.Tensor:
        if self._disk_view is None or len(self._disk_view) < self.disk_count:
            self._disk_view = map_array(self._disk_file, 0, self.dtype, (self.disk_count, *self.block_shape))
        return self._disk_view

    def get(self, indices: list[int]) -> torch.Tensor:
        """The blocks at `indices`, stacked: `[n, 2, Hkv, B, D]` in float32."""
        n_base, n_ram = len(self.base), len(self.ram)
        out = []
        for i in indices:
            if i < n_base:
                out.append(self.base[i])
            elif i < n_base + n_ram:
                out.append(self.ram[i - n_base])
            else:
                out.append(self._disk()[i - n_base - n_ram])
        return torch.stack(out).float()

    def pieces(self, step: int = 64):
        """All blocks in order, a few at a time (for streaming them into a memory file)."""
        for start in range(0, len(self.base), step):
            yield self.base[start : start + step]
        for start in range(0, len(self.ram), step):
            yield torch.stack(self.ram[start : start + step])
        for start in range(0, self.disk_count, step):
            yield self._disk()[start : start + step]


class SpillDir:
    """A temporary folder for spilled blocks, removed when the store is garbage-collected."""

    def __init__(self, parent: str | None = None):
        self.parent = parent
        self.path: Path | None = None
        self._count = 0

    def new_file(self) -> Path:
        if self.path is None:
            self.path = Path(tempfile.mkdtemp(prefix="memgpt-kv-", dir=self.parent))
            weakref.finalize(self, shutil.rmtree, str(self.path), True)
        self._count += 1
        return self.path / f"blocks{self._count}.bin"


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """The raw little-endian bytes of a contiguous CPU tensor (bf16 too, which numpy lacks)."""
    t = tensor.contiguous()
    return (t.view(torch.uint16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()


def map_array(path: str | os.PathLike, offset: int, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor over bytes of a file, memory-mapped copy-on-write: pages are read when touched."""
    count = int(np.prod(shape))
    if count == 0:
        return torch.zeros(shape, dtype=dtype)
    arr = np.memmap(path, dtype=NUMPY_OF[dtype], mode="c", offset=offset, shape=shape)
    tensor = torch.from_numpy(arr)
    return tensor.view(torch.bfloat16) if dtype == torch.bfloat16 else tensor


class LayerStore:
    """One layer's memory. Tensors are `[Hkv, n, D]` (unrotated keys, values) in float32 except blocks."""

    def __init__(self, heads: int, head_dim: int, settings: KVSettings, ram_blocks: int, spill: SpillDir):
        self.heads, self.head_dim, self.s = heads, head_dim, settings
        empty = torch.zeros(heads, 0, head_dim)
        self.sink_k, self.sink_v = empty, empty
        self.local_k, self.local_v = empty, empty
        self.local_score = torch.zeros(0)  # attention logit each local token received, summed over chunks
        self.local_start = 0  # absolute position of the first local token
        self.extra_k, self.extra_v = empty, empty  # a session's tokens (question, answer): never evicted
        self.session_blocks: list[int] | None = None  # the blocks the session's prompt retrieved
        dtype = STORAGE_DTYPES[settings.storage]
        self.blocks = BlockArena((2, heads, settings.block_tokens, head_dim), dtype, ram_blocks, spill)
        # int8 blocks: one float32 scale per (key or value, head, token)
        self.scales = BlockArena((2, heads, settings.block_tokens), torch.float32, ram_blocks, spill) \
            if dtype == torch.int8 else None
        rep_dtype = torch.bfloat16 if dtype == torch.int8 else dtype  # scanned every chunk: kept dequantized
        self.reps = torch.zeros(0, heads, settings.rep_keys, head_dim, dtype=rep_dtype)  # [nb, Hkv, r, D]
        self.block_pos = torch.zeros(0, dtype=torch.int64)  # absolute position of each block's first token
        self._reps_buf: torch.Tensor | None = None
        self._pos_buf: torch.Tensor | None = None
        self._new_reps: list[torch.Tensor] = []
        self._new_pos: list[int] = []

    @property
    def tokens(self) -> int:
        return self.local_start + self.local_k.shape[1]

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def get_blocks(self, indices: list[int]) -> torch.Tensor:
        """Blocks `indices` as float32 `[n, 2, Hkv, B, D]` (int8 ones dequantized)."""
        blocks = self.blocks.get(indices)
        if self.scales is not None:
            blocks = blocks * self.scales.get(indices)[..., None]
        return blocks

    def all_reps(self) -> torch.Tensor:
        """`[nb, Hkv, r, D]` representative keys (pending ones appended to a buffer grown as it fills)."""
        if self._new_reps:
            with torch.inference_mode():  # the buffer is an inference tensor (made while reading)
                self._append_reps()
        return self.reps

    def _append_reps(self) -> None:
        n, add = len(self.reps), len(self._new_reps)
        if self._reps_buf is None or len(self._reps_buf) < n + add:
            cap = n + add + max(64, (n + add) // 4)  # not doubling: reps of 1M tokens are ~380 MB
            buf = torch.empty(cap, *self.reps.shape[1:], dtype=self.reps.dtype)
            buf[:n] = self.reps
            pos = torch.empty(cap, dtype=torch.int64)
            pos[:n] = self.block_pos
            self._reps_buf, self._pos_buf = buf, pos
        self._reps_buf[n : n + add] = torch.stack(self._new_reps).to(self.reps.dtype)
        self._pos_buf[n : n + add] = torch.tensor(self._new_pos, dtype=torch.int64)
        self.reps, self.block_pos = self._reps_buf[: n + add], self._pos_buf[: n + add]
        self._new_reps, self._new_pos = [], []

    def commit(self, k: torch.Tensor, v: torch.Tensor, score: torch.Tensor, session: bool) -> None:
        """Add a chunk's keys/values (`[Hkv, T, D]`, unrotated) after it has attended."""
        if session:
            self.extra_k, self.extra_v = torch.cat([self.extra_k, k], 1), torch.cat([self.extra_v, v], 1)
            return
        fill = min(self.s.sink_tokens - self.sink_k.shape[1], k.shape[1]) if self.local_k.shape[1] == 0 else 0
        if fill > 0:
            self.sink_k, self.sink_v = torch.cat([self.sink_k, k[:, :fill]], 1), torch.cat([self.sink_v, v[:, :fill]], 1)
            k, v, score = k[:, fill:], v[:, fill:], score[fill:]
            self.local_start += fill
        self.local_k, self.local_v = torch.cat([self.local_k, k], 1), torch.cat([self.local_v, v], 1)
        self.local_score = torch.cat([self.local_score, score])
        B = self.s.block_tokens
        while self.local_k.shape[1] - B >= self.s.local_tokens:
            self._evict(B)

    def _evict(self, B: int) -> None:
        k, v = self.local_k[:, :B], self.local_v[:, :B]  # [Hkv, B, D]
        top = self.local_score[:B].topk(self.s.rep_keys).indices.sort().values
        self._new_reps.append(k[:, top])  # [Hkv, r, D]
        self._new_pos.append(self.local_start)
        block = torch.stack([k, v])  # [2, Hkv, B, D]
        if self.scales is not None:
            scale = block.abs().amax(-1).clamp_min(1e-8) / 127  # [2, Hkv, B]
            self.scales.append(scale)
            block = (block / scale[..., None]).round_().clamp_(-127, 127)
        self.blocks.append(block)
        self.local_k, self.local_v, self.local_score = self.local_k[:, B:], self.local_v[:, B:], self.local_score[B:]
        self.local_start += B

    def end_session(self) -> None:
        self.extra_k = self.extra_v = torch.zeros(self.heads, 0, self.head_dim)
        self.session_blocks = None


class KVStore:
    """The kv memory of a whole model: one `LayerStore` per decoder layer, and the settings."""

    def __init__(self, num_layers: int, heads: int, head_dim: int, settings: KVSettings, spill_parent: str | None = None):
        settings.validate()
        self.settings = settings
        self.spill = SpillDir(spill_parent)
        itemsize = STORAGE_DTYPES[settings.storage].itemsize
        block_bytes = 2 * heads * settings.block_tokens * (head_dim * itemsize + (4 if itemsize == 1 else 0))
        ram_blocks = (settings.ram_blocks_mb << 20) // max(1, block_bytes * num_layers)
        self.layers = [LayerStore(heads, head_dim, settings, ram_blocks, self.spill) for _ in range(num_layers)]
        self.session = False  # True while answering: new tokens go to the session, not into memory
        self.rotary = None  # the model's rotary embedding, set by `kv_attention`
        self.track = False  # record which blocks each layer reads (`retrieved`)
        self.reset_stats()

    @classmethod
    def for_model(cls, model, settings: KVSettings | None = None, spill_parent: str | None = None) -> KVStore:
        cfg = model.config.get_text_config()
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        s = settings or KVSettings()
        span = s.sink_tokens + s.top_blocks * s.block_tokens + s.local_tokens + s.block_tokens + s.chunk_tokens
        trained = getattr(cfg, "max_position_embeddings", None)
        if s.positions == "contiguous" and trained and span > trained:
            raise MemGPTError(f"kv settings span {span} positions (sinks + blocks + window + chunk), more than the "
                              f"{trained} the model was trained on")
        return cls(cfg.num_hidden_layers, heads, head_dim, settings or KVSettings(), spill_parent)

    @property
    def tokens(self) -> int:
        return self.layers[0].tokens

    def end_session(self) -> None:
        self.session = False
        for layer in self.layers:
            layer.end_session()

    def reset_stats(self) -> None:
        """Which blocks each layer read (for diagnosis): layer -> one block-index list per chunk or answer token."""
        self.retrieved: dict[int, list[list[int]]] = {}
