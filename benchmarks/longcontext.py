"""The long-context suite (BABILong-style) on the packaged default model, through the same code as
`memgpt eval`: passkey and bAbI qa1-qa5 hidden in State of the Union speeches, at growing lengths,
for each memory kind of `memgpt.apps` and its baselines.

Runs in parts (each a `memgpt eval` grid); cells a part does not run stay empty ('-') in the table:

- direct:  every task at 0k and 1k, every kind. The document fits the window there, so `ask` answers
           from the full text whatever the kind (the numbers are the backbone's own, zero-shot).
- main:    every task at 4k and 16k: retrieval, the last window (the backbone's window; the
           truncation baseline), segments without memory.
- latent:  every task at 4k with the latent memory (the shipped adapter when there is one).
- text:    qa1 at 4k with the text memory (slow: the model writes notes for every 1k tokens).
- long:    passkey tasks at 64k and 128k, only for the cheap kinds (retrieval, no memory).
- verify-passkey: (not default) passkey at 64k with retrieval, 60 samples = 20 trials per position.
- verify-qa1:     (not default) qa1 at 4k/16k/64k, 10 samples, retrieval and the last window.
- chains-a/b/c, chains-64k: (not default) passkey, qa1-qa5 and absent at 4k/16k (and 64k) with
                  retrieval, 20 samples per cell (64k ran with --samples 8 on the shared CPU).
- chains-baselines: (not default) absent with the last window and no memory at 4k/16k, 5 samples (the
                  baselines of the other tasks are the `main` part's: their code did not change).

    python benchmarks/longcontext.py                      # default parts, ~26 min at 1 thread
    python benchmarks/longcontext.py --parts verify-passkey,verify-qa1   # ~1 h at 1 thread
Writes benchmarks/results/longcontext.json and longcontext.png; predictions under --work-dir.
A part whose results.json exists in --work-dir with the same settings is reused (delete to rerun).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import transformers

from memgpt.model.adapters import adapter_info
from memgpt.eval.suite import SuiteConfig, app_systems, heatmap, run_suite, table, write_text
from memgpt.eval.longcontext import LONG_TASKS, length_label, parse_length

RESULTS = Path(__file__).parent / "results"
ALL = list(LONG_TASKS)
PASSKEYS = ["passkey", "passkey-prose"]
BASELINES = ["retrieval", "window-last", "none"]
CHAIN_TASKS = ["passkey", "qa1", "qa2", "qa3", "qa4", "qa5", "absent"]
PARTS = {
    "direct": dict(tasks=ALL, lengths=["0k", "1k"], kinds=["retrieval", "window-last", "none", "latent"], samples=3),
    "main": dict(tasks=ALL, lengths=["4k", "16k"], kinds=BASELINES, samples=3),
    "latent": dict(tasks=ALL, lengths=["4k"], kinds=["latent"], samples=3),
    "text": dict(tasks=["qa1"], lengths=["4k"], kinds=["text"], samples=3),
    "long": dict(tasks=PASSKEYS, lengths=["64k", "128k"], kinds=["retrieval", "none"], samples=3),
    "verify-passkey": dict(tasks=["passkey"], lengths=["64k"], kinds=["retrieval"], samples=60),
    "verify-qa1": dict(tasks=["qa1"], lengths=["4k", "16k", "64k"], kinds=["retrieval", "window-last"], samples=20,
                       limits={"window-last": "16k"}),
    # issue 14 (chains, citations, abstention): every task with `absent`, 20 samples per retrieval cell
    # in three parts, so that they can run side by side
    "chains-a": dict(tasks=["passkey", "qa1", "absent"], lengths=["4k", "16k"], kinds=["retrieval"], samples=20),
    "chains-b": dict(tasks=["qa2", "qa3"], lengths=["4k", "16k"], kinds=["retrieval"], samples=20),
    "chains-b3": dict(tasks=["qa3"], lengths=["4k", "16k"], kinds=["retrieval"], samples=20),  # chains-b's qa3, sooner
    "chains-c5": dict(tasks=["qa5"], lengths=["4k"], kinds=["retrieval"], samples=20),  # chains-c's qa5, sooner
    "chains-abs": dict(tasks=["absent"], lengths=["4k", "16k"], kinds=["retrieval"], samples=20),  # chains-a's, sooner
    "chains-c": dict(tasks=["qa4", "qa5"], lengths=["4k", "16k"], kinds=["retrieval"], samples=20),
    "chains-64k": dict(tasks=CHAIN_TASKS, lengths=["64k"], kinds=["retrieval"], samples=20),
    "chains-64k-qa": dict(tasks=["absent", "qa2", "qa3", "qa4", "qa5", "qa1"], lengths=["64k"], kinds=["retrieval"],
                          samples=4),
    "chains-baselines": dict(tasks=["absent"], lengths=["4k", "16k"], kinds=["window-last", "none"], samples=5),
}
DEFAULT_PARTS = ["direct", "main", "latent", "text", "long"]
ORDER = ["retrieval", "text", "latent", "window-last", "window-first", "none"]


def collect_part(name: str, work: Path) -> dict | None:
    """The cells of a part that did not finish (stopped for time), from the files each cell wrote as it
    ended: a results dict like run_suite's, with only those cells (None when there are none)."""
    cells = [json.loads(p.read_text()) for p in sorted((work / name).glob("*/*.json"))]
    if not cells:
        return None
    accuracy: dict = {}
    for c in cells:
        accuracy.setdefault(c["kind"], {}).setdefault(c["task"], {})[c["length_label"]] = c["accuracy"]
    first = cells[0]
    lengths = sorted({c["length"] for c in cells})
    config = {"tasks": sorted({c["task"] for c in cells}), "lengths": [length_label(n) for n in lengths],
              "samples": min(c["samples"] for c in cells), "kinds": sorted(accuracy), "seed": first["seed"],
              "split": first["split"], "max_new_tokens": first["max_new_tokens"], "model": first["model"], "limits": {}}
    return {"format": first["format"], "config": config, "accuracy": accuracy, "part": name, "code": first.get("code"),
            "partial": True, "seconds": {k: round(sum(c["seconds"] for c in cells if c["kind"] == k), 1) for k in accuracy}}


