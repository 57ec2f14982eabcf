"""Numerical health: NaN/inf loss or gradients are skipped with a message, three in a row stop the
run with a clear error, and no checkpoint with NaN/inf weights is ever written."""

import json

import pytest
import torch
from safetensors.torch import load_file
from test_cli import assert_one_line_error, run_in_process

from memgpt import MemGPTError
from memgpt.training import TrainArgs, Trainer
from memgpt.training.checkpoint import latest_checkpoint, save_checkpoint


def args_for(tmp_path, **kw) -> TrainArgs:
    base = dict(task="copy", size="tiny", segment_size=6, num_mem_tokens=2, curriculum=[1], batch_size=4, max_steps=6,
                eval_every=100, eval_size=8, checkpoint_every=1, warmup_steps=0, progress=False, out_dir=str(tmp_path / "run"))
    return TrainArgs(**base | kw)


def test_nan_loss_stops_with_a_clear_message_and_writes_no_checkpoint(tmp_path, capsys):
    trainer = Trainer(args_for(tmp_path))  # a checkpoint after every step, were any step good
    with torch.no_grad():
        trainer.model.memory_init.fill_(float("nan"))
    with pytest.raises(MemGPTError) as info:
        trainer.train()
    assert str(info.value) == (
        "loss or gradients were NaN/inf for 3 steps in a row (steps 1-3); stopped without writing a checkpoint "
        "of them (last checkpoint: none); try a lower --lr"
    )
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert warnings == [f"warning: step {i}: non-finite loss (NaN/inf); step skipped, weights unchanged" for i in (1, 2, 3)]
    assert latest_checkpoint(tmp_path / "run") is None and not list((tmp_path / "run").glob("*checkpoint*"))
    log = [json.loads(ln) for ln in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in log] == ["non-finite loss"] * 3


def test_divergence_after_a_checkpoint_keeps_that_checkpoint(tmp_path):
    Trainer(args_for(tmp_path, max_steps=2)).train()
    before = load_file(str(tmp_path / "run" / "checkpoint-000002" / "model.safetensors"))
    trainer = Trainer(args_for(tmp_path, max_steps=8), resume=True)
    with torch.no_grad():
        trainer.model.memory_init.fill_(float("inf"))
    with pytest.raises(MemGPTError, match=r"steps 3-5\); stopped without writing a checkpoint of them \(last checkpoint: step 2\)"):
        trainer.train()
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint-000002"
    after = load_file(str(tmp_path / "run" / "checkpoint-000002" / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_non_finite_gradients_with_a_finite_loss_are_skipped(tmp_path, capsys):
    """A finite loss can still give inf gradients; the optimizer must not apply them."""
    trainer = Trainer(args_for(tmp_path, max_steps=3))
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    calls = []

    def poison_first_step(grad):
        calls.append(1)
        return torch.full_like(grad, float("inf")) if len(calls) == 1 else grad

    trainer.model.memory_gain.register_hook(poison_first_step)
    trainer.args.max_steps = 1
    trainer.train()
    assert "warning: step 1: non-finite gradients (NaN/inf); step skipped" in capsys.readouterr().err
    assert all(torch.equal(v, start[k]) for k, v in trainer.model.state_dict().items())  # untouched
    trainer.args.max_steps = 3
    trainer.train()  # later steps train normally
    weights = load_file(str(tmp_path / "run" / "checkpoint-000003" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert not torch.equal(weights["memory_gain"], start["memory_gain"])


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path):
    trainer = Trainer(args_for(tmp_path))
    with torch.no_grad():
        trainer.model.memory_gain[0] = float("nan")
    with pytest.raises(MemGPTError, match="refusing to write checkpoint-000000: weight memory_gain holds NaN/inf"):
        save_checkpoint(tmp_path / "run", 0, trainer.model, trainer.optimizer, trainer.state_dict())
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").iterdir())


def test_cli_reports_divergence_in_one_line(tmp_path, capsys):
    """`--lr 1e30` blows the weights up after one step: three skipped steps, then one error line."""
    proc = run_in_process(capsys, "train", "--size", "tiny", "--segment-size", "6", "--num-mem-tokens", "2",
                          "--curriculum", "1", "--batch-size", "4", "--max-steps", "6", "--eval-every", "100",
                          "--checkpoint-every", "100", "--warmup-steps", "0", "--no-progress", "--lr", "1e30",
                          "--out-dir", str(tmp_path / "run"))
    errors = [ln for ln in proc.stderr.splitlines() if not ln.startswith("warning:")]
    assert_one_line_error(type(proc)(proc.args, proc.returncode, proc.stdout, "\n".join(errors)), "NaN/inf for 3 steps")
    assert latest_checkpoint(tmp_path / "run") is None
