"""Stopping model work whose caller has gone. A job runs under `cancellable(event)`; every forward pass
of a backbone that is `watch`ed raises `Cancelled` once the event is set. So an answer made of many
generations and scoring passes (ask, summarize) stops at its next model step, whatever app makes it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

_current = threading.local()  # the event of the job running on this thread (None: not cancellable)


class Cancelled(Exception):
    """The caller of this model work has gone; the work stopped at a model step."""


@contextlib.contextmanager
def cancellable(event: threading.Event) -> Iterator[None]:
    """Model work in this block stops at its next forward pass once `event` is set."""
    previous = getattr(_current, "event", None)
    _current.event = event
    try:
        yield
    finally:
        _current.event = previous


def check() -> None:
    """Raise `Cancelled` if the work running on this thread has been cancelled."""
    event = getattr(_current, "event", None)
    if event is not None and event.is_set():
        raise Cancelled("the caller has gone")


def watch(module: torch.nn.Module) -> None:
    """Check for cancellation before each forward pass of `module` (once per module, however often called)."""
    if not getattr(module, "_memgpt_cancel_watch", False):
        module.register_forward_pre_hook(lambda _module, _args: check())
        module._memgpt_cancel_watch = True
