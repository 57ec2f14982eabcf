"""One long-context example, and the length labels of the suite ("0k", "4k", "128k", ...)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ...errors import MemGPTError

KILO = 1024  # "4k" is 4,096 tokens of the default tokenizer


def parse_length(label: str) -> int:
    """Tokens for a length label: "16k" -> 16384, "0k" -> 0 (facts only), "3000" -> 3000."""
    m = re.fullmatch(r"\s*(\d+)\s*([kK]?)\s*", str(label))
    if not m:
        raise MemGPTError(f"bad length {label!r}: use a token count like 4k, 16k or 3000")
    return int(m.group(1)) * (KILO if m.group(2) else 1)


def length_label(tokens: int) -> str:
    """The inverse of `parse_length` for whole multiples of 1k; plain numbers otherwise."""
    return f"{tokens // KILO}k" if tokens % KILO == 0 else str(tokens)


@dataclass
class Sample:
    """A context with facts (or a needle) hidden in a haystack, one question, one answer.

    `prompt` is what a system is asked (the bAbI question itself: a 135M reader told "Answer with one
    word." answered 14/20 qa1 samples at 4k against 18/20 without it, from the same retrieved
    sentences; the passkey question with an answer instruction);
    `labels` are the candidate answers of the task (the metric rejects predictions naming another);
    `facts` are the inserted sentences in order, `fact_positions` their sentence indices in the context.
    """

    task: str
    length: int
    index: int
    seed: int
    split: str
    context: str
    question: str
    prompt: str
    answer: str
    labels: list[str]
    facts: list[str]
    fact_positions: list[int] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)
    context_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, with_context: bool = False) -> dict[str, Any]:
        """A JSON-ready record; the (long) context only when asked for."""
        record = asdict(self)
        if not with_context:
            del record["context"]
        return record
