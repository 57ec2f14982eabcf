"""summarize: a document of any length -> a summary of at most `max_length` tokens."""

from __future__ import annotations

from ..errors import MemGPTError
from .documents import DEFAULT_MAX_BYTES, Source
from .engine import Engine
from .memories import MemoryState, summarize_text
from .reading import Reading, open_document


def summarize(source: Source | MemoryState, max_length: int = 120, *, memory: str | None = None,
              engine: Engine | None = None, progress: bool = False, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Summarize a document (str: the text itself; Path: a file or "-"; a memory file or state).

    >>> summary = summarize(text, max_length=50)
    """
    return summarize_reading(_check(max_length, source, memory, engine, progress, max_bytes), max_length)


def summarize_reading(reading: Reading, max_length: int) -> str:
    if reading.direct_text is not None:
        return summarize_text(reading.memory.engine, reading.direct_text, max_length)
    return reading.memory.summarize(reading.state, max_length)


def _check(max_length: int, source, memory, engine, progress, max_bytes) -> Reading:
    if not isinstance(max_length, int) or not 8 <= max_length <= 1024:
        raise MemGPTError(f"max_length must be an integer from 8 to 1024 tokens, got {max_length!r}")
    return open_document(source, "summarize", memory, engine, progress, max_bytes)
