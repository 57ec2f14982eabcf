"""The kv-memory attention function, registered in transformers' `AttentionInterface`.

Each chunk's queries attend to: the sink tokens + the local window + the session's tokens + the chunk
itself (causal), at contiguous positions from 0 (as if the window followed the sinks directly), and to
the top-k past blocks their mean query scores highest. Positions (`KVSettings.positions`):
- "contiguous" (default): sinks, the retrieved blocks in document order, the local window, the session
  and the chunk at consecutive positions from 0: the model reads a condensed document, never beyond
  sinks + k blocks + window + chunk positions (within its training);
- "fixed": InfLLM's scheme, every retrieved token at one position (the frame's start), so the order
  inside a block is lost (measured worse on the 135M backbone: see the README);
- "true": every token where it was (exact when every block is retrieved; positions beyond training).

The model passes keys and queries already rotated at its `position_ids`; they are unrotated here with
the model's own cos/sin (exact to float rounding), stored unrotated, and rotated again at the positions
above. The memory (`KVStore`) comes in as the `kv_memory` keyword, which transformers forwards from the
model's forward to every attention call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from ...errors import MemGPTError
from .store import KVStore, LayerStore

ATTENTION_NAME = "memgpt_kv"


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `x` (`[H, n, D]`) by cos/sin (`[n, D]`), as the model does."""
    return x * cos + rotate_half(x) * sin


def unrope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, scale: float) -> torch.Tensor:
    """Undo `rope` (cos/sin carry the rotary's `attention_scaling` twice over: divide it out)."""
    return (x * cos - rotate_half(x) * sin) / (scale * scale)


