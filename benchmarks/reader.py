"""The reader page against `memgpt summarize`: a document read and outlined in the page (paste, Read, the
outline shown) beside the same document summarized by the CLI, in the same run on the same machine.

    python benchmarks/reader.py [--speech 1904-Roosevelt-1] [--rounds 1]

The page runs in headless Chromium (/usr/bin/chromium, Playwright) on a `memgpt serve` started once
(its model load is not counted; the CLI's is, as a user waits for it). Also timed: `summarize()` in
this process on a warm engine (the CLI without start-up). Saves benchmarks/results/reader.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))
from machine import cpu_model  # noqa: E402
from server_process import start_server  # noqa: E402

from memgpt.apps import get_engine  # noqa: E402
from memgpt.apps.summarize import summarize  # noqa: E402
from memgpt.io.atomic import write_text_atomic  # noqa: E402
from memgpt.io.corpora import sotu_path  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def cli_seconds(speech: str, threads: int) -> float:
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "memgpt", "summarize", f"sotu:{speech}"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def page_seconds(page, base: str, text: str, k: int) -> float:
    page.goto(base + "/")
    page.wait_for_selector("body[data-started]", state="attached")
    page.evaluate("t => { document.getElementById('paste').value = t; }", text)
    page.fill("#name", f"speech-{k}")
    t0 = time.perf_counter()
    page.click("#read")
    page.wait_for_selector("body[data-ready]", state="attached", timeout=1_200_000)
    seconds = time.perf_counter() - t0
    assert page.locator("#outline a.cite").count() > 0 and page.locator("#error").is_hidden()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speech", default="1904-Roosevelt-1")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "reader.json")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    path = sotu_path(args.speech)
    text = path.read_text(encoding="utf-8")
    engine = get_engine()
    tokens = engine.count_tokens(text)
    summarize("A short text warms the encoder. It has two sentences.", engine=engine)
    rows: dict[str, list[float]] = {"cli": [], "warm": [], "page": []}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        server = start_server(Path(tmp), "--data-dir", str(Path(tmp) / "data"), key=None, threads=args.threads)
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            for k in range(args.rounds):  # interleaved, so the shared machine's load falls on all alike
                rows["cli"].append(cli_seconds(args.speech, args.threads))
                t0 = time.perf_counter()
                summarize(path, engine=engine)
                rows["warm"].append(time.perf_counter() - t0)
                rows["page"].append(page_seconds(page, f"http://127.0.0.1:{server.port}", text, k))
                print(f"round {k + 1}: " + ", ".join(f"{name} {v[-1]:.1f} s" for name, v in rows.items()), flush=True)
                save(args, rows, tokens)  # after every round: a long run on a shared machine may be cut short
        finally:
            browser.close()
            server.stop()


def save(args: argparse.Namespace, rows: dict[str, list[float]], tokens: int) -> None:
    med = {name: statistics.median(v) for name, v in rows.items()}
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": commit(), "cpu": cpu_model(),
              "load_average": os.getloadavg(), "command": " ".join(["python", "benchmarks/reader.py", *sys.argv[1:]]),
              "speech": args.speech, "tokens": tokens, "rounds": len(rows["page"]), "threads": args.threads,
              "seconds": rows, "median": med,
              "page_minus_cli_s": med["page"] - med["cli"], "page_minus_warm_s": med["page"] - med["warm"],
              "page_over_cli": med["page"] / med["cli"], "page_over_warm": med["page"] / med["warm"]}
    print(f"{'':22}{'median s':>10}")
    for name, label in (("cli", "memgpt summarize (CLI)"), ("warm", "summarize(), warm"), ("page", "page: read + outline")):
        print(f"{label:22}{med[name]:10.2f}")
    print(f"page - CLI {result['page_minus_cli_s']:+.2f} s ({result['page_over_cli']:.2f}x); "
          f"page - warm {result['page_minus_warm_s']:+.2f} s ({result['page_over_warm']:.2f}x)")
    args.out.parent.mkdir(exist_ok=True)
    write_text_atomic(args.out, json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
