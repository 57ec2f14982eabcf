"""Text generation with memory: a thin layer over `model.generate` with the usual controls."""

from __future__ import annotations

import torch
from transformers import GenerationConfig

from .errors import MemGPTError
from .modeling_memgpt import MemGPTForCausalLM


def generate_text(
    model: MemGPTForCausalLM,
    tokenizer,
    prompt: str,
    memory_state: torch.Tensor | None = None,
    max_new_tokens: int = 100,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    stop: list[str] | None = None,
    seed: int = 0,
) -> str:
    """Continue `prompt` (greedy when `temperature` is 0); returns only the new text."""
    if max_new_tokens <= 0:
        raise MemGPTError(f"max_new_tokens must be > 0, got {max_new_tokens}")
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    if ids.shape[1] == 0:
        raise MemGPTError("the prompt is empty")
    sample = temperature > 0
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature if sample else None,
        top_k=top_k if sample and top_k else None, top_p=top_p if sample else None,
        repetition_penalty=repetition_penalty, stop_strings=stop or None,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(ids, generation_config=config, memory_state=memory_state, tokenizer=tokenizer)
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
