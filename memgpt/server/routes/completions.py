"""POST /v1/completions: a text prompt continued by the model."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ..context import Context, check_text_400, context, require_json
from ..generation import Generated, generate, text_prompt_ids
from ..replies import Reply, stream, whole
from ..schemas import CompletionRequest

router = APIRouter()


@router.post("/v1/completions", dependencies=[Depends(require_json)])
async def completions(body: CompletionRequest, request: Request, ctx: Context = Depends(context)):
    ctx.check_model(body.model)
    opts = ctx.options(body, body.max_tokens)
    text = body.prompt_text()
    check_text_400(text, "the prompt", "prompt")
    reply = Reply("text_completion", ctx.model_id, echo=text if body.echo else "")

    def prompt(on_text=None, cancel=None) -> list[int]:
        ids = text_prompt_ids(ctx.engine, text)
        ctx.check_room(ids, opts.max_tokens, "prompt")
        return ids

    ids = await whole(request, ctx.worker, prompt)  # a too-long prompt is a 400 here, before any stream

    def run(on_text=None, cancel=None) -> Generated:
        return generate(ctx.engine, ids, opts, on_text, cancel)

    if body.stream:
        return stream(ctx.worker, reply, run, bool(body.stream_options and body.stream_options.include_usage))
    return reply.whole(await whole(request, ctx.worker, run))
