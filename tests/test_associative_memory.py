"""The associative (delta-rule) memory: its maths, and that it binds keys to values."""

import torch
from conftest import memory_model
from torch.nn import functional as F

from memgpt.model.associative_memory import delta_write, dpfp, features
from memgpt.model.modeling_memgpt import MemoryState


def test_delta_write_equals_writing_token_by_token():
    torch.manual_seed(0)
    state = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    k = F.normalize(torch.randn(2, 3, 7, 5, dtype=torch.float64), dim=-1)
    v = torch.randn(2, 3, 7, 5, dtype=torch.float64)
    beta = torch.rand(2, 3, 7, dtype=torch.float64)
    expected = state.clone()
    for t in range(7):
        kt, vt, bt = k[:, :, t], v[:, :, t], beta[:, :, t, None, None]
        old = torch.einsum("bhkv,bhk->bhv", expected, kt)  # what the key reads now
        expected = expected + bt * kt[..., :, None] * (vt - old)[..., None, :]
    torch.testing.assert_close(delta_write(state, k, v, beta), expected)
    torch.testing.assert_close(delta_write(state, k[:, :, :0], v[:, :, :0], beta[:, :, :0]), state)


def test_delta_rule_binds_keys_to_values_and_overwrites_a_key():
    keys = torch.eye(4, dtype=torch.float64)[None, None, :3]  # (1, 1, 3, 4): orthonormal keys
    values = torch.randn(1, 1, 3, 4, dtype=torch.float64)
    state = delta_write(torch.zeros(1, 1, 4, 4, dtype=torch.float64), keys, values, torch.ones(1, 1, 3, dtype=torch.float64))
    torch.testing.assert_close(keys @ state, values)  # each key reads back exactly its own value
    new = torch.randn(1, 1, 1, 4, dtype=torch.float64)
    state = delta_write(state, keys[:, :, 1:2], new, torch.ones(1, 1, 1, dtype=torch.float64))
    torch.testing.assert_close(keys[:, :, 1:2] @ state, new)  # replaced, not added to
    torch.testing.assert_close(keys[:, :, ::2] @ state, values[:, :, ::2])  # the others untouched
    nothing = delta_write(state, keys, values, torch.zeros(1, 1, 3, dtype=torch.float64))
    torch.testing.assert_close(nothing, state)  # strength 0 writes nothing


def test_memory_state_holds_the_associative_memory_as_its_own_tensors(arch):
    model = memory_model("associative", arch, num_mem_tokens=3, segment_size=4)
    layers, heads, size, conv = 2, 2, 8, 4
    assert model.associative_shapes == ((layers, heads, size, size), (layers, 3 * heads * size, conv - 1))
    memory = model(torch.randint(0, 99, (2, 12))).memory_state
    assert memory.tokens.shape == (2, 3, 32) and memory.associative.shape == (2, layers, heads, size, size)
    assert memory.carry.shape == (2, layers, 3 * heads * size, conv - 1)
    assert memory.associative.abs().sum() > 0 and memory.carry.abs().sum() > 0  # the segments wrote to both
    assert set(memory.tensors()) == {"memory", "associative", "associative_carry"}
    assert MemoryState.from_tensors(memory.tensors()) == memory
    empty = model.init_memory(2)
    for part in (empty.associative, empty.carry):
        assert torch.equal(part, torch.zeros_like(part))


def test_what_is_read_is_normalised_per_head():
    """The matrices start near zero: without the read norm what is read (and every gradient through
    it) would start near zero too. The read-out sees unit-RMS values whatever the matrix's scale."""
    from memgpt.model.associative_memory import AssociativeMemory

    torch.manual_seed(0)
    memory = AssociativeMemory(32, heads=2, key_size=8, index=0)
    q = F.normalize(torch.randn(1, 2, 5, 8), dim=-1)  # (B, H, T, F)
    state = torch.randn(1, 2, 8, 8)  # (B, H, F, K)
    with torch.no_grad():
        torch.testing.assert_close(memory.read(q, 0.05 * state), memory.read(q, state), atol=1e-4, rtol=1e-3)
        values = memory.read_norm(q @ state)
        torch.testing.assert_close(values.pow(2).mean(-1), torch.ones(1, 2, 5), atol=1e-4, rtol=1e-4)


