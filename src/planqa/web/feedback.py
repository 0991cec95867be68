"""The feedback log: staff's votes and comments on answers, one JSON line each."""

from __future__ import annotations

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
#: The votes the log takes from the API ("none", a thumb taken back, only from the page).
VOTES = ("useful", "not_useful")


class FeedbackLog:
    """Append-only JSONL log of answer feedback.

    Each line is written, flushed and fsynced on its own, so a restart loses nothing.
    A failure to write is logged once and remembered in `error` (the UI shows it);
    it never propagates to the caller, so answering keeps working."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
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
        """Try to open the log for appending (creating it if needed); False if that fails."""
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8"):
                    pass
            except OSError as exc:
                self._fail(exc)
                return False
        return True

    def append(self, record: dict[str, Any]) -> bool:
        """Append one record as a JSON line; True when it reached the disk."""
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                self._fail(exc)
                return False
        self.error = None
        return True


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


__all__ = ["MAX_COMMENT_CHARS", "VOTES", "FeedbackLog", "feedback_record"]
