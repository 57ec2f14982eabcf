"""Abstention: the one answer `ask` gives when the document does not hold what a question asks.

The phrase is fixed, so programs can test for it (`is_abstention`); the rule that decides it lives with
the memory that retrieves (`memgpt.apps.retrieval_memory`), measured by `benchmarks/abstention.py`.
"""

from __future__ import annotations

from .metrics import normalize

NOT_IN_DOCUMENT = "The document does not say."


def is_abstention(text: str) -> bool:
    """Whether an answer is the abstention phrase (case, punctuation and spacing aside)."""
    return normalize(text) == normalize(NOT_IN_DOCUMENT)
