"""Errors in OpenAI's JSON shape, `{"error": {"message", "type", "param", "code"}}`, with the status
codes OpenAI uses; nothing else (no traceback, no framework default page) ever reaches a client."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from ..errors import MemGPTError

log = logging.getLogger("memgpt.server")

TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
         404: "invalid_request_error", 405: "invalid_request_error", 409: "invalid_request_error",
         413: "invalid_request_error", 415: "invalid_request_error", 422: "invalid_request_error",
         429: "rate_limit_error", 503: "server_error", 500: "server_error"}
ECHO_CHARS = 64  # the most of a client's text (an id, a model name, a path) an error message repeats


def clip(text: str, limit: int = ECHO_CHARS) -> str:
    """`text` as an error message or log line may repeat it: at most `limit` characters, then an ellipsis."""
    return text if len(text) <= limit else text[:limit] + f"...({len(text)} characters)"


class APIError(Exception):
    """An error for the client: status code, message and OpenAI's `code` / `param`."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers


class ClientGone(Exception):
    """The client closed its connection before its answer was ready (its work was cancelled)."""


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": TYPES.get(status, "invalid_request_error" if status < 500 else "server_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code, param), status_code=status, headers=headers)


def sent_path(body: Any, loc: tuple[Any, ...]) -> str | None:
    """The field a validation error is about, as the client sent it: pydantic's `loc` without the union
    branches it tried (`("body", "stop", "str")` is `stop`; `("body", "messages", 0, "role")` is
    `messages.0.role`)."""
    where, value = [], body
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(value, dict) and isinstance(part, str):
            where.append(part)
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int):
            where.append(str(part))
            value = value[part] if 0 <= part < len(value) else None
        elif value is None and not where:  # no body at all
            where.append(str(part))
        # else: a union branch's name (str, list[str], constrained-str ...), not a field
    return clip(".".join(where), 128) or None


def _validation_message(exc: RequestValidationError) -> tuple[int, str, str | None]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "the request body is not valid JSON", None
    first = errors[0] if errors else {}
    param = sent_path(exc.body, tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return 422, f"{param}: {message}" if param else message, param


def install(app: FastAPI) -> None:
    """Route every failure to OpenAI's error shape."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        return error_response(exc.status, exc.message, exc.code, exc.param, exc.headers)

    @app.exception_handler(ClientGone)
    @app.exception_handler(ClientDisconnect)  # gone while its body was read (or closed by the body timeout)
    async def client_gone(request: Request, exc: Exception):
        return Response(status_code=499)  # nginx's "client closed request": nobody reads it

    @app.exception_handler(MemGPTError)
    async def user_error(request: Request, exc: MemGPTError):
        return error_response(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        status, message, param = _validation_message(exc)
        return error_response(status, message, "invalid_value" if status == 422 else None, param)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        messages = {404: f"no route {request.method} {clip(request.url.path)}", 405: f"method {request.method} is not allowed here",
                    413: "the request body is over the server's size limit"}
        message = messages.get(exc.status_code) or (exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail))
        return error_response(exc.status_code, message, "request_too_large" if exc.status_code == 413 else None,
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.exception("internal error on %s %s", request.method, clip(request.url.path, 200))
        return error_response(500, f"internal server error ({type(exc).__name__}); the server log has the details")
