"""The memory model's equivalences and invariants, on GPT-2 and Llama backbones."""

import pytest
import torch
from conftest import MEMORIES, assert_same_memory, flat, memory_model, tiny_model
from transformers import AutoModelForCausalLM

from memgpt import MemGPTConfig, MemGPTForCausalLM
from memgpt.model.modeling_memgpt import MemoryState


def test_zero_memory_one_segment_is_the_plain_backbone(arch):
    model = tiny_model(arch, num_mem_tokens=0, segment_size=16)
    x = torch.randint(0, 99, (3, 16))
    assert torch.equal(model(x).logits, model.backbone(x).logits)


@pytest.mark.parametrize("kind", MEMORIES)
def test_memory_after_segment_k_depends_on_segment_one(arch, kind):
    model = memory_model(kind, arch, num_mem_tokens=4, segment_size=8)
    x = torch.randint(0, 99, (2, 40))  # 5 segments
    y = x.clone()
    y[:, 3] = (y[:, 3] + 1) % 99  # perturb one token of segment 1
    a, b = flat(model(x).memory_state), flat(model(y).memory_state)
    assert (a - b).abs().max() > 1e-4
    # and the dependence is differentiable end to end
    embeds = model.get_input_embeddings()(x).detach().requires_grad_(True)
    flat(model(inputs_embeds=embeds).memory_state).sum().backward()
    assert embeds.grad[:, :8].abs().sum() > 0


def test_no_memory_means_no_dependence_across_segments(arch):
    model = tiny_model(arch, num_mem_tokens=0, segment_size=8)
    x = torch.randint(0, 99, (2, 24))
    embeds = model.get_input_embeddings()(x).detach().requires_grad_(True)
    model(inputs_embeds=embeds).logits[:, 16:].sum().backward()
    assert embeds.grad[:, :16].abs().sum() == 0


@pytest.mark.parametrize("kind", MEMORIES)
def test_bptt_truncation_stops_gradients(arch, kind):
    model = memory_model(kind, arch, num_mem_tokens=4, segment_size=8, bptt_depth=2)
    x = torch.randint(0, 99, (2, 32))  # 4 segments: chunks {0,1} and {2,3}
    embeds = model.get_input_embeddings()(x).detach().requires_grad_(True)
    flat(model(inputs_embeds=embeds).memory_state).sum().backward()
    assert embeds.grad[:, :16].abs().sum() == 0  # segments 0-1: cut off
    assert embeds.grad[:, 16:].abs().sum() > 0  # segments 2-3: inside the window
    embeds.grad = None
    flat(model(inputs_embeds=embeds, bptt_depth=-1).memory_state).sum().backward()
    assert embeds.grad[:, :8].abs().sum() > 0  # without truncation the gradient reaches segment 0


def test_labels_are_used(arch):
    model = tiny_model(arch)
    x = torch.randint(0, 99, (2, 20))
    other = torch.randint(0, 99, (2, 20))
    loss_a, loss_b = model(x, labels=x).loss, model(x, labels=other).loss
    assert torch.isfinite(loss_a) and not torch.allclose(loss_a, loss_b)
    masked = x.clone()
    masked[:, :10] = -100
    assert not torch.allclose(model(x, labels=masked).loss, loss_a)
    all_ignored = torch.full_like(x, -100)
    assert model(x, labels=all_ignored).loss == 0


def test_loss_matches_hf_causal_lm_loss(arch):
    model = tiny_model(arch, num_mem_tokens=0, segment_size=32)
    x = torch.randint(0, 99, (2, 32))
    labels = x.clone()
    labels[0, :5] = -100
    torch.testing.assert_close(model(x, labels=labels).loss, model.backbone(x, labels=labels).loss)


@pytest.mark.parametrize("kind", ["replace", "associative", "associative-only"])
def test_all_padding_segment_gives_no_nan(arch, kind):
    for m in (0, 4):
        model = memory_model(kind, arch, num_mem_tokens=m, segment_size=8)
        x = torch.randint(0, 99, (2, 24))
        mask = torch.ones_like(x)
        mask[0, 8:] = 0  # row 0: segments 2 and 3 are all padding
        labels = x.masked_fill(mask == 0, -100)
        out = model(x, attention_mask=mask, labels=labels)
        assert torch.isfinite(out.logits).all() and torch.isfinite(out.loss)
        if flat(out.memory_state).shape[1]:  # memory of a row with nothing to read passes through unchanged
            after_one = model(x[:, :8], attention_mask=mask[:, :8]).memory_state
            torch.testing.assert_close(flat(out.memory_state)[0], flat(after_one)[0])


