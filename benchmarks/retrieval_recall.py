"""Evidence recall of the retrieval memory on natural prose (no generation: only what the reader sees).

The natural-QA items (benchmarks/naturalqa_items.json) are planted in State of the Union haystacks of
~4k and ~16k tokens (dev items in train-split speeches, test items in test-split speeches; a two-hop
pair's first fact in the first third, its second in the last third). Per question: is the fact in the
evidence (one-hop), are both facts (two-hop), how large is the evidence, and did the memory abstain
(absent-attribute and absent-entity questions: no fact answers them). Five items share one document.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/retrieval_recall.py --label after
    PYTHONPATH=/path/to/old/checkout python benchmarks/retrieval_recall.py --label before --commit 0e010cb

Prints a table and merges the run (by --label) into benchmarks/results/retrieval_recall.json with
date, commit, CPU and command. `--set module.NAME=value` overrides a constant (tuning on dev only).
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import torch

import memgpt
from memgpt.apps import get_engine, read
from memgpt.eval.longcontext.haystack import context_tokens, draw_haystack
from memgpt.io.atomic import write_text_atomic
from memgpt.memories.base import ANSWER_RESERVE, make_memory
from machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

HERE = Path(__file__).resolve().parent
ITEMS = HERE / "naturalqa_items.json"
RESULTS = HERE / "results" / "retrieval_recall.json"
GROUP = 5  # items planted in one haystack
KINDS = ("one_hop", "two_hop", "absent_attribute", "absent_entity")


def code_commit() -> str:
    where = Path(memgpt.__file__).resolve().parent.parent
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=where)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "memgpt"],
                           capture_output=True, text=True, cwd=where)
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if head.returncode == 0 else "unknown"


def facts_of(kind: str, item: dict) -> list[str]:
    return [item["fact"]] if kind == "one_hop" else list(item.get("facts", []))


def plant(items: list[tuple[str, dict]], tokens: int, split: str, seed: int) -> str:
    """A haystack of about `tokens` tokens with every item's facts at random sentence boundaries."""
    rng = random.Random(seed)
    facts = [(kind, k, f) for kind, item in items for k, f in enumerate(facts_of(kind, item))]
    room = tokens - context_tokens(" ".join(f for _, _, f in facts))
    haystack, _, _ = draw_haystack(room, split, rng)
    placed = list(haystack)
    for kind, k, fact in facts:  # two-hop pairs far apart: first fact early, second late
        third = len(placed) // 3
        lo, hi = (0, len(placed)) if kind != "two_hop" else (0, third) if k == 0 else (2 * third, len(placed))
        placed.insert(rng.randint(lo, hi), fact)
    return " ".join(placed)


def measure(length: int, split: str, items: list[tuple[str, dict]], engine, seed: int) -> list[dict]:
    memory = make_memory("retrieval", engine)
    budget = engine.window - ANSWER_RESERVE - 32
    rows = []
    for g in range(0, len(items), GROUP):
        group = items[g : g + GROUP]
        document = plant(group, length, split, seed + g)
        state = read(document, "retrieval", engine)
        for kind, item in group:
            found = memory.evidence(state, item["question"], budget)
            got = [f in found.text for f in facts_of(kind, item)] if kind in ("one_hop", "two_hop") else []
            rows.append({"id": item["id"], "kind": kind, "found": got, "abstained": bool(found.abstain),
                         "sentences": len(found.spans), "tokens": engine.count_tokens(found.text),
                         "support": None if found.support is None else round(float(found.support), 3)})
    return rows


def summary(rows: list[dict]) -> dict:
    out = {}
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        if not mine:
            continue
        cell = {"n": len(mine), "abstained": sum(r["abstained"] for r in mine) / len(mine),
                "sentences": sum(r["sentences"] for r in mine) / len(mine),
                "tokens": sum(r["tokens"] for r in mine) / len(mine)}
        if kind in ("one_hop", "two_hop"):
            cell["recall"] = sum(all(r["found"]) for r in mine) / len(mine)
        if kind == "two_hop":
            cell["first_fact"] = sum(r["found"][0] for r in mine) / len(mine)
            cell["second_fact"] = sum(r["found"][1] for r in mine) / len(mine)
        out[kind] = cell
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="name of this run in the results file (e.g. before, after)")
    parser.add_argument("--items", choices=("dev", "test"), default="dev")
    parser.add_argument("--lengths", default="4096,16384")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commit", default=None, help="commit of the code measured (default: its git HEAD)")
    parser.add_argument("--set", action="append", default=[], metavar="MODULE.NAME=VALUE",
                        help="override a constant, e.g. memgpt.memories.chains.HOP2_ANCHORS=1")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for spec in args.set:
        name, value = spec.split("=", 1)
        module, attr = name.rsplit(".", 1)
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        setattr(importlib.import_module(module), attr, parsed)
    data = json.loads(ITEMS.read_text())
    items = [(kind, x) for kind in KINDS for x in data[kind] if x["split"] == args.items]
    random.Random(args.seed).shuffle(items)
    split = "train" if args.items == "dev" else "test"
    engine = get_engine()
    started = time.time()
    run = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": args.commit or code_commit(),
           "cpu": cpu_model(), "command": " ".join(["python", *sys.argv]), "items": args.items,
           "haystack_split": split, "overrides": args.set, "lengths": {}}
    print(f"{'length':>7} {'kind':<17} {'n':>3} {'recall':>7} {'1st':>5} {'2nd':>5} {'abst':>5} {'sent':>5} {'tok':>5}")
    for length in [int(x) for x in args.lengths.split(",")]:
        rows = measure(length, split, items, engine, args.seed)
        cells = summary(rows)
        run["lengths"][str(length)] = {"summary": cells, "rows": rows}
        for kind, c in cells.items():
            print(f"{length:>7} {kind:<17} {c['n']:>3} {c.get('recall', float('nan')):>7.2f} "
                  f"{c.get('first_fact', float('nan')):>5.2f} {c.get('second_fact', float('nan')):>5.2f} "
                  f"{c['abstained']:>5.2f} {c['sentences']:>5.1f} {c['tokens']:>5.0f}")
    run["seconds"] = round(time.time() - started, 1)
    print(f"{run['seconds']} s")
    if not args.no_save:
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
        results["runs"][args.label] = run
        write_text_atomic(RESULTS, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
