"""A real `memgpt serve` process for the tests: started on a free port (--port 0), stopped by pid,
plus raw HTTP (http.client, to send what a polite client would not) and a tiny backbone."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = "test-key"


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path
    key: str | None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def request(self, method: str, path: str, body: bytes | str | dict | None = None, headers: dict | None = None,
                key: str | None | bool = True, timeout: float = 300, source: str | None = None) -> tuple[int, dict | str, dict]:
        """(status, JSON or text, headers); `key`: True = the server's key, None/False = none, a str = that;
        `source`: the loopback address to send from (127.0.0.N; default 127.0.0.1)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout,
                                          source_address=(source, 0) if source else None)
        headers = dict(headers or {})
        token = self.key if key is True else key or None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if isinstance(body, dict):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read().decode("utf-8", errors="replace")
        finally:
            conn.close()
        try:
            data: dict | str = json.loads(raw)
        except ValueError:
            data = raw
        return response.status, data, dict(response.getheaders())

    def rss(self) -> int:
        """The server process's resident memory in bytes (Linux: /proc)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc")

    def open_fds(self) -> int:
        """The server process's open file descriptors (Linux: /proc)."""
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def abandon(self, path: str, body: dict, after: float, source: str | None = None) -> None:
        """Send a request and hang up `after` seconds later, without reading the answer."""
        data = json.dumps(body).encode()
        with socket.create_connection(("127.0.0.1", self.port), timeout=30,
                                      source_address=(source, 0) if source else None) as sock:
            auth = f"Authorization: Bearer {self.key}\r\n" if self.key else ""
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n"
                         f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
            time.sleep(after)

    def alive(self) -> bool:
        return self.process.poll() is None and self.request("GET", "/health", timeout=60)[0] == 200

    def wait_memory(self, memory_id: str, until: tuple[str, ...] = ("ready", "failed"), timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, record, _ = self.request("GET", f"/v1/memories/{memory_id}")
            assert status == 200, record
            if record["status"] in until:
                return record
            time.sleep(0.3)
        raise AssertionError(f"memory {memory_id} not {until} in {timeout}s: {record}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(30)


def start_server(tmp: Path, *args: str, key: str | None = KEY, timeout: float = 300, threads: int = 1) -> Server:
    """`memgpt serve --port 0 ...` in a subprocess; returns once it answers /health."""
    log = tmp / f"server-{uuid.uuid4().hex[:8]}.log"
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    env.pop("MEMGPT_API_KEY", None)
    argv = [sys.executable, "-m", "memgpt", "serve", "--port", "0", "--threads", str(threads), *args]
    if key:
        argv += ["--api-key", key]
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited ({process.returncode}): {log.read_text()[-2000:]}")
        found = re.search(r"on http://127\.0\.0\.1:(\d+)/v1", log.read_text(errors="replace"))
        if found:
            server = Server(process, int(found.group(1)), log, key)
            try:
                if server.alive():
                    return server
            except OSError:
                pass
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    raise AssertionError(f"the server did not start in {timeout}s: {log.read_text()[-2000:]}")


def tiny_tokenizer():
    """A byte-level BPE (any text encodes) that compresses long runs of 'a' (huge lines stay cheap)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<eos>"], show_progress=False)
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog", "a" * 4096], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


def tiny_backbone(folder: Path) -> Path:
    """A tiny random Llama with a byte-level BPE tokenizer (any text encodes), saved to `folder`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                         eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
