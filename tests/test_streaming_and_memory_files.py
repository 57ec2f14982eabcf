"""Streaming ingestion in bounded space, and memory files that refuse what is not theirs."""

import pytest
import torch
from conftest import tiny_model

from memgpt import MemGPTError
from memgpt.memory_file import load_memory, save_memory
from memgpt.streaming import iter_segments, iter_text, iter_tokens, read_text


class ByteTokenizer:
    """A tiny stand-in tokenizer: one id per UTF-8 byte (mod 99), for tiny random models."""

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [b % 99 for b in text.encode("utf-8")]}


def test_streamed_tokens_equal_one_shot_tokens(tmp_path):
    text = "禅与计算机程序设计艺术 memory carries it. " * 5000
    f = tmp_path / "doc.txt"
    f.write_text(text, encoding="utf-8")
    streamed = [t for piece in iter_tokens(ByteTokenizer(), iter_text(f, chunk_bytes=1000)) for t in piece]
    assert streamed == ByteTokenizer()(text)["input_ids"]
    segs = list(iter_segments(iter([streamed]), 64))
    assert all(len(s) == 64 for s in segs[:-1]) and sum(map(len, segs)) == len(streamed)


def test_reading_a_file_equals_forward_on_its_tokens(tmp_path, arch):
    model = tiny_model(arch, num_mem_tokens=3, segment_size=16)
    text = "one two three four five six seven " * 40
    f = tmp_path / "doc.txt"
    f.write_text(text)
    result = read_text(model, ByteTokenizer(), f)
    ids = torch.tensor([ByteTokenizer()(text)["input_ids"]])
    assert result.tokens_read == ids.shape[1]
    torch.testing.assert_close(result.memory_state, model(ids).memory_state)


@pytest.mark.parametrize(
    "content,needle",
    [(b"", "empty"), (b"\x00\x01\x02binary", "binary"), (b"ok \xff\xfe bad", "not valid UTF-8")],
)
def test_bad_text_is_refused(tmp_path, content, needle):
    f = tmp_path / "bad.txt"
    f.write_bytes(content)
    with pytest.raises(MemGPTError, match=needle):
        read_text(tiny_model(), ByteTokenizer(), f)


def test_missing_and_directory_inputs_are_refused(tmp_path):
    with pytest.raises(MemGPTError, match="does not exist"):
        list(iter_text(tmp_path / "nope.txt"))
    with pytest.raises(MemGPTError, match="directory"):
        list(iter_text(tmp_path))


def test_memory_file_round_trip_and_refusals(tmp_path):
    model = tiny_model("gpt2", num_mem_tokens=3, segment_size=16)
    memory = model(torch.randint(0, 99, (1, 40))).memory_state
    path = save_memory(tmp_path / "doc.mem", model, memory, tokens_read=40)
    loaded, meta = load_memory(path, model)
    assert torch.equal(loaded, memory) and meta["tokens_read"] == "40"
    other = tiny_model("llama", num_mem_tokens=3, segment_size=16)
    with pytest.raises(MemGPTError, match="made for backbone"):
        load_memory(path, other)
    reseeded = tiny_model("gpt2", num_mem_tokens=3, segment_size=16, seed=1)
    with pytest.raises(MemGPTError, match="made for backbone"):
        load_memory(path, reseeded)
    truncated = tmp_path / "truncated.mem"
    truncated.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(MemGPTError, match="truncated or corrupt"):
        load_memory(truncated, model)
    before = path.read_bytes()
    with pytest.raises(MemGPTError):
        save_memory(tmp_path / "missing-dir" / "x.mem", model, memory, 1)
    assert path.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))


def test_atomically_written_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    from memgpt.memory_file import write_state_file
    from memgpt.training.checkpoint import write_text_atomic

    old = os.umask(0o022)
    try:
        # the module read the umask at import; an unusual test-runner umask must not decide the expectation
        from memgpt import atomic

        atomic._UMASK, saved = 0o022, atomic._UMASK
        write_state_file(tmp_path / "m.mem", "latent", {"memory": torch.zeros(1, 2)}, {})
        write_text_atomic(tmp_path / "t.json", "{}")
        folder = atomic.temp_dir_in(tmp_path, ".ckpt.")
        atomic._UMASK = saved
    finally:
        os.umask(old)
    for path, mode in ((tmp_path / "m.mem", 0o644), (tmp_path / "t.json", 0o644), (folder, 0o755)):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path  # not mkstemp's private 0600 / 0700
