"""Configuration of the memory-augmented GPT: a backbone config plus the memory's settings.

`MemGPTConfig` is the one place the memory settings are declared and checked: `MEMORY_FIELDS` lists
them, and training options, `memgpt_config` and `from_backbone` take them from here.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .associative_memory import feature_size
from ..errors import MemGPTError

MEMORY_UPDATES = ("replace", "residual", "gated")


class MemGPTConfig(PreTrainedConfig):
    """Config of [`MemGPTForCausalLM`].

    Args:
        text_config: config of the backbone causal LM (any `AutoModelForCausalLM` architecture).
        num_mem_tokens: M, the number of memory vectors read before and written after each segment.
        segment_size: S, the number of input tokens per segment.
        bptt_depth: gradients flow back through at most this many segments (-1: all of them).
        memory_update: "replace" (RMT: the write slots' states are the new memory) or "residual"
            (they are added to the old memory, so keeping what is stored is the default) or "gated"
            (a learned per-dimension gate mixes them with the old memory, GRU-style: each slot can keep
            what it holds or be overwritten).
        memory_norm: RMS-normalise memory to the token embeddings' scale (times a learned gain)
            before the backbone reads it; off feeds the write slots' states back as they are (RMT).
        associative_heads: > 0 adds an associative memory to every layer (ARMT/DeltaNet style): a
            key -> value matrix per head that each segment's tokens write with the delta rule and the
            next segment's tokens read. It rides in `MemoryState.associative`.
        associative_size: the key (and value) size of each associative head.
        associative_conv: how many positions (the token and those just before it) the short causal
            convolution before the associative keys, values and queries spans.
        associative_features: the feature map of the associative keys and queries: "plain" (unit
            keys), "outer" (`k (x) k`: keys with cosine c overlap by c^2, so many more pairs fit
            before they overwrite each other) or "dpfp-N" (ARMT's DPFP of order N, 1-8).
        associative_layers: the associative memory is on the first this many decoder layers (0: on
            every layer). Recall is keyed by the token embeddings at layer 0: on that layer alone a
            step costs 2.5x less (4 layers) and recall held up better at 4x the trained length.
    """

    model_type = "memgpt"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="gpt2")}

    text_config: PreTrainedConfig | dict | None = None
    num_mem_tokens: int = 8
    segment_size: int = 64
    bptt_depth: int = -1
    memory_update: str = "replace"
    memory_norm: bool = True
    associative_heads: int = 0
    associative_size: int = 32
    associative_conv: int = 4
    associative_features: str = "plain"
    associative_layers: int = 0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_memory_settings(memory_settings(self), self.text_config)

    @property
    def hidden_size(self) -> int:
        return self.text_config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.text_config.vocab_size


# the memory settings: every field MemGPTConfig declares besides the backbone's config
MEMORY_FIELDS: tuple[str, ...] = tuple(name for name in MemGPTConfig.__annotations__ if name != "text_config")
MEMORY_DEFAULTS: dict[str, Any] = {name: getattr(MemGPTConfig, name) for name in MEMORY_FIELDS}


def memory_settings(source: object) -> dict[str, Any]:
    """The memory settings of a config, training options or anything else with those attributes."""
    return {name: getattr(source, name) for name in MEMORY_FIELDS}


def check_memory_settings(settings: dict[str, Any], text_config: PreTrainedConfig | None = None) -> None:
    """Raise a `MemGPTError` when memory `settings` (some or all of `MEMORY_FIELDS`) are unknown or cannot
    work, or, given `text_config`, do not fit that backbone (a config would silently keep a misspelt one)."""
    unknown = sorted(set(settings) - set(MEMORY_FIELDS))
    if unknown:
        raise MemGPTError(f"unknown memory settings: {', '.join(unknown)} (known: {', '.join(MEMORY_FIELDS)})")
    s = MEMORY_DEFAULTS | settings
    for name, default in MEMORY_DEFAULTS.items():
        if type(s[name]) is not type(default):  # (a bool is not an integer here)
            kind = {int: "an integer", bool: "true or false", str: "a string"}[type(default)]
            raise MemGPTError(f"{name} must be {kind}, got {s[name]!r}")
    if s["segment_size"] <= 0:
        raise MemGPTError(f"segment_size must be > 0, got {s['segment_size']}")
    if s["num_mem_tokens"] < 0:
        raise MemGPTError(f"num_mem_tokens must be >= 0, got {s['num_mem_tokens']}")
    if not 0 <= s["associative_heads"] <= 1024 or not 0 < s["associative_size"] <= 4096:
        raise MemGPTError(
            f"associative_heads must be 0 to 1024 and associative_size 1 to 4096, got "
            f"{s['associative_heads']} and {s['associative_size']}"
        )
    try:
        features = feature_size(s["associative_features"], s["associative_size"])
    except ValueError as e:
        raise MemGPTError(f"associative_features {e}") from None
    if s["associative_heads"] * features * s["associative_size"] > 1 << 24:
        raise MemGPTError(
            f"an associative memory of {s['associative_heads']} x {features} x {s['associative_size']} numbers "
            f"per layer and sequence is too large (at most {1 << 24})"
        )
    layers = getattr(text_config, "num_hidden_layers", None)
    if s["associative_layers"] < 0 or (layers is not None and s["associative_layers"] > layers):
        raise MemGPTError(f"associative_layers must be 0 (every layer) to {layers}, got {s['associative_layers']}")
    if not 0 < s["associative_conv"] <= 64:
        raise MemGPTError(f"associative_conv must be 1 to 64 positions, got {s['associative_conv']}")
    if s["bptt_depth"] == 0 or s["bptt_depth"] < -1:
        raise MemGPTError(f"bptt_depth must be -1 (no truncation) or > 0, got {s['bptt_depth']}")
    if s["memory_update"] not in MEMORY_UPDATES:
        raise MemGPTError(f"memory_update must be one of {', '.join(MEMORY_UPDATES)}, got {s['memory_update']!r}")
    window = s["segment_size"] + 2 * s["num_mem_tokens"]
    max_positions = getattr(text_config, "max_position_embeddings", None)
    if max_positions is not None and window > max_positions:
        raise MemGPTError(
            f"segment_size + 2*num_mem_tokens = {window} exceeds the backbone's {max_positions} positions"
        )
