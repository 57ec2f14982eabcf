"""Documents in: a string, a file path or stdin, streamed as token segments with a progress bar.

Input size is bounded up front (`max_bytes`), so a 1 GB file is refused before it is read rather
than costing hours; everything below that limit is read in chunks, never whole.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import MemGPTError
from ..model.generation import check_text
from ..io.formats import load_document
from ..io.streaming import check_path, iter_segments, iter_text, iter_tokens

DEFAULT_MAX_BYTES = 64 << 20  # ~16M tokens: hours of reading on a CPU; raise it on purpose
Source = str | Path  # str: the text itself; Path: a file; Path("-"): stdin


def describe(source: Source) -> str:
    return "stdin" if is_stdin(source) else str(source) if isinstance(source, Path) else "the text"


def is_stdin(source: Source) -> bool:
    return isinstance(source, Path) and str(source) == "-"


def text_chunks(source: Source, max_bytes: int = DEFAULT_MAX_BYTES, progress: bool = False, *,
                formats: bool = True) -> Iterator[str]:
    """UTF-8 text chunks of `source`; refuses empty, binary, invalid UTF-8 and over-long input. A file in
    a known format (PDF, HTML, ...) gives its extracted text, unless `formats` is False (a file that is
    already the text, e.g. a server's extracted copy)."""
    if isinstance(source, str):
        chunks: Iterator[str] = (source[i : i + (1 << 12)] for i in range(0, len(source), 1 << 12))
        size: int | None = len(source.encode("utf-8", errors="surrogatepass"))
        check_text(source, "the text")
        if "\x00" in source:
            raise MemGPTError("the text contains NUL characters (binary data?)")
    else:
        if not is_stdin(source):
            check_path(source)
        loaded = None if is_stdin(source) or not formats else load_document(source, max_bytes)
        if loaded is not None:  # PDF, HTML, DOCX, EPUB, Markdown: their text, checked as a string
            yield from text_chunks(loaded.text, max_bytes, progress)
            return
        size = None if is_stdin(source) else source.stat().st_size
        chunks = iter_text(source, chunk_bytes=1 << 12)  # small chunks: the bar follows the reading
    if size is not None and size > max_bytes:
        raise MemGPTError(
            f"{describe(source)} is {size / (1 << 20):.1f} MiB, over the {max_bytes / (1 << 20):.0f} MiB input limit "
            "(raise it with --max-input-mb / max_bytes=)"
        )
    bar = tqdm(total=size, unit="B", unit_scale=True, desc="reading", disable=not progress, leave=False, file=sys.stderr)
    seen = 0
    nonblank = False
    try:
        for chunk in chunks:
            n = len(chunk.encode("utf-8", errors="surrogatepass"))
            seen += n
            if seen > max_bytes:
                raise MemGPTError(f"{describe(source)} is over the {max_bytes / (1 << 20):.0f} MiB input limit "
                                  "(raise it with --max-input-mb / max_bytes=)")
            nonblank = nonblank or bool(chunk.strip())
            bar.update(n)
            yield chunk
    finally:
        bar.close()
    if not nonblank:
        raise MemGPTError(f"{describe(source)} is empty")


def token_segments(tokenizer, source: Source, segment_tokens: int, max_bytes: int = DEFAULT_MAX_BYTES,
                   progress: bool = False, on_text: Callable[[str], None] | None = None, *,
                   formats: bool = True) -> Iterator[list[int]]:
    """Token-id segments of exactly `segment_tokens` (the last may be shorter), streamed; `on_text`
    sees every text chunk (in order) before it is tokenized; `formats` as in `text_chunks`."""
    chunks = text_chunks(source, max_bytes, progress, formats=formats)
    if on_text is not None:
        chunks = _tapped(chunks, on_text)
    pieces = iter_tokens(tokenizer, chunks)
    return iter_segments(_without_bos(pieces, tokenizer), segment_tokens)


def _tapped(chunks: Iterator[str], on_text: Callable[[str], None]) -> Iterator[str]:
    for chunk in chunks:
        on_text(chunk)
        yield chunk


def _without_bos(pieces: Iterator[list[int]], tokenizer) -> Iterator[list[int]]:
    bos = tokenizer.bos_token_id
    first = True
    for piece in pieces:
        if first and bos is not None and piece[:1] == [bos]:
            piece = piece[1:]
        first = False
        yield piece
