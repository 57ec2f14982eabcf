"""Streaming ingestion in bounded space, reading into latent memory as `forward` does, and memory files
that refuse what is not theirs."""

import pytest
import torch
from conftest import assert_same_memory, tiny_llama_engine

from memgpt import MemGPTError, MemGPTForCausalLM, MemoryState
from memgpt.io.streaming import iter_segments, iter_text, iter_tokens


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


@pytest.fixture(scope="module")
def engine():
    return tiny_llama_engine()


def associative_engine(engine, seed: int = 0):
    """`engine` with an associative latent memory (the latent kind builds its model once per engine)."""
    from dataclasses import replace

    torch.manual_seed(seed)
    model = MemGPTForCausalLM.from_backbone(engine.backbone, num_mem_tokens=2, segment_size=512, associative_heads=2,
                                            associative_size=8)
    with torch.no_grad():  # from_backbone's memory is the same every time: vary it with the seed
        model.memory_init.add_(seed)
    return replace(engine, extras={"latent": model})


def test_reading_a_file_equals_forward_on_its_tokens(tmp_path, engine):
    from memgpt.apps import read
    from memgpt.apps.documents import token_segments
    from memgpt.memories.latent import latent_model

    text = "one two three four five six seven " * 200
    f = tmp_path / "doc.txt"
    f.write_text(text)
    for reader in (engine, associative_engine(engine)):
        model = latent_model(reader)
        state = read(f, "latent", reader)
        ids = torch.tensor([[t for s in token_segments(reader.tokenizer, f, 512) for t in s]])
        assert state.tokens_read == ids.shape[1] > 2 * model.config.segment_size
        with torch.no_grad():
            expected = model(ids).memory_state
        assert_same_memory(MemoryState.from_tensors(state.tensors), expected)


@pytest.mark.parametrize(
    "content,needle",
    [(b"", "empty"), (b"\x00\x01\x02binary", "binary"), (b"ok \xff\xfe bad", "not valid UTF-8")],
)
def test_bad_text_is_refused(tmp_path, engine, content, needle):
    from memgpt.apps import read

    f = tmp_path / "bad.txt"
    f.write_bytes(content)
    with pytest.raises(MemGPTError, match=needle):
        read(f, "latent", engine)


def test_missing_and_directory_inputs_are_refused(tmp_path):
    with pytest.raises(MemGPTError, match="does not exist"):
        list(iter_text(tmp_path / "nope.txt"))
    with pytest.raises(MemGPTError, match="directory"):
        list(iter_text(tmp_path))


def test_latent_memory_file_round_trip_and_refusals(tmp_path, engine):
    """An associative latent memory saves as named tensors and loads back; other models' files, older
    layouts and broken files are refused in one line."""
    from memgpt.apps import ask, load_state, make_memory, read, write_memory_file
    from memgpt.memories.files import read_state_file, write_state_file

    reader = associative_engine(engine)
    state = read("one two three four five six seven " * 40, "latent", reader)
    path = write_memory_file(tmp_path / "doc.mem", state)
    tensors, meta = read_state_file(path, "latent")
    assert {k for k in tensors if not k.startswith("doc.")} == {"memory", "associative", "associative_carry"}
    assert meta["tokens_read"] == str(state.tokens_read) and "doc.starts" in tensors  # the document's sentences ride along
    loaded = load_state(path, reader)
    make_memory("latent", reader).check_compatible(loaded, path)
    assert_same_memory(MemoryState.from_tensors(loaded.tensors), MemoryState.from_tensors(state.tensors))
    with pytest.raises(MemGPTError, match="another latent memory"):  # other memory parameters
        ask(path, "Who?", engine=associative_engine(engine, seed=1))
    with pytest.raises(MemGPTError, match="another latent memory"):  # no associative memory
        ask(path, "Who?", engine=engine)
    # a file of layout 1 (the associative memory packed into rows of the memory tensor): named, refused
    packed = torch.zeros(1, 2 + 9, 32)
    old = write_state_file(tmp_path / "old.mem", "latent", {"memory": packed}, {k: v for k, v in meta.items() if k not in ("format", "format_version", "kind", "document_index")})
    with pytest.raises(MemGPTError, match="layout 1"):
        ask(old, "Who?", engine=reader)
    shapes = write_state_file(tmp_path / "shapes.mem", "latent", {**tensors, "associative_carry": torch.zeros(1, 3)}, {k: v for k, v in meta.items() if k not in ("format", "format_version", "kind")})
    with pytest.raises(MemGPTError, match="does not fit this model"):
        ask(shapes, "Who?", engine=reader)
    truncated = tmp_path / "truncated.mem"
    truncated.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(MemGPTError, match="truncated or corrupt"):
        ask(truncated, "Who?", engine=reader)
    before = path.read_bytes()
    with pytest.raises(MemGPTError):
        write_memory_file(tmp_path / "missing-dir" / "x.mem", state)
    assert path.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))


def test_atomically_written_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    from memgpt.memories.files import write_state_file
    from memgpt.training.checkpoint import write_text_atomic

    old = os.umask(0o022)
    try:
        # the module read the umask at import; an unusual test-runner umask must not decide the expectation
        from memgpt.io import atomic

        atomic._UMASK, saved = 0o022, atomic._UMASK
        write_state_file(tmp_path / "m.mem", "latent", {"memory": torch.zeros(1, 2)}, {})
        write_text_atomic(tmp_path / "t.json", "{}")
        folder = atomic.temp_dir_in(tmp_path, ".ckpt.")
        atomic._UMASK = saved
    finally:
        os.umask(old)
    for path, mode in ((tmp_path / "m.mem", 0o644), (tmp_path / "t.json", 0o644), (folder, 0o755)):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path  # not mkstemp's private 0600 / 0700
