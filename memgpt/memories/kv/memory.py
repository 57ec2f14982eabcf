"""kv memory: the backbone's own keys and values of the document, in blocks its attention retrieves
(`memgpt.memories.kv`). Needs no training and no other model; works with RoPE (Llama-family) backbones.

The document is read inside a one-turn chat frame: system prompt + "Text: " + the document, and each
question continues it ("Question: ...", then the assistant's "Answer:"), decoded over the memory. The
answer's evidence is the document sentences under what that decoding attended to (`sentences`): the
blocks its layers retrieved, the sink tokens and the local window.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import MemGPTError
from . import KVSettings, KVStore, decode, prefill
from .file import map_tensors, save_store, store_from_tensors
from .sentences import char_ends, read_ranges, sentences_in
from ..files import FORMAT_VERSION
from ...model.engine import SYSTEM, Engine
from ...model.identity import check_fingerprint, fingerprint
from ..base import DocumentState, Evidence, Memory, clean, register, summary_words, trim_to_sentence

MARK = "\x00"
TOKEN_ENDS = "kv.token_ends"  # the document offset after each token of the store (`sentences`)


def chat_frame(engine: Engine) -> tuple[str, str]:
    """The chat text before the document and after the user's turn (up to the assistant's reply)."""
    tok = engine.tokenizer
    if getattr(tok, "chat_template", None):
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Text: {MARK}"}]
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        head, tail = text.split(MARK)
        return head, tail
    return f"{SYSTEM}\n\nText: ", "\n\n"


@register
class KVMemory(Memory):
    """The model's own keys/values of everything read; each chunk and answer token attends to sink
    tokens + the top-k blocks for its queries + a local window (see `memgpt.memories.kv`)."""

    kind = "kv"
    segment_tokens = 2048

    def __init__(self, engine: Engine, kv: KVSettings | None = None):
        super().__init__(engine)
        self.settings = kv or KVSettings()  # how a new reading is kept; a loaded one keeps its file's
        self.settings.validate()

    def new_state(self) -> DocumentState:
        state = super().new_state()
        state.info.update(self.settings.as_info())
        state.info["fingerprint"] = fingerprint(self.engine.backbone)
        state.work["store"] = KVStore.for_model(self.engine.backbone, self.settings)
        return state

    def store(self, state: DocumentState) -> KVStore:
        """The state's store (built over the memory-mapped tensors of a loaded file on first use)."""
        if "store" not in state.work:
            settings = KVSettings.from_info(state.info)
            layers = self.engine.backbone.config.get_text_config().num_hidden_layers
            state.work["store"] = store_from_tensors(state.tensors, settings, layers, "the memory file")
        return state.work["store"]

    def _update(self, state: DocumentState, segment: list[int]) -> None:
        store = self.store(state)
        ends = self.token_ends(state)
        ends += char_ends(self.engine.tokenizer, list(segment), ends[-1] if ends else 0)
        if store.tokens == 0:
            head, _ = chat_frame(self.engine)
            head_ids = self.engine.tokenizer(head, add_special_tokens=False)["input_ids"]
            ends[:0] = [0] * len(head_ids)
            segment = head_ids + list(segment)
        prefill(self.engine.backbone, store, segment)

    def token_ends(self, state: DocumentState) -> list[int]:
        """The document offset after each token read (a list, grown while reading; [] for a file without it)."""
        if "token_ends" not in state.work:
            saved = state.tensors.get(TOKEN_ENDS)
            state.work["token_ends"] = saved.tolist() if saved is not None else []
        return state.work["token_ends"]

    def context(self, state: DocumentState, query: str | None, budget: int) -> str:
        return ""  # the document lives in the keys and values, not in the prompt

    def _continue(self, state: DocumentState, user_tail: str, max_new_tokens: int, prefix: str = "Answer:") -> str:
        _, tail = chat_frame(self.engine)
        tok = self.engine.tokenizer
        ids = tok(f"{user_tail}{tail}{prefix}", add_special_tokens=False)["input_ids"]
        out = decode(self.engine.backbone, self.store(state), ids, max_new_tokens, eos=tok.eos_token_id)
        return clean(tok.decode(out, skip_special_tokens=True))

    def evidence(self, state: DocumentState, query: str | None, budget: int, max_new_tokens: int = 32) -> Evidence:
        """The answer decoded over the keys and values (`Evidence.free`), and the document sentences under
        the token ranges that decoding attended to: every block a layer retrieved, the sinks and the local
        window (none for a memory file without token offsets)."""
        store = self.store(state)
        store.track = True
        store.reset_stats()
        try:
            free = self._continue(state, f"\n\nQuestion: {query}", max_new_tokens)
            ranges = read_ranges(store)
        finally:
            store.track = False
            store.reset_stats()
        ends = self.token_ends(state)
        ids = sentences_in(state.index, ends, ranges) if state.index is not None and ends else []
        return Evidence("", state.index.spans(ids) if ids else [], source="kv-blocks", free=free)

    def summarize(self, state: DocumentState, max_length: int) -> str:
        return trim_to_sentence(self._continue(state, f"\n\nSummarize the text above in at most {summary_words(max_length)} words.",
                                               max_length, prefix=""))

    # -- memory files: written block by block, read memory-mapped ----------------------------------
    @classmethod
    def save_file(cls, path: str | Path, state: DocumentState, metadata: dict[str, str],
                  extra: dict[str, torch.Tensor]) -> Path:
        store: KVStore | None = state.work.get("store")
        if store is None:  # a loaded state never used: its store is built over its own tensors
            store = store_from_tensors(state.tensors, KVSettings.from_info(state.info), _layers(state.tensors, path), str(path))
        meta = {"format": "memgpt-memory", "format_version": FORMAT_VERSION, "kind": cls.kind, **metadata}
        ends = state.work.get("token_ends")
        ends = torch.tensor(ends, dtype=torch.int64) if ends is not None else state.tensors.get(TOKEN_ENDS)
        return save_store(path, store, meta, {**extra, **({TOKEN_ENDS: ends} if ends is not None and len(ends) else {})})

    @classmethod
    def load_tensors(cls, path: str | Path) -> dict[str, torch.Tensor]:
        return map_tensors(path)

    @classmethod
    def validate(cls, state: DocumentState, path: str | Path) -> None:
        try:
            settings = KVSettings.from_info(state.info)
        except (ValueError, MemGPTError):
            raise MemGPTError(f"{path} is a corrupt kv memory file (bad settings)") from None
        state.work["store"] = store_from_tensors(state.tensors, settings, _layers(state.tensors, path), str(path))

    def check_compatible(self, state: DocumentState, path: str | Path) -> None:
        current = fingerprint(self.engine.backbone)
        check_fingerprint(path, state.info.get("fingerprint"), current, f"{path} holds keys and values of another "
                          f"backbone (fingerprint {state.info.get('fingerprint')}, this one {current})")
        layers = self.engine.backbone.config.get_text_config().num_hidden_layers
        live = state.work.get("store")
        if (len(live.layers) if live is not None else _layers(state.tensors, path)) != layers:
            raise MemGPTError(f"{path} has {_layers(state.tensors, path)} layers of memory, this backbone {layers}")


def _layers(tensors: dict[str, torch.Tensor], path: str | Path) -> int:
    n = 0
    while f"l{n}.sink" in tensors:
        n += 1
    if n == 0:
        raise MemGPTError(f"{path} is a corrupt kv memory file (no layers)")
    return n
