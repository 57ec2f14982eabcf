"""Reading into a kv memory chunk by chunk, and decoding over it (KV-cached: each new token attends to
the memory, and joins it)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .attention import kv_attention
from .store import KVStore


def _positions(n: int) -> torch.Tensor:
    # the attention function assigns positions itself; the model's rotation is undone exactly at 0
    return torch.zeros(1, n, dtype=torch.long)


@torch.inference_mode()
def prefill(model, store: KVStore, ids: list[int]) -> None:
    """Read token ids into `store`, `chunk_tokens` at a time (the decoder only: no logits)."""
    decoder = model.get_decoder()
    step = store.settings.chunk_tokens
    with kv_attention(model, store):
        for start in range(0, len(ids), step):
            chunk = torch.tensor([ids[start : start + step]])
            decoder(input_ids=chunk, position_ids=_positions(chunk.shape[1]), use_cache=False, kv_memory=store)


@torch.inference_mode()
def decode(model, store: KVStore, prompt: list[int], max_new_tokens: int, eos: int | list[int] | None = None,
           session: bool = True, pick: Callable[[torch.Tensor, list[int]], int] | None = None,
           on_token: Callable[[list[int]], None] | None = None) -> list[int]:
    """Feed `prompt` after what `store` holds, then generate up to `max_new_tokens` ids (greedy unless
    `pick(logits, ids so far)` chooses; `on_token(output so far)` after each). `session=True` leaves the memory as it was afterwards (answering
    many questions from one reading); False keeps prompt and output in memory (long generation)."""
    eos_ids = set([eos] if isinstance(eos, int) else eos or [])
    pick = pick or (lambda logits, _: int(logits.argmax()))
    store.session = session
    out: list[int] = []
    try:
        with kv_attention(model, store):
            step = store.settings.chunk_tokens
            logits = None
            for start in range(0, len(prompt), step):
                chunk = torch.tensor([prompt[start : start + step]])
                logits = model(input_ids=chunk, position_ids=_positions(chunk.shape[1]), use_cache=False,
                               kv_memory=store, logits_to_keep=1).logits[0, -1]
            for _ in range(max_new_tokens):
                token = pick(logits.float(), prompt + out)
                out.append(token)
                if on_token:
                    on_token(out)
                if token in eos_ids or len(out) == max_new_tokens:
                    break
                logits = model(input_ids=torch.tensor([[token]]), position_ids=_positions(1), use_cache=False,
                               kv_memory=store, logits_to_keep=1).logits[0, -1]
    finally:
        if session:
            store.end_session()
    return out
