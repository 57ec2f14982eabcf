"""Scoring trained checkpoints on the synthetic tasks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import MemGPTError
from ..io.safe_io import read_json_object
from ..training.tasks import get_task
from ..training.checkpoint import latest_checkpoint, load_model
from ..training.trainer import evaluate


def resolve_checkpoint(path: Path) -> Path:
    """A run folder resolves to its latest checkpoint; a model folder is itself."""
    if os.path.isdir(path) and os.path.lexists(path / "latest"):
        return latest_checkpoint(path)  # type: ignore[return-value]
    return path


def evaluate_checkpoint(
    path: Path, task_name: str | None = None, segments: list[int] | None = None, eval_size: int = 256
) -> list[dict[str, Any]]:
    """Exact-match accuracy of the model at `path` for each number of segments."""
    if not 1 <= eval_size <= 1 << 20:
        raise MemGPTError(f"eval_size must be in 1..{1 << 20}, got {eval_size}")
    ckpt = resolve_checkpoint(path)
    model = load_model(ckpt)
    saved: dict[str, Any] = {}
    state_file = ckpt / "trainer_state.json"
    if os.path.lexists(state_file):
        saved = read_json_object(state_file, "trainer state", {"args": dict})["args"]
        curriculum, seg = saved.get("curriculum", [1]), saved.get("segment_size", model.config.segment_size)
        if (
            not isinstance(saved.get("task", ""), str)
            or not isinstance(curriculum, list) or not curriculum
            or not all(isinstance(n, int) and n > 0 for n in curriculum)
            or not isinstance(seg, int) or seg <= 0
        ):
            raise MemGPTError(f"{state_file} is corrupt: bad task, curriculum or segment_size")
    task_name = task_name or saved.get("task")
    if not task_name:
        raise MemGPTError("--task is required for a model saved without training state")
    task = get_task(task_name)
    if task.vocab_size > model.config.vocab_size:
        raise MemGPTError(f"task {task_name!r} needs a vocabulary of {task.vocab_size}, the model has {model.config.vocab_size}")
    segments = segments or [max(saved.get("curriculum", [1]))]
    seg_size = saved.get("segment_size", model.config.segment_size)
    results = []
    for n in segments:
        if n <= 0:
            raise MemGPTError(f"--segments must be positive, got {n}")
        acc = evaluate(model, task, n, seg_size, eval_size)
        results.append({"task": task_name, "segments": n, "tokens": n * seg_size, "accuracy": acc})
    return results
