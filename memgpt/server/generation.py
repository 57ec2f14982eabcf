"""One request's generation on the engine: OpenAI's sampling fields, stop sequences, presence and
frequency penalties, streaming of text deltas, cancellation, and token counts."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor, LogitsProcessorList, TextStreamer

from ..model.engine import Engine


@dataclass
class Options:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@dataclass
class Generated:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of text or a stop sequence) or "length"


class StopFilter:
    """Cuts text at the first stop sequence, fed in pieces: holds back a tail that could still begin
    one, so a streamed client never sees part of a stop sequence."""

    def __init__(self, stops: list[str]):
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.buffer = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        self.buffer += text
        cuts = [i for i in (self.buffer.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.stopped = True
            out, self.buffer = self.buffer[: min(cuts)], ""
            return out
        keep = len(self.buffer) - self.hold
        if keep <= 0:
            return ""
        out, self.buffer = self.buffer[:keep], self.buffer[keep:]
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.stopped else self.buffer), ""
        return out


class PresenceFrequencyPenalty(LogitsProcessor):
    """OpenAI's penalties: each generated token's logit drops by `frequency` per earlier use and by
    `presence` once it has been used at all."""

    def __init__(self, prompt_length: int, presence: float, frequency: float):
        self.prompt_length, self.presence, self.frequency = prompt_length, presence, frequency

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length :]  # (B, new)
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))  # (B, V)
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


class _Deltas(TextStreamer):
    """transformers' streamer (whole words, no half characters), its text sent to a callback."""

    def __init__(self, tokenizer, on_text: Callable[[str], None]):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.on_text = on_text

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.on_text(text)


def generate(engine: Engine, ids: list[int], options: Options, on_text: Callable[[str], None] | None = None) -> Generated:
    """Continue `ids`; `on_text` receives the text as it is made (stop sequences already cut). Run under
    memgpt.model.cancel.cancellable (as the server's jobs are), it stops at the next token once cancelled."""
    stops = StopFilter(options.stop)
    sent: list[str] = []

    def emit(text: str) -> None:
        piece = stops.feed(text)
        if piece:
            sent.append(piece)
            if on_text:
                on_text(piece)

    processors = LogitsProcessorList()
    if options.presence_penalty or options.frequency_penalty:
        processors.append(PresenceFrequencyPenalty(len(ids), options.presence_penalty, options.frequency_penalty))
    new = engine.generate_ids(
        ids, options.max_tokens, streamer=_Deltas(engine.tokenizer, emit), stop_strings=options.stop,
        logits_processor=processors or None,
        temperature=options.temperature, top_p=options.top_p,
        seed=options.seed if options.seed is not None else secrets.randbelow(2**31),
    )
    tail = stops.flush()
    if tail:
        sent.append(tail)
        if on_text:
            on_text(tail)
    ended = bool(new) and new[-1] == engine.tokenizer.eos_token_id
    finish = "stop" if stops.stopped or ended or len(new) < options.max_tokens else "length"
    return Generated("".join(sent), len(ids), len(new), finish)


def chat_prompt_ids(engine: Engine, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a conversation, by the model's chat template (a plain-text frame for a base model)."""
    tokenizer = engine.tokenizer
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "".join(f"{m['role']}: {m['content']}\n\n" for m in messages) + "assistant:"
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def text_prompt_ids(engine: Engine, prompt: str) -> list[int]:
    return engine.tokenizer(prompt, add_special_tokens=True)["input_ids"]
