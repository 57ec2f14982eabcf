"""Markdown (markdown-it-py): the text as written (offsets into the file), headings as the map."""

from __future__ import annotations

from pathlib import Path

from ...errors import MemGPTError
from .sourcemap import Heading, Loaded, SourceMap


def load(path: Path, max_bytes: int) -> Loaded:
    from markdown_it import MarkdownIt

    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise MemGPTError(f"{path} is not valid UTF-8 (byte {e.start})") from None
    line_starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            line_starts.append(i + 1)
    tokens = MarkdownIt("commonmark").parse(text)
    headings = []
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.map:
            title = tokens[i + 1].content.strip()
            line = text[line_starts[token.map[0]]:]
            headings.append(Heading(line_starts[token.map[0]] + max(0, line.find(title)), int(token.tag[1]), title))
    return Loaded(text, SourceMap("markdown", [], headings))
