"""Synthetic memory tasks: copy, associative recall, fact recall in noise."""

from __future__ import annotations

from ...errors import MemGPTError
from .base import IGNORE, Task
from .copy import CopyTask
from .facts import FactRecallTask
from .latent_train import LatentMemoryTask
from .recall import AssociativeRecallTask

TASKS: dict[str, type[Task]] = {"copy": CopyTask, "recall": AssociativeRecallTask, "facts": FactRecallTask}
# long-context tasks in the default tokenizer's tokens, for training a latent memory into a pretrained backbone
LONG_TRAIN_TASKS: dict[str, list[str]] = {
    "lc-passkey": ["passkey", "passkey-prose"], "lc-qa1": ["qa1"], "lc-mix": ["passkey", "passkey-prose", "qa1"],
}


def get_task(name: str) -> Task:
    """The task called `name` with its default parameters."""
    if name in LONG_TRAIN_TASKS:
        return LatentMemoryTask(LONG_TRAIN_TASKS[name], name)
    if name not in TASKS:
        raise MemGPTError(f"unknown task {name!r}; choose one of {', '.join([*TASKS, *LONG_TRAIN_TASKS])}")
    return TASKS[name]()


__all__ = ["IGNORE", "LONG_TRAIN_TASKS", "TASKS", "AssociativeRecallTask", "CopyTask", "FactRecallTask", "LatentMemoryTask",
           "Task", "get_task"]
