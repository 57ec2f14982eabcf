"""ASGI layers in front of the routes: the API key, the body size limit, and (without a key) the
Host / Origin checks that keep web pages in a browser on this machine out."""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response
from .page import PATHS as PAGE_PATHS

OPEN_PATHS = ("/health", *PAGE_PATHS)  # answered without the API key: a health check, the page's own files
WILDCARDS = ("0.0.0.0", "::", "")


class BearerAuth:
    """Every request (but /health) needs `Authorization: Bearer <key>` when a key is set."""

    def __init__(self, app: ASGIApp, key: str):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            header = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, token = header.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                response = error_response(401, "missing or incorrect API key (send Authorization: Bearer <key>)",
                                          "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class HostGuard:
    """Keyless mode: `Host` must name this server (the bound address, loopback, or `--allowed-host`), so a
    DNS-rebound name cannot reach it; a request with an `Origin` of any other host is refused, so a web page
    cannot post to it (browsers send `Origin` on every cross-origin POST, preflighted or not). Tools that
    send no `Origin` (curl, the `openai` client) are unaffected. When bound to every interface (0.0.0.0 or
    ::), any IP address is a valid Host too: only names can be rebound."""

    def __init__(self, app: ASGIApp, names: set[str], bound: str):
        self.app, self.names, self.any_ip = app, names, bound in WILDCARDS

    def allowed(self, host: str) -> bool:
        host = host.lower().strip("[]")
        if host in self.names:
            return True
        if not self.any_ip:
            return False
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            host = host_of(headers.get(b"host", b"").decode("latin-1"))
            origin = headers.get(b"origin")
            if host is None or not self.allowed(host):
                await error_response(403, "the Host header does not name this server (see --allowed-host)",
                                     "host_not_allowed")(scope, receive, send)
                return
            if origin is not None:
                parts = urlsplit(origin.decode("latin-1"))
                if parts.scheme not in ("http", "https") or not self.allowed(parts.hostname or ""):
                    await error_response(403, "requests from web pages of other origins are refused "
                                         "(this server has no API key; see --allowed-host)", "origin_not_allowed")(
                        scope, receive, send)
                    return
        await self.app(scope, receive, send)


def host_of(header: str) -> str | None:
    """The host name of a `Host` header (without the port), or None if it is not one."""
    try:
        return urlsplit(f"//{header}").hostname if header and "/" not in header and "@" not in header else None
    except ValueError:
        return None


class BodyLimit:
    """413 for a body over `limit` bytes: at once when Content-Length says so, else as it arrives."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            message = "the request body is over the server's size limit" if length.isdigit() else "bad Content-Length"
            await error_response(413 if length.isdigit() else 400, message, "request_too_large" if length.isdigit() else None)(
                scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413)  # FastAPI passes HTTPException through body parsing; errors.py words it
            return message

        await self.app(scope, counted, send)
