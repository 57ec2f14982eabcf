"""Applications on long documents with the packaged default model, offline: summarize, ask,
generate, read once into a memory file and answer later, encode text into vectors and decode it."""

from .ask import ask
from .compress import decode, encode
from .documents import Source
from ..model.engine import Engine, get_engine
from .longform import generate
from ..memories.base import KINDS, Answer, DocumentState, load_state, make_memory, save_state
from .reading import DEFAULT_KIND, read, write_memory_file
from ..io.spans import Span
from .summarize import Summary, summarize

__all__ = [
    "DEFAULT_KIND", "KINDS", "Answer", "Engine", "DocumentState", "Source", "Span", "Summary", "ask", "decode", "encode", "generate", "get_engine", "load_state",
    "make_memory", "read", "save_state", "summarize", "write_memory_file",
]
