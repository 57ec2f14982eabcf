"""Document memories on disk, read in the background on the model worker.

    DATA_DIR/memories/<id>.json   the record: kind, status (queued|reading|ready|failed), progress
    DATA_DIR/memories/<id>.mem    the memory file, written once the reading is complete
    DATA_DIR/documents/<id>.txt   the document's text: as uploaded, or extracted from a PDF, DOCX, EPUB,
                                  HTML or Markdown upload (the reading restarts from it after a crash)
    DATA_DIR/documents/<id>.map.json  a formatted upload's source map (pages, headings), for citations
    DATA_DIR/locks/<id>.lock      flock()ed by the server reading the memory

Every file is written atomically (memgpt.io.atomic: a temporary `.<name>.<random>[.tmp]` beside it, then
renamed), so a `kill -9` leaves the old version or the new one, never part of one, and the next start
removes the temporary files of writers that are gone; a memory is "ready" only once its memory file
is complete. An unfinished memory whose lock
is free (its server died) is taken over and read again by the next server that sees it, which
makes several servers on one shared folder safe. Ids are made here (`mem_` + 24 hex digits);
a client's text never becomes a path.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..apps.documents import text_chunks, token_segments
from ..model.engine import Engine
from ..memories.base import KINDS, Memory, DocumentState, load_state, make_memory
from ..apps.reading import DEFAULT_KIND, write_memory_file
from ..io.atomic import temp_beside, write_text_atomic
from ..io.formats import SourceMap, load_document
from ..io.spans import SentenceSplitter
from ..errors import MemGPTError
from ..model.generation import check_text
from .errors import APIError, clip
from .worker import ModelWorker

log = logging.getLogger("memgpt.server")

ID_PATTERN = re.compile(r"^mem_[0-9a-f]{24}$")
UNFINISHED = ("queued", "reading")
COUNT_SEGMENTS_PER_STEP = 64  # tokenizing ahead to know the total: ~0.5M tokens per worker turn
SAVE_EVERY_S = 1.0  # progress reaches the disk (and other servers) at most this often
CACHED_STATES = 8


@dataclass
class Job:
    """A memory being read here: its record (live), lock, and where the reading stands."""

    record: dict[str, Any]
    lock_fd: int
    cancelled: bool = False
    counting: Iterator[list[int]] | None = None
    segments: Iterator[list[int]] | None = None
    reader: Memory | None = None
    state: DocumentState | None = None
    splitter: SentenceSplitter | None = None
    saved_at: float = field(default=0.0)


@dataclass
class Quota:
    """How much a store may hold: memories, and bytes under its folder (documents and memory files)."""

    memories: int = 1000
    data_bytes: int = 20 << 30


class MemoryStore:
    def __init__(self, root: Path, engine: Engine, worker: ModelWorker, max_bytes: int, quota: Quota | None = None):
        self.root, self.engine, self.worker, self.max_bytes = root, engine, worker, max_bytes
        self.quota = quota or Quota()
        self.records, self.documents, self.locks = root / "memories", root / "documents", root / "locks"
        for folder in (self.records, self.documents, self.locks):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise MemGPTError(f"cannot use data folder {folder}: {e.strerror}") from None
        self.jobs: dict[str, Job] = {}
        self._guard = threading.Lock()  # jobs, the reading lane and adoption, across HTTP threads and the worker
        self._lane: deque[Job] = deque()  # memories being read, in turn
        self._scheduled = False  # a turn of the lane is in the worker's queue
        self._states: OrderedDict[tuple[str, int], DocumentState] = OrderedDict()

    # -- paths -------------------------------------------------------------------------------
    def record_path(self, memory_id: str) -> Path:
        return self.records / f"{memory_id}.json"

    def memory_path(self, memory_id: str) -> Path:
        return self.records / f"{memory_id}.mem"

    def document_path(self, memory_id: str) -> Path:
        return self.documents / f"{memory_id}.txt"

    def map_path(self, memory_id: str) -> Path:
        return self.documents / f"{memory_id}.map.json"

    def lock_path(self, memory_id: str) -> Path:
        return self.locks / f"{memory_id}.lock"

    # -- creating ------------------------------------------------------------------------------
    def create_from_text(self, text: str, kind: str | None, name: str | None) -> dict[str, Any]:
        try:
            check_text(text, "the text")
        except MemGPTError as e:
            raise APIError(400, str(e), param="text") from None
        return self._create(kind, name, lambda memory_id: write_text_atomic(self.document_path(memory_id), text))

    def create_from_file(self, upload: IO[bytes], kind: str | None, name: str | None,
                         filename: str | None = None) -> dict[str, Any]:
        """A memory of an uploaded file: plain text as it is; a PDF, DOCX, EPUB, HTML or Markdown file (known
        by its content, else by `filename`'s extension) as its extracted text, its pages and headings kept
        for citations. `filename` is only looked at for its extension, never used as a path."""
        suffix = Path(filename).suffix if filename else ""

        def save(memory_id: str) -> str:
            document = self.document_path(memory_id)
            fd, tmp = temp_beside(document, ".upload")
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(upload, out, 1 << 20)
                    out.flush()
                    os.fsync(out.fileno())
                loaded = load_document(Path(tmp), self.max_bytes, suffix)
                if loaded is None:
                    os.replace(tmp, document)
                    return "text"
                for _ in text_chunks(loaded.text, self.max_bytes):  # the extracted text checked as text is
                    pass
                write_text_atomic(self.map_path(memory_id), json.dumps(loaded.map.to_dict()))
                write_text_atomic(document, loaded.text)
                return loaded.map.format
            finally:
                Path(tmp).unlink(missing_ok=True)

        return self._create(kind, name, save)

    def check_room(self) -> None:
        """Refuse a new memory while the model's queue is full (503) or the store is at its quota (429)."""
        if len(self.jobs) + self.worker.pending >= self.worker.max_queue:
            raise APIError(503, f"the server is busy ({len(self.jobs)} memories being read, {self.worker.pending} "
                                "requests waiting); retry shortly", code="server_busy", headers={"Retry-After": "5"})
        count = sum(1 for _ in self.records.glob("mem_*.json"))
        if count >= self.quota.memories:
            raise APIError(429, f"this server keeps at most {self.quota.memories} memories; delete some first",
                           code="memory_quota_exceeded")
        used = self.bytes_used()
        if used >= self.quota.data_bytes:
            raise APIError(429, f"the memories take {used / 2**30:.2f} GB, this server's quota is "
                                f"{self.quota.data_bytes / 2**30:.2f} GB; delete some first", code="memory_quota_exceeded")

    def bytes_used(self) -> int:
        """Bytes of every file under the store's folders."""
        total = 0
        for folder in (self.records, self.documents):
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue  # removed meanwhile
        return total

    def _create(self, kind: str | None, name: str | None, save) -> dict[str, Any]:
        self.check_room()
        kind = kind or DEFAULT_KIND["read"]
        if kind not in KINDS:
            raise APIError(422, f"kind: unknown memory kind {kind!r}; choose from {', '.join(sorted(KINDS))}",
                           code="invalid_value", param="kind")
        if name is not None and (not name.isprintable() or len(name) > 256):
            raise APIError(422, "name: must be printable text of at most 256 characters", code="invalid_value", param="name")
        memory_id = f"mem_{uuid.uuid4().hex[:24]}"
        lock_fd = self._try_lock(memory_id)
        assert lock_fd is not None  # a fresh id
        document = self.document_path(memory_id)
        try:
            fmt = save(memory_id) or "text"
            for _ in text_chunks(document, self.max_bytes, formats=False):  # refuse empty, binary, invalid UTF-8 now
                pass
        except MemGPTError as e:
            self._discard(memory_id, lock_fd)
            raise APIError(400, self._hide_paths(str(e)), param="file") from None
        except BaseException:
            self._discard(memory_id, lock_fd)
            raise
        record = {"id": memory_id, "object": "memory", "name": name, "kind": kind, "status": "queued", "progress": 0.0,
                  "format": fmt, "bytes": document.stat().st_size, "tokens_total": None, "tokens_read": 0, "segments": 0,
                  "created_at": int(time.time()), "finished_at": None, "error": None}
        self._start(Job(record, lock_fd))
        return dict(record)

    def _hide_paths(self, message: str) -> str:
        """A reading's error message without the store's file names (the upload's temporary copy included)."""
        return re.sub(re.escape(str(self.documents)) + r"/[^\s:]+", "the document", message)

    def _start(self, job: Job) -> None:
        write_text_atomic(self.record_path(job.record["id"]), json.dumps(job.record))
        with self._guard:
            self.jobs[job.record["id"]] = job
            self._lane.append(job)
        self._schedule()

    # -- reading (on the model worker: one step of one memory per turn, the memories in turn) ------------
    def _schedule(self) -> None:
        """Keep one reading step in the worker's queue while any memory is being read: however many are,
        a request waits behind one step at most."""
        with self._guard:
            if self._scheduled or not self._lane:
                return
            self._scheduled = True
        self.worker.submit(self._turn)

    def _turn(self) -> None:
        with self._guard:
            self._scheduled = False
            job = self._lane.popleft() if self._lane else None
        if job is not None and self._step(job):
            with self._guard:
                self._lane.append(job)
        self._schedule()

    def _step(self, job: Job) -> bool:
        """One step of a memory's reading; True when there is more to do."""
        memory_id = job.record["id"]
        try:
            if job.cancelled or not self.record_path(memory_id).exists():  # deleted meanwhile
                self._finish(job, None)
                return False
            if self._advance(job):
                if self.worker.closed:  # shutting down: left unfinished, to be read again at the next start
                    self._finish(job, None)
                    return False
                return True
        except Exception as e:  # noqa: BLE001 - a failed reading is reported on the memory, never raised
            if not isinstance(e, MemGPTError):
                log.exception("reading memory %s failed", memory_id)
            message = str(e) if isinstance(e, MemGPTError) else f"internal error while reading ({type(e).__name__})"
            job.record.update(status="failed", error={"message": self._hide_paths(message)},
                              finished_at=int(time.time()))
            self._finish(job, job.record)
        return False

    def _advance(self, job: Job) -> bool:
        """One turn of work; False when the memory is finished."""
        record, document = job.record, self.document_path(job.record["id"])
        if job.reader is None:  # first turn
            job.reader = make_memory(record["kind"], self.engine)
            job.counting = token_segments(self.engine.tokenizer, document, 8192, self.max_bytes, formats=False)
            record.update(status="reading", tokens_total=0)
        if job.counting is not None:  # know the total first, so progress means something
            counted = 0
            for segment in itertools.islice(job.counting, COUNT_SEGMENTS_PER_STEP):
                record["tokens_total"] += len(segment)
                counted += 1
            if counted < COUNT_SEGMENTS_PER_STEP:
                job.counting = None
                job.state = state = job.reader.new_state()
                # the index follows the document's text (as `read` does), so citations' offsets are the text's
                state.work["indexed"] = True
                state.index.source = self.source_map(record["id"])
                job.splitter = splitter = SentenceSplitter()
                job.segments = token_segments(self.engine.tokenizer, document, job.reader.segment_tokens, self.max_bytes,
                                              on_text=lambda chunk: state.index.add(splitter.feed(chunk)), formats=False)
            self._save_progress(job)
            return True
        segment = next(job.segments, None)
        if segment is not None:
            job.reader.update(job.state, segment)
            record.update(tokens_read=job.state.tokens_read, segments=job.state.segments,
                          progress=round(min(job.state.tokens_read / max(record["tokens_total"], 1), 0.999), 4))
            self._save_progress(job)
            return True
        job.state.index.add(job.splitter.close())
        state = job.reader.finish(job.state)
        write_memory_file(self.memory_path(record["id"]), state)  # complete before the record says so
        record.update(status="ready", progress=1.0, tokens_read=state.tokens_read, segments=state.segments,
                      finished_at=int(time.time()))
        self._finish(job, record)
        return False

    def _save_progress(self, job: Job) -> None:
        if time.monotonic() - job.saved_at >= SAVE_EVERY_S:
            self._write_record(job)
            job.saved_at = time.monotonic()

    def _write_record(self, job: Job) -> None:
        """Write a job's record unless the memory was deleted meanwhile (here or by another server)."""
        with self._guard:
            if not job.cancelled and self.record_path(job.record["id"]).exists():
                write_text_atomic(self.record_path(job.record["id"]), json.dumps(job.record))

    def _finish(self, job: Job, record: dict[str, Any] | None) -> None:
        memory_id = job.record["id"]
        if record is not None:
            self._write_record(job)
        with self._guard:
            if self.jobs.get(memory_id) is job:
                self.jobs.pop(memory_id)
        if job.cancelled:  # deleted while its last step wrote the memory file
            self.memory_path(memory_id).unlink(missing_ok=True)
        self.lock_path(memory_id).unlink(missing_ok=True)
        os.close(job.lock_fd)

    # -- reading them back -----------------------------------------------------------------------
    def get(self, memory_id: str) -> dict[str, Any]:
        if not ID_PATTERN.match(memory_id):
            raise not_found(memory_id)
        job = self.jobs.get(memory_id)
        if job is not None and not job.cancelled:
            return dict(job.record)
        record = self._read_record(memory_id)
        if record is None:
            raise not_found(memory_id)
        if record["status"] in UNFINISHED:
            record = self._adopt(memory_id) or record
        return record

    def list(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.records.glob("mem_*.json")):
            try:
                out.append(self.get(path.stem))
            except APIError:
                continue  # deleted meanwhile
        return sorted(out, key=lambda r: (r.get("created_at") or 0, r["id"]))

    def ready(self, memory_id: str) -> dict[str, Any]:
        """The record of a memory that can answer: 404 if there is none, 409 if it is not read yet."""
        record = self.get(memory_id)
        if record["status"] != "ready":
            why = record["error"]["message"] if record.get("error") else f"{record['progress']:.0%} read"
            raise APIError(409, f"memory {memory_id} is {record['status']} ({why})", code="memory_not_ready", param="memory")
        return record

    def state(self, memory_id: str) -> tuple[dict[str, Any], DocumentState]:
        """A ready memory's record and state (loaded once, then cached). Runs on the model worker."""
        record = self.ready(memory_id)
        path = self.memory_path(memory_id)
        try:
            key = (memory_id, path.stat().st_mtime_ns)
        except OSError:
            raise not_found(memory_id) from None
        if key not in self._states:
            self._states[key] = load_state(path, self.engine)
            while len(self._states) > CACHED_STATES:
                self._states.popitem(last=False)
        self._states.move_to_end(key)
        return record, self._states[key]

    def source_map(self, memory_id: str) -> SourceMap | None:
        """The pages and headings of a formatted upload; None for plain text (or a damaged map file)."""
        try:
            return SourceMap.from_dict(json.loads(self.map_path(memory_id).read_text()))
        except (OSError, ValueError):
            return None

    def document_text(self, memory_id: str) -> str:
        """The document of a memory, decoded as its reading decoded it (UTF-8, line ends as they are)."""
        try:
            with open(self.document_path(memory_id), encoding="utf-8", errors="replace", newline="") as f:
                return f.read()
        except FileNotFoundError:
            raise not_found(memory_id) from None

    def delete(self, memory_id: str) -> None:
        """Final at once: the record goes first (a GET or a second DELETE is 404 from then on), then the rest;
        a reading in progress stops at its next turn."""
        if not ID_PATTERN.match(memory_id):
            raise not_found(memory_id)
        with self._guard:
            job = self.jobs.pop(memory_id, None)
            if job is not None:
                job.cancelled = True  # the worker stops at its next turn and releases the lock
            try:
                self.record_path(memory_id).unlink()  # invisible first, then the rest
            except FileNotFoundError:
                raise not_found(memory_id) from None
        self.memory_path(memory_id).unlink(missing_ok=True)
        self.document_path(memory_id).unlink(missing_ok=True)
        self.map_path(memory_id).unlink(missing_ok=True)
        self._states = OrderedDict((k, v) for k, v in self._states.items() if k[0] != memory_id)

    # -- restarts and shared folders ----------------------------------------------------------------
    def resume(self) -> int:
        """Take over every unfinished memory whose server is gone; drop leftovers of crashed writes.
        Returns how many readings were restarted."""
        self.remove_temporary_files()  # first: an adopted reading writes new ones at once
        adopted = 0
        for path in self.records.glob("mem_*.json"):
            record = self._read_record(path.stem)
            if record is not None and record["status"] in UNFINISHED:
                adopted += self._adopt(path.stem) is not None
        for memory_id in {p.name.split(".")[0] for p in self.documents.glob("mem_*")}:  # a crash before the record
            if ID_PATTERN.match(memory_id) and not self.record_path(memory_id).exists() \
                    and (fd := self._try_lock(memory_id)) is not None:
                self._discard(memory_id, fd)
        return adopted

    def remove_temporary_files(self) -> int:
        """Remove the temporary files of interrupted writes (`.<name>.<random>[.tmp]`, the one scheme of
        memgpt.io.atomic) whose writer is gone: a live writer holds its memory's lock. A temporary file
        not named after a memory is always a leftover. Returns how many were removed."""
        removed = 0
        for folder in (self.records, self.documents):
            for tmp in folder.glob(".*"):
                memory_id = tmp.name[1:].split(".")[0]
                if not ID_PATTERN.match(memory_id):
                    tmp.unlink(missing_ok=True)
                    removed += 1
                    continue
                if memory_id in self.jobs or (fd := self._try_lock(memory_id)) is None:
                    continue  # being written, here or by another server
                tmp.unlink(missing_ok=True)
                removed += 1
                record = self._read_record(memory_id)
                if record is None or record["status"] not in UNFINISHED:
                    self.lock_path(memory_id).unlink(missing_ok=True)
                os.close(fd)
        for lock in self.locks.glob("mem_*.lock"):  # the lock of a memory that never got a record or document
            memory_id = lock.stem
            if self.record_path(memory_id).exists() or self.document_path(memory_id).exists() or memory_id in self.jobs:
                continue
            if (fd := self._try_lock(memory_id)) is not None:
                lock.unlink(missing_ok=True)
                os.close(fd)
        return removed

    def _adopt(self, memory_id: str) -> dict[str, Any] | None:
        with self._guard:
            if memory_id in self.jobs:
                return None
            fd = self._try_lock(memory_id)
            if fd is None:
                return None  # another live server is reading it
            record = self._read_record(memory_id)
            if record is None or record["status"] not in UNFINISHED or not self.document_path(memory_id).exists():
                if record is not None and record["status"] in UNFINISHED:  # its document is gone: cannot resume
                    record.update(status="failed", error={"message": "the document was lost before it was read"})
                    write_text_atomic(self.record_path(memory_id), json.dumps(record))
                self.lock_path(memory_id).unlink(missing_ok=True)
                os.close(fd)
                return None
            record.update(status="queued", progress=0.0, tokens_read=0, segments=0, tokens_total=None)
        log.warning("memory %s was left unfinished; reading it again", memory_id)
        self._start(Job(record, fd))
        return dict(record)

    def _try_lock(self, memory_id: str) -> int | None:
        fd = os.open(self.lock_path(memory_id), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def _discard(self, memory_id: str, lock_fd: int) -> None:
        self.document_path(memory_id).unlink(missing_ok=True)
        self.map_path(memory_id).unlink(missing_ok=True)
        self.lock_path(memory_id).unlink(missing_ok=True)
        os.close(lock_fd)

    def _read_record(self, memory_id: str) -> dict[str, Any] | None:
        try:
            record = json.loads(self.record_path(memory_id).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("id") == memory_id and "status" in record else None


def not_found(memory_id: str) -> APIError:
    return APIError(404, f"no memory {clip(memory_id)!r}", code="memory_not_found", param="memory")
