"""`memgpt read` / `memgpt generate` on the real default model, and their bad input."""

import json

import pytest
from test_cli import assert_one_line_error, run_in_process

SMALL = ["--segment-size", "32", "--num-mem-tokens", "4"]
READ = ["--no-progress", *SMALL]


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    path = folder / "doc.txt"
    path.write_text("The lighthouse keeper wrote in his log every night. 灯塔看守人每晚写日志。\n" * 12, encoding="utf-8")
    return path


def test_read_then_generate_from_the_memory_file(tmp_path, capsys, doc):
    mem = tmp_path / "doc.mem"
    proc = run_in_process(capsys, "read", str(doc), "-o", str(mem), "--no-progress", *SMALL)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["tokens_read"] > 64 and info["segments"] == -(-info["tokens_read"] // 32) and mem.is_file()
    gen = run_in_process(capsys, "generate", "The keeper", "--memory", str(mem), "--max-new-tokens", "5", *SMALL)
    assert gen.returncode == 0, gen.stderr
    assert gen.stdout.strip()
    again = run_in_process(capsys, "generate", "The keeper", "--memory", str(mem), "--max-new-tokens", "5", *SMALL)
    assert again.stdout == gen.stdout  # greedy and deterministic


@pytest.mark.parametrize(
    "content,needle",
    [(b"", "empty"), (b"\x00\x01\x02\x03", "binary"), (b"caf\xe9 latin-1", "not valid UTF-8")],
)
def test_read_refuses_bad_files_and_keeps_existing_output(tmp_path, capsys, content, needle):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    out = tmp_path / "keep.mem"
    out.write_bytes(b"precious")
    assert_one_line_error(run_in_process(capsys, "read", str(bad), "-o", str(out), *READ), needle)
    assert out.read_bytes() == b"precious"


def test_bad_arguments(tmp_path, capsys, doc):
    cases = [
        (["read", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "a.mem")], "does not exist"),
        (["read", str(tmp_path), "-o", str(tmp_path / "a.mem")], "directory"),
        (["read", str(doc), "-o", str(doc)], "should end in .mem"),
        (["read", str(doc), "-o", str(tmp_path / "a.mem"), "--model", "nonexistent-model"], "unknown model"),
        (["generate", "  "], "prompt is empty"),
        (["generate", "hi", "--max-new-tokens", "0"], "--max-new-tokens"),
        (["generate", "hi", "--top-p", "0"], "--top-p"),
        (["generate", "hi", "--memory", str(tmp_path / "none.mem")], "does not exist"),
    ]
    for args, needle in cases:
        assert_one_line_error(run_in_process(capsys, *args), needle)
    assert doc.read_text(encoding="utf-8").startswith("The lighthouse")


def test_foreign_and_truncated_memory_files_are_refused(tmp_path, capsys, doc):
    mem = tmp_path / "doc.mem"
    assert run_in_process(capsys, "read", str(doc), "-o", str(mem), "--no-progress", *SMALL).returncode == 0
    other = ["--segment-size", "64", "--num-mem-tokens", "4"]  # another memory layout: another fingerprint
    assert_one_line_error(run_in_process(capsys, "generate", "x", "--memory", str(mem), *other), "made for backbone")
    truncated = tmp_path / "cut.mem"
    truncated.write_bytes(mem.read_bytes()[:100])
    assert_one_line_error(run_in_process(capsys, "generate", "x", "--memory", str(truncated), *SMALL), "truncated or corrupt")
