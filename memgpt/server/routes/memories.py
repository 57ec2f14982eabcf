"""POST /v1/memories (JSON text or a multipart upload; read in the background), GET /v1/memories,
GET and DELETE /v1/memories/{id}, GET /v1/memories/{id}/document (the text its citations' offsets count)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from ..context import Context, context
from ..errors import APIError, clip
from ..schemas import MemoryRequest

router = APIRouter()


@router.post("/v1/memories", status_code=202)
async def create_memory(request: Request, ctx: Context = Depends(context)):
    ctx.store.check_room()  # 503 / 429 before the body is read (checked again as the memory is made)
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
            record = await run_in_threadpool(ctx.store.create_from_file, upload.file, fields.get("kind") or None,
                                             fields.get("name"), upload.filename)
        finally:
            await form.close()
    elif content_type in ("application/json", ""):
        raw = await request.body()
        try:
            body = MemoryRequest.model_validate_json(raw)
        except ValidationError as e:
            raise RequestValidationError(e.errors(include_url=False), body=sent_json(raw)) from None
        record = await run_in_threadpool(ctx.store.create_from_text, body.text, body.kind, body.name)
    else:
        raise APIError(415, f"send JSON ({{\"text\": ...}}) or a multipart file upload, not {clip(content_type)!r}")
    return JSONResponse(record, status_code=202)


def sent_json(raw: bytes) -> Any:
    """The body as the client sent it, for naming the field an error is about (None when it is not JSON)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, or nested too deep for the decoder
        return None


@router.get("/v1/memories")
def list_memories(ctx: Context = Depends(context)) -> dict[str, Any]:
    return {"object": "list", "data": ctx.store.list()}


@router.get("/v1/memories/{memory_id}")
def get_memory(memory_id: str, ctx: Context = Depends(context)) -> dict[str, Any]:
    return ctx.store.get(memory_id)


@router.get("/v1/memories/{memory_id}/document")
def get_document(memory_id: str, ctx: Context = Depends(context)) -> dict[str, Any]:
    """The document as read: `text[start:end]` (code points) is every citation's text."""
    ctx.store.get(memory_id)  # 404 for no such memory
    return {"id": memory_id, "object": "memory.document", "text": ctx.store.document_text(memory_id)}


@router.delete("/v1/memories/{memory_id}")
def delete_memory(memory_id: str, ctx: Context = Depends(context)) -> dict[str, Any]:
    ctx.store.delete(memory_id)
    return {"id": memory_id, "object": "memory.deleted", "deleted": True}