@pytest.mark.parametrize("kind", ["replace", "associative"])
def test_padding_side_does_not_change_the_result(arch, kind):
    """Explicit positions: a left-padded or right-padded segment reads like the unpadded one."""
    model = memory_model(kind, arch, num_mem_tokens=4, segment_size=8)
    x = torch.randint(0, 99, (1, 6))
    ref = model(x).memory_state
    pad = torch.zeros(1, 2, dtype=torch.long)
    one, zero = torch.ones(1, 6, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long)
    left = model(torch.cat([pad, x], 1), attention_mask=torch.cat([zero, one], 1))
    right = model(torch.cat([x, pad], 1), attention_mask=torch.cat([one, zero], 1))
    assert_same_memory(left.memory_state, ref, atol=1e-5, rtol=1e-5)
    assert_same_memory(right.memory_state, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(left.logits[:, 2:], model(x).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind,norm", [(kind, True) for kind in MEMORIES] + [("replace", False)])
def test_chunked_calls_with_state_equal_one_call(arch, kind, norm):
    model = memory_model(kind, arch, num_mem_tokens=4, segment_size=8, memory_norm=norm)
    x = torch.randint(0, 99, (2, 32))
    full = model(x, labels=x)
    first = model(x[:, :16])
    second = model(x[:, 16:], memory_state=first.memory_state)
    torch.testing.assert_close(torch.cat([first.logits, second.logits], 1), full.logits)
    assert_same_memory(second.memory_state, full.memory_state)
    assert model(x, logits_to_keep=1).logits.shape == (2, 1, 99)
    torch.testing.assert_close(model(x, logits_to_keep=1).logits, full.logits[:, -1:])


@pytest.mark.parametrize("kind", ["replace", "associative"])
def test_save_load_round_trip_is_identical(arch, kind, tmp_path):
    model = memory_model(kind, arch, num_mem_tokens=4, segment_size=8)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, MemGPTForCausalLM) and isinstance(loaded.config, MemGPTConfig)
    x = torch.randint(0, 99, (2, 30))
    a, b = model(x), loaded(x)
    assert torch.equal(a.logits, b.logits) and torch.equal(flat(a.memory_state), flat(b.memory_state))


def test_wrapping_a_pretrained_backbone_keeps_its_weights(arch):
    from memgpt import backbone_config

    lm = AutoModelForCausalLM.from_config(backbone_config("tiny", arch)).eval()
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    x = torch.randint(0, 99, (2, 8))
    reference = lm(x).logits
    model = MemGPTForCausalLM(MemGPTConfig(text_config=lm.config, num_mem_tokens=2, segment_size=8), backbone=lm)
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())
    torch.testing.assert_close(lm(x).logits, reference)  # still causal, still the same model
    plain = MemGPTForCausalLM(MemGPTConfig(text_config=lm.config, num_mem_tokens=0, segment_size=8), backbone=lm)
    torch.testing.assert_close(plain(x).logits, reference)
    embed_rms = lm.get_input_embeddings().weight.pow(2).mean().sqrt()
    torch.testing.assert_close(model.memory_gain.detach(), torch.full_like(model.memory_gain, float(embed_rms.detach())))


def test_residual_update_adds_the_write_slots_states_to_the_memory(arch):
    x = torch.randint(0, 99, (2, 8))  # one segment
    replace = tiny_model(arch, num_mem_tokens=2, memory_update="replace")
    residual = tiny_model(arch, num_mem_tokens=2, memory_update="residual")  # the same seed: the same weights
    written = replace(x).memory_state.tokens  # replace: the write slots' states are the memory
    assert not torch.allclose(written, replace.memory_init.expand_as(written), atol=0.1)
    torch.testing.assert_close(residual(x).memory_state.tokens, residual.memory_init + written)


def test_gated_update_interpolates_between_keeping_and_replacing():
    model = tiny_model("llama", num_mem_tokens=2, segment_size=4, memory_update="gated")
    old, written = torch.randn(1, 2, 32), torch.randn(1, 2, 32)
    with torch.no_grad():
        model.memory_gate.weight.zero_()
        for bias, expected in ((30.0, written), (-30.0, old)):  # gate open: replace; shut: keep
            model.memory_gate.bias.fill_(bias)
            torch.testing.assert_close(model.update_memory(old, written), expected)
        model.memory_gate.bias.zero_()
        torch.testing.assert_close(model.update_memory(old, written), (old + written) / 2)
        # the gate reads [written, old] in that order: a gate on the written half opens for what is written
        model.memory_gate.weight[:, :32] = 100 * torch.eye(32)
        ones = torch.ones(1, 2, 32)
        torch.testing.assert_close(model.update_memory(-ones, ones), ones)  # written +1: open
        torch.testing.assert_close(model.update_memory(ones, -ones), ones)  # written -1: shut, keeps the old


def test_memory_state_shape_is_checked():
    from memgpt import MemGPTError

    model = tiny_model("gpt2", num_mem_tokens=4)
    with pytest.raises(MemGPTError, match="memory_state has shapes"):
        model(torch.randint(0, 99, (2, 8)), memory_state=MemoryState(torch.zeros(2, 3, 32)))
    with pytest.raises(MemGPTError, match="must be a MemoryState"):
        model(torch.randint(0, 99, (2, 8)), memory_state=torch.zeros(2, 4, 32))
    with pytest.raises(MemGPTError, match="empty"):
        model(torch.zeros(2, 0, dtype=torch.long))
