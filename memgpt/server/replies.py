"""Getting a model job's result to the client: whole (cancelled if the client hangs up, queued or running)
or as server-sent events (cancelled when the stream is dropped), in OpenAI's response shapes. A
cancelled job stops at its next model step."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from ..errors import MemGPTError
from ..model.cancel import cancellable
from . import errors
from .errors import APIError, ClientGone, error_body
from .generation import Generated
from .worker import ModelWorker

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DISCONNECT_POLL_S = 0.25  # how often a waiting request checks that its client is still there


async def whole(request: Request, worker: ModelWorker, job: Callable[..., Any]) -> Any:
    """Run `job(None, cancel)` on the model worker and return its result; if the client disconnects first,
    a queued job is dropped and a running one stops at its next model step (ClientGone is raised)."""
    cancel = threading.Event()
    future = worker.start(stoppable(job), None, cancel)  # 503 here when the queue is full
    try:
        while True:
            done, _ = await asyncio.wait({future}, timeout=DISCONNECT_POLL_S)
            if done:
                return future.result()
            if await request.is_disconnected():
                raise ClientGone()
    finally:
        if not future.done():
            cancel.set()
            future.cancel()


def stream(worker: ModelWorker, reply: Reply, job: Callable[..., Any], include_usage: bool) -> StreamingResponse:
    """Server-sent events: the text as it is made, then the finish reason, usage, `[DONE]`. Whatever can be
    checked before the model runs must have been checked by now: once the stream begins, errors are in-band."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[str | None] = asyncio.Queue()
    cancel = threading.Event()
    future = worker.start(stoppable(job), lambda text: loop.call_soon_threadsafe(pieces.put_nowait, text), cancel)  # 503 here
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


def stoppable(job: Callable[..., Any]) -> Callable[..., Any]:
    """`job(on_text, cancel)` with every model step it takes stopped once `cancel` is set: a plain
    generation checks `cancel` itself; an answer from a memory (many generations and scoring passes
    inside ask / summarize) stops at its next forward pass (memgpt.model.cancel)."""

    def run(on_text: Callable[[str], None] | None, cancel: threading.Event) -> Any:
        with cancellable(cancel):
            return job(on_text, cancel)

    return run


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
