"""The ten-minute GPU recipe (scripts/train_memory_gpu.sh): its CPU dry run end to end (train with
time-based checkpoints, resume, score, JSON, adapter), its batched scoring against `ask`, and the
time-based curriculum."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from conftest import tiny_llama_engine
from memgpt.training import Curriculum

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "train_memory_gpu.sh"


def recipe_module():
    spec = importlib.util.spec_from_file_location("latent_gpu", ROOT / "benchmarks" / "latent_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dry_run(tmp_path: Path, backbone: Path, max_steps: int) -> subprocess.CompletedProcess:
    """The GPU command with a tiny config: 2 -> 3 segments (a stage per step), a checkpoint every step
    by the clock, scoring 2 samples at 2 and 3 segments."""
    tiny = ["num_mem_tokens=2", "associative_heads=2", "associative_size=8", "eval_every=1", "eval_size=2",
            "stage_steps=1", "warmup_steps=1", "lr=0.01", "data_workers=0"]
    command = ["bash", str(SCRIPT), "--out-dir", str(tmp_path / "run"), "--results", str(tmp_path / "res" / "latent_gpu.json"),
               "--backbone", str(backbone), "--max-steps", str(max_steps), "--batch-size", "2", "--curriculum", "2,3",
               "--stage-seconds", "0", "--checkpoint-seconds", "1e-9", "--eval-segments", "2,3", "--samples", "2",
               "--eval-batch", "2", "--max-new-tokens", "4", "--threads", "1", *[f"--set={s}" for s in tiny]]
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


def test_dry_run_trains_checkpoints_resumes_scores_and_writes_json(tmp_path, tiny_backbone):
    first = dry_run(tmp_path, tiny_backbone, max_steps=2)
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "run"
    assert (run / "checkpoint-000001").is_dir()  # written by the clock: checkpoint_every is 10^9 steps
    assert json.loads((tmp_path / "res" / "latent_gpu.json").read_text())["resumed_from_step"] == 0

    second = dry_run(tmp_path, tiny_backbone, max_steps=4)  # the same command again: it resumes
    assert second.returncode == 0, second.stderr[-3000:]
    result = json.loads((tmp_path / "res" / "latent_gpu.json").read_text())
    assert result["resumed_from_step"] == 2 and result["steps"] == 4 and result["stop_reason"] == "max_steps"
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # continued from the checkpoint, nothing redone or skipped
    assert result["steps_by_segments"].get("3", 0) >= 1  # the curriculum reached its second stage
    for key in ("date", "commit", "command", "cpu", "torch", "settings", "eval", "seconds", "gpu", "accuracy"):
        assert key in result
    assert result["settings"]["lora_rank"] == 8 and result["settings"]["associative_features"] == "outer"
    assert result["settings"]["bf16"] is True and result["settings"]["curriculum"] == [2, 3]
    assert set(result["seconds"]) == {"training", "training_wall", "scoring"} and result["seconds"]["training"] > 0
    assert set(result["accuracy"]) == {"latent", "none", "window-last"}
    for by_task in result["accuracy"].values():
        assert set(by_task) == {"passkey", "qa1"}
        for by_n in by_task.values():
            assert set(by_n) == {"2", "3"} and all(0.0 <= v <= 1.0 for v in by_n.values())
    forced = result["latent_teacher_forced_exact_match"]
    assert set(forced) == {"lc-passkey", "lc-qa1"} and all(set(v) == {"2", "3"} for v in forced.values())
    predictions = json.loads((tmp_path / "res" / "latent_gpu_predictions.json").read_text())
    assert len(predictions) == 12 and all(len(p) == 2 for p in predictions.values())
    adapter = tmp_path / "res" / "latent_gpu.safetensors"
    assert result["adapter"]["file"] == adapter.name and adapter.stat().st_size <= 10 * 2**20
    assert adapter.read_bytes() == (run / "checkpoint-000004" / "adapter.safetensors").read_bytes()


def test_dry_run_refuses_bad_settings_in_one_line(tmp_path):
    out = subprocess.run(["bash", str(SCRIPT), "--set", "no_such_setting=1"], capture_output=True, text=True,
                         env=dict(os.environ, PYTHON=sys.executable), cwd=ROOT, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "no_such_setting" in out.stderr


def test_batched_scoring_answers_as_ask_does():
    """The recipe generates a whole batch at once; each answer must be the free answer that `ask` gives that
    kind's memory for the sample (the candidate its grounded path then checks)."""
    from memgpt.apps import make_memory
    from memgpt.apps.reading import read
    from memgpt.memories.base import ANSWER_RESERVE
    from memgpt.eval.longcontext import make_sample
    from memgpt.model.modeling_memgpt import MemGPTForCausalLM

    recipe = recipe_module()
    engine = tiny_llama_engine()
    latent = MemGPTForCausalLM.from_backbone(engine.backbone, num_mem_tokens=2, segment_size=512, associative_heads=2,
                                             associative_size=8, associative_features="outer")
    with torch.no_grad():  # a memory that differs from a fresh one, so reading the document matters
        for p in latent.memory_associative.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.5)
    engine.extras["latent"] = latent.eval()
    models = {"latent": latent, "backbone": engine.backbone}
    samples = [make_sample("passkey", 1200, i, 0, "test") for i in range(2)] + [make_sample("qa1", 300, 0, 0, "test")]
    for kind in ("none", "window-last", "latent"):
        memory, expected = make_memory(kind, engine), []
        for s in samples:
            state = read(s.context, memory=kind, engine=engine)
            found = memory.evidence(state, s.prompt, engine.window - ANSWER_RESERVE - 6)
            expected.append(memory.free_answer(state, found, s.prompt, 6))
        got = [recipe.answers(kind, engine, models, [s.context], [s.prompt], 6, torch.device("cpu"))[0] for s in samples]
        assert got == expected, kind
    # a batch reads each document as far as it goes: memories equal those read one at a time
    together = recipe.latent_memory(latent, engine, [s.context for s in samples], torch.device("cpu"))
    for i, s in enumerate(samples):
        alone = recipe.latent_memory(latent, engine, [s.context], torch.device("cpu"))
        torch.testing.assert_close(together.associative[i : i + 1], alone.associative, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(together.tokens[i : i + 1], alone.tokens, atol=1e-4, rtol=1e-4)


def test_curriculum_advances_by_time():
    c = Curriculum([2, 4, 8], advance_at=0.9, stage_seconds=150.0)
    assert not c.update(0.1, step=50, elapsed=149.0) and c.current == 2
    assert c.update(0.1, step=60, elapsed=151.0) and c.current == 4
    assert not c.update(0.1, step=70, elapsed=300.0)  # 149 s into the second stage
    assert c.update(0.95, step=71, elapsed=301.0) and c.current == 8  # accuracy still advances early
    restored = Curriculum([2, 4, 8], stage_seconds=150.0)
    restored.load_state_dict(c.state_dict())
    assert restored.state_dict() == c.state_dict() == {"stage": 2, "stage_start": 71, "stage_start_elapsed": 301.0}


def test_batches_made_ahead_in_worker_processes_train_the_same(tmp_path):
    from memgpt.training import TrainArgs, Trainer

    def losses(workers: int) -> list[float]:
        args = TrainArgs(task="recall", out_dir=str(tmp_path / f"w{workers}"), size="tiny", segment_size=8,
                         curriculum=[2, 3], stage_steps=2, eval_every=2, eval_size=8, batch_size=4, max_steps=5,
                         progress=False, data_workers=workers)
        trainer = Trainer(args)
        trainer.train()
        assert trainer.batches_made_ahead >= (3 if workers else 0) and (workers or not trainer.batches_made_ahead)
        return [json.loads(line)["loss"] for line in (tmp_path / f"w{workers}" / "log.jsonl").read_text().splitlines()]

    assert losses(2) == losses(0)  # the same batches, whichever process made them (the stage moves at step 2)


def test_preset_on_the_default_backbone_trains_an_adapter_under_10_mb(tmp_path):
    """The recipe's model on the real default backbone: only LoRA + memory train, and their file fits the
    10 MB an adapter may weigh (the figures of benchmarks/results/latent_gpu_sizing.json)."""
    from memgpt.model.adapters import read_adapter, save_adapter
    from memgpt.training import TrainArgs, build_model
    from memgpt.training.tasks import get_task

    recipe = recipe_module()
    args = TrainArgs(**recipe.PRESET)
    model = build_model(args, get_task(args.task))
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in trained.values()) == 2_678_428
    assert any(n.startswith("memory_associative.0.") for n in trained) and "memory_init" in trained
    assert len(model.memory_associative) == 1 and model.config.associative_features == "outer"
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, model, args.lora_rank, args.lora_alpha)
    assert path.stat().st_size <= recipe.MAX_ADAPTER_BYTES
    assert read_adapter(path)[1]["associative_layers"] == 1


def test_fresh_associative_memory_on_a_pretrained_backbone_changes_nothing_until_trained(tmp_path, tiny_backbone):
    """Its read-out starts at zero: the backbone reads each segment as if alone; one step makes it speak."""
    from memgpt.model.modeling_memgpt import MemGPTForCausalLM
    from memgpt.training import TrainArgs, Trainer, build_model
    from memgpt.training.tasks import get_task

    args = TrainArgs(task="lc-passkey", backbone=str(tiny_backbone), num_mem_tokens=0, associative_heads=2,
                     associative_size=8, segment_size=128, curriculum=[2], batch_size=2, max_steps=1, eval_every=1,
                     eval_size=1, warmup_steps=1, lr=0.01, progress=False, out_dir=str(tmp_path / "run"))
    model = build_model(args, get_task(args.task)).eval()
    plain = MemGPTForCausalLM.from_backbone(str(tiny_backbone), num_mem_tokens=0, segment_size=128).eval()
    ids = torch.randint(0, 1000, (2, 300), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, plain(ids).logits)
    trainer = Trainer(args)
    trainer.train()
    assert all(bool(m.out.weight.abs().sum() > 0) for m in trainer.model.memory_associative)
