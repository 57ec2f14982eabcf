"""summarize: a document of any length -> a summary of at most `max_length` tokens, every sentence with
the document spans it rests on.

The default is *grounded*: the document's most central sentences, spread over all of it, are chosen
as evidence (one sentence-encoder pass; `evidence.py`), the model writes the summary from the evidence
only (from partial summaries when the evidence is longer than a window), and every sentence it writes
is checked against the document (`grounding.py`): one with a name, number or content the document does
not support is replaced by the evidence sentence closest to it, or dropped. `extractive=True` returns
the evidence sentences themselves (no generation). `memory=KIND` instead summarizes that memory kind's
state as it is, unchecked (the baselines of benchmarks/apps.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import MemGPTError
from .documents import DEFAULT_MAX_BYTES, Source
from .engine import Engine
from .evidence import select
from .grounding import Vocabulary, check
from .memories import ANSWER_RESERVE, MemoryState, summarize_text
from .reading import Reading, open_document
from .retrieval_memory import encoder_of
from .spans import SentenceSplitter, Span, plain

MAX_PARTS = 4  # evidence of up to this many windows is summarized in parts, then the parts together
EVIDENCE_SHARE = 20  # evidence grows with the document: 1 token in 20, from one window up to MAX_PARTS


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


def summarize(source: Source | MemoryState, max_length: int = 120, *, memory: str | None = None,
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
    window = engine.window - ANSWER_RESERVE - max_length
    budget = min(MAX_PARTS * window, max(window, state.tokens_read // EVIDENCE_SHARE))
    ids = select(texts, vectors, budget, engine.count_tokens)
    drafts = [summarize_text(engine, "\n".join(plain(texts[i]) for i in part), max_length)
              for part in parts_of(ids, texts, window, engine)]
    draft = drafts[0] if len(drafts) == 1 else summarize_text(engine, "\n".join(drafts), max_length)
    kept, rejected = checked(sentences_of(draft), ids, state, vectors, engine, max_length)
    return Summary(kept, "grounded", rejected)


def checked(written: list[str], evidence: list[int], state: MemoryState, vectors: torch.Tensor, engine: Engine,
            max_length: int) -> tuple[list[SummarySentence], list[str]]:
    """Keep the written sentences the document supports (with their citations); replace each other one
    by the unused evidence sentence closest to it, or drop it when none is left."""
    texts, index = state.index.texts, state.index
    vocab = Vocabulary.of(texts)
    written_vectors = encoder_of(engine).encode(written) if written else torch.zeros(0, vectors.shape[1])
    out: list[SummarySentence] = []
    rejected: list[str] = []
    used: set[int] = set()
    for sentence, vector in zip(written, written_vectors):
        verdict = check(sentence, vector, texts, vectors, vocab)
        if verdict.supported:
            out.append(SummarySentence(sentence, index.spans(verdict.citations), "model"))
            used.update(verdict.citations)
            continue
        rejected.append(sentence)
        spare = [i for i in evidence if i not in used]
        if spare:
            best = spare[int(torch.argmax(vectors[spare] @ vector))]
            used.add(best)
            out.append(SummarySentence(plain(texts[best]), [index.span(best)], "document"))
    return fit(out, max_length, engine), rejected


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


def parts_of(ids: list[int], texts: list[str], window: int, engine: Engine) -> list[list[int]]:
    """Consecutive runs of the evidence, each within one window."""
    parts: list[list[int]] = [[]]
    used = 0
    for i in ids:
        n = engine.count_tokens(plain(texts[i])) + 1
        if parts[-1] and used + n > window:
            parts.append([])
            used = 0
        parts[-1].append(i)
        used += n
    return parts


def sentence_vectors(state: MemoryState, engine: Engine) -> torch.Tensor:
    """(N, 384) embeddings of the document's sentences: kept by the retrieval memory, else computed."""
    stored = state.tensors.get("sentence_embeddings")
    if stored is not None and len(stored) == len(state.index):
        return stored
    return encoder_of(engine).encode([plain(t) for t in state.index.texts])


def sentences_of(text: str) -> list[str]:
    splitter = SentenceSplitter()
    return [plain(s.text) for s in splitter.feed(text) + splitter.close()]
