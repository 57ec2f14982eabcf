"""Scoring continuations: the mean log-probability of each of several spans after one prompt, the prompt
read once and its keys and values shared by every span (the spans are short, the prompt is not)."""

from __future__ import annotations

import copy

import torch
from torch.nn.utils.rnn import pad_sequence

from .engine import Engine
from .generation import pad_id


@torch.inference_mode()
def span_logprobs(engine: Engine, prompt_ids: list[int], spans: list[str], batch_size: int = 16) -> list[float]:
    """Mean log P(span tokens | prompt) of each span: one pass over the prompt, then the spans in batches
    (right-padded) on copies of its cache."""
    pad = pad_id(engine.tokenizer) or 0
    span_ids = [engine.tokenizer(" " + s, add_special_tokens=False)["input_ids"] or [pad] for s in spans]
    head = engine.backbone(input_ids=torch.tensor([prompt_ids]), use_cache=True)
    first = torch.log_softmax(head.logits[0, -1].float(), dim=-1)  # (V,): the log P of each span's first token
    out: list[float] = []
    for b in range(0, len(span_ids), batch_size):
        group = [torch.tensor(s) for s in span_ids[b : b + batch_size]]
        ids = pad_sequence(group, batch_first=True, padding_value=pad)  # (B, L)
        logp = first[ids[:, :1]]  # (B, 1)
        if ids.shape[1] > 1:
            cache = copy.deepcopy(head.cache)
            cache.batch_repeat_interleave(len(group))
            mask = torch.cat([torch.ones(len(group), len(prompt_ids), dtype=torch.long),
                              pad_sequence([torch.ones_like(s) for s in group], batch_first=True)], dim=1)  # (B, P+L)
            logits = engine.backbone(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], cache=cache).logits
            rest = torch.log_softmax(logits.float(), dim=-1).gather(2, ids[:, 1:, None])[..., 0]  # (B, L-1)
            logp = torch.cat([logp, rest], dim=1)  # (B, L): log P of each span token
        out += [float(logp[k, : len(s)].mean()) for k, s in enumerate(group)]
    return out
