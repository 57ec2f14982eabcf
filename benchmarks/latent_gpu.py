"""The model's own memory on the default backbone in ten minutes of one GPU: train, then score.

    bash scripts/train_memory_gpu.sh          # = python benchmarks/latent_gpu.py (every option: --help)

1. Train (`PRESET`): LoRA on every projection of SmolLM2-135M-Instruct plus the associative memory
   (`k (x) k` features, on the first `associative_layers` layers) and 16 memory tokens, bf16 autocast,
   BPTT through whole samples on `lc-mix` (passkey + qa1 in train-split speeches), curriculum 2 -> 4 -> 8
   segments of 512 tokens (a stage lasts `--stage-seconds`, or ends early at `--advance-at` held-out exact
   match), a checkpoint every `--checkpoint-seconds`, a hard stop after `--train-seconds` of training.
   Run again, it resumes from the last checkpoint (a lost machine costs at most two minutes).
2. Score on test-split speeches: passkey and qa1 at 2 / 4 / 8 / 16 segments (the document fills all but
   the last; the question comes in a fresh one), `--samples` each, for the trained memory (`latent`) and
   the `none` and `window-last` baselines, with the suite's metric (`memgpt.eval.metrics.score`).
   Answers are what `memgpt.apps.ask(read(document, memory=kind), question)` gives (the same segments,
   prompts and greedy decoding; tests/test_gpu_recipe.py checks they are equal), but generated for a
   whole batch of samples at once on the GPU (`ask` itself runs one sample at a time on the CPU). No
   document is read whole: at 2 and 4 segments `ask` would read it directly instead of into memory.
3. Write `--results` (benchmarks/results/latent_gpu.json: settings, steps, seconds, GPU, accuracy per
   kind, task and segments) and the adapter beside it (`latent_gpu.safetensors`, LoRA + memory, <= 10 MB).

Every size is an option, so the CPU dry run in the tests is this command with a tiny backbone and config.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from memgpt.errors import MemGPTError  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "latent_gpu.json"
MAX_ADAPTER_BYTES = 10 * 2**20
# The memory that solved recall from scratch (README, memory tasks): 4 heads of 24-d keys with k (x) k
# features and a 6-position convolution, here on the first layer of the backbone, plus 16 memory tokens.
RECIPE_MEMORY: dict[str, Any] = dict(num_mem_tokens=16, associative_heads=4, associative_size=24, associative_conv=6,
                                     associative_features="outer", associative_layers=1)
# One H200 (139 GiB), ten minutes. The batch: benchmarks/latent_gpu_sizing.py measured what autograd keeps per
# sample under full BPTT (LoRA: 1.11 GB at 2 segments, +0.75 GB per further segment): 16 samples of 8 segments
# hold 89 GB, 60% of the GPU, the rest left to the SDPA and delta-rule workspaces and the allocator. 8 of the
# 16 CPU cores build the next batches meanwhile (a core makes ~100k tokens/s of these samples).
PRESET: dict[str, Any] = dict(
    task="lc-mix", backbone="default", lora_rank=8, lora_alpha=16.0, bf16=True, segment_size=512,
    curriculum=[2, 4, 8], stage_seconds=150.0, advance_at=0.9, revisit=0.25, batch_size=16, lr=1e-3,
    warmup_steps=50, max_steps=1_000_000, time_budget=540.0, checkpoint_seconds=120.0, checkpoint_every=10**9,
    eval_every=100, eval_size=32, keep_checkpoints=2, data_workers=8, out_dir="runs/latent-gpu", **RECIPE_MEMORY,
)
KINDS = ("latent", "none", "window-last")
LATENT_QUESTION = "Question about the document you have read: {}\nAnswer with a few words."  # LatentMemory.answer's


def run_meta(command: str) -> dict[str, Any]:
    """Date, commit, machine and versions of a benchmark run."""
    import transformers

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "memgpt"],
                               capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except OSError:
        commit, dirty = "", ""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": (commit + ("+dirty" if dirty else "")) or None,
            "command": command, "cpu": cpu, "cpus": os.cpu_count(), "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


# -- training ---------------------------------------------------------------------------------------
def train(settings: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Train with `settings` (TrainArgs fields), resuming from the latest checkpoint in its out_dir;
    returns (the trainer's summary, the step it resumed from: 0 when it started fresh)."""
    from memgpt.training import TrainArgs, Trainer
    from memgpt.training.checkpoint import latest_checkpoint

    args = TrainArgs(**settings)
    resume = os.path.isdir(args.out_dir) and latest_checkpoint(Path(args.out_dir)) is not None
    trainer = Trainer(args, resume=resume)
    resumed_from = trainer.step
    return trainer.run(), resumed_from


