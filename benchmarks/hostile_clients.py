"""The hostile-client run of benchmarks/serve.py (`python benchmarks/serve.py --hostile`).

One `memgpt serve` (the default model, keyless: the default, default connection limits) answers 4
normal clients on 127.0.0.1, each sending 1-token chats through the `openai` client, alone (baseline),
then beside each set of abusive clients in turn, then alone again:

    abusive       four at once:
      long-stop     chats with four 10,000-character stop strings (refused) and four 64-character ones
      abandon       256-token completions, hung up on 0.3 s after sending
      half-open     up to 64 sockets that send half a request's headers and never finish
      memory-flood  memory uploads as fast as answers come (until the quota says no)
    slow-1        200 sockets from 127.0.0.2 that send a chat's headers (Content-Length 100000), then a
                  byte a second; each one closed is opened again a second later
    slow-16       the same 200 sockets spread over 16 addresses (127.0.0.2-17: loopback aliases)
    leavers       streams that are never read (a 4 KB receive buffer) and summaries of a memory through
                  chat hung up on 0.5 s after sending

For the slow phases: how the server closed the sockets (408, or closed as they were made), how long the
answered ones lived (against --body-timeout), and the server's descriptors and RSS before, during and
after. Then the server's RSS before and after 100 requests with long stop strings. Every address is on
the loopback interface; every loop is bounded in time and count.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import openai

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from server_process import Server, start_server  # noqa: E402

from memgpt.io.atomic import write_text_atomic  # noqa: E402
from memgpt.io.corpora import sotu_path  # noqa: E402

SLOW_SOCKETS = 200
SLOW_HEADERS = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n{")
ADDRESSES = {"long-stop": "127.0.0.20", "abandon": "127.0.0.21", "half-open": "127.0.0.22", "memory-flood": "127.0.0.23",
             "stalled-stream": "127.0.0.24", "memory-leaver": "127.0.0.25"}  # each abuser its own; normal clients: 127.0.0.1
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
        try:
            status, body, _ = server.request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                                                               "max_tokens": 1, "stop": stop}, timeout=600,
                                             source=ADDRESSES["long-stop"])
        except OSError:  # -1: the connection was refused or reset
            status, body = -1, ""
        tally.add("long-stop", status, body)


def abandons(server: Server, stop_at: float, tally: Tally) -> None:
    for turn in range(MAX_REQUESTS_PER_CLIENT):
        if time.monotonic() >= stop_at:
            return
        try:
            server.abandon("/v1/completions", {"prompt": f"Story {turn}: once upon a time", "max_tokens": 256}, 0.3,
                           source=ADDRESSES["abandon"])
        except OSError:
            pass
        tally.add("abandon", 0)  # 0: no answer read, by design
        time.sleep(0.2)


def half_open(server: Server, stop_at: float, tally: Tally) -> dict[str, int]:
    """Keep up to HALF_OPEN sockets with half-sent headers; count those the server closed."""
    opened = closed = 0
    sockets: list[socket.socket] = []
    while time.monotonic() < stop_at and opened < 50 * HALF_OPEN:
        while len(sockets) < HALF_OPEN:
            try:
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=5, source_address=(ADDRESSES["half-open"], 0))
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: app")
            except OSError:  # refused: try again after the pause
                opened += 1
                closed += 1
                break
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
        try:
            status, body, _ = server.request("POST", "/v1/memories", {"text": f"Document {turn}. " + text}, timeout=600,
                                             source=ADDRESSES["memory-flood"])
        except OSError:
            status, body = -1, ""
        tally.add("memory-flood", status, body)
        time.sleep(0.05)


def slow_bodies(addresses: list[str]) -> Callable:
    """An abuser keeping SLOW_SOCKETS sockets from `addresses` (round robin) sending a body a byte a second."""

    def run(server: Server, stop_at: float, tally: Tally) -> dict:
        sel = selectors.DefaultSelector()
        opened_at: dict[socket.socket, float] = {}
        lives_408: list[float] = []
        counts = {"opened": 0, "answered_408": 0, "closed_unanswered": 0, "refused_at_connect": 0, "other_answer": 0}
        # closed_unanswered: over the per-address limit (closed as accepted), or displaced with nothing to read
        turn = 0

        def open_one() -> None:
            nonlocal turn
            sock = socket.socket()
            sock.bind((addresses[turn % len(addresses)], 0))
            turn += 1
            try:
                sock.settimeout(2)
                sock.connect(("127.0.0.1", server.port))
                sock.sendall(SLOW_HEADERS)
            except OSError:
                counts["refused_at_connect"] += 1
                sock.close()
                return
            sock.setblocking(False)
            opened_at[sock] = time.monotonic()
            sel.register(sock, selectors.EVENT_READ)
            counts["opened"] += 1

        def closed(sock: socket.socket, data: bytes) -> None:
            life = time.monotonic() - opened_at.pop(sock)
            sel.unregister(sock)
            sock.close()
            if data.startswith(b"HTTP/1.1 408"):
                counts["answered_408"] += 1
                lives_408.append(life)
            elif data:
                counts["other_answer"] += 1
                tally.add("slow-body", int(data[9:12]) if data[9:12].isdigit() else -1, data.decode("latin-1"))
            else:
                counts["closed_unanswered"] += 1

        next_tick = time.monotonic()
        while time.monotonic() < stop_at and counts["opened"] < 100 * SLOW_SOCKETS:
            if time.monotonic() >= next_tick:  # once a second: a byte to each, and the closed ones opened again
                next_tick += 1.0
                for sock in list(opened_at):
                    try:
                        sock.send(b" ")
                    except OSError:
                        pass
                while len(opened_at) < SLOW_SOCKETS and counts["opened"] + counts["refused_at_connect"] < 100 * SLOW_SOCKETS:
                    open_one()
            for key, _ in sel.select(timeout=0.1):
                sock = key.fileobj
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                closed(sock, data)
        for sock in list(opened_at):
            closed(sock, b"")
        sel.close()
        tally.add("slow-body", 0)
        return counts | {"addresses": len(addresses), "answered_408_life_s": {
            "p50": round(percentile(lives_408, 0.5), 2), "max": round(max(lives_408, default=float("nan")), 2)}}

    return run


def stalled_streams(server: Server, stop_at: float, tally: Tally) -> dict:
    """Streams of 16 tokens whose client never reads (4 KB receive buffer); a new one every 5 s, each held
    open 10 s, then closed."""
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 16, "stream": True}).encode()
    held: list[tuple[socket.socket, float]] = []
    started = 0
    while time.monotonic() < stop_at and started < 100:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((ADDRESSES["stalled-stream"], 0))
        sock.settimeout(5)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        held.append((sock, time.monotonic()))
        started += 1
        time.sleep(5)
        for sock, since in list(held):
            if time.monotonic() - since > 10:
                sock.close()
                held.remove((sock, since))
    for sock, _ in held:
        sock.close()
    tally.add("stalled-stream", 0)
    return {"streams": started}


def leaver_memory(server: Server) -> tuple[str | None, float]:
    """The memory the leavers summarize (made before the phases: the memory flood fills the quota), and
    the time of its whole summary through chat, alone."""
    text = sotu_path("1904-Roosevelt-1").read_text()[:30_000]  # a long outline: many model steps
    status, created, _ = server.request("POST", "/v1/memories", {"text": text, "kind": "retrieval"}, timeout=600)
    if status != 202:
        return None, float("nan")
    memory = server.wait_memory(created["id"])["id"]
    start = time.perf_counter()
    server.request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "Summarize."}], "max_tokens": 256,
                                                    "memory": memory, "memory_task": "summarize"}, timeout=600)
    return memory, time.perf_counter() - start


def memory_leavers(memory: str | None) -> Callable:
    """Summaries of `memory` through chat (8-9 s of model time each, alone), each hung up on 0.5 s after
    sending; right after, the same client times a 1-token chat (how long the model stayed busy), then
    waits 2 s."""

    def run(server: Server, stop_at: float, tally: Tally) -> dict:
        summary = {"messages": [{"role": "user", "content": "Summarize."}], "max_tokens": 256, "memory": memory,
                   "memory_task": "summarize"}
        chats: list[float] = []
        while memory and time.monotonic() < stop_at and len(chats) < MAX_REQUESTS_PER_CLIENT:
            try:
                server.abandon("/v1/chat/completions", summary, 0.5, source=ADDRESSES["memory-leaver"])
                start = time.perf_counter()
                status, body, _ = server.request("POST", "/v1/chat/completions", {
                    "messages": [{"role": "user", "content": "Say a word."}], "max_tokens": 1}, timeout=600,
                    source=ADDRESSES["memory-leaver"])
                chats.append(time.perf_counter() - start)
            except OSError:
                status, body = -1, ""
            tally.add("memory-leaver", status, body)
            time.sleep(2.0)
        return {"left": len(chats),
                "chat_after_leaving_s": {"p50": round(percentile(chats, 0.5), 2), "max": round(max(chats, default=float("nan")), 2)}}

    return run


def open_fds(server: Server) -> int:
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def sample_peak(server: Server, stop_at: float, peaks: dict) -> None:
    """The server's largest descriptor count and RSS while a phase runs."""
    while time.monotonic() < stop_at:
        try:
            peaks["fds"] = max(peaks.get("fds", 0), open_fds(server))
            peaks["rss"] = max(peaks.get("rss", 0), server.rss())
        except OSError:
            return
        time.sleep(0.5)


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


