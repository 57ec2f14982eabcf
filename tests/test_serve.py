"""`memgpt serve` as a real process on a free port, driven by the official `openai` client (chat,
streaming, text completions, memories through `extra_body`) and by raw HTTP for the error cases."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import socket
import time
import uuid

import openai
import pytest

from server_process import KEY, Server, start_server, tiny_backbone

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
DOCUMENT = FILLER * 40 + "Lucy went to the cellar. " + FILLER * 40


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    """The packaged default model (fp32 on a CPU), a 1 MiB body limit, an API key."""
    tmp = tmp_path_factory.mktemp("serve")
    server = start_server(tmp, "--dtype", "fp32", "--data-dir", str(tmp / "data"), "--max-body-mb", "1",
                          "--max-tokens", "64")
    yield server
    server.stop()
    assert "Traceback" not in server.log.read_text(), server.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=300)


def test_openai_client_chat_stream_and_completions(client):
    models = [m.id for m in client.models.list()]
    assert models == ["smollm2-135m-instruct"]
    messages = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Name a colour."}]
    whole = client.chat.completions.create(model=models[0], messages=messages, max_tokens=6, temperature=0)
    text = whole.choices[0].message.content
    assert text.strip() and whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage.completion_tokens <= 6 and whole.usage.prompt_tokens > 5
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens

    chunks = list(client.chat.completions.create(model="default", messages=messages, max_tokens=6, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text  # greedy: the stream is the same answer, piece by piece
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens

    done = client.completions.create(model="default", prompt="The capital of France is", max_tokens=8, temperature=0,
                                     stop=["."])
    assert "." not in done.choices[0].text and done.usage.completion_tokens >= 1
    # sampling fields are used: a seed repeats a sample, the penalties are accepted
    sampled = [client.chat.completions.create(model="default", messages=messages, max_tokens=5, temperature=1.2, seed=7,
                                              presence_penalty=1.0, frequency_penalty=0.5).choices[0].message.content
               for _ in range(2)]
    assert sampled[0] == sampled[1]


def test_concurrent_requests_share_the_model_without_interleaving(client):
    """Four clients at once get exactly what each would get alone (greedy)."""
    prompts = ["Count to three.", "Name a fruit.", "Say hi.", "Name a city."]
    ask = lambda p: client.chat.completions.create(model="default", messages=[{"role": "user", "content": p}],
                                                   max_tokens=5, temperature=0).choices[0].message.content
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(ask, prompts))
    assert together == [ask(p) for p in prompts]


def test_memory_asked_through_extra_body(server, client):
    status, created, _ = server.request("POST", "/v1/memories", {"text": DOCUMENT, "kind": "retrieval", "name": "filler"})
    assert status == 202 and created["status"] in ("queued", "reading") and created["id"].startswith("mem_")
    record = server.wait_memory(created["id"])
    assert record["status"] == "ready" and record["progress"] == 1.0 and record["tokens_read"] == record["tokens_total"] > 1000

    answer = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "Where did Lucy go?"}],
                                            max_tokens=16, extra_body={"memory": created["id"]})
    assert "cellar" in answer.choices[0].message.content.lower()
    assert answer.model_extra["memory"] == {"id": created["id"], "kind": "retrieval", "task": "ask"}
    quote = answer.model_extra["quote"]  # the sentence the answer rests on, at its offsets
    assert quote["text"] == "Lucy went to the cellar." and DOCUMENT[quote["start"] : quote["end"]] == quote["text"]
    streamed = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "Where did Lucy go?"}],
                                              max_tokens=16, stream=True, extra_body={"memory": created["id"]})
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == answer.choices[0].message.content
    summary = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "Summarize."}],
                                             max_tokens=24, extra_body={"memory": created["id"], "memory_task": "summarize"})
    assert summary.choices[0].message.content.strip()

    # a file upload (multipart), listed, then deleted
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nwindow-last\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"doc.txt\"\r\n"
            f"Content-Type: text/plain\r\n\r\n{DOCUMENT}\r\n--{boundary}--\r\n").encode()
    status, uploaded, _ = server.request("POST", "/v1/memories", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 202 and uploaded["kind"] == "window-last", uploaded
    assert server.wait_memory(uploaded["id"])["status"] == "ready"
    listed = server.request("GET", "/v1/memories")[1]["data"]
    assert [m["id"] for m in listed][-2:] == [created["id"], uploaded["id"]]
    assert server.request("DELETE", f"/v1/memories/{uploaded['id']}")[0] == 200
    assert server.request("GET", f"/v1/memories/{uploaded['id']}")[0] == 404


def error_of(result) -> dict:
    status, body, _ = result
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert {"message", "type", "param", "code"} <= set(body["error"]) and "Traceback" not in json.dumps(body)
    return body["error"]


@pytest.mark.parametrize("method,path,body,key,status", [
    ("GET", "/v1/models", None, None, 401),
    ("GET", "/v1/models", None, "wrong", 401),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, None, 401),
    ("GET", "/v1/nothing-here", None, True, 404),
    ("GET", "/v1/memories/mem_000000000000000000000000", None, True, 404),
    ("GET", "/v1/memories/..%2F..%2Fetc%2Fpasswd", None, True, 404),
    ("DELETE", "/v1/memories/../../locks", None, True, 404),
    ("POST", "/v1/chat/completions", {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}, True, 404),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "memory": "mem_000000000000000000000000"}, True, 404),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "memory": "../x.mem"}, True, 422),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, True, 422),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}, True, 422),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "n": 2}, True, 422),
    ("POST", "/v1/chat/completions", {"messages": []}, True, 422),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "hi"}]}, True, 422),
    ("POST", "/v1/chat/completions", {"model": "default"}, True, 422),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 65}, True, 400),
    ("POST", "/v1/chat/completions", '{"messages": [', True, 400),
    ("POST", "/v1/chat/completions", b"\xff\xfe\x00garbage", True, 400),
    ("POST", "/v1/completions", {"prompt": "x" * (1 << 20)}, True, 413),
    ("POST", "/v1/memories", {"text": "   "}, True, 400),
    ("POST", "/v1/memories", {"text": "some text", "kind": "nope"}, True, 422),
    ("POST", "/v1/memories", "plain text", True, 415),
    ("PUT", "/v1/models", None, True, 405),
])
def test_errors_are_openai_shaped(server, method, path, body, key, status):
    headers = {"Content-Type": "text/plain"} if body == "plain text" else {"Content-Type": "application/json"} if isinstance(body, (str, bytes)) else None
    result = server.request(method, path, body, headers, key=key)
    assert result[0] == status, result
    error = error_of(result)
    if status == 401:
        assert error["code"] == "invalid_api_key"


def test_unknown_fields_are_ignored_and_the_client_sees_openai_errors(server, client):
    reply = server.request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                                                             "temperature": 0, "logit_bias": {"5": 1}, "user": "u", "whatever": [1, {}]})
    assert reply[0] == 200 and reply[1]["usage"]["completion_tokens"] <= 2
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"memory": "mem_000000000000000000000000"})
    assert e.value.body["code"] == "memory_not_found"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0).models.list()


@pytest.mark.parametrize("argv,message", [
    (["--port", "{port}"], "cannot listen on 127.0.0.1:{port}"),
    (["--host", "no such host!"], "cannot resolve --host"),
    (["--port", "70000"], "--port"),
    (["--data-dir", "{file}"], "is not a directory"),
    (["--api-key", "two words"], "--api-key"),
])
def test_serve_refuses_bad_options_in_one_line(server, tmp_path, capsys, argv, message):
    """Before any model loads: one `error:` line and exit code 2."""
    from memgpt.cli.main import main

    (tmp_path / "file").write_text("x")
    values = {"port": str(server.port), "file": str(tmp_path / "file")}
    assert main(["serve", *(a.format(**values) for a in argv)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message.format(**values) in lines[0], lines


def test_kill_9_while_reading_leaves_no_half_memory(tmp_path):
    """A server killed mid-reading: after a restart the memory is not 'ready' from a partial file; it is read
    again from its document and completes; a memory finished before the kill is still there."""
    model = tiny_backbone(tmp_path / "tiny")
    data = tmp_path / "data"
    args = ("--model", str(model), "--dtype", "fp32", "--data-dir", str(data))
    server = start_server(tmp_path, *args)
    try:
        small = server.request("POST", "/v1/memories", {"text": DOCUMENT})[1]
        assert server.wait_memory(small["id"])["status"] == "ready"
        big = server.request("POST", "/v1/memories", {"text": FILLER * 400, "name": "big"})[1]
        deadline = time.monotonic() + 300
        while (record := server.request("GET", f"/v1/memories/{big['id']}")[1])["tokens_read"] == 0:
            assert time.monotonic() < deadline and record["status"] != "ready", record
            time.sleep(0.05)
        server.stop(signal.SIGKILL)
    finally:
        server.stop(signal.SIGKILL)
    assert not (data / "memories" / f"{big['id']}.mem").exists()
    on_disk = json.loads((data / "memories" / f"{big['id']}.json").read_text())
    assert on_disk["status"] == "reading"
    # what writes a kill -9 interrupts leave (memgpt.io.atomic's one scheme), and an older version's leftover
    planted = [data / "memories" / f".{big['id']}.mem.k2j3h4.tmp", data / "memories" / f".{small['id']}.json.x8y9z0",
               data / "documents" / f".{big['id']}.txt.q1w2e3", data / "memories" / ".tmpab12cd34",
               data / "locks" / "mem_0123456789abcdef01234567.lock"]
    for path in planted:
        path.write_bytes(b"\0" * 4096)

    server = start_server(tmp_path, *args)
    assert not [p for p in planted if p.exists()], "temporary files survived the restart"
    try:
        record = server.request("GET", f"/v1/memories/{big['id']}")[1]
        assert record["status"] in ("queued", "reading"), record
        assert server.request("GET", f"/v1/memories/{small['id']}")[1]["status"] == "ready"
        record = server.wait_memory(big["id"])
        assert record["status"] == "ready" and record["tokens_read"] == record["tokens_total"], record
        reply = server.request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "the sky?"}],
                                                                 "memory": big["id"], "max_tokens": 4})
        assert reply[0] == 200, reply
        assert not [p for p in (data / "memories").iterdir() if p.name.startswith(".")]  # no temporary files left
    finally:
        server.stop()
    assert "Traceback" not in server.log.read_text()


def test_citations_pass_through_when_the_apps_give_them():
    """The one function memory answers go through: a plain answer has no citations field; an answer or
    summary with document spans has them as JSON."""
    from types import SimpleNamespace

    from memgpt.server.answers import citations_of

    span = SimpleNamespace(to_dict=lambda: {"start": 3, "end": 9, "text": "cellar"})
    assert citations_of("The cellar.") is None
    assert citations_of(SimpleNamespace(citations=[span])) == [{"start": 3, "end": 9, "text": "cellar"}]
    summary = SimpleNamespace(sentences=[SimpleNamespace(citations=[span, span]), SimpleNamespace(citations=[])])
    assert citations_of(summary) == [span.to_dict()] * 2


# -- hostile clients (issue 25) ---------------------------------------------------------------------

def test_stop_sequences_are_bounded_and_cut_without_transformers_cache(server, client):
    """Over-long or too many stop sequences are refused before any model work (422, `param` "stop");
    an allowed one cuts the text exactly where it begins (greedy) and ends generation there."""
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    for stop in ["x" * 10_000, ["a", "b", "c", "d", "e"], ["ok", "y" * 65]]:
        start = time.perf_counter()
        result = server.request("POST", "/v1/chat/completions", chat | {"stop": stop})
        assert result[0] == 422 and error_of(result)["param"] == "stop", result
        assert time.perf_counter() - start < 5
    with pytest.raises(openai.UnprocessableEntityError):
        client.completions.create(model="default", prompt="Once", max_tokens=1, stop=["z" * 100])
    prompt = {"prompt": "The days of the week are Monday, Tuesday,", "max_tokens": 24, "temperature": 0}
    free = server.request("POST", "/v1/completions", prompt)[1]
    text = free["choices"][0]["text"]
    words = text.split()
    assert len(words) >= 4, text
    stop = words[2]  # a word in the middle of the greedy continuation
    cut = server.request("POST", "/v1/completions", prompt | {"stop": [stop, "q" * 64]})[1]
    assert cut["choices"][0]["text"] == text[: text.index(stop)], (text, stop, cut)
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert cut["usage"]["completion_tokens"] < free["usage"]["completion_tokens"]


def test_stop_check_keeps_no_state_between_requests(tmp_path):
    """The server's stop check never builds transformers' stop-string tables (cached per set of stops,
    hundreds of MB for long ones): generation with stops leaves STOP_STRING_EMBEDDING_CACHE empty."""
    from transformers.generation import stopping_criteria

    from conftest import tiny_llama_engine
    from memgpt.server.generation import Options, generate, text_prompt_ids

    engine = tiny_llama_engine()
    stopping_criteria.STOP_STRING_EMBEDDING_CACHE.clear()
    ids = text_prompt_ids(engine, "the quick brown fox")
    free = generate(engine, ids, Options(12, temperature=0))
    stop = free.text[len(free.text) // 2 :][:3] or "x"
    for i in range(3):
        out = generate(engine, ids, Options(12, temperature=0, stop=[stop, "w" * (60 + i)]))
        assert out.text == free.text[: free.text.index(stop)] and out.finish_reason == "stop", (free.text, stop, out)
    assert len(stopping_criteria.STOP_STRING_EMBEDDING_CACHE) == 0


def test_rss_flat_over_long_stop_string_requests(server):
    """Requests with the longest allowed stop sequences leave the server's memory where it was."""
    body = {"prompt": "Once upon a time", "max_tokens": 2, "stop": [c * 64 for c in "abcd"]}
    for _ in range(3):  # warm: first allocations of this request shape
        assert server.request("POST", "/v1/completions", body)[0] == 200
    before = server.rss()
    for i in range(40):
        assert server.request("POST", "/v1/completions", body | {"stop": [f"{i}{c * 62}" for c in "abcd"]})[0] == 200
    after = server.rss()
    assert abs(after - before) / before < 0.05, (before, after)


