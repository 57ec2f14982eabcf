"""encode / decode: text -> memory vectors -> the same text (greedy), memory files and the CLI."""

import io
import json

import pytest
import torch
from safetensors.torch import save_file
from test_cli import assert_one_line_error, run_in_process
from transformers import AutoModelForCausalLM, AutoTokenizer

from memgpt.apps.compress import (
    Encoded,
    cram,
    decode,
    encode,
    greedy_ids,
    load_encoded,
    prefix_ids,
    save_encoded,
    vector_counts,
)
from memgpt.model.backbones import backbone_config
from memgpt.errors import MemGPTError
from memgpt.memories.files import read_state_file, write_state_file
from memgpt.model.pretrained import resolve_backbone

TEXT = "Hello, world! 你好"
FAST = {"num_vectors": 4, "steps": 100, "lr": 0.1}


def small_backbone(tokenizer, seed: int = 0):
    """A small random Llama (6x128) over the real tokenizer; initialised wide enough that its
    logits can be steered within a few dozen steps."""
    torch.manual_seed(seed)
    config = backbone_config("small", "llama", len(tokenizer))
    config.initializer_range = 0.1
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_backbone("default"))


@pytest.fixture(scope="module")
def model(tokenizer):
    return small_backbone(tokenizer)


@pytest.fixture(scope="module")
def encoded(model, tokenizer) -> Encoded:
    return encode(TEXT, model=model, tokenizer=tokenizer, **FAST)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, model, tokenizer):
    folder = tmp_path_factory.mktemp("small-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_encode_then_greedy_decode_gives_the_text_back(encoded, model, tokenizer):
    assert encoded.exact and encoded.num_tokens == 9 and encoded.num_vectors == 4 and encoded.ratio == 9 / 4
    assert encoded.vectors.shape == (4, 128) and encoded.margin > 0.5
    assert decode(encoded, model=model, tokenizer=tokenizer) == TEXT
    assert decode(encoded.vectors, max_new_tokens=9, model=model, tokenizer=tokenizer) == TEXT  # raw vectors


def test_without_a_count_encode_picks_the_fewest_vectors_that_work(model, tokenizer):
    result = encode("Hi there", model=model, tokenizer=tokenizer, steps=60, lr=0.1)
    assert result.exact and result.num_vectors in vector_counts(result.num_tokens)
    tried = vector_counts(result.num_tokens)[: vector_counts(result.num_tokens).index(result.num_vectors)]
    assert result.total_steps == result.steps + 60 * len(tried)  # every smaller count used its whole budget
    assert decode(result, model=model, tokenizer=tokenizer) == "Hi there"


def test_random_vectors_and_no_vectors_do_not_reconstruct(model, tokenizer):
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    start = cram(model, ids, 4, prefix=prefix_ids(tokenizer), steps=0)
    assert start.steps == 0 and not start.exact
    assert decode(start, model=model, tokenizer=tokenizer) != TEXT
    plain = greedy_ids(model, torch.zeros(0, 128), len(ids), prefix_ids(tokenizer))
    assert plain != ids


def test_leading_spaces_and_newlines_survive(model, tokenizer):
    text = "  two spaces, a tab\tand a newline\n"
    result = encode(text, model=model, tokenizer=tokenizer, num_vectors=8, steps=150, lr=0.1)
    assert result.exact and decode(result, model=model, tokenizer=tokenizer) == text


def test_vector_counts_grow_by_doubling_up_to_one_per_token():
    assert vector_counts(1) == [1]
    assert vector_counts(8) == [1, 2, 4, 8]
    assert vector_counts(12) == [1, 2, 4, 8, 12]


def test_prefix_is_the_document_start_token(tokenizer):
    assert prefix_ids(tokenizer) == [tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    assert prefix_ids(None) == []


@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_text_is_refused(text, model, tokenizer):
    with pytest.raises(MemGPTError, match="empty"):
        encode(text, model=model, tokenizer=tokenizer)


def test_memory_file_round_trip_stores_vectors_not_tokens(tmp_path, encoded, model, tokenizer):
    path = save_encoded(tmp_path / "hello.mem", encoded, model)
    tensors, meta = read_state_file(path, "vectors")
    assert set(tensors) == {"vectors"} and meta["num_tokens"] == "9" and meta["kind"] == "vectors"
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert not any(str(i) in meta.values() for i in ids[1:]) and TEXT not in json.dumps(meta)
    loaded = load_encoded(path, model)
    assert torch.equal(loaded.vectors, encoded.vectors) and loaded.prefix_ids == encoded.prefix_ids
    assert decode(loaded, model=model, tokenizer=tokenizer) == TEXT


def test_foreign_other_kind_corrupt_and_misshapen_files_are_refused(tmp_path, encoded, model, tokenizer):
    path = save_encoded(tmp_path / "hello.mem", encoded, model)
    with pytest.raises(MemGPTError, match="made for backbone"):
        load_encoded(path, small_backbone(tokenizer, seed=1))
    latent = write_state_file(tmp_path / "latent.mem", "latent", {"memory": torch.zeros(1, 2, 128)}, {})
    with pytest.raises(MemGPTError, match="'latent' memory, not a 'vectors' one"):
        load_encoded(latent, model)
    cut = tmp_path / "cut.mem"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(MemGPTError, match="truncated or corrupt"):
        load_encoded(cut, model)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"vectors": torch.zeros(2, 128)}, str(foreign))
    with pytest.raises(MemGPTError, match="not a memgpt memory file"):
        load_encoded(foreign, model)
    meta = read_state_file(path, "vectors")[1]
    bad = {k: v for k, v in meta.items() if k not in ("format", "format_version", "kind")}
    wrong = write_state_file(tmp_path / "wrong.mem", "vectors", {"vectors": torch.zeros(2, 64)}, bad)
    with pytest.raises(MemGPTError, match="expected finite"):
        load_encoded(wrong, model)
    no_count = write_state_file(tmp_path / "count.mem", "vectors", {"vectors": torch.zeros(2, 128)}, bad | {"num_tokens": "x"})
    with pytest.raises(MemGPTError, match="corrupt metadata"):
        load_encoded(no_count, model)


