"""Answer worker processes (PLANQA_WORKERS): the real server on loopback, two workers.

The page and the client routes run against servers with the default worker count in
their own modules; here: the workers answer as the library does, hold a model each, and
a killed worker is replaced without the server ever answering 500."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from server import start_server

QUESTION = "事业编制要精简到多少名？"


def _workers(pid: int) -> list[int]:
    """The server's worker processes (spawned children; not the resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    env = {"PLANQA_WORKERS": "2", "PLANQA_API_TOKEN": "", "PLANQA_AUTH": "",
           "PLANQA_LLM_BASE_URL": "",
           "PLANQA_FEEDBACK_LOG": str(tmp_path_factory.mktemp("workers") / "feedback.jsonl")}
    with start_server(env=env) as srv:
        yield srv


def _ask(srv, question: str = QUESTION) -> httpx.Response:
    return httpx.post(srv.url + "/api/ask", json={"question": question}, timeout=60,
                      trust_env=False)


def test_two_workers_each_with_a_model_answer_as_the_library(two_workers, qa):
    workers = _workers(two_workers.pid)
    assert len(workers) == 2
    for pid in workers:  # each has loaded the encoder (its weights are mapped)
        assert "model_qint8.onnx" in Path(f"/proc/{pid}/maps").read_text() or \
            "model.safetensors" in Path(f"/proc/{pid}/maps").read_text()
    expected = qa.ask(QUESTION).to_dict()
    for _ in range(4):  # more than one worker's turn
        r = _ask(two_workers)
        assert r.status_code == 200, r.text
        assert r.json()["answer"] == expected["answer"]
        assert r.json()["citations"][0]["ref"] == "二、2"


def test_a_killed_worker_is_replaced_and_nothing_answers_500(two_workers):
    before = _workers(two_workers.pid)
    os.kill(before[0], signal.SIGKILL)
    statuses = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        r = _ask(two_workers)
        statuses.append(r.status_code)
        if r.status_code == 200 and len(_workers(two_workers.pid)) == 2:
            break
        time.sleep(0.5)
    assert statuses[-1] == 200, statuses
    assert set(statuses) <= {200, 503}, statuses  # "ask again", never a crash
    after = _workers(two_workers.pid)
    assert len(after) == 2 and before[0] not in after


def test_workers_without_an_index_leave_the_server_up_and_say_why(settings, tmp_path):
    from planqa.web.feedback import FeedbackLog
    from planqa.web.service import INDEX_MISSING_ZH, ChatService

    service = ChatService(qa=None, settings=settings.replace(workers=2, index_dir=tmp_path),
                          feedback=FeedbackLog(tmp_path / "log.jsonl"))
    service.warm_up()
    assert not service.ready and service.pool is None
    assert "index" in service.startup_error.lower()
    assert service.startup_message_zh == INDEX_MISSING_ZH
    from planqa.errors import IndexUnavailable

    with pytest.raises(IndexUnavailable):
        service.submit(QUESTION, [], None)


def test_workers_do_not_outlive_a_killed_server(tmp_path):
    env = {"PLANQA_WORKERS": "2", "PLANQA_API_TOKEN": "", "PLANQA_AUTH": "",
           "PLANQA_FEEDBACK_LOG": str(tmp_path / "feedback.jsonl")}
    with start_server(env=env) as srv:
        workers = _workers(srv.pid)
        assert len(workers) == 2
        os.kill(srv.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() and
                b"zombie" not in Path(f"/proc/{w}/status").read_bytes().lower()
                for w in workers):
            time.sleep(0.5)
        assert not [w for w in workers if Path(f"/proc/{w}").exists() and
                    b"zombie" not in Path(f"/proc/{w}/status").read_bytes().lower()]