def run_part(name: str, spec: dict, work: Path, seed: int, samples: int | None, max_new_tokens: int) -> dict:
    config = SuiteConfig(
        list(spec["tasks"]), [parse_length(n) for n in spec["lengths"]], samples or spec["samples"],
        list(spec["kinds"]), seed, max_new_tokens=max_new_tokens,
        limits={k: parse_length(v) for k, v in spec.get("limits", {}).items()},
    )
    out = work / name
    done = out / "results.json"
    if done.exists():
        old = json.loads(done.read_text())
        if old["config"] == config.__dict__ | {"lengths": [length_label(n) for n in config.lengths]}:
            print(f"[{name}] reusing {done}", flush=True)
            return old
    t0 = time.time()
    results = run_suite(app_systems(config.kinds, "default", max_new_tokens), config, out,
                        extra={"part": name, "code": git_head()}, log=lambda line: print(f"[{name}] {line}", flush=True))
    print(f"[{name}] {time.time() - t0:.0f} s", flush=True)
    return results


def git_head() -> str | None:
    """The commit the suite ran on, "+dirty" when tracked files had uncommitted changes (None outside
    a git checkout)."""
    import subprocess

    where = Path(__file__).resolve().parent.parent  # the checkout
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=where)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "memgpt"],
                               capture_output=True, text=True, cwd=where)
    except OSError:
        return None
    commit = head.stdout.strip()
    return (commit + ("+dirty" if dirty.stdout.strip() else "")) or None


def merge(parts: dict[str, dict], prefer: list[str] = ()) -> dict:
    """One grid over every part: kind -> task -> length -> accuracy (None where no part ran it). Where
    parts overlap, the cell with the most samples wins, except that the `prefer`red parts (those this
    invocation named: the current code) win over the others."""
    lengths = sorted({parse_length(n) for r in parts.values() for n in r["config"]["lengths"]})
    labels = [length_label(n) for n in lengths]
    kinds = sorted({k for r in parts.values() for k in r["accuracy"]}, key=lambda k: (ORDER + [k]).index(k))
    tasks = [t for t in ALL if any(t in r["accuracy"][k] for r in parts.values() for k in r["accuracy"])]
    grid = {k: {t: {n: None for n in labels} for t in tasks} for k in kinds}
    samples = {k: {t: {n: None for n in labels} for t in tasks} for k in kinds}
    won: set[tuple[str, str, str]] = set()  # cells a preferred part set
    for name, r in sorted(parts.items(), key=lambda item: item[0] in prefer):
        for k, by_task in r["accuracy"].items():
            for t, by_len in by_task.items():
                for n, acc in by_len.items():
                    if acc is None or (k, t, n) in won and name not in prefer:
                        continue
                    if name in prefer and (k, t, n) not in won or r["config"]["samples"] >= (samples[k][t][n] or 0):
                        grid[k][t][n] = acc
                        samples[k][t][n] = r["config"]["samples"]
                        if name in prefer:
                            won.add((k, t, n))
    return {"lengths": labels, "accuracy": grid, "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--samples", type=int, default=None, help="samples per cell for every part (default: each part's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--collect", action="store_true",
                        help="run nothing: merge the cells that the named parts finished (parts stopped for time)")
    parser.add_argument("--work-dir", default="runs/longcontext")
    parser.add_argument("--results", default=str(RESULTS / "longcontext.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    names = [p for p in args.parts.split(",") if p]
    unknown = [p for p in names if p not in PARTS]
    if unknown:
        sys.exit(f"error: unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    work = Path(args.work_dir)
    out = Path(args.results)
    previous = json.loads(out.read_text()).get("parts", {}) if out.exists() else {}
    parts = dict(previous)  # a partial run replaces its own parts and keeps the others
    t0 = time.time()
    if args.collect:  # parts stopped before the end: their finished cells
        done = {name: r for name in names if (r := collect_part(name, work)) is not None}
    else:
        done = {name: run_part(name, PARTS[name], work, args.seed, args.samples, args.max_new_tokens) for name in names}
    if out.exists():  # parts another run wrote meanwhile (runs of different parts may go in parallel)
        parts.update(json.loads(out.read_text()).get("parts", {}))
    parts.update(done)
    merged = merge(parts, names)
    summary = {
        "command": " ".join(["python", "benchmarks/longcontext.py", *sys.argv[1:]]), "code": git_head(),
        "seed": args.seed, "threads": args.threads, "seconds_this_run": round(time.time() - t0, 1),
        "torch": torch.__version__, "transformers": transformers.__version__, "machine": platform.machine(),
        "adapter": adapter_info(), **merged,
        "parts": {n: {k: v for k, v in r.items() if k != "platform"} for n, r in parts.items()},
    }
    write_text(out, json.dumps(summary, indent=2))
    counts = [n for by_task in merged["samples"].values() for by_len in by_task.values() for n in by_len.values() if n]
    spread = f"{min(counts)}-{max(counts)}" if min(counts) != max(counts) else str(counts[0])
    grid = {"config": {"lengths": merged["lengths"], "samples": spread, "seed": args.seed}, "accuracy": merged["accuracy"]}
    heatmap(grid, out.with_suffix(".png"))
    print("\n" + table(grid))
    print(f"\nwrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
