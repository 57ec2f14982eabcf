"""The one thread that touches the model: every generation, reading step and tokenizer call runs on
it, one at a time, in the order submitted. HTTP handlers wait on it without blocking the event loop;
a long document is read one segment per job, and all memories being read share one place in the
queue (memgpt.server.store), so a request waits behind one reading step at most."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from .errors import APIError

T = TypeVar("T")


class ModelWorker:
    """A FIFO of model jobs on one thread; at most `max_queue` client jobs wait at once."""

    def __init__(self, max_queue: int):
        self.max_queue = max_queue
        self._pending = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memgpt-model")
        self.closed = False

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue internal work (reading steps); never refused."""
        return self._executor.submit(fn, *args)

    def start(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue a client's job (from the event loop); 503 when `max_queue` jobs already wait. Cancelling
        the returned future drops the job if it has not started."""
        with self._lock:
            if self._pending >= self.max_queue:
                raise APIError(503, f"the server is busy ({self._pending} requests waiting); retry shortly",
                               code="server_busy", headers={"Retry-After": "1"})
            self._pending += 1
        future = asyncio.wrap_future(self._executor.submit(fn, *args))
        future.add_done_callback(self._release)
        return future

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a client's job on the model thread and wait for its result."""
        return await self.start(fn, *args)

    def _release(self, _future: Any) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        """Stop taking work; queued jobs are dropped (an unfinished reading resumes at the next start)."""
        self.closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
