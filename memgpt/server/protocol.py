"""uvicorn's HTTP/1.1 protocol (h11) with two limits it lacks: a connection cap (a connection over it is
closed as it is accepted) and a header timeout (a connection whose request headers are not complete
within `header_timeout_s` of its start, or of its previous response, is closed: half-open and
trickling sockets do not pile up). Plus a log filter that keeps access-log lines short."""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import clip

LOGGED_PATH_CHARS = 200


def guarded_protocol(max_connections: int, header_timeout_s: float) -> type[H11Protocol]:
    """An H11Protocol class with these limits (uvicorn's `Config(http=...)` takes a class)."""

    class Guarded(H11Protocol):
        header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.server_state.connections) >= max_connections:
                transport.close()  # never counted: connection_lost does not run for it
                self.transport = None
                return
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self.transport is None:
                return
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.transport is None:
                return
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the headers are in: the request is the app's now
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's headers get the same time

        def _arm(self) -> None:
            self._disarm()
            self.header_timer = self.loop.call_later(header_timeout_s, self._headers_late)

        def _disarm(self) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None

        def _headers_late(self) -> None:
            self.header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return Guarded


class ShortAccessLines(logging.Filter):
    """uvicorn's access log with the request path clipped (a 100 KB id is one short line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            args = list(record.args)
            args[2] = clip(args[2], LOGGED_PATH_CHARS)
            record.args = tuple(args)
        return True
