"""kv memory: the backbone's own keys/values in blocks, retrieved by its attention (memgpt.memories.kv).

Equivalences against plain attention (tiny random Llama configs, and once on the real default model):
the local window covers the document; every block retrieved at its true position. Then cached
decoding, sessions, the disk spill, memory files (memory-mapped) and refused bad files.
"""

import json
from dataclasses import replace

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from memgpt.apps import ask, load_state, make_memory, read, write_memory_file
from memgpt.memories.base import Answer
from memgpt.model.engine import Engine
from memgpt.memories.kv.memory import KVMemory
from memgpt.errors import MemGPTError
from memgpt.memories.kv import KVSettings, KVStore, decode, kv_attention, prefill
from memgpt.memories.kv.file import map_tensors, save_store, store_from_tensors
from memgpt.model.pretrained import resolve_backbone

CONFIGS = {  # (query heads, kv heads): grouped-query like SmolLM2, and plain multi-head
    "gqa": dict(num_attention_heads=4, num_key_value_heads=2),
    "mha": dict(num_attention_heads=2, num_key_value_heads=2),
}


def tiny_llama(kind: str = "gqa", seed: int = 0, vocab: int = 99) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         max_position_embeddings=1024, **CONFIGS[kind])
    return LlamaForCausalLM(config).eval()


def kv_logits(model, ids: torch.Tensor, settings: KVSettings) -> tuple[torch.Tensor, KVStore]:
    """Logits of every token, read chunk by chunk through the kv memory."""
    store = KVStore.for_model(model, settings)
    outs = []
    with torch.inference_mode(), kv_attention(model, store):
        for start in range(0, ids.shape[1], settings.chunk_tokens):
            chunk = ids[:, start : start + settings.chunk_tokens]
            outs.append(model(input_ids=chunk, position_ids=torch.zeros_like(chunk), use_cache=False,
                              kv_memory=store).logits)
    return torch.cat(outs, 1), store


def full_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(ids).logits


@pytest.mark.parametrize("kind", list(CONFIGS))
@pytest.mark.parametrize("chunk", [1, 7, 32])
def test_window_covering_the_document_equals_full_attention(kind, chunk):
    model = tiny_llama(kind)
    ids = torch.randint(0, 99, (1, 150), generator=torch.Generator().manual_seed(1))
    settings = KVSettings(sink_tokens=4, local_tokens=256, block_tokens=8, chunk_tokens=chunk, storage="fp32")
    got, store = kv_logits(model, ids, settings)
    assert store.layers[0].num_blocks == 0 and store.tokens == 150
    torch.testing.assert_close(got, full_logits(model, ids), atol=1e-5, rtol=1e-5)
    assert model.config._attn_implementation != "memgpt_kv"  # restored after the block


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_every_block_retrieved_at_true_positions_equals_full_attention(kind):
    model = tiny_llama(kind)
    ids = torch.randint(0, 99, (1, 200), generator=torch.Generator().manual_seed(2))
    settings = KVSettings(sink_tokens=4, local_tokens=16, block_tokens=8, top_blocks=1000, chunk_tokens=32,
                          storage="fp32", positions="true")
    got, store = kv_logits(model, ids, settings)
    assert store.layers[1].num_blocks >= 18  # most of the document went into blocks
    torch.testing.assert_close(got, full_logits(model, ids), atol=1e-5, rtol=1e-5)


def test_retrieving_few_blocks_differs_and_stays_finite():
    model = tiny_llama()
    ids = torch.randint(0, 99, (1, 200), generator=torch.Generator().manual_seed(3))
    settings = KVSettings(sink_tokens=4, local_tokens=16, block_tokens=8, top_blocks=2, chunk_tokens=32, storage="fp32")
    store = KVStore.for_model(model, settings)
    got, store = kv_logits(model, ids, settings)
    assert torch.isfinite(got).all()
    assert not torch.allclose(got, full_logits(model, ids), atol=1e-3)  # it really is sparse


def test_cached_decoding_equals_generate():
    model = tiny_llama()
    ids = torch.randint(0, 99, (1, 60), generator=torch.Generator().manual_seed(4)).tolist()[0]
    settings = KVSettings(sink_tokens=4, local_tokens=512, block_tokens=8, chunk_tokens=16, storage="fp32")
    store = KVStore.for_model(model, settings)
    prefill(model, store, ids[:40])
    out = decode(model, store, ids[40:], 12)
    with torch.inference_mode():
        ref = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, min_new_tokens=12)[0, 60:]
    assert out == ref.tolist()


