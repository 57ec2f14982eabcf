"""GET /health (without the key, for a load balancer), GET /v1/models and /v1/models/{name}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from ..context import Context, context

router = APIRouter()


@router.get("/health")
async def health() -> dict[str, Any]:
    return {"status": "ok"}


@router.get("/v1/models")
async def list_models(ctx: Context = Depends(context)) -> dict[str, Any]:
    return {"object": "list", "data": [ctx.model_card()]}


@router.get("/v1/models/{name:path}")
async def get_model(name: str, ctx: Context = Depends(context)) -> dict[str, Any]:
    ctx.check_model(name)
    return ctx.model_card()
