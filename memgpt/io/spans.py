"""The document's sentences with their character offsets, kept by every reading, so that answers and
summaries can cite the text they rest on.

Offsets are code-point offsets into the document as decoded from UTF-8 *without* newline translation:
for a file, `open(path, encoding="utf-8", newline="").read()[span.start:span.end] == span.text`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pysbd
import torch

from .formats.sourcemap import Heading, SourceMap

# pysbd finds sentence ends inside a paragraph (abbreviations, initials, decimals); paragraphs end at
# a blank line, and CJK text ends a sentence at its full stops, which pysbd's English rules do not know
HARD_END = re.compile(r"\n\s*\n|(?<=[。！？])")
MAX_SENTENCE_CHARS = 600  # text without sentence ends (a CSV, code, one long line) is cut into pieces this long
_HOLD_CHARS = 4 * MAX_SENTENCE_CHARS  # unfinished text held before it is cut anyway


@dataclass(frozen=True)
class Span:
    """A piece of the original document: `document[start:end] == text`."""

    start: int
    end: int
    text: str
    page: int | None = None  # 1-based page of `start` (PDF)
    heading: str | None = None  # heading path above `start` ("Part > Chapter"), where the document has headings

    def to_dict(self) -> dict[str, int | str]:
        out: dict[str, int | str] = {"start": self.start, "end": self.end, "text": self.text}
        if self.page is not None:
            out["page"] = self.page
        if self.heading is not None:
            out["heading"] = self.heading
        return out

    def where(self) -> str:
        """"p. 3", "Part > Chapter", both, or "" for plain text."""
        return ", ".join(x for x in (f"p. {self.page}" if self.page is not None else None, self.heading) if x)


def plain(text: str) -> str:
    """A sentence as the models read it: whitespace (line breaks of wrapped text) collapsed."""
    return " ".join(text.split())


# ISBN, doi, pages, "Retrieved", volume, "et al.", or a publication note "(Leipzig: Brockhaus, 1938)"
_REFERENCE = re.compile(r"\bISBN\b|\bdoi\b|\bpp?\.\s*\d|\bRetrieved\b|\bvol\.\s*\d|\bet al\.", re.I)
_IMPRINT = re.compile(r"\(\s*[A-Z][\w.'-]*(?: [A-Z][\w.'-]*)*:\s*[A-Z][^():]*,\s*(?:1[5-9]|20)\d\d\s*\)")


# the titles of a document's sections that list what it cites
REFERENCE_SECTIONS = re.compile(r"^(?:(?:additional|selected|other|general|primary|secondary) )?(references|"
                                r"bibliography|notes|footnotes|citations|sources|works cited|further reading|"
                                r"external links|see also|literature|notes and references)$", re.I)
HEADING_MARKUP = re.compile(r"^[#=*\s]+|[#=*\s.:]+$")  # around a heading: "## Usage", "History."


def reference_sentences(texts: list[str]) -> set[int]:
    """The sentences (by index) that are reference entries or stand in a reference section
    (from a heading "References", "Further reading", ... to the next short heading-like sentence above
    prose: its subsections "Biographies.", "Articles." stay in it)."""
    found, inside = set(), False
    for i, text in enumerate(texts):
        title = HEADING_MARKUP.sub("", " ".join(text.split()))
        if REFERENCE_SECTIONS.match(title):
            inside = True
        elif inside and len(title.split()) <= 6 and title[:1].isupper() and not re.search(r"[,;:()\d]", title):
            after = texts[i + 1] if i + 1 < len(texts) else ""
            if len(after.split()) >= 12 and not reference_entry(after):
                inside = False  # the next section's heading ("Early life."), above prose
        if inside or reference_entry(text):
            found.add(i)
        if REFERENCE_SECTIONS.match(HEADING_MARKUP.sub("", text.split("\n")[-1])):
            inside = True  # a heading run into the end of the sentence before ("... biography\nExternal links.")
    return found


def reference_entry(text: str) -> bool:
    """An entry of a reference list or bibliography: what a document cites, not what it says."""
    return bool(_REFERENCE.search(text) or _IMPRINT.search(text))


class SentenceSplitter:
    """Streaming sentence splitter: feed text chunks, get the sentences completed so far as Spans."""

    def __init__(self) -> None:
        self.buffer = ""
        self.base = 0  # document offset of buffer[0]

    def feed(self, chunk: str) -> list[Span]:
        self.buffer += chunk
        return self._emit(final=False)

    def close(self) -> list[Span]:
        return self._emit(final=True)

    def _emit(self, final: bool) -> list[Span]:
        text = self.buffer
        bounds = _sentence_bounds(text)  # [(start, end)] covering text
        if not final:
            bounds = bounds[:-1]  # the last sentence may go on in the next chunk
            held = bounds[-1][1] if bounds else 0
            if len(text) - held > _HOLD_CHARS:  # no sentence end in sight: cut at the last whitespace
                limit = len(text) - MAX_SENTENCE_CHARS
                ws = max(text.rfind(" ", held, limit), text.rfind("\n", held, limit))
                bounds.append((held, ws + 1 if ws > held else limit))
        done = bounds[-1][1] if bounds else 0
        spans = [p for start, end in bounds for p in _pieces(text, start, end, self.base)]
        self.buffer = text[done:]
        self.base += done
        return spans


_SEGMENTER = pysbd.Segmenter(language="en", clean=False)


def _sentence_bounds(text: str) -> list[tuple[int, int]]:
    """Consecutive (start, end) ranges covering `text`, one per sentence: paragraphs and CJK sentences
    cut first, pysbd inside each (its sentences, joined, give the paragraph back)."""
    bounds: list[tuple[int, int]] = []
    start = 0
    for end in [m.end() for m in HARD_END.finditer(text)] + [len(text)]:
        piece = text[start:end].replace("\n", " ")  # a line break inside a paragraph is wrapping, not an end
        sentences = _SEGMENTER.segment(piece) if piece.strip() else [piece]
        if "".join(sentences) != piece:  # never misplace offsets: keep such a paragraph whole
            sentences = [piece]
        pos = start
        for sentence in sentences:
            bounds.append((pos, pos + len(sentence)))
            pos += len(sentence)
        start = end
    return [b for b in bounds if b[1] > b[0]]


def _pieces(text: str, start: int, end: int, base: int) -> list[Span]:
    """text[start:end] stripped, as one Span, or several when longer than MAX_SENTENCE_CHARS (cut at line
    breaks, else at spaces, else anywhere)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start >= end:
        return []
    if end - start <= MAX_SENTENCE_CHARS:
        return [Span(base + start, base + end, text[start:end])]
    limit = start + MAX_SENTENCE_CHARS
    cut = text.rfind("\n", start + 1, limit)
    if cut <= start:
        cut = text.rfind(" ", start + 1, limit)
    if cut <= start:
        cut = limit
    return _pieces(text, start, cut, base) + _pieces(text, cut, end, base)


