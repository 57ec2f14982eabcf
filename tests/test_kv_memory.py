"""kv memory: the backbone's own keys/values in blocks, retrieved by its attention (memgpt.memories.kv).

Equivalences against plain attention (tiny random Llama configs, and once on the real default model):
the local window covers the document; every block retrieved at its true position. Then cached
decoding, sessions, the disk spill, memory files (memory-mapped) and refused bad files.
"""

import json
import random
from dataclasses import replace

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from memgpt.apps import ask, load_state, make_memory, read, write_memory_file
from memgpt.memories.base import Answer
from memgpt.model.engine import Engine
from memgpt.errors import MemGPTError
from memgpt.memories.kv import KVSettings, KVStore, decode, kv_attention, prefill
from memgpt.memories.kv.file import map_tensors, save_store, store_from_tensors
from memgpt.memories.files import read_state_meta
from memgpt.model.pretrained import resolve_backbone

CONFIGS = {  # (query heads, kv heads): grouped-query like SmolLM2, and plain multi-head
    "gqa": dict(num_attention_heads=4, num_key_value_heads=2),
    "mha": dict(num_attention_heads=2, num_key_value_heads=2),
}


def tiny_llama(kind: str = "gqa", seed: int = 0, vocab: int = 99, layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         max_position_embeddings=1024, **CONFIGS[kind])
    return LlamaForCausalLM(config).eval()


def kv_logits(model, ids: torch.Tensor, settings: KVSettings, store: KVStore | None = None) -> tuple[torch.Tensor, KVStore]:
    """Logits of every token, read chunk by chunk through the kv memory (`store`, else a new one)."""
    store = store or KVStore.for_model(model, settings)
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


def test_few_retrieved_blocks_equal_full_attention_over_just_those_tokens():
    """With one layer a token's key and value depend on the token alone, so the last chunk read over the
    sinks + the blocks it retrieved + the local window is the plain model on just those tokens, at
    consecutive positions (contiguous positions), and not the plain model on the whole document."""
    model = tiny_llama(layers=1)
    ids = torch.randint(0, 99, (1, 200), generator=torch.Generator().manual_seed(3))
    settings = KVSettings(sink_tokens=4, local_tokens=16, block_tokens=8, top_blocks=2, chunk_tokens=32, storage="fp32")
    _, store = kv_logits(model, ids[:, :192], settings)
    layer, store.track = store.layers[0], True
    local_start, blocks = layer.local_start, layer.num_blocks
    got, _ = kv_logits(model, ids[:, 192:], settings, store)  # the last chunk: 8 tokens
    chosen = store.retrieved[0][-1]
    assert len(chosen) == 2 and blocks > 15
    starts = sorted(layer.block_pos[chosen].tolist())  # in document order
    kept = [ids[:, :4]] + [ids[:, p : p + 8] for p in starts] + [ids[:, local_start:]]
    torch.testing.assert_close(got, full_logits(model, torch.cat(kept, 1))[:, -8:], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, full_logits(model, ids)[:, -8:], atol=1e-3)  # it really is sparse


