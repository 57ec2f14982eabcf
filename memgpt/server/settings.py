"""What `memgpt serve` can be told, checked before any model loads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import MemGPTError

DEFAULT_DATA_DIR = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "memgpt" / "serve"


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
    max_body_bytes: int = 16 << 20  # requests (and document uploads) larger than this get 413
    max_queue: int = 64  # model jobs waiting at once; more get 503 (clients retry)
    max_tokens: int = 1024  # the most tokens one request may generate
    default_max_tokens: int = 256  # when a chat request names none

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise MemGPTError(f"--port must be from 0 to 65535, got {self.port}")
        if self.api_key is not None and (not self.api_key.strip() or not self.api_key.isprintable() or " " in self.api_key):
            raise MemGPTError("--api-key must be printable text without spaces")
        if self.max_body_bytes < 1024:
            raise MemGPTError("the body size limit must be at least 1 KiB")
        if self.max_queue < 1 or self.max_tokens < 1:
            raise MemGPTError("--max-queue and --max-tokens must be at least 1")
        self.default_max_tokens = min(self.default_max_tokens, self.max_tokens)
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise MemGPTError(f"--data-dir {self.data_dir} exists and is not a directory")
