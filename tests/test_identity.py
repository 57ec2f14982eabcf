"""The backbone's name and weights fingerprint that every memory file records (memgpt.model.identity)."""

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from memgpt.errors import MemGPTError
from memgpt.model.identity import backbone_name, check_fingerprint, fingerprint


def tiny(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2)
    return LlamaForCausalLM(config).eval()


def test_the_fingermarkfollows_the_weights_not_their_dtype():
    model = tiny()
    mark = fingerprint(model)
    assert mark == fingerprint(tiny()) == fingerprint(copy.deepcopy(model).to(torch.bfloat16))
    assert mark != fingerprint(tiny(seed=1)) and mark != fingerprint(model, layout="segments=512")
    moved = copy.deepcopy(model)
    with torch.no_grad():
        moved.model.layers[1].mlp.down_proj.weight.add_(0.01)  # a fine-tuning step in one deep tensor
    assert fingerprint(moved) != mark


def test_the_backbone_name_is_its_folder_or_its_shape():
    model = tiny()
    assert backbone_name(model) == "llama-2x32"
    model.config.name_or_path = "/models/SmolLM2-135M-Instruct"
    assert backbone_name(model) == "SmolLM2-135M-Instruct"


def test_fingerprints_of_another_scheme_or_backbone_are_refused_in_one_line():
    current = fingerprint(tiny())
    check_fingerprint("m.mem", current, current, "mismatch")
    with pytest.raises(MemGPTError, match="^m.mem was written by another memgpt version") as e:
        check_fingerprint("m.mem", "c7631b92e166ff32", current, "mismatch")  # an older file: bare hex
    assert "\n" not in str(e.value)
    with pytest.raises(MemGPTError, match="^other weights$"):
        check_fingerprint("m.mem", fingerprint(tiny(seed=1)), current, "other weights")


def test_a_vectors_file_of_the_older_fingermarkis_refused(tmp_path):
    from memgpt.apps.compress import Encoded, load_encoded, save_encoded
    from memgpt.memories.files import read_state_file, write_state_file

    model = tiny()
    path = save_encoded(tmp_path / "v.mem", Encoded(torch.zeros(1, 32), 3, (0,), True, 10), model)
    assert load_encoded(path, model).num_tokens == 3
    tensors, meta = read_state_file(path)
    old = {k: v for k, v in meta.items() if k not in ("format", "format_version", "kind")} | {"fingerprint": "0123456789abcdef"}
    write_state_file(path, "vectors", tensors, old)
    with pytest.raises(MemGPTError, match="another memgpt version"):
        load_encoded(path, model)
