"""Safe reading of every file memgpt loads: JSON and safetensors only, nothing is ever unpickled.

Each reader refuses a missing file, a directory or symlink loop where a file should be, oversized
or truncated files, broken JSON, and weights that do not match the model they claim to be, with
a `MemGPTError` naming the file. Model weights are checked against the model's own parameter
shapes (built on the meta device, no memory) before `from_pretrained` runs, because transformers
would otherwise re-initialise missing weights at random and load a half-trained model silently.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from ..errors import MemGPTError

MAX_JSON_BYTES = 64 << 20  # config, trainer state, optimizer scalars: far below this
SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
UNSAFE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.ckpt", "tf_model.h5", "flax_model.msgpack")


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:300]


def regular_file(path: str | Path, what: str = "file") -> Path:
    """`path` if it is a readable regular file; a clear error for missing, directory, loop, device."""
    path = Path(path)
    try:
        st = path.stat()
    except ValueError:  # NUL byte or unencodable characters in the name
        raise MemGPTError(f"{what} {str(path)!r} is not a usable file name") from None
    except FileNotFoundError:
        raise MemGPTError(f"{what} {path} is missing") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise MemGPTError(f"{what} {path} is a symlink loop") from None
        raise MemGPTError(f"cannot read {what} {path}: {_reason(e)}") from None
    if path.is_dir():
        raise MemGPTError(f"{what} {path} is a directory, not a file")
    if not path.is_file():
        raise MemGPTError(f"{what} {path} is not a regular file")
    del st
    return path


def read_json(path: str | Path, what: str = "file", max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON file; refuse non-files, oversized, non-UTF-8 or malformed ones."""
    path = regular_file(path, what)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise MemGPTError(f"{what} {path} is {size} bytes; a JSON file here is never over {max_bytes}")
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
        return json.loads(raw.decode("utf-8"))
    except MemGPTError:
        raise
    except UnicodeDecodeError as e:
        raise MemGPTError(f"{what} {path} is corrupt: not UTF-8 text (byte {e.start})") from None
    except (ValueError, RecursionError) as e:
        raise MemGPTError(f"{what} {path} is corrupt: not valid JSON ({_reason(e)})") from None
    except OSError as e:
        raise MemGPTError(f"cannot read {what} {path}: {_reason(e)}") from None


def read_json_object(path: str | Path, what: str = "file", required: dict[str, type | tuple[type, ...]] | None = None) -> dict[str, Any]:
    """`read_json` that must give an object with `required` keys of the given types."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise MemGPTError(f"{what} {path} is corrupt: expected a JSON object, got {type(data).__name__}")
    for key, types in (required or {}).items():
        value = data.get(key)
        if key not in data or not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
            raise MemGPTError(f"{what} {path} is corrupt: {key!r} is missing or of the wrong type")
    return data


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def load_safetensors(path: str | Path, what: str = "file") -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file (safetensors never unpickles), or a clear error."""
    path = regular_file(path, what)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise MemGPTError(f"{what} {path} is corrupt or not a safetensors file: {_reason(e)}") from None


def safetensors_header(path: str | Path, what: str = "weights") -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """Names, dtypes and shapes in a safetensors file, reading only its header (validated by safetensors)."""
    path = regular_file(path, what)
    try:
        with safe_open(str(path), framework="pt") as f:
            out = {}
            for name in f.keys():
                sl = f.get_slice(name)
                out[name] = (_DTYPES.get(sl.get_dtype(), None), tuple(sl.get_shape()))
            return out
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise MemGPTError(f"{what} {path} is corrupt or not a safetensors file: {_reason(e)}") from None


_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def weights_header(folder: Path) -> dict[str, tuple[torch.dtype | None, tuple[int, ...]]]:
    """Tensor names/dtypes/shapes of a model folder's safetensors weights (single file or sharded)."""
    single, index = folder / SAFE_WEIGHTS, folder / SAFE_INDEX
    if os.path.lexists(single):
        return safetensors_header(single, "weights")
    if os.path.lexists(index):
        data = read_json_object(index, "weights index", {"weight_map": dict})
        header: dict[str, tuple[torch.dtype | None, tuple[int, ...]]] = {}
        for shard in sorted(set(data["weight_map"].values())):
            if not isinstance(shard, str) or Path(shard).name != shard or not shard.endswith(".safetensors"):
                raise MemGPTError(f"weights index {index} is corrupt: bad shard name {shard!r}")
            header.update(safetensors_header(folder / shard, "weights shard"))
        return header
    unsafe = [n for n in UNSAFE_WEIGHTS if (folder / n).exists()]
    if unsafe:
        raise MemGPTError(f"{folder} holds only {unsafe[0]} (pickle-based); memgpt loads safetensors only")
    raise MemGPTError(f"{folder} has no {SAFE_WEIGHTS}")


def check_weights(folder: Path, build_meta: Callable[[], nn.Module], num_layers: int | None = None) -> None:
    """Refuse weights that do not fit the model `build_meta()` describes: unknown or missing tensors,
    wrong shapes, non-float dtypes. The model is built on the meta device (no memory is used);
    `num_layers` (from the config) is checked against the file first so a config cannot make
    that construction itself absurd."""
    header = weights_header(folder)
    if num_layers is not None and (not isinstance(num_layers, int) or num_layers < 0 or num_layers > len(header)):
        raise MemGPTError(f"the config describes {num_layers} layers but the weights hold {len(header)} tensors")
    from transformers.initialization import no_init_weights

    try:
        with torch.device("meta"), no_init_weights():
            meta = build_meta()
        meta.tie_weights()
    except MemGPTError:
        raise
    except Exception as e:  # noqa: BLE001 - a config the model class cannot build
        raise MemGPTError(f"config.json describes no model that can be built: {_reason(e)}") from None
    known = {name: tuple(t.shape) for name, t in meta.state_dict().items()}
    for name, (dtype, shape) in header.items():
        if name not in known:
            raise MemGPTError(f"the weights hold a tensor {name!r} this model does not have")
        if shape != known[name]:
            raise MemGPTError(f"tensor {name!r} has shape {list(shape)}, the model needs {list(known[name])}")
        if dtype is None or not dtype.is_floating_point:
            raise MemGPTError(f"tensor {name!r} is not floating point")
    tied: dict[int, list[str]] = {}
    for name, param in meta.named_parameters(remove_duplicate=False):
        tied.setdefault(id(param), []).append(name)
    for names in tied.values():
        if not any(n in header for n in names):
            raise MemGPTError(f"the weights lack {names[0]!r} (truncated, or made for another model)")