def one_head_store(settings: KVSettings) -> KVStore:
    """A one-layer memory with one head of size 16 and Llama's rotary embedding, for hand-made vectors."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from memgpt.memories.kv.attention import Rotary

    config = LlamaConfig(hidden_size=16, num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=1024)
    store = KVStore(1, 1, 16, settings)
    store.rotary, store.track = Rotary(LlamaRotaryEmbedding(config)), True
    return store


def turned_back(store: KVStore, w: torch.Tensor) -> torch.Tensor:
    """The query `[16]` that is `w` once rotated forward by the memory distance (sinks + local window)."""
    from memgpt.memories.kv.attention import unrope

    distance = store.layers[0].sink_k.shape[1] + store.settings.local_tokens
    cos, sin = store.rotary(torch.tensor([distance]))
    return unrope(w.view(1, 1, 16), cos, sin, store.rotary.scale).view(16)


def attend_chunk(store: KVStore, query: torch.Tensor, keys: torch.Tensor) -> None:
    """One chunk of `keys` `[T, 16]` (values zero) with every query `[16]` the same, in layer 0."""
    from memgpt.memories.kv.attention import attend

    T = keys.shape[0]
    with torch.inference_mode():
        attend(store, store.layers[0], 0, query.expand(1, T, 16), keys[None], torch.zeros(1, T, 16), 1.0)


HAND_MADE = KVSettings(sink_tokens=0, local_tokens=8, block_tokens=4, rep_keys=1, top_blocks=1, chunk_tokens=4,
                       storage="fp32")


def test_retrieval_scores_a_block_as_if_it_sat_at_the_memory_distance():
    store = one_head_store(HAND_MADE)
    layer = store.layers[0]
    u = torch.zeros(16)
    u[0] = 1.0  # on the fastest-turning rotary pair
    far = turned_back(store, u)
    keys = torch.zeros(1, 16, 16)
    keys[0, 0], keys[0, 4] = u, far  # the representative keys of blocks 0 and 1
    score = torch.zeros(16)
    score[0] = score[4] = 1.0
    with torch.inference_mode():
        layer.commit(keys, torch.zeros_like(keys), score, session=False)
    assert layer.num_blocks == 2 and torch.equal(layer.all_reps()[:, 0, 0], torch.stack([u, far]))
    assert float(far @ far) > float(far @ u) + 0.5  # head-on, the query `far` would pick block 1
    attend_chunk(store, far, torch.zeros(1, 16))
    assert store.retrieved[0] == [[0]]  # turned to the distance, it is `u`: block 0


def test_representative_keys_are_the_most_attended_over_every_chunk_that_saw_them():
    store = one_head_store(HAND_MADE)
    a, b = torch.eye(16)[1], torch.eye(16)[2]
    first = torch.zeros(4, 16)
    first[0], first[1] = a, b
    # attention each chunk gives a / b: 0.17 / 0.48 (its own chunk), 1.00 / 0.00, then 0.26 / 0.53
    for w, keys in ((b, first), (8 * a, torch.zeros(4, 16)), (2.5 * a + 3.2 * b, torch.zeros(4, 16))):
        attend_chunk(store, turned_back(store, w), keys)
    layer = store.layers[0]
    assert layer.num_blocks == 1  # the first chunk left the window as a block
    torch.testing.assert_close(layer.all_reps()[0, 0, 0], a)  # 1.43 in all, against b's 1.01


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


def test_answer_tokens_read_the_blocks_their_question_retrieved():
    model = tiny_llama()
    ids = torch.randint(0, 99, (1, 300), generator=torch.Generator().manual_seed(5)).tolist()[0]
    settings = KVSettings(sink_tokens=4, local_tokens=16, block_tokens=8, top_blocks=2, chunk_tokens=32)
    reads = {}
    for sticky in (True, False):
        store = KVStore.for_model(model, replace(settings, sticky=sticky))
        prefill(model, store, ids)
        store.track = True
        decode(model, store, [1, 2, 3], 10)
        reads[sticky] = store.retrieved
        assert all(len(r) == 10 for r in store.retrieved.values())  # the question, then 9 answer tokens fed back
    assert all(r == per_step[0] for per_step in reads[True].values() for r in per_step)
    assert any(r != per_step[0] for per_step in reads[False].values() for r in per_step)  # the test can tell


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
    assert 0 < error < 5e-4  # lossy, but by rounding only: within 0.05% of the largest logit (as documented)


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


SMALL_KV = KVSettings(sink_tokens=8, local_tokens=64, block_tokens=16, top_blocks=2, chunk_tokens=64)


@pytest.mark.parametrize("storage", ["bf16", "int8"])
def test_read_save_load_answer_identically(tokenizer, tmp_path, storage):
    engine = tiny_engine(tokenizer)
    state = read(DOC, "kv", engine, kv=replace(SMALL_KV, storage=storage))
    assert state.work["store"].layers[0].blocks.dtype == {"bf16": torch.bfloat16, "int8": torch.int8}[storage]
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


def test_bad_kv_memory_files_are_refused_in_one_line(tokenizer, tmp_path):
    engine = tiny_engine(tokenizer)
    path = write_memory_file(tmp_path / "doc.mem", read(DOC, "kv", engine, kv=SMALL_KV))
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


def test_generate_with_kv_memory_writes_past_the_window(tokenizer):
    from memgpt.apps import generate

    engine = tiny_engine(tokenizer)
    pieces: list[str] = []
    first = generate("Write a story about a cat.", 200, memory="kv", engine=engine, temperature=0.8, seed=3,
                     on_text=pieces.append, kv=SMALL_KV)
    assert "".join(pieces) == first  # streamed as it is written
    again = generate("Write a story about a cat.", 200, memory="kv", engine=engine, temperature=0.8, seed=3, kv=SMALL_KV)
    assert first == again
    assert len(tokenizer(first, add_special_tokens=False)["input_ids"]) > 150  # well past the 64-token window
    assert first != generate("Write a story about a cat.", 200, memory="kv", engine=engine, temperature=0.8, seed=4,
                             kv=SMALL_KV)
    with pytest.raises(MemGPTError, match="kv settings go with the kv memory"):
        generate("Write a story.", 10, memory="text", engine=engine, kv=SMALL_KV)


def test_cli_refuses_a_truncated_kv_memory_file_in_one_line(tokenizer, tmp_path, capsys):
    from test_cli import assert_one_line_error, run_in_process

    (tmp_path / "a.txt").write_text(DOC)
    assert_one_line_error(run_in_process(capsys, "read", str(tmp_path / "a.txt"), "-o", str(tmp_path / "a.mem"),
                                         "--kv-storage", "int8"), "--memory kv")
    done = run_in_process(capsys, "read", str(tmp_path / "a.txt"), "-o", str(tmp_path / "a.mem"), "--memory", "kv",
                          "--kv-storage", "int8", "--window", "512", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert read_state_meta(tmp_path / "a.mem")["info.kv.storage"] == "int8"  # the setting of this call only
    assert make_memory("kv", tiny_engine(tokenizer)).settings == KVSettings()
    with pytest.raises(MemGPTError, match="kv settings go with the kv memory"):
        make_memory("text", tiny_engine(tokenizer), kv=SMALL_KV)
    path = write_memory_file(tmp_path / "doc.mem", read(DOC, "kv", tiny_engine(tokenizer), kv=SMALL_KV))
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


def test_real_model_finds_a_passkey_among_numbers_beyond_its_local_window(real_engine):
    """Every digit read from the needle's block: answer tokens that chose their own blocks (not the
    question's) wrote its first digits, then lost it among the other numbers ("68974")."""
    rng = random.Random(0)
    shapes = ["The bus number is {}. ", "Room {} is on the left. ", "The year was {}. ", "She paid {} dollars. ",
              "The code of the door is {}. "]

    def numbers(n: int) -> str:
        return "".join(rng.choice(shapes).format(rng.randint(1000, 99999)) + "The grass is green. The sky is blue. "
                       for _ in range(n))

    doc = numbers(15) + "The pass key is 68231. Remember it. 68231 is the pass key. " + numbers(90)
    kv = KVSettings(sink_tokens=16, local_tokens=256, block_tokens=64, top_blocks=2, chunk_tokens=256)
    state = read(doc, "kv", real_engine, kv=kv)
    assert state.tokens_read > 2000 and state.work["store"].layers[0].num_blocks > 25
    answer = make_memory("kv", real_engine, kv=kv).answer(state, ["What is the pass key?"], 12)[0]
    assert "68231" in answer.text and "68231" in answer.quote.text


