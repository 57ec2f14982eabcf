"""summarize: a document of any length -> a summary of at most `max_length` tokens, every sentence with
the document spans it rests on.

The default is an *outline* (`outline.py`): what the document is about (a story's characters, its main
names and terms, with counts and a cited mention), then a part per topic (its own section, or its topic by
the shifts of its sentence embeddings; a part per ~2,000 tokens of the document), each headed and quoting
the self-contained sentence that best stands for it, cited. Printed as text, markdown or plain prose (`Summary.render`).
`extractive=True` returns the document's most central sentences spread over all of it (`evidence.py`),
as prose. `memory=KIND` instead
summarizes that memory kind's state as it is, unchecked (the baselines of benchmarks/apps.py).

Nothing in an outline is written by the model: a part's heading is the document's own, or its quotes' own
names and terms. Asked to rewrite the evidence sentences shorter (memgpt before the outline), SmolLM2-135M
had every rewrite refused by the grounding check on the 20 benchmark articles; its headings for TextTiling
parts, checked against the whole document, could still name what their part's quotes did not: both paths
are gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import MemGPTError
from .documents import DEFAULT_MAX_BYTES, Source
from ..model.engine import Engine
from .entities import Term
from .evidence import select
from .outline import Outline, outline
from .topics import Heading
from ..memories.base import SUMMARY_TOKENS, DocumentState, summarize_text
from .reading import Reading, open_document
from ..memories.retrieval import encoder_of
from ..io.spans import SentenceSplitter, Span, plain

FORMATS = ("text", "markdown", "prose")


@dataclass
class SummarySentence:
    text: str
    citations: list[Span]
    source: str  # "document": a document sentence quoted; "model": a memory kind's own summary (unchecked)

    def to_dict(self) -> dict:
        return {"text": self.text, "source": self.source, "citations": [c.to_dict() for c in self.citations]}


@dataclass
class SummaryPart:
    """A part of the document (sentences `first`..`last` of its index) with its heading and quotes."""

    heading: str
    heading_source: str  # document | terms (its quotes' names and terms)
    first: int
    last: int
    sentences: list[SummarySentence]

    def to_dict(self) -> dict:
        return {"heading": self.heading, "heading_source": self.heading_source, "sentence_range": [self.first, self.last],
                "sentences": [s.to_dict() for s in self.sentences]}


@dataclass
class Summary:
    """A summary as sentences with citations; an outline also has `about` and `parts`. `str(summary)` is
    its text (`render("text")`)."""

    sentences: list[SummarySentence]
    method: str  # outline | extractive | a memory kind (unchecked)
    about: list[Term] = field(default_factory=list)
    parts: list[SummaryPart] = field(default_factory=list)

    @property
    def prose(self) -> str:
        return " ".join(s.text for s in self.sentences)

    @property
    def text(self) -> str:
        return self.render("text")

    def __str__(self) -> str:
        return self.text

    def said(self) -> str:
        """What the summary says, without counts or offsets: its terms, headings and sentences (what
        `max_length` bounds, and what benchmarks score)."""
        if not self.parts:
            return self.prose
        head = ", ".join(t.text for t in self.about)
        return "\n".join([head] * bool(head) + [f"{p.heading}. " + " ".join(s.text for s in p.sentences) for p in self.parts])

    def render(self, fmt: str = "text", cite: bool = False) -> str:
        """text: About and numbered parts, offsets in brackets; markdown: the same as markdown; prose: the
        sentences as a paragraph. `cite`: the cited sentences in full under each line."""
        if fmt not in FORMATS:
            raise MemGPTError(f"unknown summary format {fmt!r}; use one of {', '.join(FORMATS)}")
        if fmt == "prose" or not self.parts:
            if not cite:
                return self.prose
            return "\n".join(s.text + _cited(s.citations) for s in self.sentences)
        md = fmt == "markdown"
        lines = ["**About**" if md else "About"]
        for t in self.about:
            where = f"[{t.mention.start}-{t.mention.end}]"
            lines.append((f"- **{t.text}** ({t.count}) {where}" if md else f"  {t.text} ({t.count}) {where}")
                         + (_cited([t.mention], "  " if md else "      ") if cite else ""))
        lines.append("" if md else "Parts")
        for k, p in enumerate(self.parts, 1):
            lines.append(f"### {k}. {p.heading}" if md else f"  {k}. {p.heading}")
            for s in p.sentences:
                where = " ".join(f"[{c.start}-{c.end}]" for c in s.citations)
                lines.append(f"{s.text} {where}" if md else f"     {s.text} {where}")
            if md:
                lines.append("")
        return "\n".join(lines).rstrip()

    def to_dict(self) -> dict:
        out = {"summary": self.text, "prose": self.prose, "method": self.method,
               "sentences": [s.to_dict() for s in self.sentences]}
        if self.parts:
            out |= {"about": [t.to_dict() for t in self.about], "parts": [p.to_dict() for p in self.parts]}
        return out


def _cited(spans: list[Span], indent: str = "    ") -> str:
    """Citations as indented lines: [start-end] the sentence."""
    return "".join(f"\n{indent}[{s.start}-{s.end}] {plain(s.text)}" for s in spans)


DEFAULT_LENGTH = 200  # tokens of an extractive or memory summary when no length is given


def summarize(source: Source | DocumentState, max_length: int | None = None, *, memory: str | None = None,
              extractive: bool = False, engine: Engine | None = None, progress: bool = False,
              max_bytes: int = DEFAULT_MAX_BYTES) -> Summary:
    """Summarize a document (str: the text itself; Path: a file or "-"; a memory file or state) in at
    most `max_length` tokens (None: an outline as long as the document needs, `outline.length_for`).

    >>> summary = summarize(text, max_length=80)
    >>> print(summary); summary.sentences[0].citations   # Spans: document[start:end] == text
    """
    check_length(max_length)
    if extractive and memory is not None:
        raise MemGPTError("an extractive summary quotes the document's sentences; it takes no memory kind")
    reading = open_document(source, "summarize", memory, engine, progress, max_bytes)
    return summarize_reading(reading, max_length, method="extractive" if extractive else memory or "outline",
                             document=document_text(source))


def check_length(max_length: object) -> None:
    low, high = SUMMARY_TOKENS
    if max_length is None:
        return
    if not isinstance(max_length, int) or isinstance(max_length, bool) or not low <= max_length <= high:
        raise MemGPTError(f"max_length must be an integer from {low} to {high} tokens, got {max_length!r}")


def document_text(source: Source | DocumentState) -> str | None:
    """The document's text, as its offsets count it, where it is at hand (a string, a file; not stdin
    or a memory file): the outline finds the document's own headings in it."""
    if isinstance(source, str):
        return source
    if isinstance(source, Path) and str(source) != "-" and source.suffix not in (".mem", ".safetensors"):
        try:
            with open(source, encoding="utf-8", errors="replace", newline="") as f:
                return f.read()
        except OSError:
            return None
    return None


