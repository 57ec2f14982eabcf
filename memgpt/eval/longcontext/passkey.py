"""Passkey retrieval (Mohtashami & Jaggi 2023): a number hidden in filler, asked for at the end.

Filler: the protocol's five sentences repeated ("The grass is green. ..."), or real prose (speeches
of the haystack split, `passkey-prose`). The needle "The pass key is N. Remember it. N is the pass key."
(N in 1..50000) goes at the start, the middle or the end (cycled by sample index, so `3k` samples
give `k` per position). Scored by the first integer of the prediction.
"""

from __future__ import annotations

import random
import re

from .haystack import count_tokens, draw_haystack
from .sample import Sample

PREFACE = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
           "I will quiz you about the important information there.")
FILLER = ["The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again."]
QUESTION = "What is the pass key?"
PROMPT = "What is the pass key? Answer with the number only."
POSITIONS = ("start", "middle", "end")
MAX_KEY = 50_000


def needle(key: int) -> str:
    return f"The pass key is {key}. Remember it. {key} is the pass key."


def _repeat_filler(budget: int) -> list[str]:
    counts = count_tokens(FILLER)
    out, total, i = [], 0, 0
    while total + counts[i % len(FILLER)] <= budget:
        out.append(FILLER[i % len(FILLER)])
        total += counts[i % len(FILLER)]
        i += 1
    return out


def make_passkey(name: str, length: int, index: int, seed: int, split: str, rng: random.Random,
                 prose: bool) -> Sample:
    """One passkey sample of about `length` tokens (preface + filler + needle)."""
    key = rng.randint(1, MAX_KEY)
    position = POSITIONS[index % len(POSITIONS)]
    budget = max(0, length - sum(count_tokens([PREFACE, needle(key)])))
    docs: list[str] = []
    if prose:
        filler, docs, _ = draw_haystack(budget, split, rng)
        text = " ".join(filler)
        while re.search(rf"(?<!\d){key}(?!\d)", text):  # the key must occur only in the needle
            key = rng.randint(1, MAX_KEY)
    else:
        filler = _repeat_filler(budget)
    at = {"start": 0, "middle": len(filler) // 2, "end": len(filler)}[position]
    sentences = [PREFACE, *filler[:at], needle(key), *filler[at:]]
    return Sample(
        task=name, length=length, index=index, seed=seed, split=split, context=" ".join(sentences),
        question=QUESTION, prompt=PROMPT, answer=str(key), labels=[], facts=[needle(key)],
        fact_positions=[at + 1], documents=docs, extra={"position": position},
    )
