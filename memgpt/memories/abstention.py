"""Abstention: the one answer `ask` gives when the document does not hold what a question asks.

The phrase is fixed, so programs can test for it (`is_abstention`); the rule that decides it lives with
the memory that retrieves (`memgpt.memories.retrieval`), measured by `benchmarks/abstention.py`.
"""

from __future__ import annotations

import re
import unicodedata

NOT_IN_DOCUMENT = "The document does not say."
_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalize(text: str) -> str:
    """NFKC, lower case, every character that is not a letter or a digit a space, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_NON_WORD.sub(" ", text).split())


def is_abstention(text: str) -> bool:
    """Whether an answer is the abstention phrase (case, punctuation and spacing aside)."""
    return normalize(text) == normalize(NOT_IN_DOCUMENT)
