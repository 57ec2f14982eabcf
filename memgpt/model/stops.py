"""Stop sequences, bounded and found on the decoded tail of the new text: the one stop check of every
generation (library, CLI and server). transformers' own `stop_strings` is never used: it builds a
vocabulary-sized table per set of stop strings and keeps the last 8
(`transformers.generation.stopping_criteria.STOP_STRING_EMBEDDING_CACHE`), hundreds of MB for long ones."""

from __future__ import annotations

import torch
from transformers import StoppingCriteria

from ..errors import MemGPTError

MAX_STOPS = 4
MAX_STOP_CHARS = 64  # each (4 x 64 = 256 characters in all)


def check_stops(stops: list[str] | None) -> list[str]:
    """The stop sequences as a list, or a MemGPTError naming what is wrong (too many, empty, too long)."""
    stops = list(stops or [])
    if len(stops) > MAX_STOPS:
        raise MemGPTError(f"at most {MAX_STOPS} stop sequences, got {len(stops)}")
    if any(not s for s in stops):
        raise MemGPTError("a stop sequence is empty")
    longest = max((len(s) for s in stops), default=0)
    if longest > MAX_STOP_CHARS:
        raise MemGPTError(f"a stop sequence may have at most {MAX_STOP_CHARS} characters, got {longest}")
    return stops


class StopText(StoppingCriteria):
    """Stops generation once the decoded new text holds a stop sequence. Only the last few tokens are
    decoded each step (enough for the longest stop sequence, 4 tokens a character at worst), and nothing
    is cached."""

    def __init__(self, tokenizer, prompt_length: int, stops: list[str]):
        self.tokenizer, self.prompt_length, self.stops = tokenizer, prompt_length, check_stops(stops)
        self.tail = 4 * max(len(s) for s in self.stops) + 4

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        done = []
        for row in input_ids:  # (T,) each: the batch is one sequence in memgpt, but any size works
            new = row[self.prompt_length :][-self.tail :].tolist()
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            done.append(any(s in text for s in self.stops))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
