"""Baselines that keep raw tokens instead of a memory: the first window (truncation), the last
window (what a plain model with its full window sees), and the last segment only (no memory)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import MemGPTError
from ..io.spans import plain
from .base import ANSWER_RESERVE, DocumentState, Evidence, Memory, register


class _Window(Memory):
    keep = "last"

    @property
    def capacity(self) -> int:
        return self.engine.window - ANSWER_RESERVE - 64

    def _update(self, state: DocumentState, segment: list[int]) -> None:
        ids: list[int] = state.work.setdefault("ids", state.tensors["ids"].tolist() if "ids" in state.tensors else [])
        if self.keep == "first":
            ids.extend(segment[: max(0, self.capacity - len(ids))])
        else:
            ids.extend(segment)
            del ids[: max(0, len(ids) - self.capacity)]
        state.tensors["ids"] = torch.tensor(ids, dtype=torch.int64)

    def context(self, state: DocumentState, query: str | None, budget: int) -> str:
        ids = state.tensors.get("ids", torch.zeros(0, dtype=torch.int64)).tolist()
        ids = ids[:budget] if self.keep == "first" else ids[max(0, len(ids) - budget) :]
        return self.engine.tokenizer.decode(ids, skip_special_tokens=True)

    def evidence(self, state: DocumentState, query: str | None, budget: int, max_new_tokens: int = 32) -> Evidence:
        """The window's text, and the document sentences wholly inside it (what the reader saw)."""
        text = self.context(state, query, budget)
        seen = plain(text)
        index = state.index
        ids = [i for i in range(len(index)) if plain(index.texts[i]) in seen] if index is not None and seen else []
        return Evidence(text, index.spans(ids) if ids else [], source="window")

    @classmethod
    def validate(cls, state: DocumentState, path: str | Path) -> None:
        ids = state.tensors.get("ids")
        if ids is None or ids.dtype != torch.int64 or ids.dim() != 1:
            raise MemGPTError(f"{path} is a corrupt {cls.kind} memory file")


@register
class FirstWindow(_Window):
    """Truncation baseline: the document's first window only."""

    kind = "window-first"
    keep = "first"


@register
class LastWindow(_Window):
    """The plain backbone with its window: the document's last window only."""

    kind = "window-last"


@register
class NoMemory(_Window):
    """Segments without memory: only the last segment is seen."""

    kind = "none"
    segment_tokens = 512

    @property
    def capacity(self) -> int:
        return self.segment_tokens

    def _update(self, state: DocumentState, segment: list[int]) -> None:
        state.tensors["ids"] = torch.tensor(segment, dtype=torch.int64)
