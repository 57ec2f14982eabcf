"""Memory kinds behind one interface (`base.Memory`): text notes, a window, sentence retrieval, the
latent memory of the model, and the backbone's own keys/values (kv). Importing the package registers
every kind in `KINDS`; memory files (`files`) hold any kind's state."""

from . import latent, retrieval, text, window
from .base import KINDS, Answer, DocumentState, Memory, load_state, make_memory, save_state
from .kv import memory as kv

__all__ = ["KINDS", "Answer", "DocumentState", "Memory", "kv", "latent", "load_state", "make_memory", "retrieval", "save_state", "text", "window"]
