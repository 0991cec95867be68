"""The load generator, briefly, and the query batcher that carries the server's load.

`python -m tools.load` end to end for ~5 s with 5 users (its own `python app.py` on a free
loopback port): no request may fail. No throughput is asserted: CI machines are shared
and noisy (`make load` measures; see bench/load.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from planqa.batching import QueryBatcher

REPO = Path(__file__).resolve().parent.parent


def test_load_smoke_has_no_errors(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.load", "--users", "5", "--seconds", "5",
         "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PLANQA_API_TOKEN": "", "PLANQA_LLM_BASE_URL": ""})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = (tmp_path / "load.md").read_text("utf-8")
    assert report in proc.stdout  # printed and written alike
    assert re.search(r"^\| errors \(non-2xx or exceptions\) \| 0 \|", report, re.M), report
    answers = int(re.search(r"^\| answers \| (\d+) \|", report, re.M).group(1))
    assert answers >= 5  # every user got at least one answer
    for row in ("answers/s (sustained)", "latency p95", "server RSS before", "server RSS after",
                "server RSS peak (VmHWM)"):
        assert f"| {row} |" in report
    assert "n/a" not in report.split("| server RSS before |")[1].split("\n")[0]


def test_load_refuses_a_remote_url() -> None:
    from tools.load import run

    with pytest.raises(ValueError, match="loopback"):
        run(users=1, seconds=1, url="http://192.0.2.1:7860", out=None)  # checked before use


# ---------------------------------------------------------------- QueryBatcher


class FakeEmbeddings:
    """Vectors that name their text; the first call can be held until others queue."""

    fingerprint = "fake"
    dim = 2

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.first: list[str] = []  # the first call's texts, while it is held
        self.release = threading.Event()
        self.fail_on: str | None = None

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        if not self.calls:
            self.first = list(texts)
            self.release.wait(10)
        self.calls.append(list(texts))
        if self.fail_on in texts:
            raise RuntimeError("model failure")
        return np.array([[float(len(t)), float(sum(map(ord, t)))] for t in texts])


def _ask_all(batcher: QueryBatcher, questions: list[str]) -> dict[str, object]:
    results: dict[str, object] = {}

    def one(q: str) -> None:
        try:
            results[q] = batcher.encode_queries([q])
        except Exception as exc:
            results[q] = exc

    threads = [threading.Thread(target=one, args=(q,)) for q in questions]
    for t in threads:
        t.start()
    return results if _join(threads) else {}


def _join(threads: list[threading.Thread]) -> bool:
    for t in threads:
        t.join(timeout=20)
    return not any(t.is_alive() for t in threads)


def test_batcher_coalesces_waiting_questions() -> None:
    inner = FakeEmbeddings()
    batcher = QueryBatcher(inner, max_batch=16)
    questions = [f"问题{'x' * i}" for i in range(9)]
    threading.Thread(target=_release_when_queued, args=(batcher, inner, 9), daemon=True).start()
    results = _ask_all(batcher, questions)
    assert set(results) == set(questions), "a caller hung"
    # while the model ran the first call, the rest waited; then all went in one pass
    assert len(inner.calls) == 2 and len(inner.calls[0]) + len(inner.calls[1]) == 9
    for q in questions:  # each caller got the vector of its own question
        assert np.array_equal(results[q], inner.encode_queries([q]))
    assert batcher.fingerprint == "fake" and batcher.dim == 2  # the rest passes through


def _release_when_queued(batcher: QueryBatcher, inner: FakeEmbeddings, n: int) -> None:
    """Let the held first call go once all `n` questions are in the model or queued."""
    deadline = time.monotonic() + 10
    while (len(inner.first) + batcher._queue.qsize() < n or not inner.first) \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    inner.release.set()


def test_batcher_error_reaches_every_caller_and_it_recovers() -> None:
    inner = FakeEmbeddings()
    inner.fail_on = "坏"
    batcher = QueryBatcher(inner)
    threading.Thread(target=_release_when_queued, args=(batcher, inner, 4), daemon=True).start()
    results = _ask_all(batcher, ["first", "坏", "b", "c"])
    assert len(results) == 4, "a caller hung"
    failed = [q for q, r in results.items() if isinstance(r, RuntimeError)]
    assert "坏" in failed  # its batch failed as a whole; nobody waits forever
    inner.fail_on = None
    assert np.array_equal(batcher.encode_queries(["again"]), inner.encode_queries(["again"]))


def test_batched_vectors_equal_single_ones(searcher) -> None:
    """Padding in a batch must not change what retrieval sees."""
    emb = searcher.embeddings
    inner = getattr(emb, "inner", emb)  # the session searcher may be wrapped already
    questions = ["事业编制要精简到多少名？", "学会联合体是做什么的？", "科普",
                 "第四部分第3条讲了什么？", "如何建设网上科技工作者之家？",
                 "學會治理結構改革有哪些要求？"]
    single = np.vstack([inner.encode_queries([q]) for q in questions])
    batched = inner.encode_queries(questions)
    assert np.abs(single - batched).max() < 1e-5
    for i in range(len(questions)):
        _, a = searcher.index.search(single[i:i + 1], k=5)
        _, b = searcher.index.search(batched[i:i + 1], k=5)
        assert list(a[0]) == list(b[0])
