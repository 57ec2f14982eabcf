"""Request bodies of the OpenAI API as this server reads them. Fields OpenAI defines that this server
does not use are accepted and ignored, as are unknown fields (OpenAI-compatible servers do the same);
fields it uses are checked, and a bad value is a 422 naming the field."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import MemGPTError
from ..model.stops import check_stops

MEMORY_ID = r"^mem_[0-9a-f]{24}$"
MAX_MESSAGES = 1024


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(Lenient):
    type: str
    text: str | None = None


class Message(Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        """The message's text; only text parts are understood (images and audio are refused)."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        other = [p.type for p in self.content if p.type != "text"]
        if other:
            from .errors import APIError

            raise APIError(400, f"only text content is supported, got a {other[0]!r} part", param="messages")
        return "".join(p.text or "" for p in self.content)


class StreamOptions(Lenient):
    include_usage: bool = False


class Sampling(Lenient):
    """The sampling fields shared by chat and text completions."""

    model: str = "default"
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 1.0
    presence_penalty: Annotated[float, Field(ge=-2, le=2, allow_inf_nan=False)] = 0.0
    frequency_penalty: Annotated[float, Field(ge=-2, le=2, allow_inf_nan=False)] = 0.0
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    stop: str | list[str] | None = None
    n: Annotated[int, Field(ge=1, le=1, description="only one choice per request")] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        try:  # checked before any model work: memgpt.model.stops bounds count and length
            return check_stops([value] if isinstance(value, str) else value)
        except MemGPTError as e:
            raise ValueError(str(e)) from None


class ChatRequest(Sampling):
    messages: Annotated[list[Message], Field(min_length=1, max_length=MAX_MESSAGES)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    tools: list[dict] | None = None
    # memgpt's own fields (from the openai client: extra_body={"memory": "mem_...", "memory_task": "summarize"})
    memory: Annotated[str, Field(pattern=MEMORY_ID)] | Annotated[list[Annotated[str, Field(pattern=MEMORY_ID)]], Field(min_length=1, max_length=1)] | None = None
    memory_task: Literal["ask", "summarize"] = "ask"

    def memory_id(self) -> str | None:
        return self.memory[0] if isinstance(self.memory, list) else self.memory


class CompletionRequest(Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = 16  # OpenAI's default for text completions
    echo: bool = False

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class MemoryRequest(Lenient):
    """`POST /v1/memories` as JSON (a file upload sends the same fields as a form)."""

    text: str
    kind: str | None = None
    name: Annotated[str, Field(max_length=256)] | None = None