@dataclass
class DocumentIndex:
    """The sentences of a document, in order, with their offsets."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    source: SourceMap | None = None  # pages and headings of a formatted document (PDF, HTML, ...)

    def add(self, spans: list[Span]) -> None:
        for s in spans:
            self.starts.append(s.start)
            self.ends.append(s.end)
            self.texts.append(s.text)

    def __len__(self) -> int:
        return len(self.texts)

    def span(self, i: int) -> Span:
        start = self.starts[i]
        if self.source is None:
            return Span(start, self.ends[i], self.texts[i])
        return Span(start, self.ends[i], self.texts[i], self.source.page(start), self.source.heading_path(start))

    def part(self, i: int, a: int, b: int) -> Span:
        """Characters `a:b` of sentence `i` as a span, with the page and heading where they begin."""
        start, end, text = self.starts[i] + a, self.starts[i] + b, self.texts[i][a:b]
        if self.source is None:
            return Span(start, end, text)
        return Span(start, end, text, self.source.page(start), self.source.heading_path(start))

    @property
    def headings(self) -> list[Heading]:
        """The document's own headings (offset, level, title) in order; [] for plain text."""
        return list(self.source.headings) if self.source is not None else []

    def spans(self, ids: list[int]) -> list[Span]:
        return [self.span(i) for i in ids]

    def to_tensors(self) -> dict[str, torch.Tensor]:
        encoded = [t.encode("utf-8") for t in self.texts]
        lengths = torch.tensor([0] + [len(b) for b in encoded], dtype=torch.int64)
        blob = b"".join(encoded)
        extra = self.source.to_tensors() if self.source is not None else {}
        return extra | {
            "doc.starts": torch.tensor(self.starts, dtype=torch.int64),
            "doc.ends": torch.tensor(self.ends, dtype=torch.int64),
            "doc.bytes": torch.frombuffer(bytearray(blob), dtype=torch.uint8) if blob else torch.zeros(0, dtype=torch.uint8),
            "doc.offsets": lengths.cumsum(0),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> DocumentIndex | None:
        """The index saved by `to_tensors`, or None when the tensors are not a well-formed index."""
        try:
            starts, ends, blob, offsets = (tensors[k] for k in ("doc.starts", "doc.ends", "doc.bytes", "doc.offsets"))
        except KeyError:
            return None
        n = len(starts)
        ok = starts.dim() == ends.dim() == offsets.dim() == blob.dim() == 1 and len(ends) == n and len(offsets) == n + 1
        ok = ok and n >= 0 and int(offsets[0]) == 0 and int(offsets[-1]) == len(blob) and bool((offsets.diff() >= 0).all())
        ok = ok and bool((ends >= starts).all()) and bool((starts[1:] >= ends[:-1]).all()) if ok and n else ok
        if not ok:
            return None
        raw = blob.numpy().tobytes()
        bounds = offsets.tolist()
        try:
            texts = [raw[a:b].decode("utf-8") for a, b in zip(bounds, bounds[1:])]
        except UnicodeDecodeError:
            return None
        return cls(starts.tolist(), ends.tolist(), texts, SourceMap.from_tensors(tensors))
