"""What one client may hold of the server's connections and time, as plain rules (memgpt.server.protocol
applies them to uvicorn's connections):

- connections per client address (`per_client`), and at the global cap a fair share: a newcomer from an
  address with fewer connections than the busiest takes the place of one that the busiest holds while
  waiting on its client (sending headers or a body, or idle between requests);
- a request body must arrive within `body_timeout_s` of its headers and, after a grace of
  BODY_GRACE_S, at `min_body_rate` bytes a second on average (never more than its Content-Length);
- a response the client stops reading (no byte taken for `write_timeout_s`) is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

BODY_GRACE_S = 2.0  # the first seconds of a body are free of the rate floor (a connection's slow start)

C = TypeVar("C", bound=Hashable)


@dataclass(frozen=True)
class Limits:
    max_connections: int = 128
    per_client: int = 8
    header_timeout_s: float = 10.0
    body_timeout_s: float = 32.0
    min_body_rate: float = 32 << 10  # bytes a second
    write_timeout_s: float = 30.0


def body_due(limits: Limits, received: int, expected: float = math.inf) -> float:
    """Seconds after the headers at which a body with `received` bytes so far falls below the floor
    (or reaches the body timeout, whichever is first): when to look again."""
    if received >= expected:
        return limits.body_timeout_s
    return min(limits.body_timeout_s, BODY_GRACE_S + (received + 1) / limits.min_body_rate)


def body_too_slow(limits: Limits, elapsed: float, received: int, expected: float = math.inf) -> bool:
    """The body is late: past the body timeout, or under the rate floor after the grace."""
    if elapsed >= limits.body_timeout_s:
        return True
    return received < min(expected, limits.min_body_rate * (elapsed - BODY_GRACE_S))


class Peers(Generic[C]):
    """Open connections by client address, in the order they were made."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.by_address: dict[str, dict[C, None]] = {}
        self.total = 0

    def count(self, address: str) -> int:
        return len(self.by_address.get(address, ()))

    def admit(self, address: str, waiting: Callable[[C], bool]) -> tuple[bool, C | None]:
        """May a new connection from `address` open, and which connection must make room for it (None:
        none)? `waiting(c)`: c waits on its client, so closing it costs no work done for anyone."""
        mine = self.count(address)
        if mine >= self.limits.per_client:
            return False, None
        if self.total < self.limits.max_connections:
            return True, None
        for other in sorted(self.by_address, key=self.count, reverse=True):
            if self.count(other) <= mine:
                break  # no address holds more than the newcomer's
            victim = next((c for c in self.by_address[other] if waiting(c)), None)
            if victim is not None:
                return True, victim
        return False, None

    def add(self, address: str, connection: C) -> None:
        self.by_address.setdefault(address, {})[connection] = None
        self.total += 1

    def remove(self, address: str, connection: C) -> None:
        held = self.by_address.get(address)
        if held is not None and connection in held:
            del held[connection]
            self.total -= 1
            if not held:
                del self.by_address[address]
