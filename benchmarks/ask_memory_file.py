"""Asking a saved memory file costs no second reading: `memgpt ask book.mem` with 10 questions against
`memgpt ask book.txt` with the same 10, each as the command a user runs (a fresh process: model load
included), on a long State of the Union speech.

    python benchmarks/ask_memory_file.py                       # 1904-Roosevelt-1 (~25k tokens)
    python benchmarks/ask_memory_file.py --speech 1946-Truman-1 --threads 1

Runs `memgpt read book.txt -o book.mem` once, then both asks; records wall seconds of each command,
the seconds each reports itself (without the model load), and whether the answers agree.
Writes benchmarks/results/ask_memory_file.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
QUESTIONS = [
    "What did the President say about the Panama Canal?",
    "What is said about the Navy?",
    "What does the message say about the trusts and corporations?",
    "What is said about immigration?",
    "What does the President ask Congress to do about the Philippines?",
    "What is said about the Army?",
    "What does the message say about forests?",
    "What is said about the Indians?",
    "What does the President say about the tariff?",
    "What is said about the postal service?",
]


def run(args: list[str], threads: int) -> tuple[float, dict]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "memgpt", *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"memgpt {' '.join(args[:2])} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return wall, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech", default="1904-Roosevelt-1")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "ask_memory_file.json")
    a = parser.parse_args()
    from memgpt.io.atomic import write_text_atomic
    from memgpt.io.corpora import sotu_path

    common = ["--dtype", a.dtype, "--no-progress", "--json"]
    with tempfile.TemporaryDirectory() as tmp:
        book, mem = Path(tmp) / "book.txt", Path(tmp) / "book.mem"
        book.write_bytes(sotu_path(a.speech).read_bytes())
        read_wall, info = run(["read", str(book), "-o", str(mem), *common], a.threads)
        mem_wall, from_mem = run(["ask", str(mem), *QUESTIONS, *common], a.threads)
        txt_wall, from_txt = run(["ask", str(book), *QUESTIONS, *common], a.threads)
        mem_bytes = mem.stat().st_size
    same = [x["answer"] for x in from_mem["answers"]] == [x["answer"] for x in from_txt["answers"]]
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "speech": a.speech, "dtype": a.dtype,
        "threads": a.threads, "questions": len(QUESTIONS), "tokens_read": info["tokens_read"],
        "memory_file_bytes": mem_bytes,
        "read_seconds": round(read_wall, 2),
        "ask_mem_seconds": round(mem_wall, 2), "ask_txt_seconds": round(txt_wall, 2),
        "ask_mem_reported_seconds": from_mem["seconds"], "ask_txt_reported_seconds": from_txt["seconds"],
        "txt_over_mem": round(txt_wall / mem_wall, 2), "same_answers": same,
        "answers": from_mem["answers"],
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(a.out, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"read {result['tokens_read']} tokens: {read_wall:.1f} s; ask book.mem x10: {mem_wall:.1f} s; "
          f"ask book.txt x10: {txt_wall:.1f} s ({result['txt_over_mem']}x); same answers: {same}")


if __name__ == "__main__":
    main()
