"""Long-context tasks (BABILong-style): passkey retrieval and bAbI qa1..qa5 hidden in long prose, and
`absent` (a question about someone or something the document never names: the answer is to abstain).

    make_samples("qa1", parse_length("16k"), count=50, seed=0)   # test split, deterministic

Samples depend only on (task, length, split, seed, index): the same seed gives the same samples, and
the train and test splits use different speeches (see `haystack`). Lengths are context tokens of the
default tokenizer (SmolLM2); "0k" is the facts (or needle and preface) alone.
"""

from __future__ import annotations

import random

from ...errors import MemGPTError
from .babi import STORIES, UNANSWERABLE, make_babi
from .haystack import SPLITS, context_tokens
from .passkey import make_passkey
from .sample import KILO, Sample, length_label, parse_length

LONG_TASKS = ("passkey", "passkey-prose", *STORIES, *UNANSWERABLE)


def check_task(name: str) -> str:
    if name not in LONG_TASKS:
        raise MemGPTError(f"unknown long-context task {name!r}; choose from {', '.join(LONG_TASKS)}")
    return name


def make_sample(task: str, length: int, index: int, seed: int = 0, split: str = "test",
                measure: bool = True) -> Sample:
    """Sample `index` of `task` at `length` tokens; `measure` counts the context's real tokens."""
    check_task(task)
    if split not in SPLITS:
        raise MemGPTError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if length < 0:
        raise MemGPTError(f"length must be >= 0, got {length}")
    rng = random.Random(f"{task}|{length}|{split}|{seed}|{index}")
    if task.startswith("passkey"):
        sample = make_passkey(task, length, index, seed, split, rng, prose=task == "passkey-prose")
    else:
        sample = make_babi(task, length, index, seed, split, rng)
    if measure:
        sample.context_tokens = context_tokens(sample.context)
    return sample


def make_samples(task: str, length: int, count: int, seed: int = 0, split: str = "test") -> list[Sample]:
    """`count` samples of `task` at `length` tokens."""
    return [make_sample(task, length, i, seed, split) for i in range(count)]


__all__ = ["KILO", "LONG_TASKS", "Sample", "check_task", "length_label", "make_sample", "make_samples",
           "parse_length"]
