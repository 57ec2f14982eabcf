"""The evidence side of bAbI qa1-qa3 (no generation): the sentences the retrieval memory puts in front of
the reader for "where" questions (`memgpt.memories.chains.object_trail`, which `RetrievalMemory.evidence`
returns for them), on the suite's samples (memgpt.eval.suite: test-split speeches, seed 0).

Per sample: whether the answer's place is named in the evidence, whether only it is (no other place of the
task's labels), and how many sentences reach the reader.

    nice -n 10 python benchmarks/babi_evidence.py --tasks qa1,qa2,qa3 --lengths 4k,16k --samples 10

Writes benchmarks/results/babi_evidence.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402
from naturalqa import ROOT, code_commit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="qa1,qa2,qa3")
    ap.add_argument("--lengths", default="4k,16k")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "babi_evidence.json")
    args = ap.parse_args()
    from memgpt.eval.longcontext import make_sample, parse_length
    from memgpt.io.atomic import write_text_atomic
    from memgpt.io.spans import SentenceSplitter, plain
    from memgpt.memories.chains import object_trail
    from memgpt.memories.lexical import Lexicon

    table, records = {}, []
    for length in args.lengths.split(","):
        for task in args.tasks.split(","):
            cell = table.setdefault(task, {}).setdefault(length, {"n": 0, "answer_named": 0, "only_answer": 0, "sentences": 0})
            for i in range(args.samples):
                s = make_sample(task, parse_length(length), i, 0, "test", measure=False)
                splitter = SentenceSplitter()
                texts = [x.text for x in splitter.feed(s.context) + splitter.close()]
                t0 = time.perf_counter()
                pieces = object_trail(s.prompt, texts, Lexicon([plain(t) for t in texts])) or []
                evidence = [plain(texts[k][a:b]) for k, a, b in pieces]
                named = {w for w in s.labels if any(re.search(rf"\b{w}\b", e) for e in evidence)}
                asked = {w for w in s.labels if re.search(rf"\b{w}\b", s.prompt)}
                cell["n"] += 1
                cell["answer_named"] += s.answer in named
                cell["only_answer"] += named - asked == {s.answer}
                cell["sentences"] += len(evidence)
                records.append({"task": task, "length": length, "sample": i, "question": s.prompt, "answer": s.answer,
                                "evidence": evidence, "seconds": round(time.perf_counter() - t0, 2)})
            print(f"{task} {length}: answer named {cell['answer_named']}/{cell['n']}, only the answer "
                  f"{cell['only_answer']}/{cell['n']}, {cell['sentences'] / cell['n']:.1f} sentences", flush=True)
    payload = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": code_commit(ROOT), "cpu": cpu_model(),
               "command": " ".join(["python", "benchmarks/babi_evidence.py", *sys.argv[1:]]),
               "settings": {"split": "test", "seed": 0, "samples": args.samples}, "table": table, "records": records}
    write_text_atomic(args.out, json.dumps(payload, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
