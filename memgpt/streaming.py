"""Streaming ingestion: text of any length -> tokens -> segments -> memory, in bounded space.

Text is read in chunks, checked as UTF-8 incrementally, tokenized piece by piece (cut at
whitespace so no token straddles a cut), and fed to the model one segment at a time; only one
chunk of text, one segment of tokens and one window of activations are ever held.
"""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .errors import MemGPTError
from .modeling_memgpt import MemGPTForCausalLM

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


@dataclass
class ReadResult:
    memory_state: torch.Tensor  # [1, M, d]
    tokens_read: int
    segments: int


@torch.inference_mode()
def read_text(
    model: MemGPTForCausalLM,
    tokenizer,
    source: str | Path,
    memory_state: torch.Tensor | None = None,
    progress: bool = False,
    is_text: bool = False,
) -> ReadResult:
    """Read a file, `-` or (with `is_text`) a string into memory, segment by segment."""
    if is_text:
        try:
            str(source).encode("utf-8")
        except UnicodeEncodeError as e:
            raise MemGPTError(f"the text is not valid Unicode (character {e.start})") from None
    elif str(source) != "-":
        check_path(Path(source))
    chunks = iter([str(source)]) if is_text else iter_text(source)
    memory = model.init_memory(1) if memory_state is None else memory_state
    embed = model.get_input_embeddings()
    total = segments = 0
    size = None if is_text or not os.path.isfile(source) else Path(source).stat().st_size
    bar = tqdm(total=size, unit="B", unit_scale=True, desc="reading", disable=not progress, leave=False)
    try:
        for seg in iter_segments(iter_tokens(tokenizer, _counting(chunks, bar)), model.config.segment_size):
            ids = torch.tensor([seg], device=memory.device)
            _, memory = model.memory_step(embed(ids), torch.ones_like(ids), memory)
            total += len(seg)
            segments += 1
    finally:
        bar.close()
    if total == 0:
        raise MemGPTError("the input is empty")
    return ReadResult(memory_state=memory, tokens_read=total, segments=segments)


def _counting(chunks: Iterator[str], bar) -> Iterator[str]:
    for chunk in chunks:
        bar.update(len(chunk.encode("utf-8")))
        yield chunk