def summarize_reading(reading: Reading, max_length: int | None, method: str = "outline", document: str | None = None,
                      headings: list[Heading] | None = None) -> Summary:
    """`method`: outline | extractive | a memory kind (its own summary, unchecked). `headings`: the
    document's own (offset, level, title), else the outline looks for them in `document`."""
    if method in ("outline", "extractive"):
        return quoted_summary(reading, max_length, method, document, headings)
    max_length = max_length or DEFAULT_LENGTH
    if reading.direct_text is not None:
        text = summarize_text(reading.memory.engine, reading.direct_text, max_length)
    else:
        text = reading.memory.summarize(reading.state, max_length)
    return Summary([SummarySentence(s, [], "model") for s in sentences_of(text)], reading.kind)


def quoted_summary(reading: Reading, max_length: int | None, method: str, document: str | None = None,
                   headings: list[Heading] | None = None) -> Summary:
    engine, state = reading.memory.engine, reading.state
    if state.index is None:
        raise MemGPTError("this memory file was made by an older memgpt without the document's sentences; "
                          "read the document again (memgpt read) or pass --memory KIND")
    texts, index = state.index.texts, state.index
    vectors = sentence_vectors(state, engine)
    if method == "extractive":
        max_length = max_length or DEFAULT_LENGTH
        ids = select(texts, vectors, max_length, engine.count_tokens)
        return Summary(fit([SummarySentence(plain(texts[i]), [index.span(i)], "document") for i in ids],
                           max_length, engine), "extractive")
    made = outline(texts, index.spans(list(range(len(index)))), vectors, engine, max_length, document, headings)
    return trimmed(outline_summary(made, texts, index), made.budget, engine)


def outline_summary(made: Outline, texts: list[str], index) -> Summary:
    parts = [SummaryPart(p.heading, p.heading_source, p.first, p.last,
                         [SummarySentence(plain(texts[i]), [index.span(i)], "document") for i in p.quotes])
             for p in made.parts]
    return Summary([s for p in parts for s in p.sentences], "outline", made.about, parts)


def trimmed(summary: Summary, max_length: int, engine: Engine) -> Summary:
    """Drop what is said last until the summary fits `max_length` tokens: a part's second quotes, then
    About's last terms, then whole parts (one sentence stays, even over the budget)."""
    while engine.count_tokens(summary.said()) > max_length:
        longest = max(summary.parts, key=lambda p: len(p.sentences))
        if len(longest.sentences) > 1:
            longest.sentences.pop()
        elif len(summary.about) > 3:
            summary.about.pop()
        elif len(summary.parts) > 1:
            summary.parts.pop(min(range(len(summary.parts)), key=lambda k: summary.parts[k].last - summary.parts[k].first))
        elif summary.about:
            summary.about.pop()
        else:
            break
        summary.sentences = [s for p in summary.parts for s in p.sentences]
    return summary


def fit(sentences: list[SummarySentence], max_length: int, engine: Engine) -> list[SummarySentence]:
    """The leading sentences within `max_length` tokens (at least one)."""
    kept, used = [], 0
    for s in sentences:
        n = engine.count_tokens(s.text)
        if kept and used + n > max_length:
            break
        kept.append(s)
        used += n
    return kept


def sentence_vectors(state: DocumentState, engine: Engine) -> torch.Tensor:
    """(N, 384) embeddings of the document's sentences: kept by the retrieval memory, else computed."""
    stored = state.tensors.get("sentence_embeddings")
    if stored is not None and len(stored) == len(state.index):
        return stored
    return encoder_of(engine).encode([plain(t) for t in state.index.texts])


def sentences_of(text: str) -> list[str]:
    splitter = SentenceSplitter()
    return [plain(s.text) for s in splitter.feed(text) + splitter.close()]
