"""The hostile-client run of benchmarks/serve.py (`python benchmarks/serve.py --hostile`).

One `memgpt serve` (the default model, keyless: the default) answers 4 normal clients, each sending
1-token chats through the `openai` client, first alone (baseline), then beside 4 abusive clients, then
alone again:

    long-stop     chats with four 10,000-character stop strings (refused) and four 64-character ones
    abandon       256-token completions, hung up on 0.3 s after sending
    half-open     up to 64 sockets that send half a request's headers and never finish
    memory-flood  memory uploads as fast as answers come (until the quota says no)

Then the server's RSS before and after 100 requests with long stop strings (the longest allowed, new
ones each time, and 10,000-character ones that are refused). Only 127.0.0.1 is ever contacted; every
loop is bounded in time and count.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import openai

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from server_process import Server, start_server  # noqa: E402

from memgpt.io.atomic import write_text_atomic  # noqa: E402

CHATS = ["Name a colour.", "Say hello.", "Name a fruit.", "Count to three.", "Name a city.", "Give me a word."]
HALF_OPEN = 64
MAX_REQUESTS_PER_CLIENT = 2000  # a bound on every loop, whatever the timing


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


class Tally:
    """Statuses and tracebacks seen by every client of a phase."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: dict[str, dict[int, int]] = {}
        self.tracebacks = 0

    def add(self, who: str, status: int, body: object = "") -> None:
        with self.lock:
            counts = self.statuses.setdefault(who, {})
            counts[status] = counts.get(status, 0) + 1
            self.tracebacks += "Traceback" in (body if isinstance(body, str) else json.dumps(body))

    def at_least_500(self) -> int:
        return sum(n for counts in self.statuses.values() for status, n in counts.items() if status >= 500)


def normal_clients(server: Server, seconds: float, tally: Tally) -> list[float]:
    """4 clients of 1-token chats for `seconds`; the latency of each."""
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    def loop(index: int) -> None:
        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=600)
        for turn in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() >= stop_at:
                return
            start = time.perf_counter()
            try:
                client.chat.completions.create(model="default", max_tokens=1, temperature=0,
                                               messages=[{"role": "user", "content": CHATS[(index + turn) % len(CHATS)]}])
                status = 200
            except openai.APIStatusError as e:
                status = e.status_code
            except openai.APIConnectionError:
                status = -1
            tally.add("normal", status)
            if status == 200:
                with tally.lock:
                    latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def long_stops(server: Server, stop_at: float, tally: Tally) -> None:
    for turn in range(MAX_REQUESTS_PER_CLIENT):
        if time.monotonic() >= stop_at:
            return
        stop = [c * 10_000 for c in "wxyz"] if turn % 2 == 0 else [f"{turn}{c * 62}" for c in "wxyz"]
        status, body, _ = server.request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                                                           "max_tokens": 1, "stop": stop}, timeout=600)
        tally.add("long-stop", status, body)


def abandons(server: Server, stop_at: float, tally: Tally) -> None:
    for turn in range(MAX_REQUESTS_PER_CLIENT):
        if time.monotonic() >= stop_at:
            return
        server.abandon("/v1/completions", {"prompt": f"Story {turn}: once upon a time", "max_tokens": 256}, 0.3)
        tally.add("abandon", 0)  # 0: no answer read, by design
        time.sleep(0.2)


def half_open(server: Server, stop_at: float, tally: Tally) -> dict[str, int]:
    """Keep up to HALF_OPEN sockets with half-sent headers; count those the server closed."""
    opened = closed = 0
    sockets: list[socket.socket] = []
    while time.monotonic() < stop_at and opened < 50 * HALF_OPEN:
        while len(sockets) < HALF_OPEN:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: app")
            sock.setblocking(False)
            sockets.append(sock)
            opened += 1
        time.sleep(0.5)
        alive = []
        for sock in sockets:
            try:
                gone = sock.recv(1) == b""
            except BlockingIOError:
                gone = False
            except OSError:
                gone = True
            if gone:
                closed += 1
                sock.close()
            else:
                alive.append(sock)
        sockets = alive
    for sock in sockets:
        sock.close()
    tally.add("half-open", 0)
    return {"opened": opened, "closed_by_server": closed}


def memory_flood(server: Server, stop_at: float, tally: Tally) -> None:
    text = "The lamp is on the table. The cat sleeps by the door. It rains in the evening. " * 25  # 2 KB
    for turn in range(MAX_REQUESTS_PER_CLIENT):
        if time.monotonic() >= stop_at:
            return
        status, body, _ = server.request("POST", "/v1/memories", {"text": f"Document {turn}. " + text}, timeout=600)
        tally.add("memory-flood", status, body)
        time.sleep(0.05)


