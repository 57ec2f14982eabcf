"""Reading a document into a memory state once, and resolving what an app was given: a string,
a file, stdin, a memory file or a state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..memories import files as memory_file
from ..errors import MemGPTError
from .documents import DEFAULT_MAX_BYTES, Source, token_segments
from ..model.engine import Engine, get_engine
from ..memories.base import ANSWER_RESERVE, Memory, DocumentState, load_state, make_memory
from ..io.formats import load_document
from ..io.spans import SentenceSplitter
from ..io.streaming import check_path
from ..memories.kv.store import KVSettings

# Each app's default memory kind, chosen by benchmarks/apps.py (see the README's results). summarize reads
# with retrieval memory for its sentence embeddings: the grounded summary is made from them.
DEFAULT_KIND = {"summarize": "retrieval", "ask": "retrieval", "read": "retrieval", "generate": "text"}
MEMORY_SUFFIXES = (".mem", ".safetensors")


@dataclass
class Reading:
    """A document as an app sees it: a memory state, or (when it fits the window) its full text."""

    memory: Memory
    state: DocumentState
    direct_text: str | None = None  # the whole document, when it fits in one window

    @property
    def kind(self) -> str:
        return "direct" if self.direct_text is not None else self.state.kind


def read(source: Source, memory: str | None = None, engine: Engine | None = None, progress: bool = False,
         max_bytes: int = DEFAULT_MAX_BYTES, *, kv: KVSettings | None = None) -> DocumentState:
    """Read a document (str: the text; Path: a file, Path("-"): stdin) into a memory state; `kv`: the
    kv memory's settings (with `memory="kv"` only)."""
    return _read(source, memory or DEFAULT_KIND["read"], engine or get_engine(), progress, max_bytes, direct=False,
                 kv=kv).state


def open_document(source: Source | DocumentState, app: str, memory: str | None, engine: Engine | None,
                  progress: bool, max_bytes: int, *, kv: KVSettings | None = None) -> Reading:
    """What `app` answers from: a loaded memory file or state as it is, else the document read once
    (kept whole instead when it fits the window, where any memory would only lose information); `kv`
    as in `read`."""
    engine = engine or get_engine()
    if isinstance(source, DocumentState) or is_memory_file(source):
        state = source if isinstance(source, DocumentState) else load_state(source, engine)
        if memory and memory != state.kind:
            raise MemGPTError(f"the memory file holds a {state.kind!r} memory, not {memory!r}")
        reader = make_memory(state.kind, engine)
        reader.check_compatible(state, source if not isinstance(source, DocumentState) else "the state")
        return Reading(reader, state)
    return _read(source, memory or DEFAULT_KIND[app], engine, progress, max_bytes, direct=True, kv=kv)


def is_memory_file(source: object) -> bool:
    """A path to a memory file (by suffix; the content is checked when it is loaded)."""
    return isinstance(source, Path) and source.suffix in MEMORY_SUFFIXES and str(source) != "-"


def _read(source: Source, kind: str, engine: Engine, progress: bool, max_bytes: int, direct: bool,
          kv: KVSettings | None) -> Reading:
    reader = make_memory(kind, engine, kv=kv)
    state = reader.new_state()
    splitter = SentenceSplitter()
    state.work["indexed"] = True  # the index follows the original text (memories need not split decoded tokens)
    if isinstance(source, Path) and str(source) != "-":
        check_path(source)
        loaded = load_document(source, max_bytes)
        if loaded is not None:  # a formatted document: read its extracted text, cite its pages and headings
            source = loaded.text
            state.index.source = loaded.map

    def index(chunk: str) -> None:
        state.index.add(splitter.feed(chunk))

    capacity = engine.window - ANSWER_RESERVE - 256 if direct else 0
    held: list[list[int]] = []  # segments kept while the document might still fit in one window
    held_tokens = 0
    for segment in token_segments(engine.tokenizer, source, reader.segment_tokens, max_bytes, progress, index):
        if held is not None and held_tokens + len(segment) <= capacity:
            held.append(segment)
            held_tokens += len(segment)
            continue
        for earlier in held or ():
            reader.update(state, earlier)
        held = None
        reader.update(state, segment)
    state.index.add(splitter.close())
    if held is not None:
        text = engine.tokenizer.decode([t for s in held for t in s], skip_special_tokens=True)
        state.tokens_read = held_tokens
        return Reading(reader, state, direct_text=text)
    return Reading(reader, reader.finish(state))


def write_memory_file(path: str | Path, state: DocumentState) -> Path:
    """Save a state; refuse to overwrite a file that is not a memgpt memory file."""
    from ..memories.base import save_state

    path = Path(path)
    if path.suffix not in MEMORY_SUFFIXES:
        raise MemGPTError(f"a memory file should end in .mem or .safetensors, got {path.name!r}")
    if path.exists() and not path.is_dir():
        try:
            memory_file.read_state_file(path)
        except MemGPTError:
            raise MemGPTError(f"{path} exists and is not a memgpt memory file; refusing to overwrite it") from None
    return save_state(path, state)
