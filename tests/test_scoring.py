"""Span scoring with the prompt read once: the same log-probabilities as reading prompt + span whole."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_llama_engine
from memgpt.model.scoring import span_logprobs


def whole(engine, prompt_ids: list[int], span: str) -> float:
    """Mean log P of the span's tokens, prompt and span read in one pass (the reference)."""
    ids = engine.tokenizer(" " + span, add_special_tokens=False)["input_ids"]
    logits = engine.backbone(input_ids=torch.tensor([prompt_ids + ids])).logits[0].float()
    logp = torch.log_softmax(logits[len(prompt_ids) - 1 : -1], dim=-1)  # (len(ids), V)
    return float(logp.gather(1, torch.tensor(ids)[:, None]).mean())


@pytest.mark.parametrize("batch_size", [1, 3, 16])
@torch.inference_mode()
def test_shared_prompt_scores_equal_whole_reading(batch_size):
    engine = tiny_llama_engine()
    prompt = engine.chat_ids("The orchard behind the mill grows pears, plums and quinces.", prefix="Answer:")
    spans = ["pears", "plums and quinces", "the mill", "a", "The orchard behind the mill grows pears."]
    got = span_logprobs(engine, prompt, spans, batch_size=batch_size)
    assert got == pytest.approx([whole(engine, prompt, s) for s in spans], abs=1e-4)
