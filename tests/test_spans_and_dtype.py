"""Sentence spans with offsets into the original text (citations), and the dtype the hardware runs fast."""

import pytest
import torch

from memgpt.io.spans import MAX_SENTENCE_CHARS, DocumentIndex, SentenceSplitter
from memgpt.model.hardware import native_bf16, resolve_dtype

TEXT = ("Mr. Hay signed the treaty in 1903.  It was ratified.\r\n\r\nThe canal \"will be built.\" Panama agreed!\n"
        "Lines wrapped\nin the middle of a sentence stay one sentence? 我们读书。他们写字。 End")


def split(text: str, chunk: int) -> list:
    splitter, spans = SentenceSplitter(), []
    for i in range(0, len(text), chunk):
        spans += splitter.feed(text[i : i + chunk])
    return spans + splitter.close()


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 10_000])
def test_spans_point_at_the_original_text_however_it_is_chunked(chunk):
    spans = split(TEXT, chunk)
    assert all(TEXT[s.start : s.end] == s.text for s in spans)
    assert [s.text for s in spans] == [s.text for s in split(TEXT, 10_000)]
    texts = [s.text for s in spans]
    assert "The canal \"will be built.\"" in texts and "It was ratified." in texts and "End" in texts
    assert "Lines wrapped\nin the middle of a sentence stay one sentence?" in texts
    assert "我们读书。" in texts


@pytest.mark.parametrize("text", ["x" * 100_000, "a,b,c,1,2\n" * 10_000, "def f(x):\n    return x\n" * 4000])
def test_text_without_sentence_ends_is_cut_into_bounded_pieces(text):
    spans = split(text, 4096)
    assert spans and all(len(s.text) <= MAX_SENTENCE_CHARS for s in spans)
    assert all(text[s.start : s.end] == s.text for s in spans)
    assert sum(len(s.text) for s in spans) >= len(text.replace("\n", "").replace(" ", "")) * 0.9


def test_index_round_trips_through_tensors_and_refuses_damage():
    index = DocumentIndex()
    index.add(split(TEXT, 5))
    again = DocumentIndex.from_tensors(index.to_tensors())
    assert again == index
    broken = index.to_tensors()
    broken["doc.offsets"] = broken["doc.offsets"].flip(0)
    assert DocumentIndex.from_tensors(broken) is None
    assert DocumentIndex.from_tensors({}) is None
    assert DocumentIndex.from_tensors(DocumentIndex().to_tensors()) == DocumentIndex()


def test_auto_dtype_is_bf16_only_where_it_is_native(monkeypatch):
    assert native_bf16("cpu", frozenset({"avx2", "avx512_bf16"}))
    assert native_bf16("cpu", frozenset({"amx_bf16"}))
    assert not native_bf16("cpu", frozenset({"avx2", "fma", "avx512f"}))
    monkeypatch.setattr("memgpt.model.hardware.cpu_flags", lambda: frozenset({"avx2"}))
    assert resolve_dtype("auto") == "fp32"
    monkeypatch.setattr("memgpt.model.hardware.cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert resolve_dtype("auto") == "bf16"
    assert resolve_dtype("fp32") == "fp32" and resolve_dtype("bf16") == "bf16"


def test_auto_engine_runs_the_real_model_in_fp32_without_native_bf16(monkeypatch):
    from memgpt.model.engine import get_engine

    monkeypatch.setattr("memgpt.model.hardware.cpu_flags", lambda: frozenset({"avx2"}))
    engine = get_engine("default", "auto")
    assert engine.dtype == torch.float32 and engine.dtype_name == "fp32"
    assert engine.chat("Say hello.", 4)
