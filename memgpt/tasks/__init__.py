"""Synthetic memory tasks: copy, associative recall, fact recall in noise."""

from __future__ import annotations

from ..errors import MemGPTError
from .base import IGNORE, Task
from .copy import CopyTask
from .facts import FactRecallTask
from .recall import AssociativeRecallTask

TASKS: dict[str, type[Task]] = {"copy": CopyTask, "recall": AssociativeRecallTask, "facts": FactRecallTask}


def get_task(name: str) -> Task:
    """The task called `name` with its default parameters."""
    if name not in TASKS:
        raise MemGPTError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]()


__all__ = ["IGNORE", "TASKS", "AssociativeRecallTask", "CopyTask", "FactRecallTask", "Task", "get_task"]
