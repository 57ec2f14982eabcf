"""kv memory: the backbone's own keys and values of what it read, kept in blocks and retrieved by its
attention (training-free, InfLLM-style), on transformers' public extension points.

    store = KVStore.for_model(model, KVSettings())
    with kv_attention(model):
        prefill(model, store, ids)                      # chunk by chunk
        text_ids = decode(model, store, prompt_ids, 32) # KV-cached greedy decoding over the memory
"""

from .attention import ATTENTION_NAME, kv_attention, kv_attention_forward
from .runner import decode, prefill
from .store import KVSettings, KVStore

__all__ = ["ATTENTION_NAME", "KVSettings", "KVStore", "decode", "kv_attention", "kv_attention_forward", "prefill"]
