"""Training batches built ahead in worker processes, so a GPU step need not wait for the CPU.

A batch depends only on (task, rows, segments, segment size, seed), so the batches of the next steps can be
made while the current one trains. The long-context tasks tokenize a fresh document per sample: one CPU
core makes about 100k tokens a second of them, several times less than a 135M model trains on a GPU.
A batch asked for that was not made ahead (the curriculum moved on) is made on the spot.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np
import torch

from .tasks import Task, get_task

BatchKey = tuple[int, int, int, int]  # (rows, segments, segment size, seed)
_TASKS: dict[str, Task] = {}  # a worker's tasks, built once


def _make(task: str, key: BatchKey) -> tuple[np.ndarray, np.ndarray]:
    if task not in _TASKS:
        _TASKS[task] = get_task(task)
    rows, segments, size, seed = key
    x, y = _TASKS[task].batch(rows, segments, size, seed=seed)
    return x.numpy(), y.numpy()  # plain arrays: no shared-memory handles between processes


class BatchPrefetcher:
    """`workers` processes making the batches of `task` named by `ahead` before `get` asks for them."""

    def __init__(self, task: str, workers: int, fallback: Callable[[BatchKey], tuple[torch.Tensor, torch.Tensor]]):
        self.task, self.fallback = task, fallback
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        self.depth = 2 * workers
        self.pending: dict[BatchKey, Future] = {}
        self.made_ahead = 0  # batches `get` took from a worker

    def ahead(self, keys: list[BatchKey]) -> None:
        """Start making these batches (at most `depth` are kept in flight; stale ones are dropped)."""
        wanted = keys[: self.depth]
        for key in [k for k in self.pending if k not in wanted]:
            self.pending.pop(key).cancel()
        for key in wanted:
            if key not in self.pending:
                self.pending[key] = self.pool.submit(_make, self.task, key)

    def get(self, key: BatchKey) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch `key`: from a worker if it was asked for ahead, else made here."""
        future = self.pending.pop(key, None)
        if future is None or future.cancelled():
            return self.fallback(key)
        x, y = future.result()
        self.made_ahead += 1
        return torch.from_numpy(x), torch.from_numpy(y)

    def close(self) -> None:
        for future in self.pending.values():
            future.cancel()
        self.pending.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)
