"""A prompt continued by the model, shared by the chat and text completion routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request

from ..context import Context
from ..generation import Generated, Options, generate
from ..replies import Reply, stream, whole


async def continue_prompt(request: Request, ctx: Context, reply: Reply, prompt_ids: Callable[[], list[int]], opts: Options,
                          param: str, streamed: bool, include_usage: bool) -> Any:
    """Tokenize and check the prompt on the model thread first (a too-long prompt is a 400 here, before any
    stream starts), then generate: streamed as server-sent events or as one reply."""

    def prompt(on_text=None, cancel=None) -> list[int]:
        ids = prompt_ids()
        ctx.check_room(ids, opts.max_tokens, param)
        return ids

    ids = await whole(request, ctx.worker, prompt)

    def run(on_text=None, cancel=None) -> Generated:
        return generate(ctx.engine, ids, opts, on_text)  # stopped by `cancel` through replies.stoppable

    if streamed:
        return stream(ctx.worker, reply, run, include_usage)
    return reply.whole(await whole(request, ctx.worker, run))