def summary(latencies: list[float]) -> dict:
    return {"requests": len(latencies), "p50_s": round(percentile(latencies, 0.5), 3),
            "p95_s": round(percentile(latencies, 0.95), 3)}


PHASES = ("abusive", "slow-1", "slow-16", "leavers")


def abusers_of(phase: str, memory: str | None) -> list[tuple[str, Callable]]:
    """(name, client) of each abusive client of a phase; `memory`: the one the leavers summarize."""
    return {"abusive": [("long-stop", long_stops), ("abandon", abandons), ("half-open", half_open),
                        ("memory-flood", memory_flood)],
            "slow-1": [("slow-body", slow_bodies(["127.0.0.2"]))],
            "slow-16": [("slow-body", slow_bodies([f"127.0.0.{i}" for i in range(2, 18)]))],
            "leavers": [("stalled-stream", stalled_streams), ("memory-leaver", memory_leavers(memory))]}[phase]


def hostile_run(seconds: float, dtype: str, threads: int, out: Path, phases: list[str] | None = None) -> None:
    phases = phases or list(PHASES)
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))} (known: {', '.join(PHASES)})")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        server = start_server(tmp, "--dtype", dtype, "--data-dir", str(tmp / "data"), "--max-tokens", "256",
                              "--max-queue", "32", "--max-memories", "16", "--header-timeout", "5", key=None, threads=threads)
        try:
            tally = Tally()
            normal_clients(server, 5, Tally())  # warm-up
            memory, whole_summary_s = leaver_memory(server)
            fds_before, rss_before = open_fds(server), server.rss()
            baseline = normal_clients(server, seconds, tally)
            print(f"alone: {len(baseline)} chats, p95 {percentile(baseline, 0.95):.2f} s", flush=True)
            runs: dict[str, dict] = {}
            for phase in phases:
                stop_at = time.monotonic() + seconds
                abusers: dict[str, object] = {}
                peaks: dict[str, int] = {}
                before = {"fds": open_fds(server), "rss_mb": round(server.rss() / 2**20, 1)}
                workers = [threading.Thread(target=lambda f=f, n=n: abusers.__setitem__(n, f(server, stop_at, tally)))
                           for n, f in abusers_of(phase, memory)]
                workers.append(threading.Thread(target=sample_peak, args=(server, stop_at, peaks)))
                for w in workers:
                    w.start()
                latencies = normal_clients(server, seconds, tally)
                for w in workers:
                    w.join()
                time.sleep(6)  # past the header and keep-alive timeouts: what the abusers left is closed
                after = {"fds": open_fds(server), "rss_mb": round(server.rss() / 2**20, 1)}
                runs[phase] = {"normal_1_token_chat": summary(latencies),
                               "p95_ratio": round(percentile(latencies, 0.95) / percentile(baseline, 0.95), 2),
                               "abusers": abusers, "server_before": before,
                               "server_peak": {"fds": peaks.get("fds"), "rss_mb": round(peaks.get("rss", 0) / 2**20, 1)},
                               "server_after": after}
                print(f"{phase}: {len(latencies)} chats, p95 {percentile(latencies, 0.95):.2f} s "
                      f"({runs[phase]['p95_ratio']}x); {json.dumps(abusers)}; fds {before['fds']} -> peak "
                      f"{peaks.get('fds')} -> {after['fds']}", flush=True)
            baseline_after = normal_clients(server, seconds, tally)
            print(f"alone again: {len(baseline_after)} chats, p95 {percentile(baseline_after, 0.95):.2f} s", flush=True)
            rss = rss_around_long_stops(server, tally)
            print(f"RSS {rss['rss_before_mb']} -> {rss['rss_after_mb']} MB over {rss['requests']} long-stop requests", flush=True)
            time.sleep(6)
            fds_after, rss_after = open_fds(server), server.rss()
            alive = server.alive()
        finally:
            server.stop()
        log = server.log.read_text(errors="replace")
    result = {
        **run_info(), "seconds_per_phase": seconds, "dtype": dtype, "threads": threads,
        "server_limits": {"max_connections": 128, "max_connections_per_client": 8, "body_timeout_s": 32,
                          "min_body_rate_kb_s": 32, "write_timeout_s": 30, "header_timeout_s": 5},
        "normal_1_token_chat": {"alone": summary(baseline), "alone_again": summary(baseline_after), "target_ratio": 2.0},
        "whole_memory_summary_alone_s": round(whole_summary_s, 2), "phases": runs,
        "rss_long_stop_strings": rss | {"target_change": 0.05},
        "statuses": {who: {str(k): v for k, v in sorted(c.items())} for who, c in tally.statuses.items()},
        "responses_at_least_500": tally.at_least_500(), "tracebacks_in_bodies": tally.tracebacks,
        "tracebacks_in_log": log.count("Traceback"), "responses_500_in_log": log.count('" 500'),
        "server_fds": {"idle_before": fds_before, "idle_after": fds_after},
        "server_rss_mb": {"idle_before": round(rss_before / 2**20, 1), "idle_after": round(rss_after / 2**20, 1)},
        "server_alive_after": alive,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=1) + "\n")
    print(f"\n{'phase':<14} {'chats':>6} {'p50 s':>7} {'p95 s':>7} {'p95 x alone':>12} {'fds before/peak/after':>22} "
          f"{'RSS MB before/peak/after':>26}")
    n = result["normal_1_token_chat"]
    print(f"{'alone':<14} {n['alone']['requests']:>6} {n['alone']['p50_s']:>7} {n['alone']['p95_s']:>7} {'1':>12}")
    for phase, r in runs.items():
        c = r["normal_1_token_chat"]
        fds = f"{r['server_before']['fds']}/{r['server_peak']['fds']}/{r['server_after']['fds']}"
        rss_mb = f"{r['server_before']['rss_mb']}/{r['server_peak']['rss_mb']}/{r['server_after']['rss_mb']}"
        print(f"{phase:<14} {c['requests']:>6} {c['p50_s']:>7} {c['p95_s']:>7} {r['p95_ratio']:>12} {fds:>22} {rss_mb:>26}")
    print(f"{'alone again':<14} {n['alone_again']['requests']:>6} {n['alone_again']['p50_s']:>7} {n['alone_again']['p95_s']:>7}")
    print(f"RSS change over long stops {rss['change']:+.1%}; responses >= 500: {result['responses_at_least_500']}; "
          f"tracebacks: {result['tracebacks_in_bodies']} in bodies, {result['tracebacks_in_log']} in the log; "
          f"server fds {fds_before} -> {fds_after}, RSS {result['server_rss_mb']}; alive: {alive}")
    print(f"statuses: {json.dumps(result['statuses'])}")
    print(f"saved {out}")
