"""The routes: OpenAI's /v1/models, /v1/chat/completions and /v1/completions, and /v1/memories."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..model.engine import Engine, get_engine
from ..memories.base import backbone_name
from ..model.generation import check_text
from ..errors import MemGPTError
from . import errors
from .answers import answer_from_memory
from .errors import APIError, error_body, error_response
from .generation import Generated, Options, chat_prompt_ids, generate, text_prompt_ids
from .schemas import ChatRequest, CompletionRequest, MemoryRequest, Sampling
from .settings import ServeSettings
from .store import MemoryStore
from .worker import ModelWorker

OPEN_PATHS = ("/health",)  # answered without the API key: a load balancer's health check
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
ROLES = {"developer": "system", "tool": "user"}  # roles a chat template may not know


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


def create_app(settings: ServeSettings, engine: Engine | None = None) -> FastAPI:
    settings.validate()
    engine = engine or get_engine(settings.model, settings.dtype, settings.window)
    worker = ModelWorker(settings.max_queue)
    store = MemoryStore(settings.data_dir, engine, worker, settings.max_body_bytes)
    model_id = backbone_name(engine).lower()  # a name, never a local path
    names = {model_id, settings.model, "default"}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        worker.close()

    app = FastAPI(title="memgpt", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    errors.install(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if settings.api_key:  # added last: runs first
        app.add_middleware(BearerAuth, key=settings.api_key)
    app.state.store, app.state.worker, app.state.engine = store, worker, engine
    store.resume()

    def check_model(name: str) -> None:
        if name not in names:
            raise APIError(404, f"the model {name!r} does not exist; this server has {model_id!r}",
                           "model_not_found", "model")

    def options(body: Sampling, max_tokens: int | None) -> Options:
        wanted = max_tokens or settings.default_max_tokens
        if wanted > settings.max_tokens:
            raise APIError(400, f"max_tokens is {wanted}; this server allows at most {settings.max_tokens}",
                           "invalid_value", "max_tokens")
        return Options(wanted, body.temperature, body.top_p, body.seed, body.stop or [], body.presence_penalty,
                       body.frequency_penalty)

    def check_room(ids: list[int], max_tokens: int) -> None:
        if not ids:
            raise APIError(400, "the prompt is empty", param="messages")
        if len(ids) + max_tokens > engine.max_positions:
            raise APIError(400, f"the prompt ({len(ids)} tokens) and max_tokens ({max_tokens}) exceed the model's "
                           f"context of {engine.max_positions} tokens", "context_length_exceeded", "messages")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str) -> dict[str, Any]:
        check_model(name)
        return model_card()

    def model_card() -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "memgpt"}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest):
        check_model(body.model)
        if body.tools:
            raise APIError(400, "tools (function calling) are not supported by this server", param="tools")
        opts = options(body, body.max_completion_tokens or body.max_tokens)
        messages = [{"role": ROLES.get(m.role, m.role), "content": m.text()} for m in body.messages]
        for m in messages:
            check_text_400(m["content"], "a message")
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        reply = Reply("chat.completion", model_id)
        memory_id = body.memory_id()
        if memory_id is not None:
            store.ready(memory_id)  # 404 / 409 now, not in the stream
            question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")

            def answer() -> tuple[Generated, dict[str, Any]]:
                record, state = store.state(memory_id)
                result = answer_from_memory(engine, state, question, body.memory_task, opts.max_tokens)
                generated = Generated(result.text, engine.count_tokens(question), engine.count_tokens(result.text), "stop")
                extra = {"memory": {"id": memory_id, "kind": record["kind"], "task": body.memory_task}}
                if result.citations is not None:
                    extra["citations"] = result.citations
                if result.quote is not None:
                    extra["quote"] = result.quote
                return generated, extra

            if body.stream:
                return stream(reply, lambda on_text, cancel: answer_then_send(answer, on_text), include_usage)
            generated, extra = await worker.run(answer)
            return reply.whole(generated) | extra

        def prompt() -> list[int]:
            ids = chat_prompt_ids(engine, messages)
            check_room(ids, opts.max_tokens)
            return ids

        def run(on_text=None, cancel=None) -> Generated:
            return generate(engine, prompt(), opts, on_text, cancel)

        if body.stream:
            return stream(reply, run, include_usage)
        return reply.whole(await worker.run(run))

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        check_model(body.model)
        opts = options(body, body.max_tokens)
        text = body.prompt_text()
        check_text_400(text, "the prompt")
        reply = Reply("text_completion", model_id, echo=text if body.echo else "")

        def run(on_text=None, cancel=None) -> Generated:
            ids = text_prompt_ids(engine, text)
            check_room(ids, opts.max_tokens)
            return generate(engine, ids, opts, on_text, cancel)

        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        if body.stream:
            return stream(reply, run, include_usage)
        return reply.whole(await worker.run(run))

    def stream(reply: Reply, job: Callable[..., Any], include_usage: bool) -> StreamingResponse:
        """Server-sent events: the text as it is made, then the finish reason, usage, `[DONE]`."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        cancel = threading.Event()
        future = worker.start(job, lambda text: loop.call_soon_threadsafe(pieces.put_nowait, text), cancel)  # 503 here
        future.add_done_callback(lambda _: pieces.put_nowait(None))

        async def events() -> AsyncIterator[str]:
            try:
                yield sse(reply.chunk(role=True))
                while (text := await pieces.get()) is not None:
                    yield sse(reply.chunk(text))
                try:
                    result = future.result()
                except APIError as e:
                    yield sse(error_body(e.status, e.message, e.code, e.param))
                except MemGPTError as e:
                    yield sse(error_body(400, str(e)))
                except Exception as e:  # noqa: BLE001 - the stream has begun: report in-band
                    errors.log.exception("stream failed")
                    yield sse(error_body(500, f"internal server error ({type(e).__name__})"))
                else:
                    generated, extra = result if isinstance(result, tuple) else (result, {})
                    yield sse(reply.chunk(finish=generated.finish_reason) | extra)
                    if include_usage:
                        yield sse(reply.usage_chunk(generated))
                yield "data: [DONE]\n\n"
            finally:
                cancel.set()  # the client left (or the stream ended): stop generating
                future.cancel()

        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)

    # -- memories ----------------------------------------------------------------------------------
    @app.post("/v1/memories", status_code=202)
    async def create_memory(request: Request):
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=8)
            try:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise APIError(422, "file: a file upload named 'file' is required", "invalid_value", "file")
                fields = {k: form.get(k) for k in ("kind", "name") if form.get(k) is not None}
                if any(not isinstance(v, str) for v in fields.values()):
                    raise APIError(422, "kind and name must be text fields", "invalid_value")
                record = await run_in_threadpool(store.create_from_file, upload.file, fields.get("kind") or None, fields.get("name"))
            finally:
                await form.close()
        elif content_type in ("application/json", ""):
            try:
                body = MemoryRequest.model_validate_json(await request.body())
            except ValidationError as e:
                raise RequestValidationError(e.errors(include_url=False)) from None
            record = await run_in_threadpool(store.create_from_text, body.text, body.kind, body.name)
        else:
            raise APIError(415, f"send JSON ({{\"text\": ...}}) or a multipart file upload, not {content_type!r}")
        return JSONResponse(record, status_code=202)

    @app.get("/v1/memories")
    def list_memories() -> dict[str, Any]:
        return {"object": "list", "data": store.list()}

    @app.get("/v1/memories/{memory_id}")
    def get_memory(memory_id: str) -> dict[str, Any]:
        return store.get(memory_id)

    @app.delete("/v1/memories/{memory_id}")
    def delete_memory(memory_id: str) -> dict[str, Any]:
        store.delete(memory_id)
        return {"id": memory_id, "object": "memory.deleted", "deleted": True}

    return app