def test_a_session_leaves_the_memory_as_it_was():
    model = tiny_llama()
    ids = torch.randint(0, 99, (1, 120), generator=torch.Generator().manual_seed(5)).tolist()[0]
    settings = KVSettings(sink_tokens=4, local_tokens=16, block_tokens=8, top_blocks=2, chunk_tokens=32)
    store = KVStore.for_model(model, settings)
    prefill(model, store, ids)
    before = (store.tokens, store.layers[0].num_blocks, store.layers[0].local_k.clone())
    first = decode(model, store, [1, 2, 3], 8)
    assert (store.tokens, store.layers[0].num_blocks) == before[:2] and torch.equal(store.layers[0].local_k, before[2])
    assert decode(model, store, [1, 2, 3], 8) == first


def test_blocks_spilled_to_disk_give_the_same_answers(tmp_path):
    model = tiny_llama()
    ids = torch.randint(0, 99, (1, 300), generator=torch.Generator().manual_seed(6)).tolist()[0]
    answers = []
    for ram_mb in (512, 0):
        settings = KVSettings(sink_tokens=4, local_tokens=16, block_tokens=8, top_blocks=3, chunk_tokens=32,
                              ram_blocks_mb=ram_mb)
        store = KVStore.for_model(model, settings, spill_parent=str(tmp_path))
        prefill(model, store, ids)
        answers.append(decode(model, store, [5, 6, 7], 10))
        if ram_mb == 0:
            assert not store.layers[0].blocks.ram and store.layers[0].blocks.disk_count == store.layers[0].num_blocks
    assert answers[0] == answers[1]


@pytest.mark.parametrize("storage", ["bf16", "int8"])
def test_compact_storage_stays_close_to_full_attention(storage):
    model = tiny_llama()
    ids = torch.randint(0, 99, (1, 200), generator=torch.Generator().manual_seed(2))
    settings = KVSettings(sink_tokens=4, local_tokens=16, block_tokens=8, top_blocks=1000, chunk_tokens=32,
                          storage=storage, positions="true")
    got, store = kv_logits(model, ids, settings)
    assert store.layers[0].blocks.dtype == {"bf16": torch.bfloat16, "int8": torch.int8}[storage]
    full = full_logits(model, ids)
    error = (got - full).abs().max() / full.abs().max()
    assert 0 < error < 0.02  # lossy, but by rounding only


@pytest.mark.parametrize("storage", ["fp32", "bf16", "int8"])
def test_store_file_round_trip_is_memory_mapped_and_exact(tmp_path, storage):
    model = tiny_llama()
    ids = torch.randint(0, 99, (1, 300), generator=torch.Generator().manual_seed(7)).tolist()[0]
    settings = KVSettings(sink_tokens=4, local_tokens=16, block_tokens=8, top_blocks=3, chunk_tokens=32, storage=storage)
    store = KVStore.for_model(model, settings)
    prefill(model, store, ids)
    path = save_store(tmp_path / "m.mem", store, {"format": "memgpt-memory"})
    tensors = map_tensors(path)
    from safetensors.torch import load_file  # the file is plain safetensors, readable by the library itself
    assert load_file(path).keys() == tensors.keys()
    loaded = store_from_tensors(tensors, settings, 2, str(path))
    assert loaded.tokens == store.tokens and loaded.layers[0].num_blocks == store.layers[0].num_blocks
    assert decode(model, loaded, [5, 6, 7], 10) == decode(model, store, [5, 6, 7], 10)


# -- through the app layer: tiny backbone with the real tokenizer ---------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_backbone("default"))


def tiny_engine(tokenizer, seed: int = 0) -> Engine:
    model = tiny_llama("gqa", seed=seed, vocab=len(tokenizer))
    model.config.name_or_path = "tiny-llama"
    return Engine(name="tiny-llama", backbone=model, tokenizer=tokenizer, window=512)


DOC = " ".join(f"Sentence number {i} says that the {['cat', 'dog', 'owl'][i % 3]} sat on mat {i}." for i in range(150))


@pytest.fixture
def small_kv(monkeypatch):
    monkeypatch.setattr(KVMemory, "settings",
                        KVSettings(sink_tokens=8, local_tokens=64, block_tokens=16, top_blocks=2, chunk_tokens=64))


@pytest.mark.parametrize("storage", ["bf16", "int8"])
def test_read_save_load_answer_identically(tokenizer, tmp_path, small_kv, monkeypatch, storage):
    monkeypatch.setattr(KVMemory, "settings", replace(KVMemory.settings, storage=storage))
    engine = tiny_engine(tokenizer)
    state = read(DOC, "kv", engine)
    path = write_memory_file(tmp_path / "doc.mem", state)
    loaded = load_state(path, engine)
    assert loaded.tokens_read == state.tokens_read and loaded.info == state.info
    assert loaded.tensors["l0.blocks"].shape[0] > 10  # memory-mapped blocks, as written
    assert loaded.tensors["l0.blocks"].element_size() == {"bf16": 2, "int8": 1}[storage]
    assert loaded.index.texts == state.index.texts and len(state.index.texts) > 100  # citations survive the file
    memory = make_memory("kv", engine)
    q = ["Where did the owl sit?"]
    answers = memory.answer(state, q, 6)
    assert all(isinstance(a, Answer) for a in answers) and len(answers) == 1  # an Answer, like every kind's
    assert memory.answer(loaded, q, 6) == answers
    assert ask(path, q[0], engine=engine, max_new_tokens=6) == answers[0]


