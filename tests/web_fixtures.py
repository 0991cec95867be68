"""Fixtures for the web tests: real servers on free loopback ports.

`web_server` (module scope) runs `python app.py --port <free port>` as a subprocess,
exactly as staff would, and waits for its "ready at" line. `shared_qa` (session scope)
is one real, warmed-up PlanQA for the in-process variants `run_app` starts (token,
login, unwritable feedback log, …), so each of those costs no extra model load.

A test module loads the fixtures with `pytest_plugins = ["web_fixtures"]` (no conftest
needed; tests/ is on sys.path when pytest collects it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from planqa.load import free_port

REPO = Path(__file__).resolve().parent.parent
#: Loading the model and the index on a cold CI machine can take a while.
STARTUP_TIMEOUT = float(os.environ.get("PLANQA_TEST_STARTUP_TIMEOUT", "240"))


@dataclass
class LiveServer:
    """A running server: its base URL (with trailing slash) and its feedback log."""

    url: str
    feedback_log: Path
    output: list[str] = field(default_factory=list)  # the subprocess's output, for debugging

    def api(self, path: str) -> str:
        return self.url.rstrip("/") + path


@contextlib.contextmanager
def run_app_subprocess(tmp: Path, env: dict[str, str] | None = None) -> Iterator[LiveServer]:
    """`python app.py` on a free port (planqa.load starts it); yields once it printed
    "ready at", with its feedback log in `tmp`."""
    from planqa.load import start_server

    log = tmp / "feedback.jsonl"
    extra = {"PLANQA_FEEDBACK_LOG": str(log), "GRADIO_ANALYTICS_ENABLED": "False",
             **(env or {})}
    with start_server(env=extra, timeout=STARTUP_TIMEOUT) as srv:
        ready_line = next(x for x in srv.output if x.startswith("ready at ")).strip()
        assert ready_line.startswith(f"ready at {srv.url}/"), ready_line
        yield LiveServer(url=srv.url + "/", feedback_log=log, output=srv.output)


@contextlib.contextmanager
def serve_in_thread(qa, tmp: Path, **overrides) -> Iterator[LiveServer]:
    """create_app(qa, Settings(…overrides)) served by uvicorn in a background thread."""
    import uvicorn

    from planqa.config import Settings
    from planqa.web.app import create_app

    settings = dataclasses.replace(
        Settings.from_env(), **{"feedback_log": tmp / "feedback.jsonl", "auth": "",
                                "api_token": "", "root_path": "", **overrides})
    port = free_port()
    app = create_app(qa=qa, settings=settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("in-process server did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}/", feedback_log=settings.feedback_log)
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real app (`python app.py`) for this test module, feedback log in a temp dir."""
    with run_app_subprocess(tmp_path_factory.mktemp("web")) as server:
        r = httpx.get(server.api("/api/health"), timeout=10)
        assert r.status_code == 200, r.text
        yield server


@pytest.fixture(scope="session")
def shared_qa():
    """One real PlanQA (default model and index), warmed up, for in-process servers."""
    from planqa.chain import PlanQA

    qa = PlanQA()
    qa.warm_up()
    return qa


@pytest.fixture
def run_app():
    """`with run_app(qa, tmp_path, api_token=…) as server:` — an in-process server."""
    return serve_in_thread
