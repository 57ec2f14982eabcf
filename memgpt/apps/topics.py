"""A document cut into its topics: at its own headings where it has them, else where its sentence
embeddings shift (TextTiling, Hearst 1997, on sentence vectors instead of word counts).

A heading is a short line of its own followed by a longer one ("History." above a paragraph, "## Usage",
"CHAPTER II"); sections that are reference lists (References, Bibliography, External links, ...) are
dropped, since a summary quotes none of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..io.spans import HEADING_MARKUP, REFERENCE_SECTIONS

MAX_HEADING_WORDS = 10
BLOCK = 4  # sentences on each side of a gap compared by TextTiling


@dataclass
class Section:
    """Sentences `first`..`last` (inclusive) of the document, under `heading` ("" when found by TextTiling)."""

    first: int
    last: int
    heading: str = ""

    @property
    def ids(self) -> range:
        return range(self.first, self.last + 1)


Heading = tuple[int, int, str]  # (offset of the heading in the document, level: 1 for the top, title)


def headings(document: str) -> list[Heading]:
    """(offset, level, title) of each heading line of plain `document` ("## Usage": level 2, else 1)."""
    lines = [(m.start(), m.group()) for m in re.finditer(r"[^\n]+", document)]
    found = []
    for k, (start, line) in enumerate(lines):
        title = HEADING_MARKUP.sub("", line).strip()
        words = title.split()
        if not words or len(words) > MAX_HEADING_WORDS or not (title[:1].isupper() or title[:1].isdigit()):
            continue
        if line.rstrip()[-1:] in ",;:?!\"'" or (line.rstrip().endswith(".") and len(words) > 6):
            continue
        if sum(bool(re.fullmatch(r"[\d.,%$()-]+", w)) for w in words) >= 2:  # a table's row ("1940 9,252 8,712")
            continue
        nxt = next((x for x in lines[k + 1 :] if x[1].strip()), None)
        if nxt is None or len(nxt[1].split()) < 2 * len(words) + 4:  # a heading stands above longer text
            continue
        found.append((start + line.find(title), max(1, len(line) - len(line.lstrip("#="))), title))
    return found


def by_headings(found: list[Heading], starts: list[int], ends: list[int], texts: list[str]) -> list[Section]:
    """The document's sections under its headings `found` (sentence ranges; a heading's own words
    excluded; reference sections dropped), or [] when it has fewer than two. `starts`/`ends`/`texts`:
    its sentences' offsets and text."""
    if len(found) < 2:
        return []
    marks: list[tuple[int, int, str]] = []  # (start, end, title) of each heading's own text
    for offset, _level, title in found:
        k = next((k for k, (a, b) in enumerate(zip(starts, ends)) if b > offset), None)
        at = texts[k].find(title, max(0, offset - starts[k])) if k is not None else -1
        marks.append((offset, starts[k] + at + len(title) if at >= 0 else offset + len(title), title))
    bounds = [m[0] for m in marks] + [max(ends, default=0) + 1]
    if starts and starts[0] < marks[0][0]:  # text before the first heading: the introduction
        bounds = [0] + bounds
        marks = [(0, 0, "")] + marks
    sections: list[Section] = []
    for (h_start, h_end, title), stop in zip(marks, bounds[1:]):
        ids = [i for i, (a, b) in enumerate(zip(starts, ends)) if h_end <= a < stop
               or (a < h_end < b and a >= h_start)]  # a sentence that runs on from the heading line
        ids = [i for i in ids if not (starts[i] >= h_start and ends[i] <= h_end + 1)
               and texts[i].strip(" .:#=*\n") != title]
        if ids and not REFERENCE_SECTIONS.match(title):
            sections.append(Section(ids[0], ids[-1], title))
    return sections


def by_shifts(vectors: torch.Tensor, parts: int) -> list[Section]:
    """`parts` stretches of the document cut at the deepest dips in similarity between the BLOCK
    sentences before and after each gap (TextTiling depth scores). `vectors`: (N, D) unit embeddings."""
    n = len(vectors)
    parts = max(1, min(parts, n // 3 or 1))
    if parts == 1 or n < 2 * BLOCK:
        return [Section(0, n - 1)] if n else []
    csum = torch.cat([torch.zeros(1, vectors.shape[1]), vectors.cumsum(0)])  # (N+1, D)
    gaps = torch.arange(1, n)  # a gap before sentence g
    left = csum[gaps] - csum[(gaps - BLOCK).clamp(min=0)]  # (N-1, D) sums of the blocks before
    right = csum[(gaps + BLOCK).clamp(max=n)] - csum[gaps]  # (N-1, D) and after
    sim = torch.nn.functional.cosine_similarity(left, right, dim=1).tolist()
    depth = []
    for g in range(len(sim)):
        lpeak = max(sim[max(0, g - 3 * BLOCK) : g + 1])
        rpeak = max(sim[g : g + 3 * BLOCK + 1])
        depth.append(lpeak + rpeak - 2 * sim[g])
    shortest = max(2, n // (3 * parts))
    cuts: list[int] = []
    for g in sorted(range(len(depth)), key=lambda g: -depth[g]):
        cut = g + 1  # the part starts at sentence g + 1
        if all(abs(cut - c) >= shortest for c in cuts) and shortest <= cut <= n - shortest:
            cuts.append(cut)
        if len(cuts) == parts - 1:
            break
    bounds = [0] + sorted(cuts) + [n]
    return [Section(a, b - 1) for a, b in zip(bounds, bounds[1:])]
