"""Memory-augmented training: BPTT over consecutive segments with a curriculum on their number."""

from __future__ import annotations

import json
import math
import os
import random
import re
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..model.backbones import memgpt_config
from ..model.configuration_memgpt import MEMORY_DEFAULTS, MEMORY_FIELDS, check_memory_settings, memory_settings
from ..errors import MemGPTError
from ..model.hardware import native_bf16
from ..model.modeling_memgpt import MemGPTForCausalLM
from .tasks import IGNORE, Task, get_task
from . import distributed as D
from .checkpoint import (
    ADAPTER_FILE, checkpoint_name, latest_checkpoint, load_model, load_training_state, save_checkpoint,
    write_json_atomic, write_text_atomic,
)
from .curriculum import Curriculum
from .prefetch import BatchPrefetcher

EVAL_SEED = 10**9  # evaluation samples come from seeds no training step uses
# sanity limits: beyond these an option is a typo, and would exhaust memory or never finish
LIMITS = {"segment_size": 1 << 16, "num_mem_tokens": 4096, "batch_size": 1 << 16, "max_steps": 10**9,
          "eval_size": 1 << 20, "eval_every": 10**9, "checkpoint_every": 10**9, "keep_checkpoints": 10**6,
          "warmup_steps": 10**9, "stage_steps": 10**9, "threads": 1024, "seed": 2**62, "bptt_depth": 1 << 16,
          "data_workers": 256}
MAX_BATCH_TOKENS = 1 << 24


# the memory settings as training options: MemGPTConfig's fields and defaults (documented there)
MemoryArgs = make_dataclass("MemoryArgs", [(name, type(value), field(default=value)) for name, value in MEMORY_DEFAULTS.items()])


