"""Associative recall (RMT/ARMT, multi-query as in MQAR): one (key, value) pair per segment amid
noise, then queries for several of the keys."""

from __future__ import annotations

import random

from ...errors import MemGPTError
from .base import IGNORE, Task


class AssociativeRecallTask(Task):
    """Segments 1..N-1 each hold one `key value` pair at a random spot among noise tokens; the last
    segment ends with `QUERY k v k v ...` for up to `(S - 1) // 2` distinct stored keys, and each
    queried value is scored. N segments -> N-1 pairs (one pair for N = 1), so longer inputs also
    mean more pairs to remember."""

    name = "recall"
    min_segment_size = 5

    def __init__(self, num_keys: int = 64, num_values: int = 16, num_noise: int = 8):
        self.num_keys, self.num_values, self.num_noise = num_keys, num_values, num_noise
        self.value0 = num_keys
        self.noise0 = num_keys + num_values
        self.query = self.noise0 + num_noise
        self.vocab_size = self.query + 1

    def _noise(self, n: int, rng: random.Random) -> list[int]:
        return [self.noise0 + rng.randrange(self.num_noise) for _ in range(n)]

    def _with_pair(self, length: int, key: int, value: int, rng: random.Random) -> list[int]:
        seg = self._noise(length, rng)
        at = rng.randrange(length - 1)
        seg[at : at + 2] = [key, self.value0 + value]
        return seg

    def sample(self, num_segments: int, segment_size: int, rng: random.Random) -> tuple[list[int], list[int]]:
        num_pairs = max(1, num_segments - 1)
        if num_pairs > self.num_keys:
            raise MemGPTError(f"recall: {num_pairs} pairs need more than {self.num_keys} distinct keys")
        keys = rng.sample(range(self.num_keys), num_pairs)
        values = [rng.randrange(self.num_values) for _ in keys]
        ids: list[int] = []
        for key, value in zip(keys[: num_segments - 1], values):
            ids += self._with_pair(segment_size, key, value, rng)
        room = segment_size - 1
        if num_segments == 1:  # the single pair shares the last segment with the query
            ids += self._with_pair(2, keys[0], values[0], rng)
            room -= 2
        num_queries = min(num_pairs, room // 2)
        queried = rng.sample(range(num_pairs), num_queries)
        ids += self._noise(room - 2 * num_queries, rng) + [self.query]
        labels = [IGNORE] * len(ids)
        for q in queried:
            ids += [keys[q], self.value0 + values[q]]
            labels += [IGNORE, self.value0 + values[q]]
        return ids, labels
