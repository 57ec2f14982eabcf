"""generate: long text (stories, poems, code) from a prompt, past the window, with memory.

The output is produced in chunks. Each chunk is conditioned on the prompt, the memory of what was
written so far, and the most recent output (a sliding window):
- "text": running notes of the output so far, rewritten by the model (names, places, plot);
- "none": the sliding window only (a baseline: what was written before it is forgotten);
- "latent": the model's memory vectors (`MemGPTForCausalLM.generate` folds full segments into memory);
- "kv": one KV-cached decoding over the kv memory (`memgpt.memories.kv`): every token written stays in memory
  and later tokens attend to sinks + the blocks they retrieve + a local window.
"""

from __future__ import annotations

from collections.abc import Callable

from tqdm.auto import tqdm

from ..errors import MemGPTError
from ..model.generation import check_generation_options, check_text
from ..model.engine import Engine, get_engine
from ..memories.base import clean, make_memory
from ..memories.kv.store import KVSettings
from ..memories.text import notes_of

CHUNK_TOKENS = 256
RECENT_TOKENS = 768
NOTES_EVERY = 1024  # output tokens between two updates of the notes
KINDS = ("text", "none", "latent", "kv")  # the memory kinds generate writes with (see above)


def generate(prompt: str, max_new_tokens: int = 1000, *, memory: str = "text", engine: Engine | None = None,
             temperature: float = 0.8, top_k: int = 0, top_p: float = 0.95, repetition_penalty: float = 1.1,
             seed: int = 0, progress: bool = False, on_text: Callable[[str], None] | None = None,
             kv: KVSettings | None = None) -> str:
    """Write up to `max_new_tokens` tokens continuing `prompt`; `on_text` receives each new chunk; `kv`:
    the kv memory's settings (with `memory="kv"` only; default `KVSettings()`)."""
    check_text(prompt, "the prompt")
    if not prompt.strip():
        raise MemGPTError("the prompt is empty")
    if not isinstance(max_new_tokens, int):
        raise MemGPTError(f"max_new_tokens must be an integer, got {max_new_tokens!r}")
    check_generation_options(max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed)
    if memory not in KINDS:
        raise MemGPTError(f"generate supports memory {', '.join(KINDS)}, not {memory!r}")
    if kv is not None and memory != "kv":
        raise MemGPTError(f"kv settings go with the kv memory, not {memory!r}")
    engine = engine or get_engine()
    prompt = engine.clip(prompt, engine.window // 4)
    sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty)
    if memory == "latent":  # one call: the text arrives whole, so a streaming caller gets it at once
        text = _latent(engine, prompt, max_new_tokens, seed, sampling)
        if on_text:
            on_text(text)
        return text
    if memory == "kv":
        return _kv(engine, prompt, max_new_tokens, seed, sampling, on_text, kv or KVSettings())
    notes_memory = make_memory("text", engine)
    state = notes_memory.new_state()
    out_ids: list[int] = []
    since_notes: list[int] = []
    bar = tqdm(total=max_new_tokens, unit="tok", desc="writing", disable=not progress, leave=False)
    step = 0
    while len(out_ids) < max_new_tokens:
        n = min(CHUNK_TOKENS, max_new_tokens - len(out_ids))
        notes = notes_of(state) if memory == "text" else ""
        user = prompt if not notes else f"{prompt}\n\n(Notes on what you have written so far:\n{notes})"
        recent = engine.tokenizer.decode(out_ids[-RECENT_TOKENS:], skip_special_tokens=True)
        ids = engine.chat_ids(user, system="You are a creative, coherent writer.", prefix=recent)
        new = _complete_ids(engine, ids, n, seed + step, sampling)
        step += 1
        if not new:
            break
        out_ids += new
        since_notes += new
        bar.update(len(new))
        if on_text:
            on_text(engine.tokenizer.decode(new, skip_special_tokens=True))
        if memory == "text" and len(since_notes) >= NOTES_EVERY:
            notes_memory.update(state, since_notes)
            since_notes = []
    bar.close()
    return clean(engine.tokenizer.decode(out_ids, skip_special_tokens=True))


def _complete_ids(engine: Engine, ids: list[int], n: int, seed: int, sampling: dict) -> list[int]:
    """Exactly `n` new tokens (end-of-text suppressed: the caller asked for a length)."""
    return engine.generate_ids(ids, n, min_new_tokens=n, seed=seed, **sampling)


def _latent(engine: Engine, prompt: str, max_new_tokens: int, seed: int, sampling: dict) -> str:
    from ..model.generation import generate_text
    from ..memories.latent import latent_model

    text = engine.tokenizer.decode(engine.chat_ids(prompt, system="You are a creative, coherent writer."))
    return clean(generate_text(latent_model(engine), engine.tokenizer, text, max_new_tokens=max_new_tokens,
                               seed=seed, **sampling))


def _kv(engine: Engine, prompt: str, max_new_tokens: int, seed: int, sampling: dict,
        on_text: Callable[[str], None] | None, kv: KVSettings) -> str:
    from ..memories.kv import KVStore, decode
    from ..model.generation import sampler, sampling_config

    ids = engine.chat_ids(prompt, system="You are a creative, coherent writer.")
    store = KVStore.for_model(engine.backbone, kv)
    sent = ""

    def stream(out: list[int]) -> None:  # new text every 16 tokens (a multi-byte character may span tokens)
        nonlocal sent
        if on_text and (len(out) % 16 == 0 or len(out) == max_new_tokens):
            text = clean(engine.tokenizer.decode(out, skip_special_tokens=True))
            if text.startswith(sent) and len(text) > len(sent):
                on_text(text[len(sent) :])
                sent = text

    out = decode(engine.backbone, store, ids, max_new_tokens, eos=None, session=False,
                 pick=sampler(sampling_config(engine.tokenizer, max_new_tokens, **sampling), seed), on_token=stream)
    return clean(engine.tokenizer.decode(out, skip_special_tokens=True))