@dataclass
class TrainArgs(MemoryArgs):
    """Everything a training run depends on (saved with every checkpoint): the memory settings of
    `MemGPTConfig`, and how to train."""

    task: str = "copy"
    out_dir: str = "runs/copy"
    size: str = "copy"
    arch: str = "gpt2"
    segment_size: int = 8  # the copy task's segments (RMT protocol), not the config's default
    curriculum: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7, 8, 9])
    advance_at: float = 0.95
    stage_steps: int = 0
    stage_seconds: float = 0.0  # > 0: advance a stage after this many seconds of training in it
    revisit: float = 0.25
    max_steps: int = 5000
    time_budget: float = 0.0
    stop_at: float = 1.01
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 100
    eval_size: int = 256
    checkpoint_every: int = 500
    checkpoint_seconds: float = 0.0  # > 0: also checkpoint after this many seconds of training since the last one
    keep_checkpoints: int = 2
    full_attention: bool = False
    threads: int = 0
    data_workers: int = 0  # > 0: processes that build the next steps' batches while a step trains
    progress: bool = True
    device: str = "auto"
    fsdp: bool = False
    backbone: str = ""  # a pretrained backbone ("default", a folder, a hub id) instead of a config from scratch
    lora_rank: int = 0  # > 0: train LoRA (peft) + the memory parameters only; the backbone stays frozen
    lora_alpha: float = 16.0
    bf16: bool = False  # bfloat16 autocast (CPU or CUDA)

    def validate(self) -> None:
        """Raise `MemGPTError` on option values that cannot work (or would exhaust memory or time)."""
        try:
            check_memory_settings(memory_settings(self))
        except MemGPTError as e:  # name the settings as the command's options
            names = "|".join(MEMORY_FIELDS)
            raise MemGPTError(re.sub(rf"\b({names})\b", lambda m: "--" + m.group(1).replace("_", "-"), str(e))) from None
        positive = ["max_steps", "batch_size", "eval_every", "eval_size", "checkpoint_every",
                    "keep_checkpoints"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise MemGPTError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        for name, top in LIMITS.items():
            if abs(getattr(self, name)) > top:
                raise MemGPTError(f"--{name.replace('_', '-')} {getattr(self, name)} is absurd (at most {top})")
        for name in ("lr", "weight_decay", "advance_at", "stop_at", "revisit", "grad_clip", "time_budget",
                     "stage_seconds", "checkpoint_seconds"):
            if not math.isfinite(getattr(self, name)):
                raise MemGPTError(f"--{name.replace('_', '-')} must be a finite number, got {getattr(self, name)}")
        if not self.out_dir.strip() or "\x00" in self.out_dir:
            raise MemGPTError(f"--out-dir must be a folder name, got {self.out_dir!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise MemGPTError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if not self.curriculum or any(n <= 0 for n in self.curriculum):
            raise MemGPTError(f"--curriculum must be positive segment counts, got {self.curriculum}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise MemGPTError(f"--lr must be a positive number, got {self.lr}")
        if not 0.0 <= self.revisit <= 1.0:
            raise MemGPTError(f"--revisit must be in [0, 1], got {self.revisit}")
        if min(self.warmup_steps, self.grad_clip, self.time_budget, self.threads, self.stage_seconds,
               self.checkpoint_seconds, self.data_workers) < 0:
            raise MemGPTError("--warmup-steps, --grad-clip, --time-budget, --threads, --stage-seconds, "
                              "--checkpoint-seconds and --data-workers must be >= 0")
        if self.lora_rank < 0 or self.lora_rank > 4096 or (self.lora_rank and not self.backbone):
            raise MemGPTError("--lora-rank must be from 0 to 4096 and needs --backbone")
        if not (math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            raise MemGPTError(f"--lora-alpha must be a positive number, got {self.lora_alpha}")
        if self.backbone and self.full_attention:
            raise MemGPTError("--full-attention trains a model from scratch; it cannot be used with --backbone")
        if self.lora_rank and self.fsdp:
            raise MemGPTError("--lora-rank with --fsdp is not supported (LoRA runs are small: use DDP)")
        if any(n > LIMITS["segment_size"] for n in self.curriculum):
            raise MemGPTError(f"--curriculum entries are absurd (at most {LIMITS['segment_size']} segments)")
        tokens = self.batch_size * max(self.curriculum) * self.segment_size
        if tokens > MAX_BATCH_TOKENS:
            raise MemGPTError(
                f"a step would hold {tokens} tokens per process (batch x segments x segment size); "
                f"the limit is {MAX_BATCH_TOKENS}"
            )


def build_model(args: TrainArgs, task: Task, max_segments: int | None = None) -> MemGPTForCausalLM:
    """A fresh model for `args`; full attention reads the longest input as one segment, no memory.
    With `backbone`, a pretrained LM with fresh memory that changes nothing until trained (and LoRA
    when `lora_rank` > 0)."""
    if args.backbone:
        model = MemGPTForCausalLM.from_backbone(args.backbone, **memory_settings(args))
        # A fresh associative memory reads out at 1.5x the token embeddings' scale (SmolLM2), and the
        # backbone then answered nothing at all; read out through zeros (LoRA's B), it starts as a no-op.
        for memory in getattr(model, "memory_associative", ()):
            nn.init.zeros_(memory.out.weight)
        if model.config.vocab_size < task.vocab_size:
            raise MemGPTError(f"task {args.task!r} needs a vocabulary of {task.vocab_size}; the backbone has {model.config.vocab_size}")
        if args.lora_rank:
            from ..model.adapters import add_lora

            torch.manual_seed(args.seed)
            add_lora(model, args.lora_rank, args.lora_alpha)
        return model.train()
    if args.full_attention:
        longest = (max_segments or max(args.curriculum)) * args.segment_size
        config = memgpt_config(args.size, args.arch, task.vocab_size, num_mem_tokens=0, segment_size=longest)
    else:
        config = memgpt_config(args.size, args.arch, task.vocab_size, **memory_settings(args))
    torch.manual_seed(args.seed)
    return MemGPTForCausalLM(config)


def lr_at(step: int, args: TrainArgs) -> float:
    """Linear warmup, then cosine decay to 10% of the peak over `max_steps`."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def sequence_pass(
    model: nn.Module,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    bptt_depth: int = -1,
    backward: bool = False,
    num_items: float | None = None,
    autocast: torch.dtype | None = None,
) -> tuple[float, torch.Tensor]:
    """Run one batch segment by segment; return (mean loss, per-sample exact match `[B]`).

    With `backward` and `bptt_depth > 0`, the sequence is cut into chunks of `bptt_depth` segments
    and each chunk is backpropagated on its own, so activations of only one chunk are ever held.
    `model` may be wrapped for data parallelism: gradients are then reduced once, on the last chunk.
    The loss is the sum over labelled tokens divided by `num_items` (default: this batch's count).
    `autocast`: run the forward passes under `torch.autocast` in that dtype (e.g. bfloat16).
    """
    core = D.unwrap(model)
    shift = nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE)  # (B, T), aligned with logits
    total = int((shift != IGNORE).sum()) if num_items is None else num_items
    seg = core.config.segment_size
    chunk = input_ids.shape[1] if bptt_depth <= 0 else bptt_depth * seg
    memory, loss_value = None, 0.0
    wrong = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    for start in range(0, input_ids.shape[1], chunk):
        sl = slice(start, start + chunk)
        last = start + chunk >= input_ids.shape[1]
        with D.no_sync(model) if backward and not last else nullcontext():
            with torch.autocast(input_ids.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
                out = model(
                    input_ids=input_ids[:, sl], shift_labels=shift[:, sl], memory_state=memory,
                    num_items_in_batch=total, bptt_depth=-1,
                )
            if backward and out.loss.requires_grad:
                out.loss.backward()  # even when NaN: every process must take part in the reduction
        loss_value += float(out.loss.detach())
        memory = out.memory_state.detach()
        target = shift[:, sl]
        mask = target != IGNORE
        if mask.any():
            wrong |= ((out.logits.argmax(-1) != target) & mask).any(-1)
    return loss_value, ~wrong


@torch.inference_mode()
def evaluate_counts(
    model: nn.Module, task: Task, num_segments: int, segment_size: int, size: int = 256,
    batch_size: int = 64, seed: int = EVAL_SEED, shard: tuple[int, int] = (0, 1), autocast: torch.dtype | None = None,
) -> int:
    """How many of `size` held-out samples are exactly right; with `shard=(rank, world)` only the
    batches `rank, rank + world, ...` are scored (the caller sums the counts over processes)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rank, world = shard
    correct = 0
    for index, i in enumerate(range(0, size, batch_size)):
        if index % world != rank:
            continue
        n = min(batch_size, size - i)
        x, y = task.batch(n, num_segments, segment_size, seed=seed + 7919 * num_segments + i)
        correct += int(sequence_pass(model, x.to(device), y.to(device), autocast=autocast)[1].sum())
    model.train(was_training)
    return correct


def evaluate(
    model: nn.Module, task: Task, num_segments: int, segment_size: int, size: int = 256,
    batch_size: int = 64, seed: int = EVAL_SEED, autocast: torch.dtype | None = None,
) -> float:
    """Exact-match accuracy on `size` held-out samples of `num_segments` segments."""
    return evaluate_counts(model, task, num_segments, segment_size, size, batch_size, seed, autocast=autocast) / size


class Trainer:
    """Trains a `MemGPTForCausalLM` on a synthetic task; resumable from its own checkpoints.

    Under `torchrun`/`accelerate launch` each process trains on its slice of the global batch
    (`batch_size` rows per process) through DDP or FSDP; rank 0 alone writes checkpoints and logs.
    """

    def __init__(self, args: TrainArgs, resume: bool = False, model: MemGPTForCausalLM | None = None):
        args.validate()
        self.args = args
        self.task = get_task(args.task)
        for n in args.curriculum:
            self.task.check(n, args.segment_size)
        self.out_dir = Path(args.out_dir)
        if os.path.lexists(self.out_dir) and not os.path.isdir(self.out_dir):
            raise MemGPTError(f"--out-dir {self.out_dir} exists and is not a directory")
        self.log_path = self.out_dir / "log.jsonl"
        self.curriculum = Curriculum(args.curriculum, args.advance_at, args.stage_steps, args.revisit, args.stage_seconds)
        self.step, self.elapsed, self.evals = 0, 0.0, []
        self.saved_step: int | None = None
        self.saved_elapsed = 0.0  # training seconds at the last checkpoint (`checkpoint_seconds`)
        self.prefetch: BatchPrefetcher | None = None  # while `train` runs with `data_workers`
        self.batches_made_ahead = 0
        if args.threads:
            torch.set_num_threads(args.threads)
        self.dist = D.init_distributed(args.device)
        self.autocast = torch.bfloat16 if args.bf16 else None
        if args.bf16 and self.dist.is_main and not native_bf16(str(self.dist.device)):
            warnings.warn("--bf16: this hardware has no native bf16 (no AVX512-BF16/AMX, or a CUDA GPU without it); "
                          "it is emulated and several times slower than fp32", stacklevel=2)
        ckpt = latest_checkpoint(self.out_dir) if os.path.isdir(self.out_dir) else None
        if resume:
            if ckpt is None:
                raise MemGPTError(f"--resume: no checkpoint in {self.out_dir}")
            self._resume(ckpt)
        else:
            if ckpt is not None:
                raise MemGPTError(f"{self.out_dir} already holds checkpoints; pass --resume or another --out-dir")
            self._setup(model if model is not None else build_model(args, self.task))
            if self.dist.is_main:
                self._truncate_log(0)  # a run killed before its first checkpoint starts over
        D.barrier(self.dist)

    @property
    def sharded(self) -> bool:
        return self.dist.enabled and self.args.fsdp

    def _setup(self, model: MemGPTForCausalLM) -> None:
        """Place the model, shard or wrap it for data parallelism, make the optimizer."""
        model = model.to(self.dist.device)
        if self.sharded:
            D.wrap(model, self.dist, fsdp=True)  # in place; parameters become shards
        self.model = model
        self.optimizer = self._optimizer()
        self._engine = D.wrap(model, self.dist) if self.dist.enabled and not self.sharded else model

    @property
    def engine(self) -> nn.Module:
        """What a training step calls: the model, or DDP around it (re-wrapped if `model` was replaced)."""
        if not self.dist.enabled:
            return self.model
        if D.unwrap(self._engine) is not self.model:
            self._engine = D.wrap(self.model, self.dist)
        return self._engine

    def _param_groups(self) -> list[list[str]]:
        """Parameter names of the optimizer's two groups (decay, no decay), in optimizer order."""
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]  # LoRA: the rest is frozen
        decay = [n for n, p in named if p.ndim >= 2 and "memory_init" not in n]
        no_decay = [n for n, p in named if not (p.ndim >= 2 and "memory_init" not in n)]
        return [decay, no_decay]

    def _optimizer(self) -> torch.optim.Optimizer:
        params = dict(self.model.named_parameters())
        decay, no_decay = self._param_groups()
        groups = [{"params": [params[n] for n in decay], "weight_decay": self.args.weight_decay},
                  {"params": [params[n] for n in no_decay], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.args.lr)

    def _resume(self, ckpt: Path) -> None:
        opt_state, state, rng = load_training_state(ckpt)
        saved = state.get("args", {})
        fixed = ("task", "size", "arch", *(f for f in MEMORY_FIELDS if f != "bptt_depth"), "full_attention", "backbone",
                 "lora_rank", "lora_alpha")
        for key in fixed:
            if key in saved and saved[key] != getattr(self.args, key):
                raise MemGPTError(f"--resume: {key}={getattr(self.args, key)!r} but the checkpoint has {saved[key]!r}")
        if self.args.lora_rank:
            from ..model.adapters import load_adapter_into, read_adapter

            model = build_model(self.args, self.task)
            load_adapter_into(model, read_adapter(ckpt / ADAPTER_FILE)[0])
        else:
            model = load_model(ckpt)
        model.train()
        self._setup(model)
        try:
            if self.sharded:
                D.load_full_optimizer_state(self.model, self.optimizer, self._by_name(opt_state))
            else:
                self.optimizer.load_state_dict(opt_state)
                self._check_optimizer_state()
        except (ValueError, KeyError, IndexError, TypeError, RuntimeError) as e:
            raise MemGPTError(f"checkpoint {ckpt} has an optimizer state that does not fit: {e}") from None
        torch.set_rng_state(rng)
        self.step, self.elapsed, self.evals = state["step"], state["elapsed"], state["evals"]
        self.saved_step, self.saved_elapsed = self.step, self.elapsed
        self.curriculum.load_state_dict(state["curriculum"])
        if self.dist.is_main:
            self._truncate_log(self.step)

    def _check_optimizer_state(self) -> None:
        """Refuse optimizer moments that do not fit their parameter or are not finite."""
        for group in self.optimizer.param_groups:
            for param in group["params"]:
                for key, value in self.optimizer.state.get(param, {}).items():
                    if not torch.is_tensor(value):
                        continue
                    if value.ndim > 0 and value.shape != param.shape:
                        raise ValueError(f"{key} has shape {list(value.shape)} for a parameter of {list(param.shape)}")
                    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                        raise ValueError(f"{key} holds NaN/inf")

    def _by_name(self, state: dict[str, Any]) -> dict[str, Any]:
        """An index-keyed optimizer state_dict (the checkpoint format) keyed by parameter name."""
        groups = self._param_groups()
        names = [n for group in groups for n in group]
        return {
            "state": {names[int(i)]: v for i, v in state["state"].items()},
            "param_groups": [dict(g, params=groups[k]) for k, g in enumerate(state["param_groups"])],
        }

    def _by_index(self, state: dict[str, Any]) -> dict[str, Any]:
        """The inverse of `_by_name`: a full name-keyed optimizer state -> the checkpoint format."""
        groups = self._param_groups()
        index = {n: i for i, n in enumerate(n for group in groups for n in group)}
        return {
            "state": {index[n]: v for n, v in state["state"].items()},
            "param_groups": [dict(g, params=[index[n] for n in g["params"]]) for g in state["param_groups"]],
        }

    def _truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint we resume from (they will be redone), and a
        line torn by a crash."""
        if not os.path.isfile(self.log_path):
            return
        kept = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
                kept.append(line)
        try:
            write_text_atomic(self.log_path, "".join(ln + "\n" for ln in kept))
        except OSError as e:
            raise MemGPTError(f"cannot write {self.log_path}: {e.strerror}") from None

    def _log(self, record: dict[str, Any]) -> None:
        try:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise MemGPTError(f"cannot write {self.log_path}: {e.strerror}") from None

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step, "elapsed": self.elapsed, "evals": self.evals,
            "curriculum": self.curriculum.state_dict(), "args": asdict(self.args),
        }

    def save(self) -> Path:
        """Write a checkpoint of this step (rank 0 writes; every process learns whether it worked)."""
        path = self.out_dir / checkpoint_name(self.step)
        if self.saved_step == self.step:
            return path
        model_state, optim_state = None, self.optimizer
        if self.sharded:  # a collective: every process gathers, rank 0 keeps the full state
            model_state, full_optim = D.full_state_dict(self.model, self.dist, self.optimizer)
            optim_state = self._by_index(full_optim) if full_optim is not None else None
            if model_state is not None:  # one copy of tied weights, as save_pretrained writes them
                seen: set[int] = set()
                for name, param in self.model.named_parameters(remove_duplicate=False):
                    if id(param) in seen:
                        model_state.pop(name, None)
                    seen.add(id(param))
        saver = None
        if self.args.lora_rank:  # only what was trained: a few MB instead of the whole backbone
            from ..model.adapters import save_adapter

            info = {"task": self.args.task, "step": self.step, "evals": self.evals[-3:]}

            def saver(folder: Path) -> None:
                save_adapter(folder / ADAPTER_FILE, D.unwrap(self.model), self.args.lora_rank, self.args.lora_alpha, info)

        error: BaseException | None = None
        if self.dist.is_main:
            try:
                save_checkpoint(self.out_dir, self.step, self.model, optim_state, self.state_dict(),
                                self.args.keep_checkpoints, model_state=model_state, save_model=saver)
            except Exception as e:  # noqa: BLE001 - re-raised below, after the other processes know
                error = e
        if not D.all_agree(self.dist, error is None):
            if error is not None:
                raise error
            raise MemGPTError(f"rank 0 could not write {path.name}; stopping")
        self.saved_step, self.saved_elapsed = self.step, self.elapsed
        return path

    def batch_key(self, step: int) -> tuple[int, int, int, int]:
        """(rows, segments, segment size, seed) of step `step`'s global batch under the current curriculum
        stage: it depends on (seed, step) alone."""
        rng = random.Random(f"{self.args.seed}:{step}")
        num_segments = self.curriculum.sample(rng)
        return self.args.batch_size * self.dist.world_size, num_segments, self.args.segment_size, rng.getrandbits(63)

    def _make_batch(self, key: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows, segments, size, seed = key
        return self.task.batch(rows, segments, size, seed=seed)

    def train_step(self) -> dict[str, Any]:
        """One optimizer step on a batch determined by (seed, step) alone; with W processes each
        takes rows `[rank*B, (rank+1)*B)` of the same global batch of `W*B` rows."""
        args, ctx = self.args, self.dist
        key = self.batch_key(self.step)
        num_segments, rows = key[1], args.batch_size
        if self.prefetch is not None:
            x, y = self.prefetch.get(key)
            self.prefetch.ahead([self.batch_key(s) for s in range(self.step + 1, min(self.step + 1 + self.prefetch.depth,
                                                                                       args.max_steps))])
        else:
            x, y = self._make_batch(key)
        num_items = None
        if ctx.enabled:  # normalise by the global token count; DDP averages over processes, hence / W
            num_items = int((y[:, 1:] != IGNORE).sum()) / ctx.world_size
            x, y = x[ctx.rank * rows : (ctx.rank + 1) * rows], y[ctx.rank * rows : (ctx.rank + 1) * rows]
        x, y = x.to(ctx.device), y.to(ctx.device)
        lr = lr_at(self.step, args)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss, correct = sequence_pass(self.engine, x, y, args.bptt_depth, backward=True, num_items=num_items,
                                      autocast=self.autocast)
        loss, n_correct = D.all_sum(ctx, loss, float(correct.sum()))
        loss /= ctx.world_size
        record = {"step": self.step + 1, "loss": loss, "acc": n_correct / (rows * ctx.world_size),
                  "segments": num_segments, "lr": lr}
        if not math.isfinite(loss):
            return self._skip(record, "non-finite loss")
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), args.grad_clip if args.grad_clip > 0 else math.inf)
        norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        if not math.isfinite(norm):
            return self._skip(record, "non-finite gradients")
        if args.grad_clip > 0:
            record["grad_norm"] = norm
        self.optimizer.step()
        return record

    def _skip(self, record: dict[str, Any], reason: str) -> dict[str, Any]:
        """Leave the weights alone this step, and say so."""
        self.optimizer.zero_grad(set_to_none=True)
        record["skipped"] = reason
        if self.dist.is_main:
            tqdm.write(f"warning: step {record['step']}: {reason} (NaN/inf); step skipped, weights unchanged",
                       file=sys.stderr)
        return record

    def _evaluate(self, num_segments: int) -> float:
        """Eval accuracy; data-parallel runs split the eval batches over processes and sum the counts."""
        args = self.args
        if self.sharded:  # FSDP forward passes are collectives: every process scores every batch
            return evaluate(self.model, self.task, num_segments, args.segment_size, args.eval_size, autocast=self.autocast)
        shard = (self.dist.rank, self.dist.world_size)
        count = evaluate_counts(self.model, self.task, num_segments, args.segment_size, args.eval_size, shard=shard,
                                batch_size=min(64, args.batch_size), autocast=self.autocast)
        return D.all_sum(self.dist, count)[0] / args.eval_size

    def train(self) -> dict[str, Any]:
        """Train until `max_steps`, the time budget, or `stop_at` accuracy on the last stage."""
        args, ctx = self.args, self.dist
        if ctx.is_main:
            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise MemGPTError(f"cannot create --out-dir {self.out_dir}: {e.strerror}") from None
        D.barrier(ctx)
        if not self.sharded:  # a caller may have swapped in a model built on the CPU
            self.model.to(ctx.device)
        self.model.train()
        bar = tqdm(total=args.max_steps, initial=self.step, disable=not (args.progress and ctx.is_main), desc=args.task)
        if args.data_workers:
            self.prefetch = BatchPrefetcher(args.task, args.data_workers, self._make_batch)
        try:
            stop_reason = self._loop(bar)
        finally:
            bar.close()
            if self.prefetch is not None:
                self.prefetch.close()
                self.batches_made_ahead += self.prefetch.made_ahead
                self.prefetch = None
        final = self.save()
        summary = {"step": self.step, "elapsed": self.elapsed, "stop_reason": stop_reason,
                   "stage": self.curriculum.stage, "checkpoint": str(final), "evals": self.evals}
        if ctx.is_main:
            try:
                write_json_atomic(self.out_dir / "summary.json", summary)
            except OSError as e:
                raise MemGPTError(f"cannot write {self.out_dir / 'summary.json'}: {e.strerror}") from None
        D.barrier(ctx)
        return summary

    def _loop(self, bar: tqdm) -> str:
        """The training steps; returns why they stopped."""
        args, ctx = self.args, self.dist
        bad_steps = 0
        stop_reason = "max_steps"
        while self.step < args.max_steps:
            t0 = time.perf_counter()
            record = self.train_step()
            self.step += 1
            self.elapsed += time.perf_counter() - t0
            record["elapsed"] = round(self.elapsed, 3)
            bad_steps = bad_steps + 1 if "skipped" in record else 0
            if bad_steps >= 3:
                if ctx.is_main:
                    self._log(record)
                last = "none" if self.saved_step is None else f"step {self.saved_step}"
                raise MemGPTError(
                    f"loss or gradients were NaN/inf for 3 steps in a row (steps {self.step - 2}-{self.step}); "
                    f"stopped without writing a checkpoint of them (last checkpoint: {last}); try a lower --lr"
                )
            if self.step % args.eval_every == 0:
                n = self.curriculum.current
                acc = self._evaluate(n)
                self.evals.append({"step": self.step, "segments": n, "acc": acc})
                record["eval_acc"] = acc
                elapsed = D.all_sum(ctx, self.elapsed)[0] / ctx.world_size  # one clock for every process
                advanced = self.curriculum.update(acc, self.step, elapsed)
                record["stage"] = self.curriculum.stage
                if not advanced and self.curriculum.is_last and acc >= args.stop_at:
                    stop_reason = "stop_at"
            if ctx.is_main:
                self._log(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['acc']:.2f}", seg=record["segments"])
            out_of_time = bool(args.time_budget) and self.elapsed >= args.time_budget
            if ctx.enabled and args.time_budget:
                out_of_time = D.from_main(ctx, out_of_time)  # clocks differ; rank 0 decides for all
            if stop_reason == "stop_at" or out_of_time:
                return "stop_at" if stop_reason == "stop_at" else "time_budget"
            timed = bool(args.checkpoint_seconds) and self.elapsed - self.saved_elapsed >= args.checkpoint_seconds
            if ctx.enabled and args.checkpoint_seconds:
                timed = D.from_main(ctx, timed)
            if (self.step % args.checkpoint_every == 0 or timed) and "skipped" not in record:
                self.save()
        return stop_reason

    def run(self) -> dict[str, Any]:
        """`train`, then `close`: on an error the run is closed unfinished (its last checkpoint kept) and the
        error raised."""
        try:
            summary = self.train()
        except BaseException:
            self.close(finished=False)
            raise
        self.close()
        return summary

    def close(self, finished: bool = True) -> None:
        """Leave the process group of a distributed run (`finished`: every rank got here, so they
        wait for each other first; a rank that failed leaves at once)."""
        D.shutdown(self.dist, synchronize=finished)
