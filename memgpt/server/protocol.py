"""uvicorn's HTTP/1.1 protocol (h11) with the limits it lacks (the rules: memgpt.server.limits):

- a connection cap with a per-client-address limit: a connection over them is closed as it is
  accepted, or, at the cap, takes the place of one the busiest address holds while waiting on its client;
- a header timeout: a connection whose request headers are not complete within `header_timeout_s` of
  its start, or of its previous response, is closed (half-open and trickling sockets do not pile up);
- a body timeout and rate floor: a body that comes too slowly is answered 408 and the connection closed;
- a write timeout: a connection whose client takes no byte of its response for `write_timeout_s` is dropped.

Plus a log filter that keeps access-log lines short."""

from __future__ import annotations

import asyncio
import json
import logging
import math

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import clip, error_body
from .limits import Limits, Peers, body_due, body_too_slow

LOGGED_PATH_CHARS = 200


def guarded_protocol(limits: Limits) -> type[H11Protocol]:
    """An H11Protocol class with these limits (uvicorn's `Config(http=...)` takes a class); its
    connections share one count per client address."""
    peers: Peers[H11Protocol] = Peers(limits)

    class Guarded(H11Protocol):
        address = ""
        header_timer: asyncio.TimerHandle | None = None
        body_timer: asyncio.TimerHandle | None = None
        write_timer: asyncio.TimerHandle | None = None
        body_start = 0.0
        body_received = 0
        body_expected = math.inf
        write_mark = 0  # the write buffer's size when it was last looked at

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            peer = transport.get_extra_info("peername")
            address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
            admitted, victim = peers.admit(address, lambda c: c.waiting_on_client())
            if not admitted:
                transport.close()  # never counted: connection_lost does nothing for it
                self.transport = None
                return
            if victim is not None:
                victim.give_up("the server needed this connection for another client while the request was incomplete")
            super().connection_made(transport)
            self.address = address
            peers.add(address, self)
            self._arm_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            if self.transport is None:
                return
            peers.remove(self.address, self)
            for timer in (self.header_timer, self.body_timer, self.write_timer):
                if timer is not None:
                    timer.cancel()
            self.header_timer = self.body_timer = self.write_timer = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.transport is None or self.transport.is_closing():
                return
            super().data_received(data)
            state = self.conn.their_state
            if state is not h11.IDLE:  # the headers are in: the request is the app's now
                self._disarm_headers()
            if self.body_timer is not None:
                self.body_received += len(data)
                if state is not h11.SEND_BODY:  # the whole body is in
                    self.body_timer.cancel()
                    self.body_timer = None
            elif state is h11.SEND_BODY and not self.transport.is_closing():
                self._arm_body()

        def on_response_complete(self) -> None:
            if self.transport.get_write_buffer_size():
                self._watch_writes()  # a closing transport waits for its buffer: the client must take it
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_headers()  # the next request's headers get the same time

        def pause_writing(self) -> None:
            super().pause_writing()
            self._watch_writes()

        def waiting_on_client(self) -> bool:
            """Sending headers or a body, or idle between requests: nothing is being answered."""
            if self.transport is None or self.transport.is_closing():
                return False
            answering = self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete
            return self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not answering

        def give_up(self, message: str) -> None:
            """Close the connection: with a 408 when a request's body is still coming and nothing has been
            answered, the app's request then seen as disconnected."""
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True  # its further sends are dropped; its receive says so
                self.cycle.message_event.set()
            if self.conn.their_state is h11.SEND_BODY and self.conn.our_state is h11.SEND_RESPONSE:
                body = json.dumps(error_body(408, message, "request_timeout")).encode()
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                           (b"connection", b"close")]
                for event in (h11.Response(status_code=408, headers=headers, reason=b"Request Timeout"),
                              h11.Data(data=body), h11.EndOfMessage()):
                    self.transport.write(self.conn.send(event))
                if self.access_log and self.scope:
                    self.access_logger.info('%s - "%s %s HTTP/%s" %d', self.address, self.scope["method"],
                                            self.scope["path"], self.scope["http_version"], 408)
                self._watch_writes()
            self.transport.close()

        # -- headers
        def _arm_headers(self) -> None:
            self._disarm_headers()
            self.header_timer = self.loop.call_later(limits.header_timeout_s, self._headers_late)

        def _disarm_headers(self) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None

        def _headers_late(self) -> None:
            self.header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        # -- body
        def _arm_body(self) -> None:
            self.body_start, self.body_received = self.loop.time(), 0
            length = dict(self.headers or []).get(b"content-length", b"")
            self.body_expected = int(length) if length.isdigit() else math.inf
            self._next_body_check()

        def _next_body_check(self) -> None:
            due = self.body_start + body_due(limits, self.body_received, self.body_expected)
            self.body_timer = self.loop.call_at(max(due, self.loop.time() + 0.01), self._body_check)

        def _body_check(self) -> None:
            self.body_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
                return
            if self.flow.read_paused:  # the server is not reading (the app has yet to take the body): not the client's time
                self.body_start += 1.0
                self.body_timer = self.loop.call_later(1.0, self._body_check)
                return
            if body_too_slow(limits, self.loop.time() - self.body_start, self.body_received, self.body_expected):
                self.give_up(f"the request body came too slowly (the server waits {limits.body_timeout_s:g} s at most, "
                             f"and for at least {limits.min_body_rate / 1024:g} KB/s after the first seconds)")
            else:
                self._next_body_check()

        # -- writes
        def _watch_writes(self) -> None:
            if self.write_timer is None:
                self.write_mark = self.transport.get_write_buffer_size()
                self.write_timer = self.loop.call_later(limits.write_timeout_s, self._writes_check)

        def _writes_check(self) -> None:
            self.write_timer = None
            size = self.transport.get_write_buffer_size()
            if size == 0 and not self.flow.write_paused:
                return
            if size < self.write_mark:  # the client took some: it is reading, slowly
                self._watch_writes()
                return
            self.transport.abort()  # the client reads nothing: drop the response and the connection

    return Guarded


class ShortAccessLines(logging.Filter):
    """uvicorn's access log with the request path clipped (a 100 KB id is one short line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            args = list(record.args)
            args[2] = clip(args[2], LOGGED_PATH_CHARS)
            record.args = tuple(args)
        return True