def test_abandoned_requests_are_cancelled_queued_or_running(server):
    """Non-streaming requests whose clients hang up stop (the running one at its next token, the queued
    ones before they start): a 1-token chat sent after three abandoned 64-token requests does not wait for them."""
    long = {"prompt": "1, 2, 3, 4,", "max_tokens": 64, "temperature": 0}
    start = time.perf_counter()
    reference = server.request("POST", "/v1/completions", long)[1]
    one_long = time.perf_counter() - start
    assert reference["choices"][0]["finish_reason"] == "length", reference
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: server.abandon("/v1/completions", long, 0.3), range(3)))
    start = time.perf_counter()
    reply = server.request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
    waited = time.perf_counter() - start
    assert reply[0] == 200
    assert waited < one_long, (waited, one_long)  # not cancelled: about 3 x one_long


def test_errors_before_a_stream_are_http_errors(server, client):
    """A too-long prompt is a 400 even with stream: true (the openai client raises BadRequestError)."""
    long = [{"role": "user", "content": "hi " * 9000}]
    result = server.request("POST", "/v1/chat/completions", {"messages": long, "stream": True})
    assert result[0] == 400 and error_of(result)["code"] == "context_length_exceeded", result[:2]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="default", messages=long, stream=True)
    assert e.value.body["param"] == "messages"
    result = server.request("POST", "/v1/completions", {"prompt": "hi " * 9000, "stream": True, "max_tokens": 4})
    assert result[0] == 400 and error_of(result)["param"] == "prompt"


