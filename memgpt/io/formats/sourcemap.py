"""Where each character of an extracted text came from: its page (PDF) and heading path."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Heading:
    start: int  # offset of the heading's text in the extracted text
    level: int  # 1 = top
    title: str


@dataclass
class SourceMap:
    """`page_starts[i]`: offset where page i + 1 begins; `headings`: in document order."""

    format: str = "text"
    page_starts: list[int] = field(default_factory=list)
    headings: list[Heading] = field(default_factory=list)

    def page(self, offset: int) -> int | None:
        """The 1-based page holding `offset`, or None without pages."""
        if not self.page_starts:
            return None
        return max(1, bisect.bisect_right(self.page_starts, offset))

    def heading_path(self, offset: int) -> str | None:
        """'Part > Chapter > Section' of the headings above `offset`, or None."""
        path: list[Heading] = []
        starts = [h.start for h in self.headings]
        for h in self.headings[: bisect.bisect_right(starts, offset)]:
            while path and path[-1].level >= h.level:
                path.pop()
            path.append(h)
        return " > ".join(h.title for h in path) or None

    def to_dict(self) -> dict[str, Any]:
        """As JSON: `{"format", "page_starts", "headings": [[start, level, title], ...]}`."""
        return {"format": self.format, "page_starts": list(self.page_starts),
                "headings": [[h.start, h.level, h.title] for h in self.headings]}

    @classmethod
    def from_dict(cls, data: Any) -> SourceMap | None:
        """The map saved by `to_dict`; None when malformed."""
        try:
            pages = [int(p) for p in data["page_starts"]]
            headings = [Heading(int(s), int(lv), str(t)) for s, lv, t in data["headings"]]
            return cls(str(data["format"]), pages, headings)
        except (KeyError, TypeError, ValueError):
            return None

    def to_tensors(self) -> dict[str, torch.Tensor]:
        titles = [h.title.encode("utf-8") for h in self.headings]
        blob = b"".join(titles)
        return {
            "src.format": torch.frombuffer(bytearray(self.format.encode()), dtype=torch.uint8),
            "src.page_starts": torch.tensor(self.page_starts, dtype=torch.int64),
            "src.heading_starts": torch.tensor([h.start for h in self.headings], dtype=torch.int64),
            "src.heading_levels": torch.tensor([h.level for h in self.headings], dtype=torch.int64),
            "src.heading_bytes": torch.frombuffer(bytearray(blob), dtype=torch.uint8) if blob else torch.zeros(0, dtype=torch.uint8),
            "src.heading_offsets": torch.tensor([0] + [len(t) for t in titles], dtype=torch.int64).cumsum(0),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> SourceMap | None:
        """The map saved by `to_tensors`; None when absent (files from before maps) or malformed."""
        keys = ("src.format", "src.page_starts", "src.heading_starts", "src.heading_levels", "src.heading_bytes",
                "src.heading_offsets")
        if not all(k in tensors for k in keys):
            return None
        fmt, pages, starts, levels, blob, offsets = (tensors[k] for k in keys)
        try:
            bounds = offsets.tolist()
            raw = blob.numpy().tobytes()
            titles = [raw[a:b].decode("utf-8") for a, b in zip(bounds, bounds[1:])]
            if len(titles) != len(starts) or len(levels) != len(starts):
                return None
            return cls(fmt.numpy().tobytes().decode(), pages.tolist(),
                       [Heading(s, lv, t) for s, lv, t in zip(starts.tolist(), levels.tolist(), titles)])
        except (UnicodeDecodeError, ValueError, RuntimeError):
            return None


@dataclass
class Loaded:
    """A document's extracted text and its map back to the source."""

    text: str
    map: SourceMap


class TextBuilder:
    """Extracted text built block by block (blank line between blocks), recording pages and headings."""

    def __init__(self, format: str) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.map = SourceMap(format)

    def page(self) -> None:
        self.map.page_starts.append(self.length + (2 if self.parts else 0))

    def block(self, text: str, heading_level: int | None = None) -> None:
        text = text.strip()
        if not text:
            return
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        if heading_level is not None:
            self.map.headings.append(Heading(self.length, heading_level, " ".join(text.split())))
        self.parts.append(text)
        self.length += len(text)

    def result(self) -> Loaded:
        return Loaded("".join(self.parts), self.map)
