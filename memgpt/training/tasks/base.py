"""The synthetic-task interface: token-id sequences with labels only where the answer is."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod

import torch

from ...errors import MemGPTError

IGNORE = -100


class Task(ABC):
    """A generator of `(input_ids, labels)` of exactly `num_segments * segment_size` tokens.

    Labels follow the HF convention: `labels[i] == input_ids[i]` at answer tokens, `-100` elsewhere.
    """

    name: str = ""
    vocab_size: int = 0
    min_segment_size: int = 1

    @abstractmethod
    def sample(self, num_segments: int, segment_size: int, rng: random.Random) -> tuple[list[int], list[int]]:
        """One example as `(input_ids, labels)`."""

    def check(self, num_segments: int, segment_size: int) -> None:
        if num_segments < 1:
            raise MemGPTError(f"{self.name}: num_segments must be >= 1, got {num_segments}")
        if segment_size < self.min_segment_size:
            raise MemGPTError(f"{self.name}: segment_size must be >= {self.min_segment_size}, got {segment_size}")

    def batch(
        self, batch_size: int, num_segments: int, segment_size: int, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A deterministic batch `([B, T], [B, T])` for `seed`."""
        self.check(num_segments, segment_size)
        rng = random.Random(seed)
        pairs = [self.sample(num_segments, segment_size, rng) for _ in range(batch_size)]
        input_ids = torch.tensor([p[0] for p in pairs], dtype=torch.long)
        labels = torch.tensor([p[1] for p in pairs], dtype=torch.long)
        return input_ids, labels

    def decode(self, ids: list[int]) -> str:
        """A readable rendering of token ids (for logs and debugging)."""
        return " ".join(str(i) for i in ids)


def answer_labels(input_ids: list[int], answer_start: int, answer_end: int | None = None) -> list[int]:
    """Labels that score only `input_ids[answer_start:answer_end]`."""
    end = len(input_ids) if answer_end is None else answer_end
    return [tok if answer_start <= i < end else IGNORE for i, tok in enumerate(input_ids)]
