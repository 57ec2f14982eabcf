"""Does the shipped latent-memory adapter carry the document to the question? Teacher-forced scores
on held-out (test-split) samples of the training format: the document in `n - 1` segments of 512
tokens folded into memory, the question in a fresh segment after it.

For the shipped adapter and for the same backbone with an untrained (fresh) memory: exact match of
every answer token (argmax) and the mean cross-entropy per answer token (a passkey digit at chance is
ln 10 = 2.30). Writes benchmarks/results/latent_adapter.json.

    python benchmarks/latent_adapter.py --segments 2,4,8 --samples 32
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import transformers
from torch import nn

from memgpt.model.adapters import DEFAULT_ADAPTER, adapter_info, load_latent_model
from memgpt.eval.suite import write_text
from memgpt.model.modeling_memgpt import MemGPTForCausalLM
from memgpt.model.pretrained import load_backbone
from memgpt.training.tasks import IGNORE, LONG_TRAIN_TASKS, LatentMemoryTask

RESULTS = Path(__file__).parent / "results" / "latent_adapter.json"


@torch.inference_mode()
def score(model: MemGPTForCausalLM, task: LatentMemoryTask, segments: int, samples: int, seed: int) -> dict:
    correct, loss_sum, tokens = 0, 0.0, 0
    for i in range(samples):
        x, y = task.batch(1, segments, model.config.segment_size, seed=seed + 7919 * segments + i)
        out = model(input_ids=x, labels=y)
        shift = nn.functional.pad(y[:, 1:], (0, 1), value=IGNORE)
        mask = shift != IGNORE
        n = int(mask.sum())
        loss_sum += float(out.loss) * n
        tokens += n
        correct += bool((out.logits.argmax(-1)[mask] == shift[mask]).all())
    return {"exact_match": correct / samples, "answer_token_loss": loss_sum / tokens, "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", default="2,4,8")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--tasks", default="lc-passkey,lc-qa1")
    parser.add_argument("--seed", type=int, default=10**9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--adapter", default=str(DEFAULT_ADAPTER))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    backbone, _ = load_backbone("default", dtype=torch.bfloat16)
    trained = load_latent_model(backbone, args.adapter)
    if trained is None:
        raise SystemExit(f"error: no adapter for the default backbone at {args.adapter}")
    fresh = MemGPTForCausalLM.from_backbone(backbone, torch.bfloat16, num_mem_tokens=trained.num_mem_tokens,
                                            segment_size=trained.config.segment_size)
    rows = []
    for name in args.tasks.split(","):
        task = LatentMemoryTask(LONG_TRAIN_TASKS[name], name, split="test")
        for n in [int(v) for v in args.segments.split(",")]:
            for label, model in (("adapter", trained), ("untrained memory", fresh)):
                t0 = time.time()
                row = {"task": name, "segments": n, "tokens": (n - 1) * model.config.segment_size, "model": label,
                       **score(model, task, n, args.samples, args.seed), "seconds": 0.0}
                row["seconds"] = round(time.time() - t0, 1)
                rows.append(row)
                print(f"{name:<11} {n:>3} seg  {label:<17} exact {row['exact_match']:.3f}  "
                      f"loss/answer token {row['answer_token_loss']:.3f}  ({row['seconds']} s)", flush=True)
    out = {"command": "python benchmarks/latent_adapter.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
           "adapter": adapter_info(args.adapter), "rows": rows}
    write_text(RESULTS, json.dumps(out, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
