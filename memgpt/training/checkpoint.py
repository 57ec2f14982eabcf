"""Checkpoints: safetensors + JSON only, written atomically, found again by a `latest` pointer.

Layout of `out_dir`:
    checkpoint-000100/   model (save_pretrained), optimizer.safetensors, optimizer.json, rng.safetensors,
                         trainer_state.json
    latest               {"checkpoint": name, "step": n} of the newest complete checkpoint (replaced atomically)

A checkpoint is written into a hidden temporary folder, fsynced, renamed into place, and only then
does `latest` move to it; old checkpoints are renamed out of sight before they are deleted. A
process killed at any moment therefore leaves `latest` naming a complete checkpoint, and every
visible `checkpoint-*` folder complete. Leftover hidden folders are removed by the next save.
Test hook: with `MEMGPT_TEST_PAUSE_AT=<phase>@<step>` the writer touches `$MEMGPT_TEST_PAUSE_FILE` and
sleeps at that phase (see `PHASES`), so a test can kill it there deterministically.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from ..io import atomic
from ..io.atomic import temp_dir_in
from ..errors import MemGPTError
from ..io.safe_io import (
    SAFE_WEIGHTS, check_weights, load_safetensors, read_json, read_json_object, regular_file, weights_header,
)

LATEST = "latest"
ADAPTER_FILE = "adapter.safetensors"  # LoRA runs checkpoint only the trained parameters
NAME = re.compile(r"checkpoint-(\d{6,})")
# where the test hook can stop a checkpoint write, in order
PHASES = ("start", "model", "optimizer", "files", "renamed", "pointer", "latest", "pruned")


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:06d}"


def _pause_for_test(phase: str, step: int) -> None:
    """Test-only: stop here (touch a marker file, then sleep) when `MEMGPT_TEST_PAUSE_AT` says so."""
    if os.environ.get("MEMGPT_TEST_PAUSE_AT") == f"{phase}@{step}":
        marker = os.environ.get("MEMGPT_TEST_PAUSE_FILE")
        if marker:
            Path(marker).write_text(phase)
        time.sleep(3600)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str, pause: tuple[str, int] | None = None) -> None:
    """`memgpt.io.atomic.write_text_atomic`, with the test hook that can stop a checkpoint write."""
    atomic.write_text_atomic(path, text, (lambda: _pause_for_test(*pause)) if pause else None)


def write_json_atomic(path: Path, data: Any, pause: tuple[str, int] | None = None) -> None:
    """Write JSON to `path` atomically (see `write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=2), pause)


def optimizer_to_flat(optimizer: torch.optim.Optimizer | dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer (or its state_dict) into tensors (for safetensors) and plain JSON."""
    state = optimizer if isinstance(optimizer, dict) else optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, pstate in state["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous().clone()
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
    optimizer: torch.optim.Optimizer | dict[str, Any],
    trainer_state: dict[str, Any],
    keep: int = 2,
    model_state: dict[str, torch.Tensor] | None = None,
    save_model: Callable[[Path], None] | None = None,
) -> Path:
    """Write checkpoint `step` into a temporary folder, rename it into place, then move `latest`.
    `save_model(folder)` replaces `model.save_pretrained` (e.g. to write only an adapter).

    `model_state` (e.g. gathered from FSDP shards) replaces `model.state_dict()`. Refuses NaN/inf
    weights. Any write failure (disk full, read-only, ...) is a `MemGPTError`; earlier checkpoints
    and `latest` are then untouched.
    """
    name = checkpoint_name(step)
    try:
        previous = latest_checkpoint(out_dir) if out_dir.is_dir() else None
    except MemGPTError:
        previous = None
    _refuse_non_finite(model_state if model_state is not None else model.state_dict(), name)
    try:
        return _write_checkpoint(out_dir, step, name, model, optimizer, trainer_state, keep, model_state, previous,
                                 save_model)
    except (OSError, SafetensorError) as e:
        kept = f"the last complete checkpoint, {previous.name}, is intact" if previous else "no earlier checkpoint exists"
        raise MemGPTError(f"cannot write {name} in {out_dir}: {_write_reason(e)}; {kept}") from None


def _write_reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e)
    for code, words in (("FileTooLarge", "File too large (disk full or file size limit)"), ("StorageFull", "No space left on device"),
                        ("ReadOnlyFilesystem", "Read-only file system"), ("PermissionDenied", "Permission denied")):
        if code in text:
            return words
    return text.splitlines()[0] if text else type(e).__name__


def _refuse_non_finite(state: dict[str, torch.Tensor], name: str) -> None:
    for key, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise MemGPTError(f"refusing to write {name}: weight {key} holds NaN/inf (training diverged)")


def _write_checkpoint(
    out_dir: Path, step: int, name: str, model: torch.nn.Module, optimizer: Any, trainer_state: dict[str, Any],
    keep: int, model_state: dict[str, torch.Tensor] | None, previous: Path | None,
    save_model: Callable[[Path], None] | None = None,
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out_dir, keep_name=previous.name if previous else None)
    final = out_dir / name
    tmp = temp_dir_in(out_dir, f".{name}.")
    try:
        _pause_for_test("start", step)
        if save_model is not None:
            save_model(tmp)
        else:
            model.save_pretrained(tmp, safe_serialization=True, state_dict=model_state)
        _pause_for_test("model", step)
        tensors, meta = optimizer_to_flat(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        _pause_for_test("optimizer", step)
        (tmp / "optimizer.json").write_text(json.dumps(meta))
        save_file({"torch_rng_state": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        _pause_for_test("files", step)
        if previous is not None and previous.name == name:
            # re-saving the step `latest` names: point `latest` at the new copy before the old one goes
            write_json_atomic(out_dir / LATEST, {"checkpoint": tmp.name, "step": step})
        if final.exists():
            _discard(final)
        os.replace(tmp, final)
        _fsync_dir(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _pause_for_test("renamed", step)
    write_json_atomic(out_dir / LATEST, {"checkpoint": name, "step": step}, pause=("pointer", step))
    _fsync_dir(out_dir)
    _pause_for_test("latest", step)
    _prune(out_dir, keep, step)
    return final


def _discard(path: Path) -> None:
    """Delete a folder so that it disappears at once (rename out of sight, then remove)."""
    trash = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".trash-{path.name}."))
    os.replace(path, trash / path.name)
    shutil.rmtree(trash, ignore_errors=True)


def _remove_leftovers(out_dir: Path, keep_name: str | None) -> None:
    """Remove hidden temporary or half-deleted files and folders left by a killed writer (there is
    one writer per run: rank 0)."""
    for p in out_dir.iterdir():
        if p.is_symlink() or p.name == keep_name:
            continue
        if p.name.startswith((".checkpoint-", ".trash-")) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith((f".{LATEST}.", ".summary.json.", ".log.jsonl.")) and p.is_file():
            p.unlink(missing_ok=True)


def _prune(out_dir: Path, keep: int, step: int) -> None:
    """Keep the newest `keep` checkpoints up to `step`; drop later ones (written by a killed run
    after the checkpoint it resumed from, never named by `latest`)."""
    steps = sorted(int(m.group(1)) for p in out_dir.iterdir() if (m := NAME.fullmatch(p.name)) and p.is_dir())
    older = [s for s in steps if s < step]
    doomed = older[: max(len(older) - (keep - 1), 0)] + [s for s in steps if s > step]
    for i, s in enumerate(doomed):
        _discard(out_dir / checkpoint_name(s))
        if i == 0:
            _pause_for_test("pruned", step)


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint in `out_dir`, or None if there is none."""
    pointer = out_dir / LATEST
    if not os.path.lexists(pointer):
        return None
    data = read_json(pointer, "checkpoint pointer")
    name = data.get("checkpoint") if isinstance(data, dict) else None
    if not isinstance(name, str) or not (NAME.fullmatch(name) or re.fullmatch(r"\.checkpoint-\d{6,}\.\w+", name)):
        raise MemGPTError(f"{pointer} is corrupt (no valid checkpoint name); remove it to start over")
    path = out_dir / name
    staged = re.fullmatch(r"\.(checkpoint-\d{6,})\.\w+", name)
    if staged and not path.is_dir():  # a re-save renamed its staged copy into place after `latest` named it
        path = out_dir / staged.group(1)
    if not path.is_dir():
        raise MemGPTError(f"{pointer} names {name}, which does not exist or is not a folder")
    return path


STATE_KEYS = {"step": int, "elapsed": (int, float), "evals": list, "curriculum": dict, "args": dict}


def load_training_state(path: Path) -> tuple[dict[str, Any], dict[str, Any], torch.Tensor]:
    """Read `(optimizer state_dict, trainer_state, torch RNG state)` of a checkpoint, refusing bad files."""
    if not os.path.isdir(path):
        raise MemGPTError(f"checkpoint {path} is not a folder")
    what = f"checkpoint {path.name}:"
    state = read_json_object(path / "trainer_state.json", f"{what} trainer state", STATE_KEYS)
    if state["step"] < 0 or not math.isfinite(state["elapsed"]):
        raise MemGPTError(f"{what} trainer_state.json is corrupt: bad step or elapsed time")
    curriculum = state["curriculum"]
    if not all(isinstance(curriculum.get(k), int) and not isinstance(curriculum.get(k), bool) and curriculum[k] >= 0
               for k in ("stage", "stage_start")):
        raise MemGPTError(f"{what} trainer_state.json is corrupt: bad curriculum state")
    started = curriculum.get("stage_start_elapsed", 0.0)
    if isinstance(started, bool) or not isinstance(started, (int, float)) or not 0 <= started < math.inf:
        raise MemGPTError(f"{what} trainer_state.json is corrupt: bad curriculum state")
    meta = read_json_object(path / "optimizer.json", f"{what} optimizer state", {"param_groups": list})
    tensors = load_safetensors(path / "optimizer.safetensors", f"{what} optimizer state")
    rng = load_safetensors(path / "rng.safetensors", f"{what} RNG state").get("torch_rng_state")
    if rng is None or rng.dtype != torch.uint8 or rng.ndim != 1 or rng.numel() != torch.get_rng_state().numel():
        raise MemGPTError(f"{what} rng.safetensors is corrupt: no valid torch_rng_state")
    try:
        optimizer_state = optimizer_from_flat(tensors, meta)
        for group in optimizer_state["param_groups"]:
            if not isinstance(group, dict) or not all(isinstance(i, int) for i in group["params"]):
                raise ValueError("bad param_groups")
        for key, value in optimizer_state["state"].items():
            if not isinstance(value, dict):
                raise ValueError(f"bad state of parameter {key}")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise MemGPTError(f"{what} the optimizer state is corrupt: {e}") from None
    return optimizer_state, state, rng


def load_model(path: Path):
    """Load a `MemGPTForCausalLM` from a checkpoint or save_pretrained folder, or say why not.

    Only safetensors weights are read; they must match the config exactly (no tensor missing,
    extra, misshapen or of a non-float type) before anything is allocated.
    """
    from ..model.configuration_memgpt import MemGPTConfig
    from ..model.modeling_memgpt import MemGPTForCausalLM

    if not os.path.lexists(path):
        raise MemGPTError(f"{path} does not exist")
    if not os.path.isdir(path):
        raise MemGPTError(f"{path} is not a model folder")
    if os.path.isfile(path / ADAPTER_FILE):  # a LoRA run: the default backbone + its adapter
        from ..model.adapters import load_latent_model, read_adapter
        from ..model.pretrained import load_backbone

        read_adapter(path / ADAPTER_FILE)
        model = load_latent_model(load_backbone("default")[0], path / ADAPTER_FILE)
        if model is None:
            raise MemGPTError(f"the adapter in {path} was trained for another backbone")
        return model
    config_file, weights = path / "config.json", path / SAFE_WEIGHTS
    if not os.path.lexists(config_file) or not os.path.lexists(weights):
        if os.path.lexists(config_file):
            weights_header(path)  # says why: pickle-only weights, or none at all
        raise MemGPTError(f"{path} is not a memgpt model folder (config.json or model.safetensors missing)")
    regular_file(weights, "weights")
    raw = read_json_object(config_file, "model config")
    if raw.get("model_type") != "memgpt":
        raise MemGPTError(f"{config_file} is not a memgpt config (model_type {raw.get('model_type')!r})")
    try:
        config = MemGPTConfig.from_pretrained(path)
    except Exception as e:  # noqa: BLE001 - any failure to read the config means it is unusable
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MemGPTError(f"cannot load the model config in {path}: {msg}") from None
    layers = getattr(config.text_config, "num_hidden_layers", None)
    try:
        check_weights(path, lambda: MemGPTForCausalLM(config), layers)
    except MemGPTError as e:
        raise MemGPTError(f"cannot load the model in {path}: {e}") from None
    try:
        model, info = MemGPTForCausalLM.from_pretrained(path, use_safetensors=True, output_loading_info=True)
    except MemGPTError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to read the files means they are unusable
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MemGPTError(f"cannot load the model in {path}: {msg}") from None
    problems = {k: v for k, v in info.items() if k != "error_msgs" and v} | ({"error_msgs": info["error_msgs"]} if info.get("error_msgs") else {})
    if problems:
        raise MemGPTError(f"cannot load the model in {path}: {problems}")
    for name, value in model.state_dict().items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise MemGPTError(f"cannot load the model in {path}: weight {name} holds NaN/inf")
    return model
