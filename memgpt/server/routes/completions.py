"""POST /v1/completions: a text prompt continued by the model."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ..context import Context, check_text_400, context, require_json
from ..generation import text_prompt_ids
from ..replies import Reply
from ..schemas import CompletionRequest
from .prompted import continue_prompt

router = APIRouter()


@router.post("/v1/completions", dependencies=[Depends(require_json)])
async def completions(body: CompletionRequest, request: Request, ctx: Context = Depends(context)):
    ctx.check_model(body.model)
    opts = ctx.options(body, body.max_tokens)
    text = body.prompt_text()
    check_text_400(text, "the prompt", "prompt")
    reply = Reply("text_completion", ctx.model_id, echo=text if body.echo else "")
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return await continue_prompt(request, ctx, reply, lambda: text_prompt_ids(ctx.engine, text), opts, "prompt",
                                 bool(body.stream), include_usage)