def test_dpfp_features_are_non_negative_and_separate_keys_more():
    torch.manual_seed(0)
    x = F.normalize(torch.randn(100, 16, dtype=torch.float64), dim=-1)
    phi = F.normalize(dpfp(x, 3), dim=-1)
    assert phi.shape == (100, 2 * 3 * 16) and bool((phi >= 0).all())
    assert float((phi * F.normalize(dpfp(-x, 3), dim=-1)).sum(-1).abs().max()) == 0  # opposite keys: orthogonal
    near = F.normalize(x + 0.05 * torch.randn_like(x), dim=-1)  # the same key, a little perturbed
    assert float((F.normalize(dpfp(near, 3), dim=-1) * phi).sum(-1).min()) > 0.8
    plain, mapped = x @ x.T, phi @ phi.T  # distinct keys
    off = ~torch.eye(100, dtype=torch.bool)
    assert float(mapped[off].pow(2).mean()) < 0.5 * float(plain[off].pow(2).mean())


def test_outer_features_square_the_overlap_of_keys():
    torch.manual_seed(0)
    x = F.normalize(torch.randn(50, 16, dtype=torch.float64), dim=-1)
    phi = features(x, "outer")
    assert phi.shape == (50, 256)
    torch.testing.assert_close(phi @ phi.T, (x @ x.T) ** 2)
    assert features(x, "plain") is x and features(x, "dpfp-2").shape == (50, 64)


def test_a_feature_map_keys_the_matrices_by_the_features(arch):
    model = memory_model("associative-outer", arch, segment_size=4)
    layers, heads, size = 2, 2, 8
    assert model.associative_shapes[0] == (layers, heads, size * size, size)
    matrices = model(torch.randint(0, 99, (2, 12))).memory_state.associative
    assert matrices.shape == (2, layers, heads, size * size, size) and matrices.abs().sum() > 0


def test_the_memory_can_sit_on_the_first_layers_only(arch):
    model = memory_model("associative-only", arch, segment_size=4, associative_layers=1)
    assert len(model.memory_associative) == 1 and model.associative_shapes[0][0] == 1
    x = torch.randint(0, 99, (1, 8))
    changed = x.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 99
    with torch.no_grad():  # the first segment still reaches the second one through the memory
        assert not torch.allclose(model(x).logits[:, 4:], model(changed).logits[:, 4:])


def test_the_convolution_continues_across_segments(arch):
    """The first tokens of a segment are keyed by the last tokens of the previous one: what is carried
    is the convolution input of exactly the last `conv - 1` tokens."""
    model = memory_model("associative-only", arch, segment_size=6)
    x = torch.randint(0, 99, (1, 12))
    carried = model(x[:, :6]).memory_state.carry
    earlier = x.clone()
    earlier[:, :3] = (earlier[:, :3] + 1) % 99  # outside the last 3 tokens (layer 0 reads embeddings;
    # deeper layers' inputs have attended to the earlier tokens)
    torch.testing.assert_close(model(earlier[:, :6]).memory_state.carry[:, 0], carried[:, 0])
    last = x.clone()
    last[:, 5] = (last[:, 5] + 1) % 99
    assert not torch.allclose(model(last[:, :6]).memory_state.carry, carried)


def test_a_deep_copy_reads_its_own_associative_memory(arch):
    import copy

    model = memory_model("associative-only", arch, segment_size=4)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.memory_associative.parameters():
            p.add_(0.5)
    x = torch.randint(0, 99, (1, 12))
    assert not torch.allclose(model(x).logits, twin(x).logits)  # the copy's hooks use the copy's memory
    torch.testing.assert_close(copy.deepcopy(model)(x).logits, model(x).logits)