@pytest.mark.parametrize("body,param", [
    ({"stop": 5}, "stop"),
    ({"stop": ["a", 5]}, "stop"),
    ({"memory": "mem_x"}, "memory"),
    ({"memory": ["mem_x"]}, "memory"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "wizard"}]}, "messages.1.role"),
    ({"max_completion_tokens": 65}, "max_completion_tokens"),
    ({"temperature": "hot"}, "temperature"),
])
def test_param_names_the_field_as_sent(server, body, param):
    result = server.request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]} | body)
    assert result[0] in (400, 422) and error_of(result)["param"] == param, result[:2]


def test_text_plain_json_and_long_ids(server):
    """JSON sent as text/plain is the documented 400; an id or path a client sends is repeated at most
    64 characters long, in the body and in the access log."""
    for path in ("/v1/chat/completions", "/v1/completions"):
        body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "prompt": "hi"})
        result = server.request("POST", path, body, {"Content-Type": "text/plain"})
        assert result[0] == 400 and error_of(result)["code"] == "invalid_content_type", result[:2]
    long = "mem_" + "a" * 10_000
    result = server.request("GET", f"/v1/memories/{long}")
    assert result[0] == 404 and len(error_of(result)["message"]) < 200
    result = server.request("POST", "/v1/chat/completions", {"model": "m" * 5000, "messages": [{"role": "user", "content": "hi"}]})
    assert result[0] == 404 and len(error_of(result)["message"]) < 200
    try:
        result = server.request("GET", "/v1/" + "x" * 100_000)
        assert result[0] in (400, 404) and len(json.dumps(result[1])) < 400, result[0]
    except OSError:
        pass  # h11 refused the request line (over --max-header-bytes) and closed before it was all sent
    time.sleep(0.5)
    assert max(len(line) for line in server.log.read_text().splitlines()) < 1000


