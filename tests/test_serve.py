"""`memgpt serve` as a real process on a free port, driven by the official `openai` client (chat,
streaming, text completions, memories through `extra_body`) and by raw HTTP for the error cases."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import time
import uuid
from pathlib import Path

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
    assert status == 202 and created["status"] == "queued" and created["id"].startswith("mem_")
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

    server = start_server(tmp_path, *args)
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