class Rotary:
    """cos/sin of the model's own rotary embedding at given positions (float32)."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self.scale = float(getattr(module, "attention_scaling", 1.0))

    def __call__(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probe = torch.zeros(1, dtype=torch.float32)
        cos, sin = self.module(probe, positions.reshape(1, -1).to(torch.long))
        return cos[0].float(), sin[0].float()  # [n, D]


def kv_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0, **kwargs):
    """`query` `[1, Hq, T, D]`, `key`/`value` `[1, Hkv, T, D]` (rotated at `position_ids`) ->
    (`[1, T, Hq, D]`, None). Without a `kv_memory` keyword it is plain SDPA attention."""
    store: KVStore | None = kwargs.get("kv_memory")
    if store is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    if query.shape[0] != 1:
        raise MemGPTError("the kv memory reads one sequence at a time (batch size 1)")
    rotary: Rotary = store.rotary
    cos, sin = rotary(kwargs["position_ids"])
    q = unrope(query[0].float(), cos, sin, rotary.scale)  # [Hq, T, D]
    k = unrope(key[0].float(), cos, sin, rotary.scale)  # [Hkv, T, D]
    v = value[0].float()
    out = attend(store, store.layers[module.layer_idx], module.layer_idx, q, k, v, scaling)  # [Hq, T, D]
    return out.transpose(0, 1).unsqueeze(0).to(query.dtype), None


def attend(store: KVStore, layer: LayerStore, layer_idx: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           scaling: float) -> torch.Tensor:
    """One layer's attention of a chunk over its memory; then the chunk joins the memory."""
    s = store.settings
    rotary: Rotary = store.rotary
    Hq, T, D = q.shape
    Hkv = k.shape[0]
    G = Hq // Hkv
    n_sink, n_local, n_extra = layer.sink_k.shape[1], layer.local_k.shape[1], layer.extra_k.shape[1]

    # retrieval: the mean query at the memory distance scores each block by its best representative key
    distance = n_sink + s.local_tokens
    d_cos, d_sin = rotary(torch.tensor([distance]))
    q_far = rope(q, d_cos, d_sin)  # [Hq, T, D]
    chosen: list[int] = []
    reps = layer.all_reps()
    if store.session and T == 1 and layer.session_blocks is not None and s.sticky:
        chosen = layer.session_blocks  # an answer's tokens read what its question retrieved
    elif len(reps):
        qbar = q_far.mean(1).view(Hkv, G, D)
        scores = torch.einsum("hgd,nhrd->nhgr", qbar, reps.float()).amax(-1).sum((1, 2))  # [nb]
        chosen = scores.topk(min(s.top_blocks, len(reps))).indices.sort().values.tolist()
        if store.session:
            layer.session_blocks = chosen
    if store.track and len(reps):
        store.retrieved.setdefault(layer_idx, []).append(chosen)
    B = s.block_tokens
    n_mem = len(chosen) * B

    # what the chunk sees, in order: sinks, retrieved blocks, local window, session tokens, the chunk
    if chosen:
        blocks = layer.get_blocks(chosen)  # [n, 2, Hkv, B, D]
        if not bool(torch.isfinite(blocks).all()):
            raise MemGPTError("the kv memory holds keys or values that are not finite numbers (a corrupt memory file?)")
        mem_k = blocks[:, 0].permute(1, 0, 2, 3).reshape(Hkv, n_mem, D)
        mem_v = blocks[:, 1].permute(1, 0, 2, 3).reshape(Hkv, n_mem, D)
    else:
        mem_k = mem_v = k.new_zeros(Hkv, 0, D)
    keys = torch.cat([layer.sink_k, mem_k, layer.local_k, layer.extra_k, k], 1)  # [Hkv, N, D]
    values = torch.cat([layer.sink_v, mem_v, layer.local_v, layer.extra_v, v], 1)
    rest = n_local + n_extra + T
    if s.positions == "true":  # where each token was (exact with every block retrieved; beyond training)
        mem_pos = (layer.block_pos[chosen][:, None] + torch.arange(B)).reshape(-1)
        pos = torch.cat([torch.arange(n_sink), mem_pos, layer.local_start + torch.arange(rest)])
    elif s.positions == "fixed":  # InfLLM: every retrieved token at one position, the frame's start
        pos = torch.cat([torch.arange(n_sink), torch.zeros(n_mem, dtype=torch.long), n_sink + torch.arange(rest)])
    else:  # contiguous: retrieved blocks in document order between the sinks and the local window
        pos = torch.arange(n_sink + n_mem + rest)
    cos, sin = rotary(pos)
    keys = rope(keys, cos, sin)
    q_local = rope(q, cos[-T:], sin[-T:])  # [Hq, T, D]
    mask = None
    if T > 1:  # causal within the chunk (the last T keys); everything before it is visible
        mask = torch.ones(T, keys.shape[1], dtype=torch.bool)
        mask[:, -T:] = torch.ones(T, T, dtype=torch.bool).tril()
    out = F.scaled_dot_product_attention(q_local[None], keys[None], values[None], attn_mask=mask, scale=scaling,
                                         enable_gqa=True)[0]  # [Hq, T, D] (4-D inputs take the fused CPU kernel)

    if not store.session:
        # how much the mean query attends to each local/chunk token: picks the representative keys
        local_and_chunk = torch.cat([layer.local_k, k], 1)  # [Hkv, L+T, D]
        weight = torch.softmax(torch.einsum("hgd,hnd->hgn", q_far.mean(1).view(Hkv, G, D), local_and_chunk) * scaling, -1)
        received = weight.sum((0, 1))  # [L+T]
        layer.local_score = layer.local_score + received[:n_local]
        layer.commit(k, v, received[n_local:], session=False)
    else:
        layer.commit(k, v, torch.zeros(T), session=True)
    return out


_registered = False


def register_attention() -> None:
    global _registered
    if not _registered:
        AttentionInterface.register(ATTENTION_NAME, kv_attention_forward)
        _registered = True


def rotary_of(model: torch.nn.Module) -> torch.nn.Module:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    rotary = getattr(decoder, "rotary_emb", None)
    if rotary is None or getattr(model.config.get_text_config(), "num_key_value_heads", None) is None:
        raise MemGPTError(f"the kv memory needs a RoPE (Llama-family) backbone; {model.config.model_type} is not one")
    return rotary


@contextmanager
def kv_attention(model: torch.nn.Module, store: KVStore) -> Iterator[None]:
    """Within the block, `model` attends with the kv memory `store` (passed as `kv_memory=store`)."""
    register_attention()
    store.rotary = Rotary(rotary_of(model))
    before = model.config._attn_implementation
    model.set_attn_implementation(ATTENTION_NAME)
    try:
        yield
    finally:
        model.set_attn_implementation(before)
