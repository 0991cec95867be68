"""The feedback log: staff's votes and comments on answers, one JSON line each."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Longest feedback comment kept (characters); more is cut.
MAX_COMMENT_CHARS = 2000
#: Longest text kept per field of a record (characters); the rest is cut.
FIELD_CHARS = {"question": 2000, "answer": 8000, "comment": MAX_COMMENT_CHARS, "id": 64,
               "time": 40, "vote": 20, "ref": 40, "title": 200, "quote": 1000}
#: Citations kept per record.
MAX_CITATIONS = 10
#: Upper bound of one record's line (UTF-8: up to 3 bytes per CJK character).
MAX_RECORD_BYTES = 3 * (sum(FIELD_CHARS.values()) + MAX_CITATIONS * 1400) + 4096
#: Rotated files kept beside the log (feedback.jsonl.1 … .3).
KEEP = 3
#: The votes the log takes from the API ("none", a thumb taken back, only from the page).
VOTES = ("useful", "not_useful")


class FeedbackLog:
    """Append-only JSONL log of answer feedback, safe with several writer processes.

    Each record is one `os.write` of a whole line on an O_APPEND descriptor, under an
    exclusive `flock`, then fsynced, so a restart loses nothing and lines never mix. A
    write that fails part-way (a full disk) is cut back to the last good line: a record
    is in the log whole or not at all. Before a record would take the file past
    `max_bytes` it is rotated to `.1` (`.1` to `.2`, …, KEEP files). `check()` at start-up
    moves a torn last line (a crash mid-write) to `<log>.torn`.

    A failure to write is logged once and remembered in `error` (the UI shows it);
    it never propagates to the caller, so answering keeps working."""

    def __init__(self, path: Path, max_bytes: int = 50 * 2**20) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.error: str | None = None
        self._lock = threading.Lock()
        self._warned = False

    def _fail(self, exc: OSError) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        if not self._warned:  # once per process: a broken path must not flood the log
            self._warned = True
            logger.warning("feedback log %s is not writable (%s); feedback is not saved",
                           self.path, self.error)

    def check(self) -> bool:
        """Open the log for appending (creating it if needed) and repair a torn last line;
        False if that fails."""
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    self._repair(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                self._fail(exc)
                return False
        return True

    def _repair(self, fd: int) -> None:
        """Cut a last line that is not whole JSON (no newline, or not parseable) and keep
        it in `<log>.torn` for a person to look at."""
        size = os.fstat(fd).st_size
        if size == 0:
            return
        tail_start = max(0, size - 2 * MAX_RECORD_BYTES)
        tail = os.pread(fd, size - tail_start, tail_start)
        body = tail[:-1] if tail.endswith(b"\n") else tail
        cut = body.rfind(b"\n") + 1  # start of the last line within `tail`
        last = tail[cut:]
        if last.endswith(b"\n"):
            try:
                json.loads(last)
                return
            except ValueError:
                pass
        if cut == 0 and tail_start > 0:
            return  # a line longer than any record we write: not ours to judge
        with open(self.path.with_name(self.path.name + ".torn"), "ab") as torn:
            torn.write(last if last.endswith(b"\n") else last + b"\n")
        os.ftruncate(fd, tail_start + cut)
        os.fsync(fd)
        logger.warning("feedback log %s: torn last line (%d bytes) moved to %s.torn",
                       self.path, len(last), self.path.name)

    def _rotate(self) -> None:
        for n in range(KEEP - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def _open_locked(self) -> int:
        """An O_APPEND descriptor on the current log file, exclusively locked (another
        process may have rotated it while we waited: then reopen)."""
        while True:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def append(self, record: dict[str, Any]) -> bool:
        """Append one record as a JSON line; True when it reached the disk whole."""
        line = (json.dumps(capped(record), ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = self._open_locked()
                try:
                    if os.fstat(fd).st_size and os.fstat(fd).st_size + len(line) > self.max_bytes:
                        self._rotate()
                        os.close(fd)
                        fd = self._open_locked()
                    self._write_whole(fd, line)
                finally:
                    os.close(fd)  # also releases the lock
            except OSError as exc:
                self._fail(exc)
                return False
        self.error = None
        return True

    @staticmethod
    def _write_whole(fd: int, line: bytes) -> None:
        """One write of the whole line; on a short or failed write, truncate back."""
        before = os.fstat(fd).st_size
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, before)
            raise


def _cap(value: Any, chars: int) -> Any:
    return value[:chars] if isinstance(value, str) else value


def capped(record: dict[str, Any]) -> dict[str, Any]:
    """The record with every field cut to its limit (FIELD_CHARS, MAX_CITATIONS), so no
    line is longer than about MAX_RECORD_BYTES."""
    out = {k: _cap(v, FIELD_CHARS.get(k, 200)) for k, v in record.items() if k != "citations"}
    if "citations" in record:
        out["citations"] = [
            {k: _cap(v, FIELD_CHARS.get(k, 200)) for k, v in list(c.items())[:8]}
            for c in (record["citations"] or [])[:MAX_CITATIONS] if isinstance(c, dict)]
    return out


def feedback_record(turn: dict[str, Any], vote: str, comment: str = "") -> dict[str, Any]:
    """The log line for feedback on one answer (`turn` as kept in the session state)."""
    answer = turn["answer"]
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "id": turn["id"],  # several lines per answer are possible: the last one counts
        "question": turn["question"],
        "answer": answer.get("answer", ""),
        "found": answer.get("found"),
        "citations": [
            {k: c.get(k) for k in ("ref", "title", "quote")}
            for c in answer.get("citations", []) or answer.get("related", [])
        ],
        "vote": vote,
        "comment": comment[:MAX_COMMENT_CHARS],
    }


__all__ = ["FIELD_CHARS", "KEEP", "MAX_CITATIONS", "MAX_COMMENT_CHARS", "VOTES", "FeedbackLog",
           "capped", "feedback_record"]
