"""Memory kinds behind one interface: read a document segment by segment into a state, then
answer from it. A state is a value: it can be saved to a memory file and loaded later.

    memory = make_memory("text", engine)
    state = memory.new_state()
    for segment in segments:                       # token ids, `memory.segment_tokens` at a time
        state = memory.update(state, segment)
    memory.answer(state, ["Who ...?"]); memory.summarize(state, max_length=80)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from .abstention import NOT_IN_DOCUMENT
from .answering import grounded_answer, reader_prompt
from .index_search import search as search_index
from ..errors import MemGPTError
from .files import read_state_file, read_state_meta, write_state_file
from ..model.engine import Engine
from ..model.identity import backbone_name
from ..io.spans import DocumentIndex, Span
from .kv.store import KVSettings

ANSWER_RESERVE = 192  # prompt tokens kept free for the instructions and the question


@dataclass
class DocumentState:
    """What a memory kind keeps: `tensors` (saved as they are) and small string `info`."""

    kind: str
    backbone: str
    tokens_read: int = 0
    segments: int = 0
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)
    index: DocumentIndex | None = field(default_factory=DocumentIndex, repr=False)  # None: a file from before citations
    work: dict = field(default_factory=dict, repr=False)  # scratch while reading; never saved


@dataclass
class Evidence:
    """What a memory puts in front of the reader: the text, and the document sentences it is made of
    (empty when the text is not the document's own, e.g. notes or raw tokens); `source` names where
    they come from (`EVIDENCE_SOURCES`)."""

    text: str
    spans: list[Span] = field(default_factory=list)
    source: str = "window"
    free: str | None = None  # the free answer, when the kind makes it while finding its evidence (kv)
    support: float | None = None  # how strongly the best retrieved sentence matches the question
    abstain: bool = False  # nothing in the document supports an answer: say so instead of guessing


@dataclass
class Answer:
    """An answer, the document sentence it rests on (`quote`, verbatim with its offsets; None when the
    memory declined or answered from what is not the document's text, e.g. its notes), the evidence
    sentences that bear on the question, whether it abstained, and where its evidence came from
    (`evidence_source`, one of `EVIDENCE_SOURCES`)."""

    text: str
    citations: list[Span] = field(default_factory=list)
    abstained: bool = False
    quote: Span | None = None
    evidence_source: str | None = None

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict:
        return {"answer": self.text, "abstained": self.abstained,
                "quote": self.quote.to_dict() if self.quote else None,
                "citations": [c.to_dict() for c in self.citations], "evidence_source": self.evidence_source}


# where an answer's evidence came from: the sentences a retrieval memory retrieved, those under the kv
# blocks its attention retrieved, those inside a window, a text memory's notes, the latent memory's
# vectors (no text), the whole document (it fitted the window), or a search of the sentence index
EVIDENCE_SOURCES = ("retrieved", "kv-blocks", "window", "notes", "latent", "document", "index")


class Memory(ABC):
    """A memory kind: how segments update the state and how the state answers."""

    kind: ClassVar[str]
    segment_tokens: int = 1024
    keeps_index: ClassVar[bool] = True  # its memory files keep the document's sentences (citations)
    evidence_source: ClassVar[str] = "window"  # what its evidence is (`EVIDENCE_SOURCES`)

    def __init__(self, engine: Engine):
        self.engine = engine

    def new_state(self) -> DocumentState:
        return DocumentState(kind=self.kind, backbone=backbone_name(self.engine.backbone))

    def update(self, state: DocumentState, segment: list[int]) -> DocumentState:
        """Fold one segment of token ids into the state (in place) and return it."""
        self._update(state, segment)
        state.tokens_read += len(segment)
        state.segments += 1
        return state

    @abstractmethod
    def _update(self, state: DocumentState, segment: list[int]) -> None: ...

    def finish(self, state: DocumentState) -> DocumentState:
        """Called once after the last segment (flush what is pending)."""
        return state

    @classmethod
    def validate(cls, state: DocumentState, path: str | Path) -> None:
        """Refuse a loaded state whose tensors are not what this kind writes."""

    def check_compatible(self, state: DocumentState, path: str | Path) -> None:
        """Refuse a loaded state that this engine's memory cannot read (default: any state of the kind is fine)."""

    @classmethod
    def save_file(cls, path: str | Path, state: DocumentState, metadata: dict[str, str],
                  extra: dict[str, torch.Tensor]) -> Path:
        """Write `state` (its tensors and the `extra` ones, with `metadata`) to a memory file."""
        return write_state_file(path, state.kind, {**state.tensors, **extra} or {"empty": torch.zeros(0)}, metadata)

    @classmethod
    def load_tensors(cls, path: str | Path) -> dict[str, torch.Tensor]:
        """The tensors of a memory file of this kind (a kind may map them lazily instead of reading them)."""
        return read_state_file(path)[0]

    @abstractmethod
    def context(self, state: DocumentState, query: str | None, budget: int) -> str:
        """The text this memory puts in front of a question (`query`) or a summary request (None),
        at most `budget` tokens."""

    def evidence(self, state: DocumentState, query: str | None, budget: int, max_new_tokens: int = 32) -> Evidence:
        """`context` with the document sentences it quotes (none, unless the kind keeps them);
        `max_new_tokens`: for a kind that answers while it finds its evidence (kv)."""
        return Evidence(self.context(state, query, budget), source=self.evidence_source)

    def answer(self, state: DocumentState, questions: list[str], max_new_tokens: int = 32,
               use_index: bool = False) -> list[Answer]:
        """Answers through the one grounded path (`memgpt.memories.answering`) from what this kind holds:
        its evidence and free answer, verified against its evidence sentences, else a span of them, else an
        abstention. A kind whose evidence is no document sentence (notes, vectors) answers from its own
        text with no quote; with `use_index` it is checked against the sentences of the document index
        that a search for the question's terms finds instead (`evidence_source="index"`)."""
        budget = self.engine.window - ANSWER_RESERVE - max_new_tokens
        answers = []
        for q in questions:
            found = self.evidence(state, q, budget, max_new_tokens)
            if found.abstain:
                answers.append(Answer(NOT_IN_DOCUMENT, [], abstained=True, evidence_source=found.source))
                continue
            free = found.free if found.free is not None else self.free_answer(state, found, q, max_new_tokens)
            if found.spans:
                answers.append(grounded(self.engine, q, found.spans, free, found.source))
            elif use_index and state.index is not None:
                answers.append(grounded(self.engine, q, search_index(state.index, q, state.work), free, "index"))
            else:
                answers.append(self.unquoted_answer(q, found, free))
        return answers

    def unquoted_answer(self, question: str, found: Evidence, free: str) -> Answer:
        """An answer from evidence that is not the document's text (notes): the grounded check over the
        evidence's own lines, so nothing the evidence lacks is answered, and no quote (none is a
        document sentence)."""
        lines = [line.strip(" -*\t") for line in found.text.splitlines()]
        lines = [Span(-1, -1, line) for line in lines if line]
        if not lines:
            return Answer(NOT_IN_DOCUMENT, [], abstained=True, evidence_source=found.source)
        g = grounded_answer(self.engine, question, lines, free)
        return Answer(g.text, [], abstained=g.quote is None, quote=None, evidence_source=found.source)

    def free_answer(self, state: DocumentState, found: Evidence, question: str, max_new_tokens: int) -> str:
        """The model's own short answer (greedy) from this kind's evidence: a candidate for the check."""
        return answer_from(self.engine, found.text, question, max_new_tokens)

    def summarize(self, state: DocumentState, max_length: int) -> str:
        budget = self.engine.window - ANSWER_RESERVE - max_length
        return summarize_text(self.engine, self.context(state, None, budget), max_length)


def answer_from(engine: Engine, context: str, question: str, max_new_tokens: int) -> str:
    """The model's free answer to `question` from `context` (greedy), with a started reply."""
    return clean(engine.chat(reader_prompt(question, context), max_new_tokens, prefix="Answer:"))


def grounded(engine: Engine, question: str, evidence: list[Span], free: str | None, source: str) -> Answer:
    """`grounded_answer` as an Answer: verified or chosen from `evidence` (which came from `source`), or
    the abstention phrase."""
    g = grounded_answer(engine, question, evidence, free)
    return Answer(g.text, g.cited, abstained=g.quote is None, quote=g.quote, evidence_source=source)


SUMMARY_TOKENS = (8, 1024)  # the summary lengths (tokens) every summarizer accepts


def summary_words(max_length: int) -> int:
    """The word count a model is asked for, for a summary of at most `max_length` tokens (~0.6 words a token)."""
    return max(5, int(max_length * 0.6))


def summarize_text(engine: Engine, context: str, max_length: int) -> str:
    """Summarize `context` in at most `max_length` tokens, ending at a sentence where possible."""
    prompt = f"Text:\n{context}\n\nSummarize the text above in at most {summary_words(max_length)} words."
    return trim_to_sentence(clean(engine.chat(prompt, max_length, repetition_penalty=1.1)))


def clean(text: str) -> str:
    """Well-formed output: no replacement characters left by a multi-byte token cut in half."""
    return text.replace("\ufffd", "").strip()


def trim_to_sentence(text: str) -> str:
    """Drop a trailing unfinished sentence, unless that would drop almost everything."""
    ends = [text.rfind(p) for p in (".", "!", "?", "。", "！", "？")]
    cut = max(ends)
    return text[: cut + 1] if cut >= len(text) // 2 else text


# -- registry and files ------------------------------------------------------------------------
KINDS: dict[str, type[Memory]] = {}


def register(cls: type[Memory]) -> type[Memory]:
    KINDS[cls.kind] = cls
    return cls


def make_memory(kind: str, engine: Engine, kv: KVSettings | None = None) -> Memory:
    """The memory `kind` over `engine`; `kv`: the kv memory's settings (that kind only; default `KVSettings()`)."""
    if kind not in KINDS:
        raise MemGPTError(f"unknown memory kind {kind!r}; choose from {', '.join(sorted(KINDS))}")
    if kv is None:
        return KINDS[kind](engine)
    if kind != "kv":
        raise MemGPTError(f"kv settings go with the kv memory, not {kind!r}")
    return KINDS[kind](engine, kv=kv)


INDEX_VERSION = "1"  # the document's sentences and offsets (for citations) ride in every memory file since then


def save_state(path: str | Path, state: DocumentState) -> Path:
    """Write a state to a memory file (safetensors + metadata, atomically)."""
    if state.index is None and KINDS[state.kind].keeps_index:
        raise MemGPTError("this memory was loaded from a file without the document's sentences; it cannot be saved again")
    meta = {"backbone": state.backbone, "tokens_read": str(state.tokens_read), "segments": str(state.segments),
            **{f"info.{k}": v for k, v in state.info.items()}}
    extra = {}
    if KINDS[state.kind].keeps_index:
        meta["document_index"] = INDEX_VERSION
        extra = state.index.to_tensors()
    return KINDS[state.kind].save_file(path, state, meta, extra)


def load_state(path: str | Path, engine: Engine | None = None) -> DocumentState:
    """Read a memory file; refuse one made for another backbone than `engine`'s."""
    meta = read_state_meta(path)
    kind = meta.get("kind", "")
    if kind not in KINDS:
        raise MemGPTError(f"{path} holds a {kind!r} memory, which this memgpt cannot answer from")
    if engine is not None and meta.get("backbone") != backbone_name(engine.backbone):
        raise MemGPTError(f"{path} was made with backbone {meta.get('backbone')!r}, not {backbone_name(engine.backbone)!r}")
    try:
        tokens, segments = int(meta.get("tokens_read", "0")), int(meta.get("segments", "0"))
    except ValueError:
        raise MemGPTError(f"{path} has corrupt metadata") from None
    tensors = KINDS[kind].load_tensors(path)
    tensors.pop("empty", None)
    index = DocumentIndex.from_tensors(tensors)
    if index is None and "document_index" in meta:
        raise MemGPTError(f"{path} is a corrupt memory file (its document sentences are damaged)")
    tensors = {k: v for k, v in tensors.items() if not k.startswith("doc.")}
    info = {k[5:]: v for k, v in meta.items() if k.startswith("info.")}
    state = DocumentState(kind=kind, backbone=meta.get("backbone", ""), tokens_read=tokens, segments=segments,
                        tensors=tensors, info=info, index=index)
    KINDS[kind].validate(state, path)
    return state


def text_tensor(text: str) -> torch.Tensor:
    """UTF-8 bytes as a uint8 tensor (safetensors holds tensors; this is how text rides along)."""
    return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8) if text else torch.zeros(0, dtype=torch.uint8)


def tensor_text(tensor: torch.Tensor) -> str:
    return tensor.to(torch.uint8).numpy().tobytes().decode("utf-8", errors="replace")
