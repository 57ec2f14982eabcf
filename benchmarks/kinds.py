"""Every memory kind, answering from what it holds, with the sentence index off and on, side by side.

Each document is read once per kind; every question is asked with `use_index=False` (the kind's own
evidence: retrieved sentences, the sentences under the kv blocks its attention retrieved, a window's
sentences, the text memory's notes) and `use_index=True` (a kind that holds no document sentence may
search the sentence index for the question's terms). A kind whose evidence holds document sentences
(retrieval and kv always do; a window does whenever a sentence fits in it) answers the same either way,
so its index-on answer is the index-off one unless that answer came from no document sentence.

Sections: the natural-QA haystack (benchmarks/naturalqa.py: dev split only, 4k and 16k; --max-questions
cuts questions per document for the costly kinds) and bAbI qa1 (memgpt.eval.suite, test-split speeches,
seed 0). Predictions are cached per (section, kind) in --work-dir (resumable).

    nice -n 10 python benchmarks/kinds.py --kinds retrieval,window-first,window-last,none --lengths 4k
    nice -n 10 python benchmarks/kinds.py --kinds text,kv --lengths 4k --max-questions 12
    python benchmarks/kinds.py --score-only     # table and JSON from the caches

Writes benchmarks/results/kinds.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402
from naturalqa import (ROOT, DocumentVocabulary, build_documents, code_commit, load_items, read_cache,  # noqa: E402
                       verdict)

KINDS = ("retrieval", "kv", "text", "window-first", "window-last", "none", "latent")
RESULTS = Path(__file__).resolve().parent / "results"
SOURCES_WITHOUT_SENTENCES = ("notes", "latent")


def haystack_docs(lengths: list[str], max_questions: int) -> list[dict]:
    docs = []
    for length in lengths:
        for d in build_documents(load_items(), ["dev"], [length], ["haystack"]):
            qs = d["questions"]
            if max_questions and len(qs) > max_questions:  # evenly spaced: every category keeps its share
                qs = [qs[round(k * len(qs) / max_questions)] for k in range(max_questions)]
            docs.append({"doc": d["doc"], "section": f"haystack-{length}", "text": d["text"],
                         "questions": [{"qid": q["qid"], "question": q["question"], "category": q["category"],
                                        "gold": q["gold"], "aliases": q["aliases"]} for q in qs]})
    return docs


def babi_docs(lengths: list[str], samples: int) -> list[dict]:
    from memgpt.eval.longcontext import parse_length
    from memgpt.eval.suite import make_sample

    docs = []
    for length in lengths:
        for task in ("qa1",):
            for i in range(samples):
                s = make_sample(task, parse_length(length), i, 0, "test")
                docs.append({"doc": f"babi-{task}-{length}-{i}", "section": f"babi-{task}-{length}", "text": s.context,
                             "questions": [{"qid": "q", "question": s.prompt, "category": task, "gold": s.answer,
                                            "aliases": [], "labels": s.labels, "task": task, "bare": s.question}]})
    return docs


def run(kind: str, docs: list[dict], cache_path: Path, max_new_tokens: int) -> None:
    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.utils.logging.set_verbosity_error()
    from memgpt.apps import ask, get_engine, read

    engine = get_engine()
    done = read_cache(cache_path)
    commit = code_commit(ROOT)
    with cache_path.open("a", encoding="utf-8") as out:
        for d in docs:
            todo = [q for q in d["questions"] if f"{kind}|{d['doc']}|{q['qid']}" not in done]
            if not todo:
                continue
            t0 = time.perf_counter()
            state = read(d["text"], memory=kind, engine=engine)
            read_s = time.perf_counter() - t0
            for q in todo:
                t = time.perf_counter()
                off = ask(state, q["question"], engine=engine, max_new_tokens=max_new_tokens, use_index=False)
                off_s = time.perf_counter() - t
                on = off
                if off.evidence_source in SOURCES_WITHOUT_SENTENCES or (off.abstained and kind.startswith(("window", "none"))):
                    on = ask(state, q["question"], engine=engine, max_new_tokens=max_new_tokens, use_index=True)
                record = {"key": f"{kind}|{d['doc']}|{q['qid']}", "kind": kind, "doc": d["doc"], "qid": q["qid"],
                          "off": off.to_dict(), "on": on.to_dict(), "off_seconds": round(off_s, 2),
                          "read_seconds": round(read_s, 2), "commit": commit}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                out.flush()
            print(f"[{kind}] {d['doc']}: {len(todo)} questions, read {read_s:.0f}s, {time.perf_counter() - t0:.0f}s", flush=True)


def correct(q: dict, answer: dict, text: str) -> dict:
    if q["category"].startswith("qa"):
        from memgpt.eval.suite import score

        ok = bool(score(q["task"], answer["answer"], q["gold"], q["labels"], q["bare"]))
        return {"correct": ok, "answerable": True, "abstained": answer["abstained"], "false_abstention": answer["abstained"]}
    return verdict(q["category"], answer["answer"], q["gold"], q["aliases"])


def table_of(docs: list[dict], kinds: list[str], work: Path) -> tuple[dict, list[dict]]:
    table: dict = {}
    predictions = []
    for kind in kinds:
        cache = read_cache(work / f"{kind}.jsonl")
        for d in docs:
            vocab = DocumentVocabulary(d["text"]) if d["section"].startswith("haystack") else None
            for q in d["questions"]:
                r = cache.get(f"{kind}|{d['doc']}|{q['qid']}")
                if r is None:
                    continue
                for mode in ("off", "on"):
                    v = correct(q, r[mode], d["text"])
                    cell = table.setdefault(d["section"], {}).setdefault(kind, {}).setdefault(mode, {
                        "n": 0, "correct": 0, "answerable": 0, "answerable_correct": 0, "unanswerable": 0,
                        "declined": 0, "false_abstentions": 0, "quoted": 0, "not_in_document": 0, "sources": {}})
                    cell["n"] += 1
                    cell["correct"] += v["correct"]
                    if v["answerable"]:
                        cell["answerable"] += 1
                        cell["answerable_correct"] += v["correct"]
                        cell["false_abstentions"] += v["false_abstention"]
                    else:
                        cell["unanswerable"] += 1
                        cell["declined"] += v["correct"]
                    cell["quoted"] += r[mode]["quote"] is not None
                    cell["not_in_document"] += bool(vocab.unsupported(r[mode]["answer"])) if vocab else 0
                    src = r[mode].get("evidence_source") or "?"
                    cell["sources"][src] = cell["sources"].get(src, 0) + 1
                predictions.append({"kind": kind, "doc": d["doc"], "section": d["section"], **q,
                                    "off": r["off"]["answer"], "on": r["on"]["answer"],
                                    "off_source": r["off"].get("evidence_source"), "on_source": r["on"].get("evidence_source"),
                                    "off_seconds": r["off_seconds"], "read_seconds": r["read_seconds"], "commit": r["commit"]})
    return table, predictions


def render(table: dict, kinds: list[str]) -> str:
    lines = ["| section | kind | n | index off: correct | answerable | declined (of unanswerable) | quoted | "
             "index on: correct | answerable | evidence (on) |", "|---" * 10 + "|"]
    for section, by_kind in table.items():
        for kind in kinds:
            if kind not in by_kind:
                continue
            off, on = by_kind[kind]["off"], by_kind[kind]["on"]

            def pct(a: int, b: int) -> str:
                return f"{100 * a / b:.0f}%" if b else "-"

            dec = f"{off['declined']}/{off['unanswerable']}" if off["unanswerable"] else "-"
            sources = ", ".join(f"{k} {v}" for k, v in sorted(on["sources"].items()))
            lines.append(f"| {section} | {kind} | {off['n']} | {pct(off['correct'], off['n'])} | "
                         f"{pct(off['answerable_correct'], off['answerable'])} | {dec} | {pct(off['quoted'], off['n'])} | "
                         f"{pct(on['correct'], on['n'])} | {pct(on['answerable_correct'], on['answerable'])} | {sources} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--lengths", default="4k")
    ap.add_argument("--sections", default="haystack,babi")
    ap.add_argument("--max-questions", type=int, default=0, help="questions per haystack document at most (0: all)")
    ap.add_argument("--babi-samples", type=int, default=10)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "kinds")
    ap.add_argument("--out", type=Path, default=RESULTS / "kinds.json")
    ap.add_argument("--score-only", action="store_true")
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if bad := [k for k in kinds if k not in KINDS]:
        raise SystemExit(f"error: unknown kind(s) {', '.join(bad)}; choose from {', '.join(KINDS)}")
    lengths, sections = args.lengths.split(","), args.sections.split(",")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    docs = (haystack_docs(lengths, args.max_questions) if "haystack" in sections else []) + \
           (babi_docs(["4k"], args.babi_samples) if "babi" in sections else [])
    if not args.score_only:
        for kind in kinds:
            run(kind, docs, args.work_dir / f"{kind}.jsonl", args.max_new_tokens)
    all_docs = haystack_docs(["4k", "16k"], 0) + babi_docs(["4k"], max(args.babi_samples, 10))
    table, predictions = table_of(all_docs, list(KINDS), args.work_dir)
    from memgpt.io.atomic import write_text_atomic

    payload = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": code_commit(ROOT), "cpu": cpu_model(),
               "command": " ".join(["python", "benchmarks/kinds.py", *sys.argv[1:]]),
               "settings": {"split": "dev", "max_new_tokens": args.max_new_tokens, "torch_threads": 1,
                            "model": "default (SmolLM2-135M-Instruct)", "babi": "qa1, test-split speeches, seed 0"},
               "table": table, "predictions": predictions}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(payload, indent=1, ensure_ascii=False))
    print(render(table, list(KINDS)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
