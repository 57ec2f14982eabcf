"""The `memgpt` command: real runs, and bad input that must end in one line and a non-zero exit."""

import json
import subprocess
import sys

import pytest

from memgpt.cli.main import main


def memgpt(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memgpt", *args], capture_output=True, text=True, timeout=timeout)


def run_in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """Call the CLI's entry point in this process (fast), shaped like a subprocess result."""
    code = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def assert_one_line_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr and needle in lines[0]


TINY = ["--size", "tiny", "--segment-size", "6", "--num-mem-tokens", "2", "--curriculum", "1,2",
        "--batch-size", "4", "--eval-every", "2", "--eval-size", "8", "--no-progress"]


def test_train_resume_and_evaluate(tmp_path):
    out = tmp_path / "run"
    first = memgpt("train", *TINY, "--max-steps", "2", "--checkpoint-every", "2", "--out-dir", str(out))
    assert first.returncode == 0, first.stderr
    again = memgpt("train", *TINY, "--max-steps", "4", "--out-dir", str(out))
    assert_one_line_error(again, "already holds checkpoints")
    resumed = memgpt("train", *TINY, "--max-steps", "4", "--out-dir", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["step"] == 4
    ev = memgpt("evaluate", str(out), "--segments", "1,2", "--json")
    assert ev.returncode == 0, ev.stderr
    scores = json.loads(ev.stdout)
    assert [s["segments"] for s in scores] == [1, 2] and all(0 <= s["accuracy"] <= 1 for s in scores)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "--segment-size", "0"], "--segment-size must be > 0"),
        (["train", "--segment-size", "abc"], "not a valid integer"),
        (["train", "--task", "nope", "--out-dir", "{tmp}/x"], "unknown task"),
        (["train", "--size", "huge", "--out-dir", "{tmp}/x", "--max-steps", "1"], "unknown model size"),
        (["train", "--curriculum", "1,x"], "comma-separated integers"),
        (["train", "--curriculum", "0,2"], "--curriculum"),
        (["train", "--lr", "nan"], "--lr"),
        (["train", "--bptt-depth", "0"], "--bptt-depth"),
        (["train", "--resume", "--out-dir", "{tmp}/none"], "no checkpoint"),
        (["train", "--bogus-option"], "No such option"),
        (["evaluate", "{tmp}/missing"], "does not exist"),
        (["evaluate", "{tmp}/file.txt"], "not a model folder"),
        (["evaluate", "{tmp}/emptydir"], "not a memgpt model folder"),
        (["evaluate", "{tmp}/corrupt"], "cannot load"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_bad_input_gives_one_line_error(tmp_path, capsys, args, needle):
    (tmp_path / "file.txt").write_text("hello")
    (tmp_path / "emptydir").mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text(json.dumps({"model_type": "memgpt"}))
    (corrupt / "model.safetensors").write_bytes(b"\x07" * 100)
    proc = run_in_process(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert_one_line_error(proc, needle)


def test_corrupt_latest_pointer_is_reported(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_in_process(capsys, "train", *TINY, "--max-steps", "1", "--out-dir", str(out)).returncode == 0
    (out / "latest").write_text("{not json")
    assert_one_line_error(run_in_process(capsys, "train", *TINY, "--out-dir", str(out), "--resume"), "corrupt")
    assert_one_line_error(run_in_process(capsys, "evaluate", str(out)), "corrupt")
