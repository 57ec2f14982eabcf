"""Held-out test split for answers (benchmarks/heldout_items.json): FROZEN. Never tune on it, and never read
its per-item failures while developing; tune on the dev items (benchmarks/answering_dev.py,
benchmarks/naturalqa.py --splits dev). Run it once per version and report the aggregates.

44 short original documents of 16 genres (emails, notes, manuals, news, letters, recipes, stories,
timetables, invoices, itineraries, lab notes, forum posts, biographies, notices; 6 in Chinese), 250
questions, each one of: paraphrase (a stated fact asked in other words), subject_from_object, two_sentence
(needs two sentences, or an updated value), distractor (a same-type distractor is present), unanswerable
(about the document's own subject, not stated).

Scoring: an answerable question is right when a normalised gold answer (lower case, punctuation and
articles dropped, number words as digits by text2num) occurs in the normalised answer as whole words, or
the answer in a gold, and the answer is not an abstention; an unanswerable one is right iff declined.
Invented: an answer holding a capitalised word or a number the document lacks (Chinese: an answer that
is not a substring of the document). Misattributed: a wrong answer that is the gold of another question
of the same document (an attribute of another entity).

    python benchmarks/heldout.py --label new --summary-only
    PYTHONPATH=/path/to/old/tree python benchmarks/heldout.py --label old --out benchmarks/results/heldout_old.json
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

from text_to_num import alpha2digit

ROOT = Path(__file__).resolve().parent
ITEMS = ROOT / "heldout_items.json"
ABSTAIN = "The document does not say."
_CJK = re.compile(r"[\u3400-\u9fff]")


def normalise(text: str) -> str:
    """Lower case, number words as digits, no punctuation or articles, single spaces."""
    text = text.lower()
    if not _CJK.search(text):
        try:
            text = alpha2digit(text, "en", threshold=0)
        except (ValueError, IndexError):
            pass
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = re.sub(r"[^\w.:]+|(?<!\d)[.:]|[.:](?!\d)", " ", text)
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def contains(outer: str, inner: str) -> bool:
    if not inner:
        return False
    if _CJK.search(inner):
        return inner in outer
    return f" {inner} " in f" {outer} "


def right(answer: str, abstained: bool, golds: list[str]) -> bool:
    if not golds:
        return abstained
    if abstained:
        return False
    a = normalise(answer)
    return any(contains(a, normalise(g)) or contains(normalise(g), a) for g in golds)


def invented(answer: str, document: str) -> bool:
    """Does the answer hold a capitalised word or a number the document lacks (Chinese: not verbatim)?"""
    if _CJK.search(answer):
        return answer.strip("。.！？ ") not in document
    doc = normalise(document)
    for k, word in enumerate(re.findall(r"[^\W_]+(?:[.,:][0-9]+)*", answer)):
        if any(c.isdigit() for c in word) or (k > 0 and word[:1].isupper()) or (k == 0 and word[:1].isupper()
                                                                                and word.lower() not in doc.split()):
            if not contains(doc, normalise(word)) and word.lower() not in document.lower():
                return True
    return False


def score(items: dict, predictions: list[dict]) -> dict:
    docs = {d["id"]: d for d in items["documents"]}
    golds_of = defaultdict(list)
    for q in items["questions"]:
        golds_of[q["doc"]].append(q)
    cells: dict[str, list[bool]] = defaultdict(list)
    inv = mis = declined_answerable = answerable = 0
    for p in predictions:
        ok = right(p["answer"], p["abstained"], p["answers"])
        cells["all"].append(ok)
        cells[f"category:{p['category']}"].append(ok)
        cells[f"lang:{p['lang']}"].append(ok)
        if p["answers"]:
            cells["answerable"].append(ok)
            cells[f"answerable:{p['lang']}"].append(ok)
            answerable += 1
            declined_answerable += p["abstained"]
        if not p["abstained"]:
            if invented(p["answer"], docs[p["doc"]]["text"]):
                inv += 1
            others = [g for q in golds_of[p["doc"]] if q["id"] != p["id"] for g in q["answers"]]
            if not ok and any(right(p["answer"], False, [g]) for g in others):
                mis += 1
                if p["lang"] == "zh":
                    cells["zh_misattributed"].append(True)
    metrics = {k: {"right": sum(v), "n": len(v), "share": round(sum(v) / len(v), 3)} for k, v in sorted(cells.items())
               if k != "zh_misattributed"}
    metrics["false_declines"] = {"n": declined_answerable, "of": answerable,
                                 "share": round(declined_answerable / max(1, answerable), 3)}
    metrics["invented"] = inv
    metrics["misattributed"] = mis
    metrics["zh_misattributed"] = len(cells["zh_misattributed"])
    return metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--label", default="new")
    ap.add_argument("--memory", default=None, help="memory kind (default: ask's default)")
    ap.add_argument("--limit-docs", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "heldout.json")
    ap.add_argument("--summary-only", action="store_true", help="print the aggregates only (for developers)")
    args = ap.parse_args()

    import memgpt
    from memgpt.apps import ask

    items = json.loads(ITEMS.read_text())
    docs = items["documents"][: args.limit_docs or None]
    by_doc = defaultdict(list)
    for q in items["questions"]:
        by_doc[q["doc"]].append(q)
    predictions, started = [], time.time()
    for d in docs:
        qs = by_doc[d["id"]]
        kwargs = {"memory": args.memory} if args.memory else {}
        answers = ask(d["text"], [q["question"] for q in qs], **kwargs)
        for q, a in zip(qs, answers):
            predictions.append({**q, "answer": a.text, "abstained": bool(a.abstained),
                                "quote": a.quote.text if a.quote else None})
    metrics = score(items, predictions)
    tree = Path(memgpt.__file__).resolve().parents[1]
    commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    result = {"label": args.label, "commit": commit, "cpu": cpu, "date": date.today().isoformat(),
              "memory": args.memory or "default", "seconds": round(time.time() - started, 1),
              "items": f"{ITEMS.name} ({len(docs)} documents, {len(predictions)} questions)",
              "metrics": metrics, "predictions": predictions}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1))
    print(f"{args.label} @ {commit} ({cpu}), {len(predictions)} questions, {result['seconds']} s")
    for k, v in metrics.items():
        print(f"  {k:32s} {v if not isinstance(v, dict) else v}")
    if not args.summary_only:
        for p in predictions:
            if not right(p["answer"], p["abstained"], p["answers"]):
                print(f"  x {p['id']}: {p['question']!r} -> {p['answer']!r} (gold {p['answers']})", file=sys.stderr)


if __name__ == "__main__":
    main()
