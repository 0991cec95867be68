"""Fixtures for the web tests.

In-process (most tests): `web_app` is `create_app(shared_qa, …)`, built once per test
session on one real, warmed-up PlanQA whose queries are batched as the server's are,
with no LLM (so answers are deterministic) and its feedback log in a temp dir. `api`
is a TestClient on it (the app's lifespan runs, so Gradio's queue works as well).
`run_app(qa, tmp_path, **overrides)` builds an app with other settings (token, login,
unwritable feedback log, missing index, time limit) and yields a client on it.

Real servers, for the few end-to-end tests and the browser: `web_server` (module
scope) runs `python app.py --port <free port>` as a subprocess, exactly as staff
would, and waits for its "ready at" line.

A test module loads the fixtures with `pytest_plugins = ["web_fixtures"]` (no conftest
needed; tests/ is on sys.path when pytest collects it).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from server import free_port

REPO = Path(__file__).resolve().parent.parent
#: Loading the model and the index on a cold CI machine can take a while.
STARTUP_TIMEOUT = float(os.environ.get("PLANQA_TEST_STARTUP_TIMEOUT", "240"))
#: No in-process request may take longer: a hang fails its test instead of blocking CI.
REQUEST_DEADLINE = 60.0
_REQUESTS = concurrent.futures.ThreadPoolExecutor(max_workers=16,
                                                  thread_name_prefix="test-request")

__all__ = ["STARTUP_TIMEOUT", "AppClient", "LiveServer", "app_settings", "free_port"]


# ---------------------------------------------------------------- in-process


class AppClient(TestClient):
    """A TestClient on a planqa app, every request with a deadline (REQUEST_DEADLINE).

    `service` and `feedback_log` are the app's own."""

    def request(self, *args: Any, **kwargs: Any) -> httpx.Response:
        future = _REQUESTS.submit(super().request, *args, **kwargs)
        return future.result(timeout=REQUEST_DEADLINE)

    @property
    def service(self):
        return self.app.state.service

    @property
    def feedback_log(self) -> Path:
        return self.service.feedback.path


def app_settings(tmp: Path, **overrides: Any):
    """The environment's settings for a test app: feedback log in `tmp`, no login, no
    token, no proxy prefix, no LLM — then `overrides`."""
    from planqa.config import Settings

    return Settings.from_env().replace(**{"feedback_log": tmp / "feedback.jsonl", "auth": "",
                                "api_token": "", "root_path": "", "llm_base_url": "",
                                **overrides})


@contextlib.contextmanager
def app_client(qa, tmp: Path, **overrides: Any) -> Iterator[AppClient]:
    """A client on create_app(qa, app_settings(tmp, **overrides)), its lifespan running."""
    from planqa.web.app import create_app

    app = create_app(qa=qa, settings=app_settings(tmp, **overrides))
    with AppClient(app) as client:
        yield client


@pytest.fixture(scope="session")
def shared_qa():
    """One real PlanQA (default model and index, no LLM), warmed up, its queries batched
    as `create_app` builds them when it gets no qa."""
    from planqa.chain import PlanQA
    from planqa.config import Settings
    from planqa.retrieval import load_searcher

    settings = Settings.from_env().replace(llm_base_url="")
    qa = PlanQA(settings, searcher=load_searcher(settings, batch_queries=True))
    qa.warm_up()
    return qa


@pytest.fixture(scope="session")
def api(shared_qa, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppClient]:
    """A client on the session's app: create_app(shared_qa, …), built once."""
    with app_client(shared_qa, tmp_path_factory.mktemp("web-app")) as client:
        yield client


@pytest.fixture
def run_app():
    """`with run_app(qa, tmp_path, api_token=…) as client:` — an app with other settings."""
    return app_client


@pytest.fixture(scope="session")
def library(shared_qa):
    """`library(question, history=None, script=None)`: what shared_qa answers, as the
    JSON the API must send for the same request."""

    def answer(question: str, history=None, script: str | None = None) -> dict:
        return json.loads(json.dumps(shared_qa.ask(question, history, script).to_dict()))

    return answer


# ---------------------------------------------------------------- real servers


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
    """`python app.py` on a free port (server.start_server starts it); yields once it printed
    "ready at", with its feedback log in `tmp` and no LLM."""
    from server import start_server

    log = tmp / "feedback.jsonl"
    extra = {"PLANQA_FEEDBACK_LOG": str(log), "GRADIO_ANALYTICS_ENABLED": "False",
             "PLANQA_LLM_BASE_URL": "", **(env or {})}
    with start_server(env=extra, timeout=STARTUP_TIMEOUT) as srv:
        ready_line = next(x for x in srv.output if x.startswith("ready at ")).strip()
        assert ready_line.startswith(f"ready at {srv.url}/"), ready_line
        yield LiveServer(url=srv.url + "/", feedback_log=log, output=srv.output)


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real app (`python app.py`) for this test module, feedback log in a temp dir."""
    with run_app_subprocess(tmp_path_factory.mktemp("web")) as server:
        r = httpx.get(server.api("/api/health"), timeout=10)
        assert r.status_code == 200, r.text
        yield server


def token_server(name: str, token: str):
    """A module-scoped fixture: `python app.py` with PLANQA_API_TOKEN=`token` (the client
    protocol tests, /v1 and /retrieval, each run one per module)."""

    @pytest.fixture(scope="module")
    def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
        with run_app_subprocess(tmp_path_factory.mktemp(name),
                                env={"PLANQA_API_TOKEN": token}) as live:
            yield live

    return server