def test_keyed_server_ignores_host_and_origin(server):
    """With a key, behaviour as before: the key decides, not Host or Origin."""
    headers = {"Host": "rebind.evil.example", "Origin": "http://evil.example"}
    assert server.request("GET", "/v1/models", headers=headers)[0] == 200
    assert server.request("GET", "/v1/models", headers=headers, key=None)[0] == 401


@pytest.fixture(scope="module")
def keyless(tmp_path_factory) -> Server:
    """No key, a tiny backbone, small queue and quota, a low connection cap and header timeout."""
    tmp = tmp_path_factory.mktemp("keyless")
    server = start_server(tmp, "--model", str(tiny_backbone(tmp / "tiny")), "--dtype", "fp32", "--data-dir", str(tmp / "data"),
                          "--max-queue", "2", "--max-memories", "3", "--max-connections", "8", "--header-timeout", "1",
                          "--allowed-host", "memgpt.lan", key=None)
    server.data = tmp / "data"
    yield server
    server.stop()
    assert "Traceback" not in server.log.read_text(), server.log.read_text()[-3000:]


def test_keyless_refuses_foreign_hosts_and_origins(keyless):
    log = keyless.log.read_text()
    assert "no API key" in log and "--api-key" in log
    assert keyless.request("GET", "/v1/models", headers={"Host": "rebind.evil.example"})[0] == 403
    assert keyless.request("GET", "/v1/memories", headers={"Host": "rebind.evil.example:8000"})[0] == 403
    boundary = uuid.uuid4().hex  # a web page's form post: multipart, no preflight, Origin set
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhello there.\r\n"
            f"--{boundary}--\r\n").encode()
    for origin in ("http://evil.example", "null", "http://127.0.0.1.evil.example:8000"):
        result = keyless.request("POST", "/v1/memories", form, {"Content-Type": f"multipart/form-data; boundary={boundary}",
                                                                 "Origin": origin})
        assert result[0] == 403 and error_of(result)["code"] == "origin_not_allowed", (origin, result)
    assert keyless.request("GET", "/v1/memories")[1]["data"] == []
    # same-machine tools and pages: unchanged
    assert keyless.request("GET", "/v1/models", headers={"Host": f"localhost:{keyless.port}"})[0] == 200
    assert keyless.request("GET", "/v1/models", headers={"Host": "memgpt.lan", "Origin": "http://memgpt.lan"})[0] == 200
    assert keyless.request("GET", "/v1/models", headers={"Origin": f"http://localhost:{keyless.port}"})[0] == 200
    client = openai.OpenAI(base_url=keyless.base_url, api_key="unused", max_retries=0, timeout=120)
    assert client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}], max_tokens=2).choices


