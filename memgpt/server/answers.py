"""Answering from a stored memory: the one place the server turns a memory and a request into text
(and the citations the apps give with it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..apps.ask import ask
from ..model.engine import Engine
from ..memories.base import SUMMARY_TOKENS, DocumentState
from ..apps.summarize import summarize

MAX_ASK_TOKENS = 512  # what `ask` allows


@dataclass
class MemoryAnswer:
    text: str
    citations: list[dict[str, Any]] | None = None  # None: the app gave none (the response then has no field)
    quote: dict[str, Any] | None = None  # the document sentence an `ask` answer rests on (None: none, or abstained)
    summary: dict[str, Any] | None = None  # a summary's structure (`Summary.to_dict`: about, parts, their citations)


def answer_from_memory(engine: Engine, state: DocumentState, question: str, task: str, max_tokens: int) -> MemoryAnswer:
    """`ask` the memory the question (task "ask"), or `summarize` it in at most `max_tokens` tokens."""
    if task == "summarize":
        result = summarize(state, max(SUMMARY_TOKENS[0], min(max_tokens, SUMMARY_TOKENS[1])), engine=engine)
    else:
        result = ask(state, question, engine=engine, max_new_tokens=min(max_tokens, MAX_ASK_TOKENS))
    quote = getattr(result, "quote", None)
    return MemoryAnswer(str(result), citations_of(result), quote.to_dict() if quote is not None else None,
                        result.to_dict() if task == "summarize" else None)


def citations_of(result: object) -> list[dict[str, Any]] | None:
    """The citations an app's result carries (document spans: `{"start", "end", "text"}`), as JSON; None
    for a plain string (apps without citations). The hook for `ask` / `summarize` with citations."""
    if hasattr(result, "sentences"):  # a summary: the spans of all its sentences
        return [span.to_dict() for sentence in result.sentences for span in sentence.citations]
    spans = getattr(result, "citations", None)
    return None if spans is None else [span.to_dict() for span in spans]
