"""Memory-augmented training: truncated BPTT, checkpoints, exact resume."""

import json

import pytest
import torch
from conftest import tiny_model

from memgpt import MemGPTError
from memgpt.training import TrainArgs, Trainer, sequence_pass
from memgpt.training.checkpoint import latest_checkpoint


def small_args(tmp_path, **kw) -> TrainArgs:
    base = dict(task="copy", out_dir=str(tmp_path / "run"), size="tiny", num_mem_tokens=4, segment_size=6,
                curriculum=[1, 2, 3], batch_size=8, max_steps=6, eval_every=2, eval_size=16,
                checkpoint_every=3, warmup_steps=2, progress=False)
    base.update(kw)
    return TrainArgs(**base)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_chunked_backward_equals_truncated_forward(arch):
    """The trainer's per-chunk backward gives the same gradients as the model's in-graph truncation."""
    x = torch.randint(0, 99, (3, 32))
    y = x.clone()
    y[:, :12] = -100
    grads = []
    for chunked in (True, False):
        model = tiny_model(arch, num_mem_tokens=4, segment_size=8, bptt_depth=2).train()
        if chunked:
            sequence_pass(model, x, y, bptt_depth=2, backward=True)
        else:
            model(x, labels=y).loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_training_learns_and_logs(tmp_path):
    args = small_args(tmp_path, max_steps=40, eval_every=10, lr=3e-3, curriculum=[1])
    summary = Trainer(args).train()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 41))
    assert log[-1]["loss"] < log[0]["loss"]
    assert summary["evals"] and all(0 <= e["acc"] <= 1 for e in summary["evals"])


def test_resume_continues_exactly(tmp_path):
    full = Trainer(small_args(tmp_path / "a", max_steps=6)).train()
    part_args = small_args(tmp_path / "b", max_steps=6, checkpoint_every=3)
    part = Trainer(part_args)
    part.args.max_steps = 3
    part.train()  # stops at 3, checkpoint-000003
    resumed = Trainer(small_args(tmp_path / "b", max_steps=6), resume=True)
    assert resumed.step == 3
    resumed.train()
    log_a = [json.loads(x) for x in (tmp_path / "a/run/log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "b/run/log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_b] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b]  # the next losses are identical
    wa = Trainer(small_args(tmp_path / "a"), resume=True).model.state_dict()
    wb = Trainer(small_args(tmp_path / "b"), resume=True).model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert full["step"] == 6


def test_checkpoints_are_atomic_and_refused_when_bad(tmp_path):
    args = small_args(tmp_path, max_steps=3)
    Trainer(args).train()
    run = tmp_path / "run"
    ckpt = latest_checkpoint(run)
    assert ckpt.name == "checkpoint-000003" and not list(run.glob(".checkpoint-*"))
    assert all(f.suffix in {".safetensors", ".json"} for f in ckpt.iterdir())
    with pytest.raises(MemGPTError, match="already holds checkpoints"):
        Trainer(small_args(tmp_path))  # never silently overwrite a run
    with pytest.raises(MemGPTError, match="no checkpoint"):
        Trainer(small_args(tmp_path / "empty"), resume=True)
    with pytest.raises(MemGPTError, match="segment_size"):
        Trainer(small_args(tmp_path, segment_size=7), resume=True)
    (ckpt / "optimizer.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(MemGPTError, match="corrupt"):
        Trainer(small_args(tmp_path), resume=True)
    (ckpt / "optimizer.json").unlink()
    with pytest.raises(MemGPTError, match="missing"):
        Trainer(small_args(tmp_path), resume=True)


def test_non_finite_loss_stops_without_a_poisoned_checkpoint(tmp_path):
    trainer = Trainer(small_args(tmp_path, max_steps=10, checkpoint_every=100))
    with torch.no_grad():
        trainer.model.memory_init.fill_(float("nan"))
    with pytest.raises(MemGPTError, match="NaN"):
        trainer.train()
    assert latest_checkpoint(tmp_path / "run") is None
