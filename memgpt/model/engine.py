"""The engine an app runs on: one loaded backbone + tokenizer (shared per process), and chat.

Apps work in a *window* of `window` tokens: every prompt the backbone sees is at most that long,
whatever the memory kind, so the kinds and the truncation baselines are compared on equal terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteriaList

from ..errors import MemGPTError
from .cancel import watch
from .generation import sampling_config
from .hardware import DTYPES, resolve_dtype
from .stops import StopText

DEFAULT_WINDOW = 2048
SYSTEM = "You are a careful assistant. Answer only from the text you are given."


@dataclass
class Engine:
    """A loaded backbone, its tokenizer, and the lazily built parts some memory kinds need."""

    name: str
    backbone: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    window: int = DEFAULT_WINDOW
    extras: dict[str, Any] = field(default_factory=dict)  # latent model, sentence encoder, ...

    def __post_init__(self) -> None:
        watch(self.backbone)  # work under memgpt.model.cancel.cancellable stops at its next forward pass

    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.dtype

    @property
    def dtype_name(self) -> str:
        return "bf16" if self.backbone.dtype == torch.bfloat16 else "fp32"

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def clip(self, text: str, max_tokens: int, keep: str = "first") -> str:
        """`text` cut to at most `max_tokens` tokens, keeping its start or its end."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= max_tokens:
            return text
        ids = ids[:max_tokens] if keep == "first" else ids[len(ids) - max_tokens :]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def chat_ids(self, user: str, system: str = SYSTEM, prefix: str = "") -> list[int]:
        """Token ids of a one-turn chat prompt (the system prompt is always explicit: SmolLM2's
        template would otherwise inject its own); `prefix` starts the assistant's reply."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:  # a base model: a plain-text frame
            text = f"{system}\n\n{user}\n\nAnswer:"
        return self.tokenizer(text + prefix, add_special_tokens=False)["input_ids"]

    @torch.inference_mode()
    def generate_ids(self, ids: list[int], max_new_tokens: int, *, streamer: Any = None, stopping_criteria: Any = None,
                     logits_processor: Any = None, stop_strings: list[str] | None = None, min_new_tokens: int = 0,
                     **sampling: Any) -> list[int]:
        """New token ids continuing `ids` (greedy unless `temperature` > 0; at least `min_new_tokens`, the
        end of text suppressed until then). `streamer`, `stopping_criteria` and `logits_processor` go to
        `generate` as they are (the server streams and cancels through them); `stop_strings` (bounded:
        memgpt.model.stops) end generation once the new text holds one, checked on its decoded tail."""
        if len(ids) + max_new_tokens > self.max_positions:
            raise MemGPTError(f"prompt of {len(ids)} tokens + {max_new_tokens} new exceeds the model's {self.max_positions}")
        if stop_strings:
            stop = StopText(self.tokenizer, len(ids), stop_strings)  # a MemGPTError when too many or too long
            stopping_criteria = StoppingCriteriaList([*(stopping_criteria or []), stop])
        config = sampling_config(
            self.tokenizer, max_new_tokens, float(sampling.pop("temperature", 0.0) or 0.0), sampling.pop("top_k", 0) or 0,
            sampling.pop("top_p", 1.0), sampling.pop("repetition_penalty", 1.0),
            **({"min_new_tokens": min_new_tokens} if min_new_tokens else {}),
        )
        seed = sampling.pop("seed", 0)
        if sampling:
            raise MemGPTError(f"unknown generation options: {', '.join(sorted(sampling))}")
        torch.manual_seed(seed)
        input_ids = torch.tensor([ids])
        out = self.backbone.generate(input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config,
                                     streamer=streamer, stopping_criteria=stopping_criteria,
                                     logits_processor=logits_processor)
        return out[0, len(ids) :].tolist()

    def complete(self, ids: list[int], max_new_tokens: int, **sampling: Any) -> str:
        """Continue token ids (greedy unless `temperature` > 0); returns the new text only."""
        return self.tokenizer.decode(self.generate_ids(ids, max_new_tokens, **sampling), skip_special_tokens=True).strip()

    def chat(self, user: str, max_new_tokens: int, system: str = SYSTEM, prefix: str = "", **sampling: Any) -> str:
        return self.complete(self.chat_ids(user, system, prefix), max_new_tokens, **sampling)

    @property
    def max_positions(self) -> int:
        return int(getattr(self.backbone.config, "max_position_embeddings", 1 << 30))


_ENGINES: dict[tuple[str, str, int], Engine] = {}


def get_engine(model: str = "default", dtype: str = "auto", window: int = DEFAULT_WINDOW) -> Engine:
    """The shared engine for a model name (loaded once per process). `dtype`: "auto" (bf16 where the
    hardware runs it natively, else fp32: `memgpt.model.hardware`), "bf16" or "fp32"."""
    from .pretrained import load_backbone

    dtype = resolve_dtype(dtype)
    if window < 256:
        raise MemGPTError(f"window must be at least 256 tokens, got {window}")
    key = (model, dtype, window)
    if key not in _ENGINES:
        backbone, tokenizer = load_backbone(model, dtype=DTYPES[dtype])
        max_pos = int(getattr(backbone.config, "max_position_embeddings", window))
        _ENGINES[key] = Engine(name=model, backbone=backbone, tokenizer=tokenizer, window=min(window, max_pos))
    return _ENGINES[key]
