"""Seconds per question after reading: a long document (State of the Union speeches joined until
--tokens tokens of the default tokenizer) is read once into a memory, then each question is asked of
that memory in the same process (the model loaded and warm), as a server or a script asking many
questions does. Reports each question's seconds, the median and the slowest.

    OMP_NUM_THREADS=2 python benchmarks/ask_latency.py                   # 64k tokens, retrieval
    OMP_NUM_THREADS=2 python benchmarks/ask_latency.py --tokens 4096 --out benchmarks/results/ask_latency_4k.json

Writes benchmarks/results/ask_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

RESULTS = Path(__file__).resolve().parent / "results"
QUESTIONS = [  # about the speeches' subjects; asked for the time they take, not scored
    "What is said about the Navy?",
    "What does the message say about the tariff?",
    "What is said about the postal service?",
    "What does the President ask of Congress about the currency?",
    "What is said about the Indians?",
    "Who negotiated the treaty?",
    "When was the war declared?",
    "How many ships were built?",
]


def document(tokens: int, tokenizer) -> tuple[str, int]:
    """Speeches in order, joined until `tokens` tokens; cut at a paragraph."""
    from memgpt.io.corpora import sotu_speeches

    parts, total = [], 0
    for path in sotu_speeches():
        for paragraph in path.read_text(encoding="utf-8").split("\n\n"):
            n = len(tokenizer(paragraph, add_special_tokens=False).input_ids)
            if total + n > tokens:
                return "\n\n".join(parts), total
            parts.append(paragraph)
            total += n
    return "\n\n".join(parts), total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=65_536)
    ap.add_argument("--memory", default="retrieval")
    ap.add_argument("--out", type=Path, default=RESULTS / "ask_latency.json")
    args = ap.parse_args()
    from memgpt.apps import ask, read
    from memgpt.model.engine import get_engine
    from memgpt.io.atomic import write_text_atomic

    engine = get_engine()
    text, tokens = document(args.tokens, engine.tokenizer)
    start = time.perf_counter()
    state = read(text, memory=args.memory, engine=engine)
    read_s = time.perf_counter() - start
    ask(state, "What is this about?", engine=engine)  # warm-up: the first question loads spaCy
    rows = []
    for question in QUESTIONS:
        start = time.perf_counter()
        answer = ask(state, question, engine=engine)
        rows.append({"question": question, "seconds": round(time.perf_counter() - start, 3),
                     "abstained": bool(answer.abstained)})
    seconds = [r["seconds"] for r in rows]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": commit, "cpu": cpu_model(),
              "cores": os.cpu_count(), "threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or None,
              "load_average": os.getloadavg(), "command": " ".join(["python", *sys.argv]), "memory": args.memory,
              "tokens": tokens, "read_seconds": round(read_s, 1), "median_s": round(statistics.median(seconds), 3),
              "max_s": max(seconds), "target_s": 1.5, "questions": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(result, indent=1) + "\n")
    print(f"{tokens} tokens read in {read_s:.1f} s ({args.memory}); per question: median {result['median_s']} s, "
          f"max {result['max_s']} s (target 1.5 s); load {result['load_average'][0]:.1f}")


if __name__ == "__main__":
    main()
