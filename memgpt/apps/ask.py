"""ask: questions about a document far longer than the window, all answered from one reading."""

from __future__ import annotations

from ..errors import MemGPTError
from ..model.generation import check_text
from .documents import DEFAULT_MAX_BYTES, Source
from ..model.engine import Engine, get_engine
from ..memories.base import ANSWER_RESERVE, Answer, DocumentState, answer_from, grounded
from .reading import Reading, open_document

MAX_QUESTION_TOKENS = 128


def ask(source: Source | DocumentState, questions: str | list[str], *, memory: str | None = None,
        engine: Engine | None = None, max_new_tokens: int = 32, progress: bool = False,
        max_bytes: int = DEFAULT_MAX_BYTES, use_index: bool = False) -> Answer | list[Answer]:
    """Answer one question (returns an Answer) or several (a list) about a document, read once. An
    Answer is its text (`str(answer)`), the document sentence it rests on (`quote`: a Span with character
    offsets into the document), the sentences that bear on the question (`citations`), whether it
    declined (`abstained`: "The document does not say.") and where its evidence came from
    (`evidence_source`). Each memory kind answers from what it holds; `use_index=True` lets a kind whose
    memory holds no document sentence (text notes, latent vectors) search the document's sentence index
    instead (its answers then say `evidence_source="index"`)."""
    single = isinstance(questions, str)
    engine = engine or get_engine()
    qs = check_questions(questions, engine)
    if not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= 512:
        raise MemGPTError(f"max_new_tokens must be from 1 to 512, got {max_new_tokens!r}")
    reading = open_document(source, "ask", memory, engine, progress, max_bytes)
    if not isinstance(use_index, bool):
        raise MemGPTError(f"use_index must be True or False, got {use_index!r}")
    answers = answer_reading(reading, qs, max_new_tokens, use_index)
    return answers[0] if single else answers


def check_questions(questions: object, engine: Engine) -> list[str]:
    """The questions as a list, each refused (before any document is read) when it is not text,
    empty, or longer than MAX_QUESTION_TOKENS tokens of the engine's tokenizer."""
    if isinstance(questions, str):
        qs = [questions]
    elif isinstance(questions, (list, tuple)):
        qs = list(questions)
    else:
        raise MemGPTError(f"questions must be a string or a list of strings, got {type(questions).__name__}")
    if not qs:
        raise MemGPTError("no question given")
    for q in qs:
        check_text(q, "a question")
        if not q.strip():
            raise MemGPTError("a question is empty")
        if engine.count_tokens(q) > MAX_QUESTION_TOKENS:
            raise MemGPTError(f"a question is longer than {MAX_QUESTION_TOKENS} tokens")
    return qs


def answer_reading(reading: Reading, questions: list[str], max_new_tokens: int, use_index: bool = False) -> list[Answer]:
    """A document that fits the window is its own evidence: every sentence of it, through the same
    check as a memory's answers (`memgpt.memories.answering`)."""
    if reading.direct_text is not None:
        engine = reading.memory.engine
        budget = engine.window - ANSWER_RESERVE - max_new_tokens
        context = engine.clip(reading.direct_text, budget)
        spans = reading.state.index.spans(list(range(len(reading.state.index))))
        return [grounded(engine, q, spans, answer_from(engine, context, q, max_new_tokens), "document") for q in questions]
    return reading.memory.answer(reading.state, questions, max_new_tokens, use_index=use_index)
