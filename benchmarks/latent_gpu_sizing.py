"""Sizing the GPU recipe on the CPU: LoRA or a full fine-tune of the default backbone, and how large a
batch one H200 holds. For each: trainable parameters, optimizer state, what a checkpoint of the trained
parameters weighs, seconds per step at batch 1 (bf16 autocast, the recipe's memory settings), and the
bytes autograd saves for the backward pass (every unique tensor saved in the forward pass, measured by
`torch.autograd.graph.saved_tensors_hooks`) at 2 and 3 segments: the difference is what one more
512-token segment costs per sample under full BPTT. Writes benchmarks/results/latent_gpu_sizing.json.

    OMP_NUM_THREADS=1 python benchmarks/latent_gpu_sizing.py --steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import transformers

from latent_gpu import RECIPE_MEMORY, run_meta
from memgpt.eval.suite import write_text
from memgpt.training import TrainArgs, Trainer

RESULTS = Path(__file__).parent / "results" / "latent_gpu_sizing.json"
GPU_BYTES = 139 * 2**30  # one H200, as the device reports it
USABLE = 0.6  # of it for activations: SDPA and delta-rule workspaces, the allocator's fragmentation, eval


def saved_bytes(trainer: Trainer) -> int:
    """Bytes of the unique tensors autograd saves during one training step."""
    seen: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[(storage.data_ptr(), t.device.index or 0)] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        trainer.train_step()
    return sum(seen.values())


def measure(mode: str, steps: int, out: Path) -> dict:
    lora = mode == "lora"
    args = TrainArgs(task="lc-mix", backbone="default", lora_rank=8 if lora else 0, lora_alpha=16.0, bf16=True,
                     segment_size=512, curriculum=[2], batch_size=1, max_steps=100, lr=1e-3, warmup_steps=1,
                     progress=False, out_dir=str(out / mode), **RECIPE_MEMORY)
    trainer = Trainer(args)
    trained = [p for p in trainer.model.parameters() if p.requires_grad]
    n_trained = sum(p.numel() for p in trained)
    n_total = sum(p.numel() for p in trainer.model.parameters())
    if lora:
        from memgpt.model.adapters import save_adapter

        path = out / "adapter.safetensors"
        save_adapter(path, trainer.model, args.lora_rank, args.lora_alpha)
        checkpoint_bytes = path.stat().st_size
    else:  # the whole model's trained weights (bf16 at best): no need to write 270 MB to know it
        checkpoint_bytes = 2 * n_trained
    trainer.train_step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    step_seconds = (time.perf_counter() - t0) / steps
    act = {}
    for n in (2, 3):
        trainer.curriculum.stages = [n]
        act[n] = saved_bytes(trainer)
    return {"mode": mode, "trainable_parameters": n_trained, "all_parameters": n_total,
            "optimizer_state_bytes": 8 * n_trained, "checkpoint_bytes": checkpoint_bytes,
            "step_seconds_batch1_2seg": round(step_seconds, 2),
            "saved_activation_bytes_per_sample": {f"{n}_segments": b for n, b in act.items()},
            "per_document_segment_bytes": act[3] - act[2]}


def batch_for(row: dict, segments: int) -> int:
    """The largest batch whose saved activations at `segments` segments fit `USABLE` of one H200."""
    per_sample = row["saved_activation_bytes_per_sample"]["2_segments"] + (segments - 2) * row["per_document_segment_bytes"]
    fixed = 4 * row["all_parameters"] + 4 * row["trainable_parameters"] + row["optimizer_state_bytes"]  # fp32 weights, grads
    return int((USABLE * GPU_BYTES - fixed) // per_sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--modes", default="lora,full")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            row = measure(mode, args.steps, Path(tmp))
            row["h200_batch"] = {f"{n}_segments": batch_for(row, n) for n in (2, 4, 8, 16)}
            rows.append(row)
            print(f"{mode:<5} trainable {row['trainable_parameters']:>11,} of {row['all_parameters']:,}  "
                  f"checkpoint {row['checkpoint_bytes'] / 2**20:7.1f} MiB  step {row['step_seconds_batch1_2seg']:6.2f} s "
                  f"(batch 1, 2 seg)  activations/sample/segment {row['per_document_segment_bytes'] / 2**20:7.1f} MiB  "
                  f"H200 batch at 8 seg {row['h200_batch']['8_segments']}", flush=True)
    out = run_meta("python benchmarks/latent_gpu_sizing.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()))
    out |= {"memory": RECIPE_MEMORY, "gpu_bytes": GPU_BYTES, "usable_fraction": USABLE, "rows": rows}
    write_text(RESULTS, json.dumps(out, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
