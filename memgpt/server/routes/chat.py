"""POST /v1/chat/completions: a conversation continued by the model, or (with `memory`) a question asked
of a stored memory or the memory summarized."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from ..answers import answer_from_memory
from ..context import Context, check_text_400, context, require_json
from ..errors import APIError
from ..generation import Generated, Options, chat_prompt_ids
from ..replies import Reply, stream, whole
from ..schemas import ChatRequest
from .prompted import continue_prompt

router = APIRouter()
ROLES = {"developer": "system", "tool": "user"}  # roles a chat template may not know


@router.post("/v1/chat/completions", dependencies=[Depends(require_json)])
async def chat_completions(body: ChatRequest, request: Request, ctx: Context = Depends(context)):
    ctx.check_model(body.model)
    if body.tools:
        raise APIError(400, "tools (function calling) are not supported by this server", param="tools")
    opts = ctx.options(body, body.max_completion_tokens or body.max_tokens,
                       "max_completion_tokens" if body.max_completion_tokens else "max_tokens")
    messages = [{"role": ROLES.get(m.role, m.role), "content": m.text()} for m in body.messages]
    for i, m in enumerate(messages):
        check_text_400(m["content"], "a message", f"messages.{i}.content")
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    reply = Reply("chat.completion", ctx.model_id)
    memory_id = body.memory_id()
    if memory_id is not None:
        return await from_memory(request, ctx, body, reply, memory_id, messages, opts, include_usage)

    return await continue_prompt(request, ctx, reply, lambda: chat_prompt_ids(ctx.engine, messages), opts, "messages",
                                 bool(body.stream), include_usage)


async def from_memory(request: Request, ctx: Context, body: ChatRequest, reply: Reply, memory_id: str,
                      messages: list[dict[str, str]], opts: Options, include_usage: bool):
    """`ask` the memory the last user message, or `summarize` it; made whole, then sent (as one piece when
    streamed: ask and summarize do not stream)."""
    ctx.store.ready(memory_id)  # 404 / 409 now, not in the stream
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")

    def answer(on_text=None, cancel=None) -> tuple[Generated, dict[str, Any]]:
        record, state = ctx.store.state(memory_id)
        result = answer_from_memory(ctx.engine, state, question, body.memory_task, opts.max_tokens)
        generated = Generated(result.text, ctx.engine.count_tokens(question), ctx.engine.count_tokens(result.text), "stop")
        extra = {"memory": {"id": memory_id, "kind": record["kind"], "task": body.memory_task}}
        if result.citations is not None:
            extra["citations"] = result.citations
        if result.quote is not None:
            extra["quote"] = result.quote
        if result.summary is not None:
            extra["summary"] = result.summary
        if on_text and generated.text:
            on_text(generated.text)
        return generated, extra

    if body.stream:
        return stream(ctx.worker, reply, answer, include_usage)
    generated, extra = await whole(request, ctx.worker, answer)
    return reply.whole(generated) | extra
