"""Calibrating the grounded answer path (`memgpt.memories.answering`) on the dev split of the natural-QA
items (benchmarks/naturalqa_items.json), on short documents that fit the window (the direct path):

- `alone`: each dev one-hop fact alone, each two-hop pair, each absent-attribute item's facts, and each
  tiny document; absent-entity questions asked of a one-hop fact that does not name the entity;
- `together`: all dev one-hop and absent-attribute facts in one document, every one-hop, absent-attribute
  and absent-entity question asked of it.

Only items with "split": "dev" are read. Each answer is recorded with how it was reached and, for an
answer chosen among the evidence's spans, its margin over the abstention phrase, so the table shows the
figures at every candidate MIN_MARGIN; the chosen one is the product's. Prints a table and writes
benchmarks/results/answering_dev.json.

    OMP_NUM_THREADS=1 python benchmarks/answering_dev.py            # ~5 min on 2 busy CPU cores
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from memgpt.io.spans import SentenceSplitter  # noqa: E402
from memgpt.memories import answering  # noqa: E402
from memgpt.memories.abstention import NOT_IN_DOCUMENT, is_abstention  # noqa: E402
from memgpt.memories.base import ANSWER_RESERVE, answer_from  # noqa: E402
from memgpt.memories.questions import Question  # noqa: E402
from memgpt.text.words import value  # noqa: E402
from memgpt.model.engine import get_engine  # noqa: E402

UNANSWERABLE = ("absent_attribute", "absent_entity")
MARGINS = [-2.0, -1.5, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0]


def canon(text: str) -> list[str]:
    """Lower-case words, number words and digits as their value ("thirty-one" and "31" are "31")."""
    words = re.findall(r"[a-z0-9$£]+(?:[-,.][a-z0-9]+)*", text.lower().replace("’", "'"))
    out = []
    for w in words:
        v = value(w)
        out.append(str(int(v)) if v is not None and v == int(v) else w)
    return out


def contains(prediction: str, gold: str) -> bool:
    p, g = canon(prediction), canon(gold)
    return bool(g) and any(p[k : k + len(g)] == g for k in range(len(p) - len(g) + 1))


def dev_items(path: Path) -> dict[str, list[dict]]:
    items = json.loads(path.read_text())
    return {k: [i for i in items[k] if i.get("split") == "dev"]
            for k in ("one_hop", "two_hop", "absent_attribute", "absent_entity", "tiny")}


def cases(items: dict[str, list[dict]]) -> list[dict]:
    """(setting, category, document, question, gold, aliases) for every dev question."""
    out = []
    for i in items["one_hop"]:
        out.append(dict(setting="alone", category="one_hop", doc=i["fact"], **_q(i)))
    for i in items["two_hop"]:
        out.append(dict(setting="alone", category="two_hop", doc=" ".join(i["facts"]), **_q(i)))
    for i in items["absent_attribute"]:
        out.append(dict(setting="alone", category="absent_attribute", doc=" ".join(i["facts"]), **_q(i)))
    for k, i in enumerate(items["absent_entity"]):
        out.append(dict(setting="alone", category="absent_entity", doc=items["one_hop"][k]["fact"], **_q(i)))
    for i in items["tiny"]:
        out.append(dict(setting="alone", category="tiny" if i.get("answer") else "tiny_unanswerable", doc=i["document"], **_q(i)))
    together = " ".join([i["fact"] for i in items["one_hop"]] + [f for i in items["absent_attribute"] for f in i["facts"]])
    for cat in ("one_hop", "absent_attribute", "absent_entity"):
        for i in items[cat]:
            out.append(dict(setting="together", category=cat, doc=together, **_q(i)))
    return out


def _q(item: dict) -> dict:
    return {"id": item["id"], "question": item["question"], "gold": item.get("answer"), "aliases": item.get("aliases", [])}


def run_case(engine, case: dict, max_new_tokens: int) -> dict:
    """The direct path of `ask` (the document is its own sentence index), recording how it answered."""
    splitter = SentenceSplitter()
    spans = splitter.feed(case["doc"]) + splitter.close()
    context = engine.clip(case["doc"], engine.window - ANSWER_RESERVE - max_new_tokens)
    start = time.perf_counter()
    free = answer_from(engine, context, case["question"], max_new_tokens)
    g = answering.grounded_answer(engine, case["question"], spans, free)
    return {**{k: v for k, v in case.items() if k != "doc"}, "free": free, "answer": g.text, "how": g.how,
            "margin": g.margin, "type": Question.of(case["question"]).kind,
            "seconds": round(time.perf_counter() - start, 2)}


def outcome(record: dict, margin: float) -> str:
    """The answer under MIN_MARGIN = margin (a span below it is an abstention)."""
    if record["how"] == "span" and record["margin"] is not None and record["margin"] < margin:
        return NOT_IN_DOCUMENT
    return record["answer"]


def figures(records: list[dict], margin: float) -> dict:
    cells: dict[str, dict] = {}
    for r in records:
        answer = outcome(r, margin)
        abstained = is_abstention(answer)
        answerable = r["gold"] is not None and r["category"] not in UNANSWERABLE
        right = (not abstained and any(contains(answer, g) for g in [r["gold"], *r["aliases"]])) if answerable else abstained
        c = cells.setdefault(f"{r['setting']}/{r['category']}", {"n": 0, "right": 0, "abstained": 0})
        c["n"] += 1
        c["right"] += right
        c["abstained"] += abstained
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=Path, default=ROOT / "naturalqa_items.json")
    parser.add_argument("--model", default="default")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--limit", type=int, default=0, help="Only the first N questions (a smoke run).")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "answering_dev.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    engine = get_engine(args.model, "auto", 4096)
    product_margin = answering.MIN_MARGIN
    answering.MIN_MARGIN = float("-inf")  # record every span with its margin; thresholds are applied below
    todo = cases(dev_items(args.items))
    if args.limit:
        todo = todo[: args.limit]
    records = []
    for k, case in enumerate(todo):
        records.append(run_case(engine, case, args.max_new_tokens))
        r = records[-1]
        print(f"[{k + 1}/{len(todo)}] {r['setting']:8s} {r['category']:17s} {r['how']:7s} "
              f"{'' if r['margin'] is None else round(r['margin'], 2)!s:6s} {r['question'][:60]!r} -> {r['answer'][:50]!r}",
              flush=True)
    table = {str(m): figures(records, m) for m in MARGINS}
    print(f"\nMIN_MARGIN = {product_margin} (the product's):")
    for cell, c in sorted(figures(records, product_margin).items()):
        print(f"  {cell:28s} {c['right']:3d}/{c['n']:<3d} right   abstained {c['abstained']}/{c['n']}")
    print("\nby margin: one-hop right (alone, together) | unanswerable abstained | false abstention on answerable")
    for m, cells in table.items():
        def share(prefix_cats, key):
            n = sum(c["n"] for k, c in cells.items() if any(k.endswith("/" + p) for p in prefix_cats))
            v = sum(c[key] for k, c in cells.items() if any(k.endswith("/" + p) for p in prefix_cats))
            return f"{v}/{n}"
        one = [f"{cells.get(s + '/one_hop', {}).get('right', 0)}/{cells.get(s + '/one_hop', {}).get('n', 0)}" for s in ("alone", "together")]
        print(f"  {m:>6s}: {one[0]:>6s} {one[1]:>6s} | {share(UNANSWERABLE, 'right'):>6s} | "
              f"{share(('one_hop', 'two_hop', 'tiny'), 'abstained'):>6s}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
              "cpu": cpu, "command": "python benchmarks/answering_dev.py " + " ".join(sys.argv[1:]),
              "model": args.model, "min_margin": product_margin, "split": "dev",
              "figures": figures(records, product_margin), "by_margin": table, "records": records}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from memgpt.io.atomic import write_text_atomic

    write_text_atomic(args.out, json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