def test_cli_encode_decode(tmp_path, capsys, model_dir):
    src = tmp_path / "hello.txt"
    src.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "hello.mem"
    args = ["--model", str(model_dir), "--vectors", "4", "--steps", "100", "--lr", "0.1", "--no-progress"]
    proc = run_in_process(capsys, "encode", str(src), "-o", str(out), *args, "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["exact"] and info["num_tokens"] == 9 and info["tokens_per_vector"] == 2.25
    dec = run_in_process(capsys, "decode", str(out), "--model", str(model_dir))
    assert dec.returncode == 0, dec.stderr
    assert dec.stdout == TEXT  # exactly: no newline added
    js = run_in_process(capsys, "decode", str(out), "--model", str(model_dir), "--json")
    assert json.loads(js.stdout)["text"] == TEXT
    again = run_in_process(capsys, "encode", "--text", "Bonjour", "-o", str(out), *args)  # overwrites a memory file
    assert again.returncode == 0 and "tokens in 4 vectors" in again.stdout, again.stderr
    assert run_in_process(capsys, "decode", str(out), "--model", str(model_dir)).stdout == "Bonjour"
    # a file made for the small model is refused by the default one
    assert_one_line_error(run_in_process(capsys, "decode", str(out)), "made for backbone")


def test_cli_encode_reads_stdin(tmp_path, capsys, monkeypatch, model_dir):
    out = tmp_path / "stdin.mem"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(TEXT.encode())))
    args = ["--model", str(model_dir), "--vectors", "4", "--steps", "100", "--lr", "0.1", "--no-progress", "--json"]
    proc = run_in_process(capsys, "encode", "-", "-o", str(out), *args)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["exact"] and out.is_file()


@pytest.mark.parametrize(
    "content,needle",
    [(b"", "empty"), (b" \n\t", "empty"), (b"\x00\x01\x02\x03", "binary"), (b"caf\xe9 latin-1", "not valid UTF-8")],
)
def test_cli_refuses_bad_input_and_keeps_existing_output(tmp_path, capsys, content, needle):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    out = tmp_path / "keep.mem"
    write_state_file(out, "vectors", {"vectors": torch.zeros(1, 4)}, {})
    before = out.read_bytes()
    assert_one_line_error(run_in_process(capsys, "encode", str(bad), "-o", str(out), "--no-progress"), needle)
    assert out.read_bytes() == before


def test_cli_bad_arguments(tmp_path, capsys, encoded, model):
    txt = tmp_path / "doc.txt"
    txt.write_text("some text", encoding="utf-8")
    precious = tmp_path / "precious.mem"
    precious.write_bytes(b"not a memory file")
    latent = write_state_file(tmp_path / "latent.mem", "latent", {"memory": torch.zeros(1, 2, 4)}, {})
    cut = tmp_path / "cut.mem"
    cut.write_bytes(save_encoded(tmp_path / "ok.mem", encoded, model).read_bytes()[:100])
    cases = [
        (["encode", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "a.mem")], "does not exist"),
        (["encode", str(tmp_path), "-o", str(tmp_path / "a.mem")], "directory"),
        (["encode", "-o", str(tmp_path / "a.mem")], "nothing to encode"),
        (["encode", str(txt), "--text", "x", "-o", str(tmp_path / "a.mem")], "not both"),
        (["encode", str(txt), "-o", str(txt)], "should end in .mem"),
        (["encode", str(txt), "-o", str(precious)], "refusing to overwrite"),
        (["encode", str(txt), "-o", str(tmp_path / "no" / "a.mem")], "does not exist"),
        (["encode", str(txt), "-o", str(tmp_path / "a.mem"), "--vectors", "0"], "--vectors"),
        (["encode", str(txt), "-o", str(tmp_path / "a.mem"), "--model", "nonexistent-model"], "unknown model"),
        (["decode", str(tmp_path / "none.mem")], "does not exist"),
        (["decode", str(tmp_path)], "not a file"),
        (["decode", str(txt)], "not a readable memory file"),
        (["decode", str(latent)], "'latent' memory"),
        (["decode", str(cut)], "truncated or corrupt"),
    ]
    for args, needle in cases:
        assert_one_line_error(run_in_process(capsys, *args), needle)
    assert precious.read_bytes() == b"not a memory file" and txt.read_text() == "some text"
    assert not (tmp_path / "a.mem").exists()


def test_default_backbone_crams_a_sentence_into_one_vector():
    """The real default model: a short sentence in one vector, decoded greedily and exactly."""
    from memgpt.model.pretrained import load_backbone

    torch.set_num_threads(1)
    model, tokenizer = load_backbone("default")
    text = "Memory vectors hold text."
    result = encode(text, model=model, tokenizer=tokenizer, num_vectors=1, steps=400)  # stops once exact
    assert result.exact and result.num_vectors == 1, result.summary()
    assert decode(result, model=model, tokenizer=tokenizer) == text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert greedy_ids(model, torch.zeros(0, 576), len(ids), prefix_ids(tokenizer)) != ids  # no vectors: no text
