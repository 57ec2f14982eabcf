"""Text generation with memory: a thin layer over `model.generate` with the usual controls."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from transformers import (GenerationConfig, LogitsProcessorList, PreTrainedTokenizerBase, RepetitionPenaltyLogitsProcessor,
                          StoppingCriteriaList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

from ..errors import MemGPTError
from .modeling_memgpt import MemGPTForCausalLM
from .stops import StopText, check_stops


def check_text(text: str, what: str) -> None:
    """Refuse strings that are not valid Unicode text (lone surrogates, from undecodable bytes)."""
    if not isinstance(text, str):
        raise MemGPTError(f"{what} must be text, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise MemGPTError(f"{what} is not valid Unicode text (character {e.start})") from None


def check_generation_options(
    max_new_tokens: int, temperature: float, top_k: int, top_p: float, repetition_penalty: float, seed: int
) -> None:
    """Refuse sampling options that cannot work, before any model runs."""
    if not 0 < max_new_tokens <= 1_000_000:
        raise MemGPTError(f"max_new_tokens must be in 1..1000000, got {max_new_tokens}")
    # beyond these bounds the sampler divides logits into inf/NaN
    if not (temperature == 0 or 0.01 <= temperature <= 100):
        raise MemGPTError(f"temperature must be 0 (greedy) or from 0.01 to 100, got {temperature}")
    if top_k < 0:
        raise MemGPTError(f"top_k must be >= 0 (0: off), got {top_k}")
    if not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise MemGPTError(f"top_p must be in (0, 1], got {top_p}")
    if not 0.01 <= repetition_penalty <= 100:
        raise MemGPTError(f"repetition_penalty must be from 0.01 to 100, got {repetition_penalty}")
    if not 0 <= seed < 2**63:
        raise MemGPTError(f"seed must be in 0..2^63-1, got {seed}")


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The pad id of generation: the tokenizer's own, else its end-of-text id."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def sampling_config(
    tokenizer: PreTrainedTokenizerBase,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    **options,
) -> GenerationConfig:
    """The generation settings every memgpt generation uses: greedy when `temperature` is 0, else
    sampling with `top_k` (0: off) and `top_p`; pad and end ids from `tokenizer`; `options`: other
    `GenerationConfig` fields."""
    sample = temperature > 0
    return GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature if sample else None,
        top_k=top_k if sample and top_k else None, top_p=top_p if sample else None,
        repetition_penalty=repetition_penalty, pad_token_id=pad_id(tokenizer), eos_token_id=tokenizer.eos_token_id,
        **options,
    )


def sampler(config: GenerationConfig, seed: int = 0) -> Callable[[torch.Tensor, list[int]], int]:
    """A next-token picker `pick(logits [V], ids so far) -> id` for hand-written decoding loops (the kv
    memory's), following `config` (from `sampling_config`) with transformers' logits processors:
    greedy, or sampling seeded by `seed`."""
    procs = LogitsProcessorList()
    if config.repetition_penalty not in (None, 1.0):
        procs.append(RepetitionPenaltyLogitsProcessor(config.repetition_penalty))
    if config.do_sample:
        procs.append(TemperatureLogitsWarper(config.temperature))
        if config.top_k:
            procs.append(TopKLogitsWarper(config.top_k))
        if config.top_p is not None and config.top_p < 1.0:
            procs.append(TopPLogitsWarper(config.top_p))
    generator = torch.Generator().manual_seed(seed)

    def pick(logits: torch.Tensor, ids: list[int]) -> int:
        scores = procs(torch.tensor([ids]), logits[None])[0]
        if not config.do_sample:
            return int(scores.argmax())
        return int(torch.multinomial(torch.softmax(scores, -1), 1, generator=generator))

    return pick


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
    check_generation_options(max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed)
    check_text(prompt, "the prompt")
    stop = check_stops(stop)
    for s in stop:
        check_text(s, "a --stop string")
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    if ids.shape[1] == 0:
        raise MemGPTError("the prompt is empty")
    config = sampling_config(tokenizer, max_new_tokens, temperature, top_k, top_p, repetition_penalty)
    criteria = StoppingCriteriaList([StopText(tokenizer, ids.shape[1], stop)] if stop else [])
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(ids, generation_config=config, memory_state=memory_state, stopping_criteria=criteria)
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
