"""The `memgpt serve` command (FastAPI and uvicorn are imported only when it runs)."""

from __future__ import annotations

import socket
from pathlib import Path

import click

from ..errors import MemGPTError
from .settings import DEFAULT_DATA_DIR, ServeSettings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--model", "model_name", default="default", show_default=True,
              help="'default' (packaged SmolLM2-135M-Instruct), a local folder, or a hub id.")
@click.option("--dtype", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True,
              help="auto: bf16 where the hardware runs it natively (CUDA, AVX512-BF16, AMX), else fp32.")
@click.option("--window", type=click.IntRange(256, 1 << 20), default=2048, show_default=True,
              help="Most tokens a memory answer puts in front of the model.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=DEFAULT_DATA_DIR, show_default=True,
              help="Where memories live (may be shared by several servers).")
@click.option("--api-key", envvar="MEMGPT_API_KEY", default=None, help="Require 'Authorization: Bearer KEY' (env: MEMGPT_API_KEY).")
@click.option("--max-body-mb", type=click.FloatRange(0.001, 1 << 16), default=16, show_default=True,
              help="Largest request body (a document upload included).")
@click.option("--max-queue", type=click.IntRange(1, 1 << 20), default=64, show_default=True,
              help="Requests (and memories being read) that may wait for the model; more get 503.")
@click.option("--max-tokens", type=click.IntRange(1, 1 << 20), default=1024, show_default=True,
              help="Most tokens one request may generate.")
@click.option("--max-memories", type=click.IntRange(1, 1 << 30), default=1000, show_default=True,
              help="Most memories kept at once; more get 429.")
@click.option("--max-data-gb", type=click.FloatRange(0.001, 1 << 20), default=20, show_default=True,
              help="Most data (documents and memory files) under --data-dir; past it, new memories get 429.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Without --api-key: another name this server answers to in Host and Origin (repeatable).")
@click.option("--max-connections", type=click.IntRange(4, 1 << 20), default=128, show_default=True,
              help="Open connections at once; more are closed as they arrive.")
@click.option("--max-connections-per-client", type=click.IntRange(1, 1 << 20), default=8, show_default=True,
              help="Open connections from one client address; at --max-connections, an address with fewer "
                   "takes the place of a waiting connection of the one with most.")
@click.option("--header-timeout", type=click.FloatRange(0.1, 3600), default=10, show_default=True,
              help="Seconds a connection has to send a request's headers.")
@click.option("--body-timeout", type=click.FloatRange(0.1, 86400), default=None,
              help="Seconds a request's body may take, from its headers [default: 2 per MB of --max-body-mb, at least 10].")
@click.option("--min-body-rate", type=click.FloatRange(0.001, 1 << 30), default=32, show_default=True,
              help="KB a second a body must average after its first 2 s; slower is 408.")
@click.option("--write-timeout", type=click.FloatRange(0.1, 3600), default=30, show_default=True,
              help="Seconds a client may take no byte of its response (a stream it stopped reading) before it is dropped.")
@click.option("--keep-alive", type=click.FloatRange(0.1, 3600), default=5, show_default=True,
              help="Seconds an idle kept-alive connection stays open.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None, help="CPU threads for the model (default: torch's).")
def serve(host: str, port: int, model_name: str, dtype: str, window: int, data_dir: Path, api_key: str | None,
          max_body_mb: float, max_queue: int, max_tokens: int, max_memories: int, max_data_gb: float,
          allowed_hosts: tuple[str, ...], max_connections: int, max_connections_per_client: int, header_timeout: float,
          body_timeout: float | None, min_body_rate: float, write_timeout: float, keep_alive: float,
          threads: int | None) -> None:
    """Serve the model over HTTP, OpenAI-compatible (/v1/chat/completions, /v1/completions, /v1/models),
    with document memories (/v1/memories) read once and asked by many clients."""
    import torch

    settings = ServeSettings(host=host, port=port, model=model_name, dtype=dtype, window=window, data_dir=data_dir,
                             api_key=api_key or None, allowed_hosts=list(allowed_hosts),
                             max_body_bytes=int(max_body_mb * (1 << 20)), max_queue=max_queue, max_tokens=max_tokens,
                             max_memories=max_memories, max_data_bytes=int(max_data_gb * (1 << 30)),
                             max_connections=max_connections, max_connections_per_client=max_connections_per_client,
                             header_timeout_s=header_timeout, body_timeout_s=body_timeout,
                             min_body_rate=min_body_rate * 1024, write_timeout_s=write_timeout, keep_alive_s=keep_alive)
    settings.validate()
    if threads:
        torch.set_num_threads(threads)
    listener = bind(host, port)  # before the model loads: a busy port fails in a second
    try:
        import uvicorn

        from . import create_app

        app = create_app(settings)
        where = f"http://{host if ':' not in host else f'[{host}]'}:{listener.getsockname()[1]}/v1"
        click.echo(f"memgpt serve: {app.state.engine.name} on {where} (memories in {data_dir})", err=True)
        if not settings.api_key:
            names = ", ".join(sorted(settings.host_names()))
            click.echo(f"memgpt serve: no API key: any program on this machine can use it; browsers only from "
                       f"pages on {names} (set --api-key or MEMGPT_API_KEY to require a key)", err=True)
        server = uvicorn.Server(uvicorn_config(app, settings))
        server.run(sockets=[listener])
    finally:
        listener.close()


def uvicorn_config(app, settings: ServeSettings):
    """uvicorn's settings from ours: h11 with our connection limits and timeouts, keep-alive, header size."""
    import logging

    import uvicorn

    from .protocol import ShortAccessLines, guarded_protocol

    config = uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=5,
                            http=guarded_protocol(settings.limits()),
                            timeout_keep_alive=settings.keep_alive_s,  # no limit_concurrency: the protocol caps connections
                            h11_max_incomplete_event_size=settings.max_header_bytes)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, ShortAccessLines) for f in access.filters):
        access.addFilter(ShortAccessLines())  # after Config: it sets up logging
    return config


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or one clear error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise MemGPTError(f"cannot resolve --host {host!r}: {e}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise MemGPTError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock
