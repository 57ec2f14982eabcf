"""summarize: a document of any length -> a summary of at most `max_length` tokens, every sentence with
the document spans it rests on.

The default is *grounded*: the document's most central sentences, spread over all of it, are chosen
as evidence (one sentence-encoder pass; `evidence.py`); the model rewrites each evidence sentence shorter,
and every sentence it writes is checked against the document and against the sentence it rewrote
(`grounding.py`): one with a name, number or content they do not support is replaced by the evidence
sentence itself. `extractive=True` returns the evidence sentences as they are (no generation).
`memory=KIND` instead summarizes that memory kind's state as it is, unchecked (the baselines of
benchmarks/apps.py).

Why sentence by sentence: asked to summarize ~1,500 tokens of evidence at once, SmolLM2-135M wrote
0 supported sentences out of 21 on the 1904 State of the Union (4 prompt forms: "The text highlights the
need for a strong federal government ...", an invented "USFCC"); rewriting one sentence at a time, it
keeps the sentence's facts more often, and the check catches the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import MemGPTError
from .documents import DEFAULT_MAX_BYTES, Source
from ..model.engine import Engine
from .evidence import select
from .grounding import Vocabulary, check, rewrites
from ..memories.base import DocumentState, clean, summarize_text
from .reading import Reading, open_document
from ..memories.retrieval import encoder_of
from ..io.spans import SentenceSplitter, Span, plain

REWRITE = "Shorten this sentence, keeping its meaning: {sentence}"  # the better of two forms tried (module doc)
CONCISE = 24  # words: a sentence this short is quoted as it is


@dataclass
class SummarySentence:
    text: str
    citations: list[Span]
    source: str  # "model": written by the model and supported; "document": a document sentence

    def to_dict(self) -> dict:
        return {"text": self.text, "source": self.source, "citations": [c.to_dict() for c in self.citations]}


@dataclass
class Summary:
    """A summary as sentences with citations. `str(summary)` is its text."""

    sentences: list[SummarySentence]
    method: str  # grounded | extractive | a memory kind (unchecked)
    rejected: list[str] = field(default_factory=list)  # model sentences the check refused

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.sentences)

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict:
        return {"summary": self.text, "method": self.method, "sentences": [s.to_dict() for s in self.sentences],
                "rejected": self.rejected}


def summarize(source: Source | DocumentState, max_length: int = 120, *, memory: str | None = None,
              extractive: bool = False, engine: Engine | None = None, progress: bool = False,
              max_bytes: int = DEFAULT_MAX_BYTES) -> Summary:
    """Summarize a document (str: the text itself; Path: a file or "-"; a memory file or state).

    >>> summary = summarize(text, max_length=50)
    >>> print(summary); summary.sentences[0].citations   # Spans: document[start:end] == text
    """
    if not isinstance(max_length, int) or not 8 <= max_length <= 1024:
        raise MemGPTError(f"max_length must be an integer from 8 to 1024 tokens, got {max_length!r}")
    if extractive and memory is not None:
        raise MemGPTError("an extractive summary quotes the document's sentences; it takes no memory kind")
    return summarize_reading(open_document(source, "summarize", memory, engine, progress, max_bytes),
                             max_length, grounded=memory is None, extractive=extractive)


def summarize_reading(reading: Reading, max_length: int, grounded: bool = True, extractive: bool = False) -> Summary:
    if grounded or extractive:
        return grounded_summary(reading, max_length, extractive)
    if reading.direct_text is not None:
        text = summarize_text(reading.memory.engine, reading.direct_text, max_length)
    else:
        text = reading.memory.summarize(reading.state, max_length)
    return Summary([SummarySentence(s, [], "model") for s in sentences_of(text)], reading.kind)


def grounded_summary(reading: Reading, max_length: int, extractive: bool = False) -> Summary:
    engine, state = reading.memory.engine, reading.state
    if state.index is None:
        raise MemGPTError("this memory file was made by an older memgpt without the document's sentences; "
                          "read the document again (memgpt read) or pass --memory KIND")
    texts = state.index.texts
    vectors = sentence_vectors(state, engine)
    if extractive:
        ids = select(texts, vectors, max_length, engine.count_tokens)
        return Summary(fit([SummarySentence(plain(texts[i]), [state.index.span(i)], "document") for i in ids],
                           max_length, engine), "extractive")
    ids = select(texts, vectors, max_length, engine.count_tokens)  # rewrites only shorten: they fit too
    kept, rejected = rewritten(ids, state, vectors, engine)
    return Summary(fit(kept, max_length, engine), "grounded", rejected)


def rewritten(evidence: list[int], state: DocumentState, vectors: torch.Tensor, engine: Engine
              ) -> tuple[list[SummarySentence], list[str]]:
    """Each evidence sentence rewritten shorter by the model when the rewrite passes the check (cited: the
    document sentences it rests on), else the evidence sentence itself (cited: itself)."""
    texts, index = state.index.texts, state.index
    vocab = Vocabulary.of(texts)
    sources = [plain(texts[i]) for i in evidence]
    drafts = [first_sentence(clean(engine.chat(REWRITE.format(sentence=s), engine.count_tokens(s),
                                               repetition_penalty=1.1))) if len(s.split()) > CONCISE else ""
              for s in sources]
    draft_vectors = encoder_of(engine).encode([d or "-" for d in drafts])  # (n, 384)
    out: list[SummarySentence] = []
    rejected: list[str] = []
    for i, source, draft, vector in zip(evidence, sources, drafts, draft_vectors):
        verdict = check(draft, vector, texts, vectors, vocab) if draft else None
        if verdict is not None and verdict.supported and rewrites(draft, source, float(vector @ vectors[i])):
            out.append(SummarySentence(draft, index.spans(sorted(set(verdict.citations) | {i})), "model"))
            continue
        if draft:
            rejected.append(draft)
        out.append(SummarySentence(source, [index.span(i)], "document"))
    return out, rejected


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


def first_sentence(text: str) -> str:
    """The first whole sentence of a generation ("" when it has none: a cut-off fragment is no sentence)."""
    found = sentences_of(text)
    return found[0] if found and found[0][-1:] in ".!?。！？" else ""


def sentences_of(text: str) -> list[str]:
    splitter = SentenceSplitter()
    return [plain(s.text) for s in splitter.feed(text) + splitter.close()]