def test_bad_kv_memory_files_are_refused_in_one_line(tokenizer, tmp_path, small_kv):
    engine = tiny_engine(tokenizer)
    path = write_memory_file(tmp_path / "doc.mem", read(DOC, "kv", engine))
    data = path.read_bytes()
    cut = tmp_path / "cut.mem"
    cut.write_bytes(data[: len(data) - 1000])
    with pytest.raises(MemGPTError, match="truncated") as e:
        ask(cut, "Who?", engine=engine)
    assert "\n" not in str(e.value)
    header = int.from_bytes(data[:8], "little")
    begin, end = json.loads(data[8 : 8 + header])["l0.blocks"]["data_offsets"]
    bad = bytearray(data)
    bad[8 + header + begin : 8 + header + end] = b"\xff" * (end - begin)  # NaN in every block of layer 0
    (tmp_path / "nan.mem").write_bytes(bytes(bad))
    with pytest.raises(MemGPTError, match="corrupt"):
        ask(tmp_path / "nan.mem", "Who?", engine=engine)
    with pytest.raises(MemGPTError, match="another backbone"):
        ask(path, "Who?", engine=tiny_engine(tokenizer, seed=1))  # same name and shapes, other weights


def test_generate_with_kv_memory_writes_past_the_window(tokenizer, small_kv):
    from memgpt.apps import generate

    engine = tiny_engine(tokenizer)
    pieces: list[str] = []
    first = generate("Write a story about a cat.", 200, memory="kv", engine=engine, temperature=0.8, seed=3,
                     on_text=pieces.append)
    assert "".join(pieces) == first  # streamed as it is written
    assert first == generate("Write a story about a cat.", 200, memory="kv", engine=engine, temperature=0.8, seed=3)
    assert len(tokenizer(first, add_special_tokens=False)["input_ids"]) > 150  # well past the 64-token window
    assert first != generate("Write a story about a cat.", 200, memory="kv", engine=engine, temperature=0.8, seed=4)


def test_cli_refuses_a_truncated_kv_memory_file_in_one_line(tokenizer, tmp_path, small_kv, capsys):
    from test_cli import assert_one_line_error, run_in_process

    (tmp_path / "a.txt").write_text(DOC)
    assert_one_line_error(run_in_process(capsys, "read", str(tmp_path / "a.txt"), "-o", str(tmp_path / "a.mem"),
                                         "--kv-storage", "int8"), "--memory kv")
    path = write_memory_file(tmp_path / "doc.mem", read(DOC, "kv", tiny_engine(tokenizer)))
    cut = tmp_path / "cut.mem"
    cut.write_bytes(path.read_bytes()[:-5000])
    assert_one_line_error(run_in_process(capsys, "ask", str(cut), "Who?", "--window", "512"), "truncated")


# -- the real default model (few, quick) ------------------------------------------------------------
@pytest.fixture(scope="module")
def real_engine():
    from memgpt.apps import get_engine

    return get_engine(dtype="fp32")


def test_real_model_true_positions_equal_full_attention(real_engine):
    model = real_engine.backbone
    text = "The lighthouse keeper wrote in his log that the sea was calm and the night was long. " * 12
    ids = torch.tensor([real_engine.tokenizer(text, add_special_tokens=False)["input_ids"][:192]])
    settings = KVSettings(sink_tokens=8, local_tokens=32, block_tokens=16, top_blocks=100, chunk_tokens=48,
                          storage="fp32", positions="true")
    got, store = kv_logits(model, ids, settings)
    assert store.layers[0].num_blocks >= 8
    torch.testing.assert_close(got, full_logits(model, ids), atol=2e-3, rtol=1e-3)


def test_real_model_finds_a_passkey_beyond_its_local_window(real_engine, monkeypatch):
    monkeypatch.setattr(KVMemory, "settings",
                        KVSettings(sink_tokens=16, local_tokens=256, block_tokens=64, top_blocks=4, chunk_tokens=256))
    filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
    doc = filler * 10 + "The pass key is 68231. Remember it. 68231 is the pass key. " + filler * 60
    state = read(doc, "kv", real_engine)
    assert state.tokens_read > 1500 and state.work["store"].layers[0].num_blocks > 15
    answer = make_memory("kv", real_engine).answer(state, ["What is the pass key?"], 12)[0]
    assert "68231" in answer.text and "68231" in answer.quote.text
