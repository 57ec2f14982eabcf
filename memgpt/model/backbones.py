"""Backbones: small named configs for training from scratch (GPT-2 or Llama style)."""

from __future__ import annotations

from transformers import GPT2Config, LlamaConfig, PreTrainedConfig

from .configuration_memgpt import MEMORY_DEFAULTS, MemGPTConfig, check_memory_settings
from ..errors import MemGPTError

# name -> (layers, hidden, heads, ffn)
SIZES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (2, 32, 2, 64),
    "copy": (4, 128, 4, 256),  # RMT copy protocol
    "recall": (6, 64, 4, 256),  # RMT associative retrieval protocol
    "small": (6, 128, 4, 512),
    "base": (8, 256, 8, 1024),
}
ARCHITECTURES = ("gpt2", "llama")


def backbone_config(
    size: str = "tiny", arch: str = "gpt2", vocab_size: int = 99, max_positions: int = 512
) -> PreTrainedConfig:
    """A fresh backbone config of a named size, for training from scratch."""
    if size not in SIZES:
        raise MemGPTError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
    if vocab_size <= 0:
        raise MemGPTError(f"vocab_size must be > 0, got {vocab_size}")
    layers, hidden, heads, ffn = SIZES[size]
    if arch == "gpt2":
        return GPT2Config(
            n_layer=layers, n_embd=hidden, n_head=heads, n_inner=ffn, vocab_size=vocab_size,
            n_positions=max_positions, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            bos_token_id=None, eos_token_id=None, tie_word_embeddings=True,
        )
    if arch == "llama":
        return LlamaConfig(
            num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
            num_key_value_heads=heads, intermediate_size=ffn, vocab_size=vocab_size,
            max_position_embeddings=max_positions, bos_token_id=None, eos_token_id=None,
            pad_token_id=None, tie_word_embeddings=True,
        )
    raise MemGPTError(f"unknown backbone architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def memgpt_config(size: str = "tiny", arch: str = "gpt2", vocab_size: int = 99, **memory_options) -> MemGPTConfig:
    """A `MemGPTConfig` around a named fresh backbone, sized so the memory window fits.
    `memory_options`: any memory settings of `MemGPTConfig` (`MEMORY_FIELDS`)."""
    check_memory_settings(memory_options)
    settings = MEMORY_DEFAULTS | memory_options
    window = settings["segment_size"] + 2 * settings["num_mem_tokens"]
    max_positions = max(64, 1 << max(window - 1, 1).bit_length())
    return MemGPTConfig(text_config=backbone_config(size, arch, vocab_size, max_positions), **settings)
