"""What `memgpt serve` can be told, checked before any model loads."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MemGPTError
from .limits import Limits

DEFAULT_DATA_DIR = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "memgpt" / "serve"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
BODY_SECONDS_PER_MB = 2.0  # the default body timeout: this per MB of the body size limit, at least MIN_BODY_TIMEOUT_S
MIN_BODY_TIMEOUT_S = 10.0


@dataclass
class ServeSettings:
    """Server settings; the defaults are safe to leave running on a workstation."""

    host: str = "127.0.0.1"  # loopback only unless told otherwise
    port: int = 8000
    model: str = "default"
    dtype: str = "auto"
    window: int = 2048
    data_dir: Path = DEFAULT_DATA_DIR
    api_key: str | None = None  # when set, every request needs "Authorization: Bearer <key>"
    allowed_hosts: list[str] = field(default_factory=list)  # keyless mode: Host / Origin names besides the bound one
    max_body_bytes: int = 16 << 20  # requests (and document uploads) larger than this get 413
    max_queue: int = 64  # model jobs waiting at once (memory readings included); more get 503 (clients retry)
    max_tokens: int = 1024  # the most tokens one request may generate
    default_max_tokens: int = 256  # when a chat request names none
    max_memories: int = 1000  # memories kept at once; more get 429
    max_data_bytes: int = 20 << 30  # bytes under data_dir (documents and memory files); over it, 429
    max_connections: int = 128  # open connections; more are closed at once
    max_connections_per_client: int = 8  # open connections from one client address (at most max_connections)
    header_timeout_s: float = 10.0  # a request's headers must arrive within this, or the connection closes
    keep_alive_s: float = 5.0  # an idle kept-alive connection closes after this
    body_timeout_s: float | None = None  # a request body must be in within this (None: BODY_SECONDS_PER_MB)
    min_body_rate: float = 32 << 10  # bytes a second a body must average after its first seconds, else 408
    write_timeout_s: float = 30.0  # a client that takes no byte of its response for this long is dropped
    max_header_bytes: int = 16 << 10  # request line and headers together

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise MemGPTError(f"--port must be from 0 to 65535, got {self.port}")
        if self.api_key is not None and (not self.api_key.strip() or not self.api_key.isprintable() or " " in self.api_key):
            raise MemGPTError("--api-key must be printable text without spaces")
        if self.max_body_bytes < 1024:
            raise MemGPTError("the body size limit must be at least 1 KiB")
        if self.max_queue < 1 or self.max_tokens < 1:
            raise MemGPTError("--max-queue and --max-tokens must be at least 1")
        if self.max_memories < 1 or self.max_data_bytes < 1 << 20:
            raise MemGPTError("--max-memories must be at least 1 and --max-data-gb at least 0.001")
        if self.max_connections < 4 or self.header_timeout_s <= 0 or self.keep_alive_s <= 0:
            raise MemGPTError("--max-connections must be at least 4 and the timeouts above 0")
        if self.max_connections_per_client < 1:
            raise MemGPTError("--max-connections-per-client must be at least 1")
        self.max_connections_per_client = min(self.max_connections_per_client, self.max_connections)
        if self.body_timeout_s is None:
            self.body_timeout_s = max(MIN_BODY_TIMEOUT_S, BODY_SECONDS_PER_MB * self.max_body_bytes / (1 << 20))
        if self.body_timeout_s <= 0 or self.write_timeout_s <= 0 or self.min_body_rate <= 0:
            raise MemGPTError("--body-timeout, --write-timeout and --min-body-rate must be above 0")
        for name in self.allowed_hosts:
            if not name or not name.isprintable() or any(c in name for c in " /@"):
                raise MemGPTError(f"--allowed-host {name!r} is not a host name")
        self.default_max_tokens = min(self.default_max_tokens, self.max_tokens)
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise MemGPTError(f"--data-dir {self.data_dir} exists and is not a directory")

    def limits(self) -> Limits:
        """The connection limits (memgpt.server.limits) of these settings (validated)."""
        return Limits(self.max_connections, self.max_connections_per_client, self.header_timeout_s,
                      float(self.body_timeout_s or MIN_BODY_TIMEOUT_S), self.min_body_rate, self.write_timeout_s)

    def host_names(self) -> set[str]:
        """Names a keyless server answers to in `Host` and `Origin`: the bound address, loopback, --allowed-host."""
        return {n.lower().strip("[]") for n in (self.host, *LOOPBACK_NAMES, *self.allowed_hosts)}
