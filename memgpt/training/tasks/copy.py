"""Copy (RMT 2022): read a random string, then write it out again (twice when there is room)."""

from __future__ import annotations

import random

from .base import Task, answer_labels


class CopyTask(Task):
    """`src (n) SEP src src ...` with n = T // 3; every token after SEP is scored."""

    name = "copy"
    min_segment_size = 2

    def __init__(self, num_symbols: int = 8):
        self.num_symbols = num_symbols
        self.sep = num_symbols
        self.vocab_size = num_symbols + 1

    def sample(self, num_segments: int, segment_size: int, rng: random.Random) -> tuple[list[int], list[int]]:
        total = num_segments * segment_size
        n = max(1, total // 3)
        src = [rng.randrange(self.num_symbols) for _ in range(n)]
        out_len = total - n - 1
        copies = (src * (out_len // n + 1))[:out_len]
        ids = src + [self.sep] + copies
        return ids, answer_labels(ids, n + 1)

    def decode(self, ids: list[int]) -> str:
        return "".join("|" if i == self.sep else "abcdefghijklmnopqrstuvwxyz"[i % 26] for i in ids)
