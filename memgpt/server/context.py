"""What every route needs, made once per app: settings, engine, model worker, memory store; routes get
it as a FastAPI dependency (`Depends(context)`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from ..model.identity import backbone_name
from ..model.engine import Engine
from ..model.generation import check_text
from ..errors import MemGPTError
from .errors import APIError, clip
from .generation import Options
from .schemas import Sampling
from .settings import ServeSettings
from .store import MemoryStore
from .worker import ModelWorker


@dataclass
class Context:
    settings: ServeSettings
    engine: Engine
    worker: ModelWorker
    store: MemoryStore
    model_id: str = field(init=False)  # a name, never a local path
    names: set[str] = field(init=False)  # what a request's `model` may say

    def __post_init__(self) -> None:
        self.model_id = backbone_name(self.engine.backbone).lower()
        self.names = {self.model_id, self.settings.model, "default"}

    def model_card(self) -> dict:
        return {"id": self.model_id, "object": "model", "created": 0, "owned_by": "memgpt"}

    def check_model(self, name: str) -> None:
        if name not in self.names:
            raise APIError(404, f"the model {clip(name)!r} does not exist; this server has {self.model_id!r}",
                           "model_not_found", "model")

    def options(self, body: Sampling, max_tokens: int | None, param: str = "max_tokens") -> Options:
        wanted = max_tokens or self.settings.default_max_tokens
        if wanted > self.settings.max_tokens:
            raise APIError(400, f"{param} is {wanted}; this server allows at most {self.settings.max_tokens}",
                           "invalid_value", param)
        return Options(wanted, body.temperature, body.top_p, body.seed, body.stop or [], body.presence_penalty,
                       body.frequency_penalty)

    def check_room(self, ids: list[int], max_tokens: int, param: str) -> None:
        """The prompt fits the model's context with `max_tokens` more (on the worker: ids come from the tokenizer)."""
        if not ids:
            raise APIError(400, "the prompt is empty", param=param)
        if len(ids) + max_tokens > self.engine.max_positions:
            raise APIError(400, f"the prompt ({len(ids)} tokens) and max_tokens ({max_tokens}) exceed the model's "
                           f"context of {self.engine.max_positions} tokens", "context_length_exceeded", param)


def context(request: Request) -> Context:
    """The app's Context (a FastAPI dependency)."""
    return request.app.state.context


def check_text_400(text: str, what: str, param: str) -> None:
    try:
        check_text(text, what)
    except MemGPTError as e:
        raise APIError(400, str(e), param=param) from None


async def require_json(request: Request) -> None:
    """Bodies of the completion routes are JSON sent as JSON: another Content-Type (text/plain, a form) is 400,
    as for a body that is not JSON (a dependency: it runs before the body is validated)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and kind != "application/json" and not kind.endswith("+json"):
        raise APIError(400, f"send the body as JSON with Content-Type: application/json, not {clip(kind)!r}",
                       "invalid_content_type")
