"""Answering from a stored memory: the one place the server turns a memory and a request into text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..apps.ask import ask
from ..apps.engine import Engine
from ..apps.memories import MemoryState
from ..apps.summarize import summarize

MAX_ASK_TOKENS = 512  # what `ask` allows
SUMMARY_TOKENS = (8, 1024)  # what `summarize` allows


@dataclass
class MemoryAnswer:
    text: str
    citations: list[dict[str, Any]] | None = None  # None: the apps give none yet (the response then has no field)


def answer_from_memory(engine: Engine, state: MemoryState, question: str, task: str, max_tokens: int) -> MemoryAnswer:
    """`ask` the memory the question (task "ask"), or `summarize` it in at most `max_tokens` tokens.

    Citations hook: when `memgpt.apps.ask` / `summarize` return citations (offset ranges into the
    document), put them in `MemoryAnswer.citations`; the chat response carries them as `citations`."""
    if task == "summarize":
        text = summarize(state, max(SUMMARY_TOKENS[0], min(max_tokens, SUMMARY_TOKENS[1])), engine=engine)
    else:
        text = ask(state, question, engine=engine, max_new_tokens=min(max_tokens, MAX_ASK_TOKENS))
    return MemoryAnswer(text)
