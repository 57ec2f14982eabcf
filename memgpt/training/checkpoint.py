"""Checkpoints: safetensors + JSON only, written atomically, found again by a `latest` pointer.

Layout of `out_dir`:
    checkpoint-000100/   model (save_pretrained), optimizer.safetensors, optimizer.json, trainer_state.json
    latest               name of the newest complete checkpoint (replaced atomically)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import MemGPTError

LATEST = "latest"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to `path` so a reader sees the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and plain JSON."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, pstate in state["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Rebuild an optimizer state_dict from `optimizer_to_flat`'s output."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for idx, values in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    out_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    keep: int = 2,
    save_model: Callable[[Path], None] | None = None,
) -> Path:
    """Write checkpoint `step` into a temporary folder, rename it into place, then move `latest`.
    `save_model(folder)` replaces `model.save_pretrained` (e.g. to write only an adapter)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"checkpoint-{step:06d}"
    final = out_dir / name
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{name}."))
    try:
        if save_model is not None:
            save_model(tmp)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        tensors, meta = optimizer_to_flat(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(meta))
        rng = {"torch_rng_state": torch.get_rng_state()}
        save_file(rng, str(tmp / "rng.safetensors"))
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_json_atomic(out_dir / LATEST, {"checkpoint": name, "step": step})
    _prune(out_dir, keep, protect=name)
    return final


def _prune(out_dir: Path, keep: int, protect: str) -> None:
    ckpts = sorted(p for p in out_dir.glob("checkpoint-*") if p.is_dir())
    for old in ckpts[: max(len(ckpts) - keep, 0)]:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint in `out_dir`, or None if there is none."""
    pointer = out_dir / LATEST
    if not pointer.exists():
        return None
    try:
        name = json.loads(pointer.read_text())["checkpoint"]
    except (ValueError, KeyError, TypeError) as e:
        raise MemGPTError(f"{pointer} is corrupt ({e}); remove it to start over") from None
    path = out_dir / name
    if not path.is_dir():
        raise MemGPTError(f"{pointer} names {name}, which does not exist")
    return path


def load_training_state(path: Path) -> tuple[dict[str, Any], dict[str, Any], torch.Tensor]:
    """Read `(optimizer state_dict, trainer_state, torch RNG state)` of a checkpoint, refusing bad files."""
    try:
        trainer_state = json.loads((path / "trainer_state.json").read_text())
        meta = json.loads((path / "optimizer.json").read_text())
        tensors = load_file(str(path / "optimizer.safetensors"))
        rng = load_file(str(path / "rng.safetensors"))["torch_rng_state"]
    except FileNotFoundError as e:
        raise MemGPTError(f"checkpoint {path} is incomplete: {Path(e.filename).name} is missing") from None
    except (ValueError, KeyError, OSError, SafetensorError) as e:
        raise MemGPTError(f"checkpoint {path} is corrupt: {e}") from None
    return optimizer_from_flat(tensors, meta), trainer_state, rng


def load_model(path: Path):
    """Load a `MemGPTForCausalLM` from a checkpoint or save_pretrained folder, or say why not."""
    from ..modeling_memgpt import MemGPTForCausalLM

    if not path.exists():
        raise MemGPTError(f"{path} does not exist")
    if not path.is_dir():
        raise MemGPTError(f"{path} is not a model folder")
    if (path / "adapter.safetensors").is_file():  # a LoRA run: the default backbone + its adapter
        from ..adapters import load_latent_model, read_adapter
        from ..pretrained import load_backbone

        read_adapter(path / "adapter.safetensors")
        model = load_latent_model(load_backbone("default")[0], path / "adapter.safetensors")
        if model is None:
            raise MemGPTError(f"the adapter in {path} was trained for another backbone")
        return model
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise MemGPTError(f"{path} is not a memgpt model folder (config.json or model.safetensors missing)")
    try:
        model = MemGPTForCausalLM.from_pretrained(path)
    except MemGPTError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to read the files means they are unusable
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MemGPTError(f"cannot load the model in {path}: {msg}") from None
    return model