def trained_model(checkpoint: Path, backbone):
    """The trained memory model of a checkpoint: the adapter merged into a copy of `backbone`, or (a full
    fine-tune) the whole saved model."""
    from memgpt.model.adapters import load_latent_model
    from memgpt.training.checkpoint import ADAPTER_FILE, load_model

    if (checkpoint / ADAPTER_FILE).is_file():
        model = load_latent_model(backbone, checkpoint / ADAPTER_FILE)
        if model is None:
            raise MemGPTError(f"the adapter in {checkpoint} was trained for another backbone")
        return model
    return load_model(checkpoint).to(backbone.dtype).eval()


# -- scoring ----------------------------------------------------------------------------------------
def pad_left(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows left-padded to one width: ids and attention mask `(B, T)`."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


@torch.inference_mode()
def generate(model, rows: list[list[int]], engine, max_new_tokens: int, device: torch.device, **kwargs) -> list[str]:
    """Greedy continuations of token `rows` in one batch, decoded and cleaned as the apps do."""
    from memgpt.memories.base import clean
    from memgpt.model.generation import pad_id, sampling_config

    ids, mask = pad_left(rows, pad_id(engine.tokenizer))
    config = sampling_config(engine.tokenizer, max_new_tokens)
    out = model.generate(ids.to(device), attention_mask=mask.to(device), generation_config=config, **kwargs)
    return [clean(engine.tokenizer.decode(row[ids.shape[1] :], skip_special_tokens=True)) for row in out.tolist()]


def window_prompts(kind: str, engine, documents: list[str], questions: list[str], max_new_tokens: int) -> list[list[int]]:
    """The prompts `ask(read(document, memory=kind), question)` gives the backbone for a window kind."""
    from memgpt.apps.reading import read
    from memgpt.memories.base import ANSWER_RESERVE, make_memory

    reader = make_memory(kind, engine)
    budget = engine.window - ANSWER_RESERVE - max_new_tokens
    rows = []
    for document, question in zip(documents, questions):
        context = reader.evidence(read(document, memory=kind, engine=engine), question, budget).text
        prompt = f"Question: {question}\n\nText: {context}\n\nQuestion: {question}"  # memories.base.answer_from's
        rows.append(engine.chat_ids(prompt, prefix="Answer:"))
    return rows


@torch.inference_mode()
def latent_memory(model, engine, documents: list[str], device: torch.device):
    """The memory after reading each document in `LatentMemory`'s segments, all rows at once (a row whose
    document has ended reads only padding, which leaves its memory as it is)."""
    from memgpt.apps.documents import token_segments
    from memgpt.memories.latent import LatentMemory
    from memgpt.model.generation import pad_id

    segments = [list(token_segments(engine.tokenizer, d, LatentMemory.segment_tokens)) for d in documents]
    memory = model.init_memory(len(documents)).to(device)
    for j in range(max(len(s) for s in segments)):
        rows = [s[j] if j < len(s) else [] for s in segments]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [pad_id(engine.tokenizer)] * (width - len(r)) for r in rows], device=device)  # (B, S) right-padded
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
        _, memory = model.memory_step(model.get_input_embeddings()(ids), mask, memory)
    return memory


def answers(kind: str, engine, models: dict[str, Any], documents: list[str], questions: list[str],
            max_new_tokens: int, device: torch.device) -> list[str]:
    """What `ask(read(document, memory=kind), question)` answers, for a batch of samples."""
    if kind == "latent":
        model = models["latent"]
        memory = latent_memory(model, engine, documents, device)
        rows = [engine.chat_ids(LATENT_QUESTION.format(q))[-model.config.segment_size :] for q in questions]
        return generate(model, rows, engine, max_new_tokens, device, memory_state=memory)
    return generate(models["backbone"], window_prompts(kind, engine, documents, questions, max_new_tokens), engine,
                    max_new_tokens, device)


