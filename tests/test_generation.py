"""generate() with memory: prompt segments folded into memory, a KV cache inside the segment."""

import pytest
import torch
from conftest import MEMORIES, assert_same_memory, memory_model, tiny_model


@pytest.mark.parametrize("kind", MEMORIES)
def test_cached_greedy_equals_uncached_greedy_float64(arch, kind):
    model = memory_model(kind, arch, num_mem_tokens=3, segment_size=5, dtype=torch.float64)
    prompt = torch.randint(0, 99, (2, 12))  # 2 full segments + 2 tokens; generation crosses 5 more segments
    kwargs = dict(max_new_tokens=25, do_sample=False, pad_token_id=0)
    cached = model.generate(prompt, use_cache=True, **kwargs)
    uncached = model.generate(prompt, use_cache=False, **kwargs)
    assert cached.shape == (2, 37)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("kind", ["replace", "associative", "associative-only"])
def test_cached_logits_match_forward(arch, kind):
    model = memory_model(kind, arch, num_mem_tokens=2, segment_size=4, dtype=torch.float64)
    x = torch.randint(0, 99, (1, 15))
    full = model(x)
    from memgpt.model.modeling_memgpt import GenerationState

    state = GenerationState()
    step_logits = [model(x[:, :6], generation_state=state, logits_to_keep=0).logits]
    for t in range(6, 15):
        step_logits.append(model(x[:, : t + 1], generation_state=state, logits_to_keep=1).logits)
    torch.testing.assert_close(torch.cat(step_logits, 1), full.logits)
    # 15 tokens = 3 full segments + 3: memory after segment 3 equals forward's state after 12 tokens
    assert_same_memory(state.memory, model(x[:, :12]).memory_state)


def test_generate_continues_from_a_saved_memory(arch):
    model = tiny_model(arch, num_mem_tokens=3, segment_size=6, dtype=torch.float64)
    document = torch.randint(0, 99, (1, 30))
    memory = model(document).memory_state
    prompt = torch.randint(0, 99, (1, 4))
    with_mem = model.generate(prompt, memory_state=memory, max_new_tokens=8, do_sample=False, pad_token_id=0)
    again = model.generate(prompt, memory_state=memory, max_new_tokens=8, do_sample=False, pad_token_id=0, use_cache=False)
    assert torch.equal(with_mem, again)
    torch.manual_seed(0)  # the memory is expanded with the prompt's rows
    several = model.generate(prompt, memory_state=memory, max_new_tokens=8, do_sample=True, pad_token_id=0,
                             num_return_sequences=3)
    assert several.shape == (3, 12)
    logits_mem = model(prompt, memory_state=memory).logits
    assert not torch.allclose(logits_mem, model(prompt).logits)  # the memory is really read


@pytest.mark.parametrize("option", [dict(temperature=1e308), dict(temperature=1e-300), dict(repetition_penalty=1e308),
                                    dict(repetition_penalty=1e-300), dict(temperature=float("nan"))])
def test_sampling_options_that_would_overflow_are_refused(option):
    # found by the fuzz: temperature 1e308 + repetition penalty 1e308 reached torch.multinomial as NaN
    from memgpt.errors import MemGPTError
    from memgpt.model.generation import check_generation_options

    args = dict(max_new_tokens=1, temperature=0.7, top_k=0, top_p=0.5, repetition_penalty=1.0, seed=0) | option
    with pytest.raises(MemGPTError, match="temperature|repetition_penalty"):
        check_generation_options(**args)