def test_memory_creation_counts_against_the_queue_and_quota(keyless):
    """--max-queue 2: a third memory while two are read is 503 with Retry-After; --max-memories 3: a
    fourth is 429 in OpenAI's shape (the openai client: RateLimitError); a DELETE makes room."""
    made = [keyless.request("POST", "/v1/memories", {"text": FILLER * 400})[1]["id"] for _ in range(2)]
    status, body, headers = keyless.request("POST", "/v1/memories", {"text": FILLER})
    assert status == 503 and body["error"]["code"] == "server_busy" and int(headers["retry-after"]) >= 1, (status, body)
    for memory_id in made:
        assert keyless.wait_memory(memory_id)["status"] == "ready"
    made.append(keyless.request("POST", "/v1/memories", {"text": FILLER})[1]["id"])
    result = keyless.request("POST", "/v1/memories", {"text": FILLER})
    assert result[0] == 429 and error_of(result)["code"] == "memory_quota_exceeded", result[:2]
    client = openai.OpenAI(base_url=keyless.base_url, api_key="unused", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.post("/memories", body={"text": FILLER}, cast_to=object)
    for memory_id in made:
        assert keyless.request("DELETE", f"/v1/memories/{memory_id}")[0] == 200
    assert keyless.request("POST", "/v1/memories", {"text": FILLER})[0] == 202


def test_delete_of_a_reading_memory_is_final_at_once(keyless):
    created = keyless.request("POST", "/v1/memories", {"text": FILLER * 400})[1]
    assert keyless.request("GET", f"/v1/memories/{created['id']}")[1]["status"] in ("queued", "reading")
    assert keyless.request("DELETE", f"/v1/memories/{created['id']}")[0] == 200
    assert keyless.request("GET", f"/v1/memories/{created['id']}")[0] == 404
    assert keyless.request("DELETE", f"/v1/memories/{created['id']}")[0] == 404
    assert created["id"] not in [m["id"] for m in keyless.request("GET", "/v1/memories")[1]["data"]]
    time.sleep(1)
    assert not [p for p in keyless.data.rglob("*") if created["id"] in p.name]


def test_half_open_connections_are_capped_and_timed_out(keyless):
    """--max-connections 8: connections over it are closed at once; --header-timeout 1: a connection that
    never finishes its headers is closed after a second; then the server answers as before."""
    sockets = []
    for _ in range(12):
        sock = socket.create_connection(("127.0.0.1", keyless.port), timeout=5)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        sockets.append(sock)
    start = time.perf_counter()
    closed_at = []
    for sock in reversed(sockets):  # the last ones first: those over the cap
        try:
            data = sock.recv(1)
        except OSError:
            data = b""
        closed_at.append(time.perf_counter() - start)
        assert data == b""
        sock.close()
    assert sum(t < 0.5 for t in closed_at) >= 4, closed_at  # over the cap
    assert max(closed_at) < 4, closed_at  # the header timeout
    assert keyless.alive()


def test_data_quota_counts_every_file_of_the_store(tmp_path):
    """--max-data-gb: the bytes of documents and memory files under --data-dir; at the quota, 429."""
    from memgpt.server.errors import APIError
    from memgpt.server.store import MemoryStore, Quota
    from memgpt.server.worker import ModelWorker

    worker = ModelWorker(4)
    try:
        store = MemoryStore(tmp_path, None, worker, 1 << 20, Quota(memories=10, data_bytes=1 << 20))
        store.check_room()
        (tmp_path / "memories" / "mem_0123456789abcdef01234567.mem").write_bytes(b"\0" * (600 << 10))
        store.check_room()
        (tmp_path / "documents" / "mem_0123456789abcdef01234567.txt").write_bytes(b"a" * (500 << 10))
        with pytest.raises(APIError) as e:
            store.check_room()
        assert e.value.status == 429 and e.value.code == "memory_quota_exceeded"
    finally:
        worker.close()