def score_cells(engine, models: dict[str, Any], kinds: list[str], tasks: list[str], segments: list[int], samples: int,
                segment_size: int, max_new_tokens: int, batch: int, device: torch.device, seed: int = 0,
                log=print) -> tuple[dict, dict]:
    """Accuracy (kind -> task -> segments) on test-split samples whose documents fill `n - 1` segments, and
    the predictions."""
    from memgpt.eval.longcontext import make_sample
    from memgpt.eval.metrics import score

    accuracy: dict = {k: {t: {} for t in tasks} for k in kinds}
    predictions: dict = {}
    for task in tasks:
        for n in segments:
            cell = [make_sample(task, (n - 1) * segment_size - 8, i, seed, "test", measure=False) for i in range(samples)]
            for kind in kinds:
                t0 = time.perf_counter()
                said: list[str] = []
                for i in range(0, samples, batch):
                    part = cell[i : i + batch]
                    said += answers(kind, engine, models, [s.context for s in part], [s.prompt for s in part],
                                    max_new_tokens, device)
                right = [score(task, p, s.answer, s.labels, s.question) for p, s in zip(said, cell)]
                accuracy[kind][task][str(n)] = sum(right) / samples
                predictions[f"{kind}/{task}/{n}"] = [{"answer": s.answer, "prediction": p, "correct": c}
                                                     for s, p, c in zip(cell, said, right)]
                log(f"{kind:<12} {task:<8} {n:>3} segments  {accuracy[kind][task][str(n)]:.3f}  "
                    f"({time.perf_counter() - t0:.1f} s)")
    return accuracy, predictions


def teacher_forced(model, tasks: list[str], segments: list[int], samples: int, segment_size: int, batch: int,
                   device: torch.device) -> dict:
    """Exact match in the training format on test-split speeches (`lc-passkey`, `lc-qa1`): every answer token
    and the closing `<|im_end|>` are the model's greedy choice given the ones before (what greedy decoding
    of exactly the answer needs)."""
    from memgpt.training.tasks import LONG_TRAIN_TASKS, LatentMemoryTask
    from memgpt.training.trainer import evaluate

    autocast = torch.bfloat16 if device.type == "cuda" else None
    out: dict = {}
    for name in tasks:
        task = LatentMemoryTask(LONG_TRAIN_TASKS[name], name, split="test")
        out[name] = {str(n): evaluate(model, task, n, segment_size, samples, batch, autocast=autocast) for n in segments}
    return out


# -- the command ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict[str, Any]]:
    from memgpt.training import TrainArgs

    fields = {f.name: f for f in dataclasses.fields(TrainArgs)}
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", default=PRESET["out_dir"], help="training run folder (checkpoints, log.jsonl)")
    p.add_argument("--results", type=Path, default=RESULTS, help="the JSON; the adapter is written beside it")
    p.add_argument("--backbone", default=PRESET["backbone"])
    p.add_argument("--train-seconds", type=float, default=PRESET["time_budget"], help="hard stop, seconds of training")
    p.add_argument("--checkpoint-seconds", type=float, default=PRESET["checkpoint_seconds"])
    p.add_argument("--stage-seconds", type=float, default=PRESET["stage_seconds"], help="seconds per curriculum stage")
    p.add_argument("--curriculum", default=",".join(map(str, PRESET["curriculum"])), help="segments per stage")
    p.add_argument("--batch-size", type=int, default=PRESET["batch_size"])
    p.add_argument("--max-steps", type=int, default=PRESET["max_steps"])
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help=f"any other training setting (repeatable): {', '.join(fields)}")
    p.add_argument("--eval-segments", default="2,4,8,16")
    p.add_argument("--eval-tasks", default="passkey,qa1")
    p.add_argument("--kinds", default=",".join(KINDS), help="the trained memory (latent) and the baselines")
    p.add_argument("--samples", type=int, default=100, help="per task and number of segments")
    p.add_argument("--eval-batch", type=int, default=100, help="samples generated at once")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    a = p.parse_args(argv)
    settings = dict(PRESET, out_dir=a.out_dir, backbone=a.backbone, time_budget=a.train_seconds,
                    checkpoint_seconds=a.checkpoint_seconds, stage_seconds=a.stage_seconds, batch_size=a.batch_size,
                    max_steps=a.max_steps, threads=a.threads, progress=sys.stderr.isatty())
    try:
        settings["curriculum"] = [int(v) for v in a.curriculum.split(",")]
        a.eval_segments = [int(v) for v in a.eval_segments.split(",")]
    except ValueError:
        raise MemGPTError("--curriculum and --eval-segments take comma-separated integers") from None
    for item in a.set:
        name, _, value = item.partition("=")
        if name not in fields or not _:
            raise MemGPTError(f"--set expects FIELD=VALUE with a training setting, got {item!r}")
        kind = type(PRESET.get(name, fields[name].default))
        if kind not in (bool, int, float, str):
            raise MemGPTError(f"--set {name}: not a single value (use --{name.replace('_', '-')})")
        try:
            settings[name] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
        except ValueError:
            raise MemGPTError(f"--set {name}: expected {kind.__name__}, got {value!r}") from None
    a.eval_tasks, a.kinds = a.eval_tasks.split(","), a.kinds.split(",")
    unknown = sorted(set(a.kinds) - set(KINDS))
    if unknown or a.samples < 1 or a.eval_batch < 1 or min(a.eval_segments) < 2:
        raise MemGPTError(f"--kinds from {', '.join(KINDS)}; --samples, --eval-batch >= 1; --eval-segments >= 2")
    return a, settings


