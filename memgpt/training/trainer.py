"""Memory-augmented training: BPTT over consecutive segments with a curriculum on their number."""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..backbones import memgpt_config
from ..errors import MemGPTError
from ..modeling_memgpt import MemGPTForCausalLM
from ..tasks import IGNORE, Task, get_task
from .checkpoint import latest_checkpoint, load_model, load_training_state, save_checkpoint, write_json_atomic
from .curriculum import Curriculum

EVAL_SEED = 10**9  # evaluation samples come from seeds no training step uses
ADAPTER_FILE = "adapter.safetensors"  # LoRA runs checkpoint only the trained parameters


@dataclass
class TrainArgs:
    """Everything a training run depends on (saved with every checkpoint)."""

    task: str = "copy"
    out_dir: str = "runs/copy"
    size: str = "copy"
    arch: str = "gpt2"
    num_mem_tokens: int = 8
    segment_size: int = 8
    memory_update: str = "replace"
    memory_norm: bool = True
    curriculum: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7, 8, 9])
    advance_at: float = 0.95
    stage_steps: int = 0
    revisit: float = 0.25
    max_steps: int = 5000
    time_budget: float = 0.0
    stop_at: float = 1.01
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    bptt_depth: int = -1
    seed: int = 0
    eval_every: int = 100
    eval_size: int = 256
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    full_attention: bool = False
    threads: int = 0
    progress: bool = True
    backbone: str = ""  # a pretrained backbone ("default", a folder, a hub id) instead of a config from scratch
    lora_rank: int = 0  # > 0: train LoRA (peft) + the memory parameters only; the backbone stays frozen
    lora_alpha: float = 16.0
    bf16: bool = False  # bfloat16 autocast (CPU or CUDA)
    device: str = "auto"  # auto: cuda when available, else cpu

    def validate(self) -> None:
        """Raise `MemGPTError` on option values that cannot work."""
        positive = ["segment_size", "max_steps", "batch_size", "eval_every", "eval_size", "checkpoint_every"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise MemGPTError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.num_mem_tokens < 0:
            raise MemGPTError(f"--num-mem-tokens must be >= 0, got {self.num_mem_tokens}")
        if not self.curriculum or any(n <= 0 for n in self.curriculum):
            raise MemGPTError(f"--curriculum must be positive segment counts, got {self.curriculum}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise MemGPTError(f"--lr must be a positive number, got {self.lr}")
        if not 0.0 <= self.revisit <= 1.0:
            raise MemGPTError(f"--revisit must be in [0, 1], got {self.revisit}")
        if self.bptt_depth == 0 or self.bptt_depth < -1:
            raise MemGPTError(f"--bptt-depth must be -1 (full) or > 0, got {self.bptt_depth}")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.time_budget < 0 or self.threads < 0:
            raise MemGPTError("--warmup-steps, --grad-clip, --time-budget and --threads must be >= 0")
        if self.lora_rank < 0 or (self.lora_rank and not self.backbone):
            raise MemGPTError("--lora-rank must be >= 0 and needs --backbone")
        if self.backbone and self.full_attention:
            raise MemGPTError("--full-attention trains a model from scratch; it cannot be used with --backbone")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise MemGPTError(f"--device must be auto, cpu or cuda[:N], got {self.device!r}")

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise MemGPTError("--device cuda: no CUDA device is available")
        return torch.device(self.device)


def build_model(args: TrainArgs, task: Task, max_segments: int | None = None) -> MemGPTForCausalLM:
    """A fresh model for `args`; full attention reads the longest input as one segment, no memory.
    With `backbone`, a pretrained LM with fresh memory (and LoRA when `lora_rank` > 0)."""
    if args.backbone:
        model = MemGPTForCausalLM.from_backbone(
            args.backbone, args.num_mem_tokens, args.segment_size, args.bptt_depth, args.memory_update
        )
        model.config.memory_norm = args.memory_norm
        if model.config.vocab_size < task.vocab_size:
            raise MemGPTError(f"task {args.task!r} needs a vocabulary of {task.vocab_size}; the backbone has {model.config.vocab_size}")
        if args.lora_rank:
            from ..adapters import add_lora

            torch.manual_seed(args.seed)
            add_lora(model, args.lora_rank, args.lora_alpha)
        return model.train()
    if args.full_attention:
        longest = (max_segments or max(args.curriculum)) * args.segment_size
        config = memgpt_config(args.size, args.arch, task.vocab_size, 0, longest, -1)
    else:
        config = memgpt_config(
            args.size, args.arch, task.vocab_size, args.num_mem_tokens, args.segment_size, args.bptt_depth,
            args.memory_update, args.memory_norm,
        )
    torch.manual_seed(args.seed)
    return MemGPTForCausalLM(config)


def lr_at(step: int, args: TrainArgs) -> float:
    """Linear warmup, then cosine decay to 10% of the peak over `max_steps`."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def sequence_pass(
    model: MemGPTForCausalLM,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    bptt_depth: int = -1,
    backward: bool = False,
    autocast: torch.dtype | None = None,
) -> tuple[float, torch.Tensor]:
    """Run one batch segment by segment; return (mean loss, per-sample exact match `[B]`).

    With `backward` and `bptt_depth > 0`, the sequence is cut into chunks of `bptt_depth` segments
    and each chunk is backpropagated on its own, so activations of only one chunk are ever held.
    `autocast`: run the forward passes under `torch.autocast` in that dtype (e.g. bfloat16).
    """
    shift = nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE)  # (B, T), aligned with logits
    total = int((shift != IGNORE).sum())
    seg = model.config.segment_size
    chunk = input_ids.shape[1] if bptt_depth <= 0 else bptt_depth * seg
    memory, loss_value = None, 0.0
    wrong = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    for start in range(0, input_ids.shape[1], chunk):
        sl = slice(start, start + chunk)
        with torch.autocast(input_ids.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            out = model(
                input_ids=input_ids[:, sl], shift_labels=shift[:, sl], memory_state=memory,
                num_items_in_batch=total, bptt_depth=-1,
            )
        if backward and out.loss.requires_grad:
            if not torch.isfinite(out.loss):
                return float("nan"), wrong
            out.loss.backward()
        loss_value += float(out.loss.detach())
        memory = out.memory_state.detach()
        target = shift[:, sl]
        mask = target != IGNORE
        if mask.any():
            wrong |= ((out.logits.argmax(-1) != target) & mask).any(-1)
    return loss_value, (~wrong).cpu()


@torch.inference_mode()
def evaluate(
    model: MemGPTForCausalLM, task: Task, num_segments: int, segment_size: int, size: int = 256,
    batch_size: int = 64, seed: int = EVAL_SEED, autocast: torch.dtype | None = None,
) -> float:
    """Exact-match accuracy on `size` held-out samples of `num_segments` segments."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, size, batch_size):
        n = min(batch_size, size - i)
        x, y = task.batch(n, num_segments, segment_size, seed=seed + 7919 * num_segments + i)
        device = model.memory_init.device
        correct += int(sequence_pass(model, x.to(device), y.to(device), autocast=autocast)[1].sum())
    model.train(was_training)
    return correct / size


class Trainer:
    """Trains a `MemGPTForCausalLM` on a synthetic task; resumable from its own checkpoints."""

    def __init__(self, args: TrainArgs, resume: bool = False, model: MemGPTForCausalLM | None = None):
        args.validate()
        self.args = args
        self.task = get_task(args.task)
        for n in args.curriculum:
            self.task.check(n, args.segment_size)
        self.out_dir = Path(args.out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise MemGPTError(f"--out-dir {self.out_dir} exists and is not a directory")
        self.log_path = self.out_dir / "log.jsonl"
        self.curriculum = Curriculum(args.curriculum, args.advance_at, args.stage_steps, args.revisit)
        self.step, self.elapsed, self.evals = 0, 0.0, []
        if args.threads:
            torch.set_num_threads(args.threads)
        self.device = args.torch_device()
        self.autocast = torch.bfloat16 if args.bf16 else None
        ckpt = latest_checkpoint(self.out_dir) if self.out_dir.exists() else None
        if resume:
            if ckpt is None:
                raise MemGPTError(f"--resume: no checkpoint in {self.out_dir}")
            self._resume(ckpt)
        else:
            if ckpt is not None:
                raise MemGPTError(f"{self.out_dir} already holds checkpoints; pass --resume or another --out-dir")
            self.model = model if model is not None else build_model(args, self.task)
            self.model.to(self.device)
            self.optimizer = self._optimizer()

    def _optimizer(self) -> torch.optim.Optimizer:
        trainable = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        decay = [p for n, p in trainable if p.ndim >= 2 and "memory_init" not in n]
        no_decay = [p for n, p in trainable if p.ndim < 2 or "memory_init" in n]
        groups = [{"params": decay, "weight_decay": self.args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.args.lr)

    def _resume(self, ckpt: Path) -> None:
        opt_state, state, rng = load_training_state(ckpt)
        saved = state.get("args", {})
        fixed = ("task", "size", "arch", "num_mem_tokens", "segment_size", "memory_update", "memory_norm", "full_attention",
                 "backbone", "lora_rank", "lora_alpha")
        for key in fixed:
            if key in saved and saved[key] != getattr(self.args, key):
                raise MemGPTError(f"--resume: {key}={getattr(self.args, key)!r} but the checkpoint has {saved[key]!r}")
        if self.args.lora_rank:
            from ..adapters import load_adapter_into, read_adapter

            self.model = build_model(self.args, self.task)
            load_adapter_into(self.model, read_adapter(ckpt / ADAPTER_FILE)[0])
        else:
            self.model = load_model(ckpt)
        self.model.to(self.device)
        self.model.train()
        self.optimizer = self._optimizer()
        try:
            self.optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError, RuntimeError) as e:
            raise MemGPTError(f"checkpoint {ckpt} has an optimizer state that does not fit: {e}") from None
        torch.set_rng_state(rng)
        self.step, self.elapsed, self.evals = state["step"], state["elapsed"], state["evals"]
        self.curriculum.load_state_dict(state["curriculum"])
        self._truncate_log(self.step)

    def _truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint we resume from (they will be redone)."""
        if not self.log_path.exists():
            return
        kept = [ln for ln in self.log_path.read_text().splitlines() if ln and json.loads(ln).get("step", 0) <= step]
        tmp = self.log_path.with_suffix(".tmp")
        tmp.write_text("".join(ln + "\n" for ln in kept))
        tmp.replace(self.log_path)

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step, "elapsed": self.elapsed, "evals": self.evals,
            "curriculum": self.curriculum.state_dict(), "args": asdict(self.args),
        }

    def save(self) -> Path:
        saver = None
        if self.args.lora_rank:  # only what was trained: a few MB instead of the whole backbone
            from ..adapters import save_adapter

            info = {"task": self.args.task, "step": self.step, "evals": self.evals[-3:]}

            def saver(folder: Path) -> None:
                save_adapter(folder / ADAPTER_FILE, self.model, self.args.lora_rank, self.args.lora_alpha, info)

        return save_checkpoint(
            self.out_dir, self.step, self.model, self.optimizer, self.state_dict(), self.args.keep_checkpoints,
            save_model=saver,
        )

    def train_step(self) -> dict[str, Any]:
        """One optimizer step on a batch determined by (seed, step) alone."""
        args = self.args
        rng = random.Random(f"{args.seed}:{self.step}")
        num_segments = self.curriculum.sample(rng)
        x, y = self.task.batch(args.batch_size, num_segments, args.segment_size, seed=rng.getrandbits(63))
        x, y = x.to(self.device), y.to(self.device)
        lr = lr_at(self.step, args)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss, correct = sequence_pass(self.model, x, y, args.bptt_depth, backward=True, autocast=self.autocast)
        record = {"step": self.step + 1, "loss": loss, "acc": float(correct.float().mean()),
                  "segments": num_segments, "lr": lr}
        if not math.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            record["skipped"] = "non-finite loss"
            return record
        if args.grad_clip > 0:
            params = [p for p in self.model.parameters() if p.requires_grad]
            record["grad_norm"] = float(nn.utils.clip_grad_norm_(params, args.grad_clip))
        self.optimizer.step()
        return record

    def train(self) -> dict[str, Any]:
        """Train until `max_steps`, the time budget, or `stop_at` accuracy on the last stage."""
        args = self.args
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.model.train()
        bad_steps = 0
        bar = tqdm(total=args.max_steps, initial=self.step, disable=not args.progress, desc=args.task)
        stop_reason = "max_steps"
        while self.step < args.max_steps:
            t0 = time.perf_counter()
            record = self.train_step()
            self.step += 1
            self.elapsed += time.perf_counter() - t0
            record["elapsed"] = round(self.elapsed, 3)
            bad_steps = bad_steps + 1 if "skipped" in record else 0
            if bad_steps >= 3:
                raise MemGPTError(f"loss was NaN/inf for 3 steps in a row at step {self.step}; lower --lr")
            if self.step % args.eval_every == 0:
                n = self.curriculum.current
                acc = evaluate(self.model, self.task, n, args.segment_size, args.eval_size,
                               batch_size=min(64, args.batch_size), autocast=self.autocast)
                self.evals.append({"step": self.step, "segments": n, "acc": acc})
                record["eval_acc"] = acc
                advanced = self.curriculum.update(acc, self.step)
                record["stage"] = self.curriculum.stage
                if not advanced and self.curriculum.is_last and acc >= args.stop_at:
                    stop_reason = "stop_at"
            self._log(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['acc']:.2f}", seg=record["segments"])
            if stop_reason == "stop_at" or (args.time_budget and self.elapsed >= args.time_budget):
                stop_reason = "stop_at" if stop_reason == "stop_at" else "time_budget"
                break
            if self.step % args.checkpoint_every == 0:
                self.save()
        bar.close()
        final = self.save()
        summary = {"step": self.step, "elapsed": self.elapsed, "stop_reason": stop_reason,
                   "stage": self.curriculum.stage, "checkpoint": str(final), "evals": self.evals}
        write_json_atomic(self.out_dir / "summary.json", summary)
        return summary
