"""Streaming ingestion: text of any length -> tokens -> segments, in bounded space.

Text is read in chunks, checked as UTF-8 incrementally, tokenized piece by piece (cut at
whitespace so no token straddles a cut) and regrouped into segments; only one chunk of text and
one segment of tokens are ever held. `apps.reading` feeds the segments to a memory.
"""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from ..errors import MemGPTError

CHUNK_BYTES = 1 << 16


def check_path(path: Path) -> None:
    """Refuse a missing path or a directory before anything else happens."""
    try:
        os.fsencode(path)
    except (UnicodeEncodeError, ValueError):
        raise MemGPTError(f"{str(path)!r} is not a usable file name") from None
    if "\x00" in str(path):
        raise MemGPTError(f"{str(path)!r} is not a usable file name (NUL byte)")
    if not os.path.exists(path):
        raise MemGPTError(f"{path} does not exist")
    if os.path.isdir(path):
        raise MemGPTError(f"{path} is a directory, not a text file")


def iter_text(source: str | Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """Decoded text chunks of a file path, `-` (stdin); refuse binary or invalid UTF-8 clearly."""
    path = Path(source)
    if str(source) == "-":
        stream, name = sys.stdin.buffer, "stdin"
    else:
        check_path(path)
        try:
            stream, name = open(path, "rb"), str(path)
        except OSError as e:
            raise MemGPTError(f"cannot read {path}: {e.strerror}") from None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    offset = 0
    try:
        while True:
            try:
                raw = stream.read(chunk_bytes)
            except OSError as e:
                raise MemGPTError(f"cannot read {name}: {e.strerror or e}") from None
            if b"\x00" in raw:
                raise MemGPTError(f"{name} looks like a binary file (NUL byte near byte {offset + raw.index(0)})")
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as e:
                raise MemGPTError(f"{name} is not valid UTF-8 (byte {offset + e.start})") from None
            offset += len(raw)
            if text:
                yield text
            if not raw:
                return
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def iter_tokens(tokenizer, chunks: Iterator[str]) -> Iterator[list[int]]:
    """Token ids of the concatenated chunks, piece by piece (cut at the last whitespace)."""
    carry = ""
    first = True
    for chunk in chunks:
        text = carry + chunk
        cut = max(text.rfind(" "), text.rfind("\n"))
        if cut <= 0:
            carry = text
            if len(carry) < 1 << 20:  # a huge run without whitespace is tokenized as it is
                continue
            cut = len(text)
        piece, carry = text[:cut], text[cut:]
        yield tokenizer(piece, add_special_tokens=first)["input_ids"]
        first = False
    if carry:
        yield tokenizer(carry, add_special_tokens=first)["input_ids"]


def iter_segments(token_pieces: Iterator[list[int]], segment_size: int) -> Iterator[list[int]]:
    """Regroup token pieces into segments of exactly `segment_size` (the last may be shorter)."""
    buffer: list[int] = []
    for piece in token_pieces:
        buffer.extend(piece)
        while len(buffer) >= segment_size:
            yield buffer[:segment_size]
            buffer = buffer[segment_size:]
    if buffer:
        yield buffer