def main(argv: list[str] | None = None) -> None:
    import transformers

    from memgpt.model.engine import get_engine

    a, settings = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    command = "bash scripts/train_memory_gpu.sh " + " ".join(sys.argv[1:] if argv is None else argv)
    t0 = time.perf_counter()
    summary, resumed_from = train(settings)
    train_wall = time.perf_counter() - t0
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the trainer's activations and optimizer are gone; give their memory back
    print(f"trained {summary['step']} steps ({summary['elapsed']:.0f} s of training, {summary['stop_reason']}; "
          f"resumed from step {resumed_from}); scoring", file=sys.stderr, flush=True)

    checkpoint = Path(summary["checkpoint"])
    device = torch.device("cuda" if torch.cuda.is_available() and settings.get("device", "auto") != "cpu" else "cpu")
    engine = get_engine(settings["backbone"], dtype="bf16" if device.type == "cuda" else "auto")
    models = {"latent": trained_model(checkpoint, engine.backbone).to(device).eval()} if "latent" in a.kinds else {}
    models["backbone"] = engine.backbone.to(device)  # the engine is only read through (tokenizer, windows) from here on
    t1 = time.perf_counter()
    accuracy, predictions = score_cells(engine, models, a.kinds, a.eval_tasks, a.eval_segments, a.samples,
                                        settings["segment_size"], a.max_new_tokens, a.eval_batch, device,
                                        log=lambda line: print(line, file=sys.stderr, flush=True))
    forced = teacher_forced(models["latent"], ["lc-passkey", "lc-qa1"], a.eval_segments, a.samples,
                            settings["segment_size"], a.eval_batch, device) if "latent" in models else None
    eval_seconds = time.perf_counter() - t1

    from memgpt.eval.suite import write_text
    from memgpt.training.checkpoint import ADAPTER_FILE

    a.results.parent.mkdir(parents=True, exist_ok=True)
    adapter = checkpoint / ADAPTER_FILE
    shipped = None
    if adapter.is_file() and adapter.stat().st_size <= MAX_ADAPTER_BYTES:
        shipped = a.results.with_suffix(".safetensors")
        tmp = shipped.with_name(f".{shipped.name}.tmp")
        shutil.copyfile(adapter, tmp)
        os.replace(tmp, shipped)
    log = [json.loads(line) for line in (Path(settings["out_dir"]) / "log.jsonl").read_text().splitlines() if line.strip()]
    result = run_meta(command) | {
        "settings": settings,
        "eval": {"kinds": a.kinds, "tasks": a.eval_tasks, "segments": a.eval_segments, "samples": a.samples,
                 "split": "test", "segment_tokens": settings["segment_size"], "max_new_tokens": a.max_new_tokens,
                 "metric": "memgpt.eval.metrics.score (passkey: first integer; qa1: BABILong's rule)"},
        "steps": summary["step"], "resumed_from_step": resumed_from, "stop_reason": summary["stop_reason"],
        "curriculum_stage_reached": summary["stage"],
        "steps_by_segments": {str(n): sum(r.get("segments") == n for r in log) for n in sorted({r.get("segments") for r in log if r.get("segments")})},
        "seconds": {"training": round(summary["elapsed"], 1), "training_wall": round(train_wall, 1),
                    "scoring": round(eval_seconds, 1)},
        "device": device.type, "train_evals": summary["evals"],
        "adapter": None if shipped is None else {"file": shipped.name, "bytes": shipped.stat().st_size},
        "accuracy": accuracy,
        "latent_teacher_forced_exact_match": forced,
    }
    write_text(a.results, json.dumps(result, indent=2))
    write_text(a.results.with_name(a.results.stem + "_predictions.json"), json.dumps(predictions))
    print(table(accuracy, a.eval_segments))
    print(f"wrote {a.results}" + (f" and {shipped}" if shipped else " (no adapter: not LoRA, or over 10 MB)"))


def table(accuracy: dict, segments: list[int]) -> str:
    lines = [f"{'memory':<12} {'task':<8} " + " ".join(f"{n:>5}" for n in segments)]
    for kind, by_task in accuracy.items():
        for task, by_n in by_task.items():
            lines.append(f"{kind:<12} {task:<8} " + " ".join(f"{by_n[str(n)]:>5.2f}" for n in segments))
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        main()
    except MemGPTError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
