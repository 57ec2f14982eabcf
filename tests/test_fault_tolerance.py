"""Fault tolerance: SIGKILL at random moments and inside checkpoint writes, disk full, read-only output.

Training runs are forked children of this test process (a real process, really killed with SIGKILL,
without 5 s of imports each) calling `memgpt.cli.main.main`. One run directory is killed again and again
(each child resumes from the last checkpoint), then finished; it must equal one uninterrupted run.
"""

import errno
import hashlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_distributed import cli_flags

from memgpt import MemGPTError
from memgpt.cli.main import main
from memgpt.training import TrainArgs, Trainer
from memgpt.training import checkpoint as ckpt_mod
from memgpt.training.checkpoint import NAME, PHASES, latest_checkpoint, load_model, load_training_state

ROOT = Path(__file__).resolve().parents[1]
STEPS = 60
ARGS = dict(task="copy", size="tiny", segment_size=6, num_mem_tokens=2, curriculum=[1, 2], stage_steps=6,
            batch_size=4, eval_every=3, eval_size=8, checkpoint_every=2, keep_checkpoints=2, warmup_steps=2,
            max_steps=STEPS, threads=1, progress=False, device="cpu")
RANDOM_KILLS = 12
KILLS_SURVIVED: list[str] = []


def flags(out: Path) -> list[str]:
    return ["train", "--out-dir", str(out), *cli_flags(**ARGS)]


def fork_train(out: Path, env: dict[str, str] | None = None, fsize: int | None = None) -> tuple[int, Path]:
    """Start `memgpt train` (resuming if there is a checkpoint) in a forked child; return (pid, output file)."""
    output = out.parent / f"child-{time.monotonic_ns()}.txt"
    argv = flags(out) + ["--auto-resume"]  # the same command for every restart
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 99
        try:
            os.environ.update(env or {})
            if fsize is not None:  # "disk full": writes past `fsize` bytes fail with EFBIG
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
            sys.stdout = sys.stderr = open(output, "w", buffering=1)
            code = main(argv)
        except BaseException as e:  # noqa: BLE001 - report and exit, whatever happened
            print(f"child crashed: {e!r}", file=sys.__stderr__)
        finally:
            os._exit(code)
    return pid, output