def test_token_offsets_follow_the_text_through_characters_cut_between_tokens(tokenizer):
    from memgpt.memories.kv.sentences import char_ends

    text = "Café naïve — 北京的冬天很冷。 Two  spaces\n\nand a new paragraph. 🙂 done."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ends = char_ends(tokenizer, ids, 10)
    assert ends[-1] == 10 + len(text) and ends == sorted(ends)
    for k in range(len(ids)):  # every token ends where the decoded prefix does (or inside a character, before it)
        prefix = tokenizer.decode(ids[: k + 1])
        assert ends[k] - 10 == len(prefix.rstrip("\ufffd")) or ends[k] - 10 <= len(prefix)


def test_kv_evidence_is_the_sentences_under_what_its_attention_read(tokenizer):
    from memgpt.memories.kv.sentences import read_ranges, retrieved_blocks, sentences_in

    engine = tiny_engine(tokenizer)
    state = read(DOC, "kv", engine, kv=SMALL_KV)
    memory = make_memory("kv", engine)
    ends = memory.token_ends(state)
    store = state.work["store"]
    assert len(ends) == store.tokens and ends[-1] == state.index.ends[-1]  # every token has its offset
    found = memory.evidence(state, "Where did the owl sit?", 400)
    assert found.source == "kv-blocks" and found.free is not None
    ids = [state.index.starts.index(s.start) for s in found.spans]
    assert ids == sorted(ids) and all(DOC[s.start : s.end] == s.text for s in found.spans)
    store.track = True  # the same question retrieves the same blocks: the evidence is exactly their sentences
    memory._continue(state, "\n\nQuestion: Where did the owl sit?", 32)
    ranges = read_ranges(store)
    assert len(retrieved_blocks(store)) >= SMALL_KV.top_blocks
    store.track = False
    assert ids == sentences_in(state.index, ends, ranges)
    assert 0 < len(ids) < len(state.index)  # sinks, the retrieved blocks and the local window: a part of the document
    answer = memory.answer(state, ["Where did the owl sit?"], 6)[0]
    assert answer.evidence_source == "kv-blocks"
    assert answer.quote is None or answer.quote.start in [state.index.starts[i] for i in ids]