def open_fds(server: Server) -> int:
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def rss_around_long_stops(server: Server, tally: Tally, count: int = 100) -> dict:
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    for _ in range(3):  # this request shape's first allocations
        server.request("POST", "/v1/chat/completions", chat | {"stop": ["a" * 64] * 4})
    before = server.rss()
    for i in range(count):
        stop = [c * 10_000 for c in "abcd"] if i % 2 else [f"{i}{c * 62}" for c in "abcd"]
        status, body, _ = server.request("POST", "/v1/chat/completions", chat | {"stop": stop}, timeout=600)
        tally.add("rss-long-stop", status, body)
    after = server.rss()
    return {"requests": count, "rss_before_mb": round(before / 2**20, 1), "rss_after_mb": round(after / 2**20, 1),
            "change": round((after - before) / before, 4)}


def run_info() -> dict:
    """Date, commit, CPU and command of this run."""
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
            "cpu": cpu, "cpus": os.cpu_count(), "command": " ".join(["python", *sys.argv])}


def hostile_run(seconds: float, dtype: str, threads: int, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        server = start_server(tmp, "--dtype", dtype, "--data-dir", str(tmp / "data"), "--max-tokens", "256",
                              "--max-queue", "32", "--max-memories", "16", "--header-timeout", "5", key=None, threads=threads)
        try:
            tally = Tally()
            normal_clients(server, 5, Tally())  # warm-up
            fds_before = open_fds(server)
            baseline = normal_clients(server, seconds, tally)
            print(f"baseline: {len(baseline)} chats, p95 {percentile(baseline, 0.95):.2f} s", flush=True)
            stop_at = time.monotonic() + seconds
            abusers: dict[str, object] = {}
            workers = [threading.Thread(target=lambda f=f, n=n: abusers.__setitem__(n, f(server, stop_at, tally)))
                       for n, f in [("long-stop", long_stops), ("abandon", abandons), ("half-open", half_open),
                                    ("memory-flood", memory_flood)]]
            for w in workers:
                w.start()
            hostile = normal_clients(server, seconds, tally)
            for w in workers:
                w.join()
            print(f"hostile: {len(hostile)} chats, p95 {percentile(hostile, 0.95):.2f} s", flush=True)
            baseline_after = normal_clients(server, seconds, tally)
            print(f"baseline again: {len(baseline_after)} chats, p95 {percentile(baseline_after, 0.95):.2f} s", flush=True)
            rss = rss_around_long_stops(server, tally)
            print(f"RSS {rss['rss_before_mb']} -> {rss['rss_after_mb']} MB over {rss['requests']} long-stop requests", flush=True)
            time.sleep(6)  # past the header timeout: the half-open sockets' descriptors are gone
            fds_after = open_fds(server)
            alive = server.alive()
        finally:
            server.stop()
        log = server.log.read_text(errors="replace")
    result = {
        **run_info(), "seconds_per_phase": seconds, "dtype": dtype, "threads": threads,
        "normal_1_token_chat": {
            "baseline": {"requests": len(baseline), "p50_s": round(percentile(baseline, 0.5), 3), "p95_s": round(percentile(baseline, 0.95), 3)},
            "with_abusive_clients": {"requests": len(hostile), "p50_s": round(percentile(hostile, 0.5), 3), "p95_s": round(percentile(hostile, 0.95), 3)},
            "baseline_after": {"requests": len(baseline_after), "p50_s": round(percentile(baseline_after, 0.5), 3),
                               "p95_s": round(percentile(baseline_after, 0.95), 3)},
            "p95_ratio": round(percentile(hostile, 0.95) / percentile(baseline, 0.95), 2),
            "p95_ratio_to_baseline_after": round(percentile(hostile, 0.95) / percentile(baseline_after, 0.95), 2),
            "target_ratio": 2.0},
        "abusive_clients": abusers,
        "rss_long_stop_strings": rss | {"target_change": 0.05},
        "statuses": {who: {str(k): v for k, v in sorted(c.items())} for who, c in tally.statuses.items()},
        "responses_at_least_500": tally.at_least_500(), "tracebacks_in_bodies": tally.tracebacks,
        "tracebacks_in_log": log.count("Traceback"), "server_fds": {"before": fds_before, "after": fds_after},
        "server_alive_after": alive,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=1) + "\n")
    n = result["normal_1_token_chat"]
    print(f"\n{'phase':<22} {'chats':>6} {'p50 s':>7} {'p95 s':>7}")
    for name in ("baseline", "with_abusive_clients", "baseline_after"):
        print(f"{name:<22} {n[name]['requests']:>6} {n[name]['p50_s']:>7} {n[name]['p95_s']:>7}")
    print(f"p95 ratio {n['p95_ratio']} (target <= 2); RSS change {rss['change']:+.1%} (target within 5%); "
          f"responses >= 500: {result['responses_at_least_500']}; tracebacks: {result['tracebacks_in_bodies']} in bodies, "
          f"{result['tracebacks_in_log']} in the log; server fds {fds_before} -> {fds_after}; alive: {alive}")
    print(f"abusive clients: {json.dumps(abusers)}; statuses: {json.dumps(result['statuses'])}")
    print(f"saved {out}")