def wait(pid: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("child did not finish in time")


def kill(pid: int) -> bool:
    """SIGKILL the child; False if it had already exited on its own."""
    os.kill(pid, signal.SIGKILL)
    status = os.waitpid(pid, 0)[1]
    if os.WIFEXITED(status):
        assert os.WEXITSTATUS(status) == 0
        return False
    assert os.WTERMSIG(status) == signal.SIGKILL
    return True


def latest_step(out: Path) -> int:
    ckpt = latest_checkpoint(out) if out.is_dir() else None
    return int(NAME.fullmatch(ckpt.name).group(1)) if ckpt else 0


def check_consistent(out: Path, previous_step: int) -> int:
    """After a kill: `latest` names a complete checkpoint no older than before, every visible
    checkpoint loads, and nothing but hidden leftovers of the killed writer lies around."""
    step = latest_step(out)
    assert step >= previous_step, f"lost checkpoint {previous_step}: latest is now {step}"
    if out.is_dir():
        for p in out.iterdir():
            if NAME.fullmatch(p.name):
                load_training_state(p)
                load_model(p)
            else:
                assert p.name in {"latest", "log.jsonl", "summary.json"} or p.name.startswith("."), p
    return step


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[list[dict], dict[str, torch.Tensor], Path]:
    """One uninterrupted run (in this process; forked children compute exactly the same)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    Trainer(TrainArgs(**ARGS, out_dir=str(out))).train()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return log, load_file(str(out / f"checkpoint-{STEPS:06d}" / "model.safetensors")), out


def assert_matches_reference(out: Path, reference) -> None:
    ref_log, ref_weights, _ = reference
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in log] == [r["loss"] for r in ref_log]  # bit for bit
    weights = load_file(str(out / f"checkpoint-{STEPS:06d}" / "model.safetensors"))
    assert all(torch.equal(weights[k], ref_weights[k]) for k in ref_weights)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # leftovers were cleaned up


def pause_and_kill(out: Path, phase: str, step: int) -> None:
    """Kill the writer while it is inside checkpoint `step`, at `phase` (see checkpoint.PHASES)."""
    marker = out.parent / f"paused-{phase}-{step}"
    pid, output = fork_train(out, {"MEMGPT_TEST_PAUSE_AT": f"{phase}@{step}", "MEMGPT_TEST_PAUSE_FILE": str(marker)})
    deadline = time.monotonic() + 120
    while not marker.exists():
        done, _ = os.waitpid(pid, os.WNOHANG)
        assert not done, f"child ended before {phase}@{step}: {output.read_text()}"
        assert time.monotonic() < deadline, f"child never reached {phase}@{step}"
        time.sleep(0.005)
    assert kill(pid)


def log_lines(out: Path) -> int:
    try:
        return (out / "log.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def random_kill(out: Path, rng: random.Random) -> str | None:
    """Kill a resumed run at a random moment: after 0-3 more logged steps plus 0-30 ms (so it lands
    anywhere: loading, a step, an eval, a log write, a checkpoint). None if it finished first."""
    start = log_lines(out)
    more, jitter = rng.randint(0, 3), rng.uniform(0.0, 0.03)
    pid, _ = fork_train(out)
    deadline = time.monotonic() + 120
    while log_lines(out) < start + more and time.monotonic() < deadline and not os.waitpid(pid, os.WNOHANG)[0]:
        time.sleep(0.001)
    time.sleep(jitter)
    try:
        killed = kill(pid)
    except ChildProcessError:  # reaped above: it finished on its own
        killed = False
    return f"after {more} more steps + {jitter * 1000:.0f} ms" if killed else None


def test_sigkill_anywhere_then_resume_gives_the_uninterrupted_result(reference, tmp_path):
    out = tmp_path / "run"
    rng = random.Random(1234)
    every = ARGS["checkpoint_every"]
    plan = [("phase", p) for p in PHASES] + [("random", None)] * RANDOM_KILLS
    rng.shuffle(plan)
    step = 0
    for kind, phase in plan:
        if kind == "phase":
            target = (step // every + 1) * every
            if phase == "pruned":  # pruning starts once `keep` checkpoints exist
                target = max(target, every * (ARGS["keep_checkpoints"] + 1))
            pause_and_kill(out, phase, target)
            where = f"inside the write of checkpoint {target} at '{phase}'"
        else:
            where = random_kill(out, rng)
        step = check_consistent(out, step)
        assert step < STEPS, "the run finished: too few steps for the kills planned"
        if where:
            KILLS_SURVIVED.append(f"{where} -> resumed from step {step}")
    pid, output = fork_train(out)
    assert wait(pid) == 0, output.read_text()
    assert_matches_reference(out, reference)
    print(f"\n{len(KILLS_SURVIVED)} kill points survived:\n  " + "\n  ".join(KILLS_SURVIVED))
    assert len(KILLS_SURVIVED) >= 10
    assert sum("inside the write" in k for k in KILLS_SURVIVED) == len(PHASES)


def tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def run_at_step_4(tmp_path) -> Path:
    """A run killed just after its checkpoint at step 4 (same schedule as the reference)."""
    out = tmp_path / "run"
    pause_and_kill(out, "latest", 4)
    assert latest_step(out) == 4
    return out


def assert_one_line_error(output: str, *needles: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in output, output
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0]


def test_disk_full_is_a_clear_error_and_loses_no_checkpoint(run_at_step_4, reference):
    out = run_at_step_4
    checkpoints = {p.name: tree_digest(p) for p in out.glob("checkpoint-*")}
    pid, output = fork_train(out, fsize=16_000)  # model.safetensors (~70 kB) cannot be written
    assert wait(pid) == 2
    assert_one_line_error(output.read_text(), "cannot write checkpoint-000006", "File too large",
                          "checkpoint-000004, is intact")
    assert {p.name: tree_digest(p) for p in out.glob("checkpoint-*")} == checkpoints
    assert latest_step(out) == 4 and not [p for p in out.iterdir() if p.name.startswith(".checkpoint")]
    pid, output = fork_train(out)  # space is back: the run finishes as if nothing happened
    assert wait(pid) == 0, output.read_text()
    assert_matches_reference(out, reference)


def test_read_only_at_checkpoint_time_is_a_clear_error(run_at_step_4, monkeypatch):
    """Simulated: the folder turns read-only mid-run (every new file or folder fails with EROFS,
    as on a read-only remount); see the next test for a real read-only mount."""
    out = run_at_step_4
    checkpoints = {p.name: tree_digest(p) for p in out.glob("checkpoint-*")}
    trainer = Trainer(TrainArgs(**ARGS, out_dir=str(out)), resume=True)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(ckpt_mod.tempfile, "mkdtemp", read_only)
    monkeypatch.setattr(ckpt_mod.tempfile, "mkstemp", read_only)
    with pytest.raises(MemGPTError, match="cannot write checkpoint-000006 .*Read-only file system.*checkpoint-000004, is intact"):
        trainer.train()
    assert {p.name: tree_digest(p) for p in out.glob("checkpoint-*")} == checkpoints and latest_step(out) == 4


def _can_mount_read_only(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    cmd = f"mount --bind {probe} {probe} && mount -o remount,bind,ro {probe} && ! touch {probe}/x 2>/dev/null"
    try:
        return subprocess.run(["unshare", "--mount", "sh", "-c", cmd], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def test_real_read_only_mount_is_a_clear_error(run_at_step_4, tmp_path):
    """A real read-only bind mount in a private mount namespace (needs CAP_SYS_ADMIN; skipped without)."""
    if not _can_mount_read_only(tmp_path):
        pytest.skip("cannot make a read-only mount here (no unshare/CAP_SYS_ADMIN)")
    out = run_at_step_4
    checkpoints = {p.name: tree_digest(p) for p in out.glob("checkpoint-*")}
    train = " ".join(f"'{a}'" for a in flags(out) + ["--resume"])
    script = (f"mount --bind {out} {out} && mount -o remount,bind,ro {out} && "
              f"exec '{sys.executable}' -m memgpt {train}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "Read-only file system")
    assert {p.name: tree_digest(p) for p in out.glob("checkpoint-*")} == checkpoints and latest_step(out) == 4


def test_out_dir_under_a_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code = main(flags(tmp_path / "file" / "run"))
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, "cannot create --out-dir", "Not a directory")