def answer_then_send(answer: Callable[[], tuple[Generated, dict]], on_text: Callable[[str], None]) -> tuple[Generated, dict]:
    """A memory answer is made whole (ask and summarize do not stream), then sent as one piece."""
    generated, extra = answer()
    if generated.text:
        on_text(generated.text)
    return generated, extra


def check_text_400(text: str, what: str) -> None:
    try:
        check_text(text, what)
    except MemGPTError as e:
        raise APIError(400, str(e), param="messages") from None


def sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


class Reply:
    """The JSON of one response, whole or in chunks, in OpenAI's shapes."""

    def __init__(self, kind: str, model: str, echo: str = ""):
        self.kind, self.model, self.echo = kind, model, echo
        self.id = ("chatcmpl-" if kind == "chat.completion" else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())

    def _head(self, chunk: bool) -> dict[str, Any]:
        kind = self.kind + ".chunk" if chunk and self.kind == "chat.completion" else self.kind
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def whole(self, g: Generated) -> dict[str, Any]:
        if self.kind == "chat.completion":
            choice = {"index": 0, "message": {"role": "assistant", "content": g.text}, "finish_reason": g.finish_reason,
                      "logprobs": None}
        else:
            choice = {"index": 0, "text": self.echo + g.text, "finish_reason": g.finish_reason, "logprobs": None}
        return self._head(False) | {"choices": [choice], "usage": usage(g)}

    def chunk(self, text: str = "", role: bool = False, finish: str | None = None) -> dict[str, Any]:
        if self.kind == "chat.completion":
            delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            if role:  # the first chunk of a text completion: the echoed prompt, if any
                text = self.echo
            choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        return self._head(True) | {"choices": [choice]}

    def usage_chunk(self, g: Generated) -> dict[str, Any]:
        return self._head(True) | {"choices": [], "usage": usage(g)}


def usage(g: Generated) -> dict[str, int]:
    return {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
            "total_tokens": g.prompt_tokens + g.completion_tokens}
