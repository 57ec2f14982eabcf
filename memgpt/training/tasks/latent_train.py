"""Token batches for training a latent memory into the default backbone on the long-context tasks.

A sample of `num_segments` segments is `num_segments - 1` full segments of document (a train-split
passkey or qa sample, padded with newlines to whole segments) and then one short *question segment*
of at most `QUESTION_TOKENS`: the question as a chat (`memgpt.model.adapters.question_ids`), the answer and
`<|im_end|>` (the only labelled tokens), padded after the answer to the longest in the batch. It is exactly how the latent memory is asked at
inference: the document is read into memory, the question comes in a fresh segment after it.
"""

from __future__ import annotations

import random

from ...errors import MemGPTError
from .base import IGNORE, Task

QUESTION_TOKENS = 96


class LatentMemoryTask(Task):
    """Long-context training task over `kinds` (e.g. ["passkey", "qa1"]), mixed uniformly."""

    min_segment_size = 128

    def __init__(self, kinds: list[str], name: str, split: str = "train"):
        from ...eval.longcontext import check_task

        self.kinds = [check_task(k) for k in kinds]
        self.name = name
        self.split = split  # "test" scores on held-out speeches
        self._tok = None

    @property
    def tokenizer(self):
        if self._tok is None:
            from ...eval.longcontext.haystack import default_tokenizer

            self._tok = default_tokenizer()
        return self._tok

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return len(self.tokenizer)

    def check(self, num_segments: int, segment_size: int) -> None:
        super().check(num_segments, segment_size)
        if num_segments < 2:
            raise MemGPTError(f"{self.name}: needs >= 2 segments (document, then the question), got {num_segments}")

    def sequence_length(self, num_segments: int, segment_size: int) -> int:
        return (num_segments - 1) * segment_size + QUESTION_TOKENS

    def sample(self, num_segments: int, segment_size: int, rng: random.Random) -> tuple[list[int], list[int]]:
        from ...model.adapters import question_ids
        from ...eval.longcontext import make_sample

        tok = self.tokenizer
        room = (num_segments - 1) * segment_size
        kind = rng.choice(self.kinds)
        for _ in range(10):
            s = make_sample(kind, room - 8, rng.getrandbits(31), seed=0, split=self.split, measure=False)
            doc = tok(s.context, add_special_tokens=False)["input_ids"]
            if len(doc) <= room:
                break
        else:
            raise MemGPTError(f"{self.name}: could not fit a document into {room} tokens")
        newline = tok("\n", add_special_tokens=False)["input_ids"]
        doc = doc + newline * (room - len(doc))
        prompt = question_ids(tok, s.prompt)
        answer = tok(s.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        pad = QUESTION_TOKENS - len(prompt) - len(answer)
        if pad < 0:
            raise MemGPTError(f"{self.name}: question and answer need {len(prompt) + len(answer)} > {QUESTION_TOKENS} tokens")
        ids = doc + prompt + answer
        labels = [IGNORE] * (len(doc) + len(prompt)) + answer
        return ids, labels

    def batch(self, batch_size: int, num_segments: int, segment_size: int, seed: int):
        """Like `Task.batch`, the question segments padded (after the answer) only to the longest."""
        import torch

        self.check(num_segments, segment_size)
        rng = random.Random(seed)
        pairs = [self.sample(num_segments, segment_size, rng) for _ in range(batch_size)]
        width = max(len(p[0]) for p in pairs)
        eos = self.tokenizer.eos_token_id
        input_ids = torch.tensor([p[0] + [eos] * (width - len(p[0])) for p in pairs], dtype=torch.long)
        labels = torch.tensor([p[1] + [IGNORE] * (width - len(p[1])) for p in pairs], dtype=torch.long)
        return input_ids, labels

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)
