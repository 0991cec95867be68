"""The web app: its JSON API, its page and its error mapping, with the real PlanQA.

Most tests run in-process: `api` is a TestClient on `create_app(shared_qa, …)`, built
once per session; apps with other settings (token, login, unwritable feedback log,
missing index, time limit) come from `run_app`. Where a body is deterministic it is
compared whole: an answer with what the library itself says for the same request.

A few run against the real server, `python app.py` on a loopback port (web_server):
its start-up line and health, one answer, a lying Content-Length on a raw socket, and
Gradio's own client.
"""

from __future__ import annotations

import ast
import json
import logging
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import httpx
import pytest

from planqa import __version__
from planqa.errors import IndexUnavailable, InvalidQuestion

if TYPE_CHECKING:
    from web_fixtures import AppClient, LiveServer

# fixtures: `api` (a client on the session's app), `run_app` (an app with other
# settings), `shared_qa` (its real PlanQA), `library` (its answers as JSON) and
# `web_server` (python app.py, per module)
pytest_plugins = ["web_fixtures"]

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "src" / "planqa"
Q_STAFF = "事业编制要精简到多少名？"
Q_REFUSE = "科协现任主席是谁？"
Q_ALLIANCE = "学会联合体是做什么的？"
Q_FOLLOW = "那所属事业单位呢？"


def ask(client: AppClient, body: object, **kw) -> httpx.Response:
    return client.post("/api/ask", json=body, **kw)


def _health_ok(shared_qa, writable: bool = True) -> dict:
    return {"status": "ok", "version": __version__, "sections": 5,
            "passages": len(shared_qa.plan.passages), "feedback_log_writable": writable}


# ---------------------------------------------------------------- the real server


def test_app_py_prints_ready_after_warm_up(web_server: LiveServer, shared_qa) -> None:
    ready = [line for line in web_server.output if line.startswith("ready at ")]
    assert ready and ready[0].strip() == f"ready at {web_server.url}"
    health = httpx.get(web_server.api("/api/health"), timeout=10)
    assert health.status_code == 200 and health.json() == _health_ok(shared_qa)


def test_app_py_answers_as_the_library_does(web_server: LiveServer, library) -> None:
    r = httpx.post(web_server.api("/api/ask"), json={"question": Q_STAFF}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json() == library(Q_STAFF)
    assert r.json()["citations"][0]["ref"] == "二、2"


def _raw_http(server: LiveServer, request: bytes) -> tuple[int, bytes]:
    u = urlparse(server.url)
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_lying_content_length_is_handled(web_server: LiveServer) -> None:
    body = json.dumps({"question": Q_STAFF}).encode()
    # claims more than 64 KB but sends little: refused from the header alone
    status, resp = _raw_http(web_server, (
        b"POST /api/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: 9999999\r\n\r\n" + body))
    assert status == 413 and json.loads(resp) == {"error": "request body over 64 KB"}
    # claims less than it sends: only the declared bytes are read, which are not JSON
    status, resp = _raw_http(web_server, (
        b"POST /api/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: 10\r\n\r\n" + body))
    assert status == 400 and json.loads(resp) == {"error": "body must be a JSON object (UTF-8)"}


def test_gradio_client_ask_with_history(web_server: LiveServer, library) -> None:
    from gradio_client import Client

    client = Client(web_server.url, verbose=False)
    first = client.predict(Q_STAFF, [], api_name="/ask")
    assert first == library(Q_STAFF)
    history = [[Q_STAFF, first["answer"]]]
    follow = client.predict(Q_FOLLOW, history, api_name="/ask")
    assert follow["citations"][0]["ref"] == "二、2" and "13" in follow["answer"]
    as_json = client.predict(question=Q_FOLLOW, history=json.dumps(history), api_name="/ask")
    assert as_json == follow == library(Q_FOLLOW, history)
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert list(endpoints) == ["/ask"]  # the UI's own events stay private


def test_gradio_client_sessions_in_parallel(web_server: LiveServer) -> None:
    from gradio_client import Client

    clients = [Client(web_server.url, verbose=False) for _ in range(2)]
    questions = [Q_STAFF, Q_ALLIANCE]
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda cq: cq[0].predict(cq[1], [], api_name="/ask"),
                                zip(clients, questions, strict=True)))
    assert answers[0]["citations"][0]["ref"] == "二、2"
    assert answers[1]["citations"][0]["ref"] != "二、2"


def test_app_py_flags_default_to_env_and_import_does_no_work(monkeypatch) -> None:
    import importlib.util

    probe = subprocess.run(
        [sys.executable, "-c", "import sys, app; print(sorted(m for m in sys.modules "
         "if m.startswith(('gradio', 'planqa.web', 'uvicorn', 'torch'))))"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert probe.stdout.strip() == "[]"  # importing app.py loads nothing heavy
    spec = importlib.util.spec_from_file_location("planqa_app_entry", REPO / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("PLANQA_HOST", "127.0.0.2")
    monkeypatch.setenv("PLANQA_PORT", "9123")
    monkeypatch.setenv("PLANQA_ROOT_PATH", "/planqa")
    args = module.parse_args([])
    assert (args.host, args.port, args.root_path) == ("127.0.0.2", 9123, "/planqa")
    args = module.parse_args(["--port", "8000", "--host", "0.0.0.0", "--root-path", ""])
    assert (args.host, args.port, args.root_path) == ("0.0.0.0", 8000, "")


# ---------------------------------------------------------------- health and page


def test_health_reports_the_plan(api: AppClient, shared_qa) -> None:
    r = api.get("/api/health")
    assert r.status_code == 200 and r.json() == _health_ok(shared_qa)


def test_page_is_served_in_chinese(api: AppClient) -> None:
    r = api.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    config = api.get("/config").json()
    text = json.dumps(config, ensure_ascii=False)
    assert config["title"] == "科协改革方案问答"
    for shown in ("《科协系统深化改革实施方案》问答", "方案目录", "新对话", "示例问题"):
        assert shown in text
    assert "fonts.googleapis" not in text  # the theme uses system fonts only
    assert ".pq-notfound" in config["css"]  # static/planqa.css reached the page


# ---------------------------------------------------------------- POST /api/ask


def test_question_is_answered_with_its_clause(api: AppClient, library) -> None:
    r = ask(api, {"question": Q_STAFF})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data == library(Q_STAFF)  # the library's answer, whole
    assert data["found"] is True and data["source"] == "extractive"
    assert data["citations"][0]["ref"] == "二、2" and "1120" in data["answer"]
    cite = data["citations"][0]
    assert {"ref", "section", "clause", "title", "quote", "highlights", "text"} <= set(cite)
    assert cite["quote"] in cite["text"] and "›" in cite["title"]


def test_follow_up_uses_history(api: AppClient, library) -> None:
    first = ask(api, {"question": Q_STAFF}).json()
    history = [[Q_STAFF, first["answer"]]]
    r = ask(api, {"question": Q_FOLLOW, "history": history})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data == library(Q_FOLLOW, history)
    assert data["found"] is True and data["citations"][0]["ref"] == "二、2"
    assert "13" in data["answer"]


def test_question_outside_the_plan_is_refused(api: AppClient, library) -> None:
    data = ask(api, {"question": Q_REFUSE}).json()
    assert data == library(Q_REFUSE)
    assert data["found"] is False and data["citations"] == [] and data["related"]


def test_traditional_script_on_request(api: AppClient, library) -> None:
    data = ask(api, {"question": Q_STAFF, "script": "traditional"}).json()
    assert data == library(Q_STAFF, script="traditional")
    assert data["found"] is True
    assert "編制" in data["answer"] and "编制" not in data["answer"]


def test_concurrent_sessions_keep_their_own_history(api: AppClient) -> None:
    """Two conversations asked at the same time: each follow-up stays in its own clause."""
    a1 = ask(api, {"question": Q_STAFF}).json()
    b1 = ask(api, {"question": Q_ALLIANCE}).json()
    assert a1["citations"][0]["ref"] == "二、2"
    b_ref = b1["citations"][0]["ref"]
    assert b_ref != "二、2"
    follow = "这一条具体怎么落实？"
    jobs = {
        "a": {"question": follow, "history": [[Q_STAFF, a1["answer"]]]},
        "b": {"question": follow, "history": [[Q_ALLIANCE, b1["answer"]]]},
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {k: [pool.submit(ask, api, body) for _ in range(3)]
                   for k, body in jobs.items()}
        results = {k: [f.result().json() for f in fs] for k, fs in futures.items()}
    for data in results["a"]:
        assert data["citations"][0]["ref"] == "二、2"
    for data in results["b"]:
        assert data["citations"][0]["ref"] == b_ref


def test_long_question_is_truncated_not_refused(api: AppClient, shared_qa, library) -> None:
    question = "事业编制" + "很" * 9000 + "？"  # ~27 KB: under 64 KB
    r = ask(api, {"question": question})
    assert r.status_code == 200, r.text
    assert r.json() == library(question)
    assert len(r.json()["question"]) <= shared_qa.settings.max_question_chars


def test_history_beyond_the_chains_limit_is_not_read(api: AppClient, library) -> None:
    """The API keeps the chain's last MAX_HISTORY_TURNS turns: a malformed turn older
    than that is dropped, not refused, and the answer is the library's."""
    from planqa.chain import MAX_HISTORY_TURNS

    recent = [[Q_STAFF, "方案第二部分第2条有规定。"]] * MAX_HISTORY_TURNS
    r = ask(api, {"question": Q_FOLLOW, "history": [["too old", 1], *recent]})
    assert r.status_code == 200, r.text
    assert r.json() == library(Q_FOLLOW, recent)
    r = ask(api, {"question": Q_FOLLOW, "history": [*recent[1:], ["too old", 1]]})
    assert r.status_code == 422


NOT_A_STRING = '"question" is required and must be a string'
PAIRS = "each history item must be a [question, answer] pair of strings"
BAD_BODIES = {
    "missing question": ({"history": []}, NOT_A_STRING),
    "empty question": ({"question": "   "}, '"question" is empty'),
    "question not a string": ({"question": 123}, NOT_A_STRING),
    "body not an object": (["事业编制要精简到多少名？"], "body must be a JSON object"),
    "history not a list": ({"question": Q_STAFF, "history": "previous"},
                           "history must be a JSON list of [question, answer] pairs"),
    "history a number": ({"question": Q_STAFF, "history": 3},
                         "history must be a list of [question, answer] pairs"),
    "history items not pairs": ({"question": Q_STAFF, "history": [["only one"]]}, PAIRS),
    "history items not strings": ({"question": Q_STAFF, "history": [[1, 2]]}, PAIRS),
    "unknown script": ({"question": Q_STAFF, "script": "klingon"},
                       'script must be "simplified" or "traditional"'),
}


@pytest.mark.parametrize(("body", "error"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_json_requests_get_422_and_say_why(api: AppClient, body: object,
                                                error: str) -> None:
    r = ask(api, body)
    assert (r.status_code, r.json()) == (422, {"error": error})


def _post_raw(client: AppClient, path: str, content, headers: dict | None = None):
    return client.post(path, content=content,
                       headers={"content-type": "application/json", **(headers or {})})


def test_invalid_json_wrong_method_and_unknown_route(api: AppClient) -> None:
    for content in (b"{not json", b"\xff\xfe\x00", b""):
        r = _post_raw(api, "/api/ask", content)
        assert (r.status_code, r.json()) == (400, {"error": "body must be a JSON object (UTF-8)"})
    r = api.get("/api/ask")
    assert (r.status_code, r.json()) == (405, {"error": "method not allowed; use POST"})
    assert r.headers["allow"] == "POST, OPTIONS"
    r = api.post("/api/health")
    assert (r.status_code, r.headers["allow"]) == (405, "GET, HEAD, OPTIONS")
    r = api.get("/api/nothing-here")
    assert (r.status_code, r.json()) == (
        404, {"error": "no such API route; use POST /api/ask or GET /api/health"})


def test_body_over_64_kb_is_refused(api: AppClient) -> None:
    too_big = (413, {"error": "request body over 64 KB"})
    big = json.dumps({"question": "编" * 30000}).encode()  # ~90 KB
    r = _post_raw(api, "/api/ask", big)  # with a true Content-Length
    assert (r.status_code, r.json()) == too_big

    def chunks():  # no Content-Length at all: the bytes are counted as they come
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    r = _post_raw(api, "/api/ask", chunks())
    assert "content-length" not in r.request.headers
    assert (r.status_code, r.json()) == too_big


# ---------------------------------------------------------------- exceptions → responses


def _failing_qa(exc: BaseException) -> SimpleNamespace:
    def ask(*args, **kwargs):
        raise exc

    return SimpleNamespace(ask=ask)


ERRORS = {
    "invalid question": (InvalidQuestion("history must be a list"), 422,
                         {"error": "history must be a list"}),
    "index unavailable": (IndexUnavailable("index gone"), 503,
                          {"error": "index gone", "hint": "make index"}),
    "a bug's ValueError": (ValueError("a bug"), 500,
                           {"error": "internal error while answering"}),
    "a bug's KeyError": (KeyError("a bug"), 500, {"error": "internal error while answering"}),
}


@pytest.mark.parametrize(("exc", "status", "body"), ERRORS.values(), ids=ERRORS.keys())
def test_library_errors_map_by_http_status(api: AppClient, monkeypatch, caplog,
                                           exc: Exception, status: int, body: dict) -> None:
    """A PlanQAError answers with its own http_status; anything else is a bug: a 500,
    logged with its traceback (a plain ValueError is no longer taken for a bad request)."""
    monkeypatch.setattr(api.service, "qa", _failing_qa(exc))
    caplog.set_level(logging.ERROR, logger="planqa.web")
    r = ask(api, {"question": Q_STAFF})
    assert (r.status_code, r.json()) == (status, body)
    logged = [rec for rec in caplog.records if rec.exc_info and rec.exc_info[1] is exc]
    assert len(logged) == (1 if status == 500 else 0)


CHAT_ERRORS = {
    "index unavailable, whatever its message": (IndexUnavailable("no such file"),
                                                "问答服务暂不可用"),
    "invalid question": (InvalidQuestion("问题不能为空"), "问题不能为空"),
    "a bug": (ValueError("internal detail"), "回答时出错"),
}


@pytest.mark.parametrize(("exc", "shown"), CHAT_ERRORS.values(), ids=CHAT_ERRORS.keys())
def test_chat_shows_library_errors_by_type(api: AppClient, monkeypatch, exc: Exception,
                                           shown: str) -> None:
    from planqa.web.handlers import SIMPLIFIED, Handlers, new_state

    monkeypatch.setattr(api.service, "qa", _failing_qa(exc))
    *_, (_, chat, state, _) = Handlers(api.service).respond(Q_STAFF, [], new_state(),
                                                            SIMPLIFIED)
    message = chat[-1]["content"]
    assert "pq-notice" in message and shown in message
    if not isinstance(exc, InvalidQuestion):
        assert str(exc) not in message  # a bug's text is logged, not shown
    assert state == new_state()  # no turn is kept for a failed answer


# ---------------------------------------------------------------- feedback


def _read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_feedback_is_appended_to_the_log(api: AppClient) -> None:
    data = ask(api, {"question": Q_STAFF}).json()
    before = _read_log(api.feedback_log)
    r = api.post("/api/feedback", json={
        "question": Q_STAFF, "answer": data["answer"], "citations": data["citations"],
        "vote": "useful", "comment": "很清楚"})
    assert r.status_code == 200, r.text
    lines = _read_log(api.feedback_log)
    assert len(lines) == len(before) + 1
    line = lines[-1]
    assert r.json() == {"saved": True, "id": line["id"]}
    cited = [{k: c[k] for k in ("ref", "title", "quote")} for c in data["citations"]]
    assert {k: v for k, v in line.items() if k not in ("time", "id")} == {
        "question": Q_STAFF, "answer": data["answer"], "found": None, "citations": cited,
        "vote": "useful", "comment": "很清楚"}
    assert line["time"].startswith("20") and len(line["id"]) == 32
    r = api.post("/api/feedback", json={"question": Q_STAFF, "answer": "x", "vote": "meh"})
    assert (r.status_code, r.json()) == (422, {"error": '"vote" must be one of useful, not_useful'})
    assert len(_read_log(api.feedback_log)) == len(before) + 1


def test_unwritable_feedback_log_does_not_break_answering(
        shared_qa, library, run_app, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")  # even root cannot mkdir here
    caplog.set_level(logging.WARNING, logger="planqa.web")
    with run_app(shared_qa, tmp_path, feedback_log=blocker / "feedback.jsonl") as client:
        r = ask(client, {"question": Q_STAFF})
        assert r.status_code == 200 and r.json() == library(Q_STAFF)
        for _ in range(3):
            r = client.post("/api/feedback",
                            json={"question": Q_STAFF, "answer": "a", "vote": "not_useful"})
            assert (r.status_code, r.json()) == (503, {
                "error": "feedback log is not writable; the answer service is unaffected"})
        assert ask(client, {"question": Q_STAFF}).status_code == 200
        assert client.get("/api/health").json() == _health_ok(shared_qa, writable=False)
        config = json.dumps(client.get("/config").json(), ensure_ascii=False)
        assert "反馈记录暂时无法保存" in config  # the small notice on the page
    warnings = [r for r in caplog.records if "not writable" in r.getMessage()]
    assert len(warnings) == 1  # reported once, not per request


# ---------------------------------------------------------------- settings variants


def test_bearer_token_guards_the_json_api(shared_qa, library, run_app, tmp_path: Path
                                         ) -> None:
    denied = (401, {"error": "missing or invalid bearer token"})
    with run_app(shared_qa, tmp_path, api_token="s3cret-token") as client:
        r = ask(client, {"question": Q_STAFF})
        assert (r.status_code, r.json()) == denied
        wrong = ask(client, {"question": Q_STAFF}, headers={"Authorization": "Bearer nope"})
        assert (wrong.status_code, wrong.json()) == denied
        ok = ask(client, {"question": Q_STAFF},
                 headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and ok.json() == library(Q_STAFF)
        assert client.get("/api/health").status_code == 200


def test_web_login_when_auth_is_set(shared_qa, run_app, tmp_path: Path) -> None:
    with run_app(shared_qa, tmp_path, auth="staff:pa55word") as client:
        assert client.get("/config").status_code == 401
        bad = client.post("/login", data={"username": "staff", "password": "wrong"})
        assert bad.status_code >= 400
        good = client.post("/login", data={"username": "staff", "password": "pa55word"})
        assert good.status_code == 200, good.text
        assert client.get("/config").status_code == 200  # with the session cookie


def test_malformed_auth_setting_is_a_config_error(shared_qa, tmp_path: Path) -> None:
    from planqa.errors import ConfigError
    from planqa.web.app import create_app
    from web_fixtures import app_settings

    with pytest.raises(ConfigError, match="user:password"):
        create_app(qa=shared_qa, settings=app_settings(tmp_path, auth="staff"))


def test_root_path_for_a_reverse_proxy(shared_qa, run_app, tmp_path: Path) -> None:
    with run_app(shared_qa, tmp_path, root_path="/planqa") as client:
        # the proxy strips /planqa; the page must build its links with it
        assert client.get("/config").json()["root"].endswith("/planqa")
        assert client.get("/api/health").status_code == 200


def test_request_time_limit_gives_504(shared_qa, run_app, tmp_path: Path) -> None:
    with run_app(shared_qa, tmp_path, request_timeout=0.000001) as client:
        r = ask(client, {"question": Q_STAFF})
        assert (r.status_code, r.json()) == (504, {"error": "no answer within 1e-06 s"})


def test_missing_index_is_explained_not_crashed(run_app, tmp_path: Path) -> None:
    from planqa.chain import PlanQA
    from planqa.config import Settings
    from planqa.web.api import without_paths

    empty = tmp_path / "no-index"
    empty.mkdir()
    qa = PlanQA(Settings.from_env().replace(index_dir=empty))
    with run_app(qa, tmp_path, index_dir=empty) as client:
        error = client.service.startup_error
        assert "make index" in error
        health = client.get("/api/health")  # open to all: the reason without paths
        assert (health.status_code, health.json()) == (
            503, {"status": "unavailable", "error": without_paths(error), "hint": "make index"})
        assert str(tmp_path) not in health.text
        r = ask(client, {"question": Q_STAFF})
        assert (r.status_code, r.json()) == (503, {"error": error, "hint": "make index"})
        config = json.dumps(client.get("/config").json(), ensure_ascii=False)
        assert "问答服务暂不可用" in config and "make index" in config
        assert "Traceback" not in config


# ---------------------------------------------------------------- how the web is built


def test_the_service_asks_retrieval_for_batched_queries(shared_qa, monkeypatch,
                                                        tmp_path: Path) -> None:
    """With no qa given, the service builds its own on load_searcher(batch_queries=True);
    the web never patches the searcher (see test_nothing_below_the_web_imports_it)."""
    from planqa.batching import QueryBatcher
    from planqa.web import service as service_module
    from planqa.web.feedback import FeedbackLog

    calls = []

    def load_searcher(settings, batch_queries=False):
        calls.append(batch_queries)
        return shared_qa.searcher

    monkeypatch.setattr(service_module, "load_searcher", load_searcher)
    settings = shared_qa.settings.replace(prefault_model=False, workers=1)  # in-process
    service = service_module.ChatService(qa=None, settings=settings,
                                         feedback=FeedbackLog(tmp_path / "log.jsonl"))
    service.warm_up()
    assert calls == [True] and service.ready
    assert service.qa.searcher is shared_qa.searcher
    assert isinstance(shared_qa.searcher.embeddings, QueryBatcher)  # as the fixture asked
    assert service.ask(Q_STAFF, [], None).citations[0].ref == "二、2"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_nothing_below_the_web_imports_it() -> None:
    """The web layer sits on top: no other planqa module imports planqa.web, and web
    code never assigns to a searcher's (or anything's) `embeddings`."""
    web = PACKAGE / "web"
    for path in PACKAGE.rglob("*.py"):
        if web in path.parents:
            continue
        uses = {n for n in _imports(path) if n == "planqa.web" or n.startswith("planqa.web.")}
        assert not uses, f"{path.relative_to(PACKAGE)} imports {sorted(uses)}"
    for path in web.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            targets = (node.targets if isinstance(node, ast.Assign)
                       else [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign)
                       else [])
            for t in targets:
                assert not (isinstance(t, ast.Attribute) and t.attr == "embeddings"), (
                    f"{path.name}:{node.lineno} patches .embeddings")
        assert ast.get_docstring(ast.parse(path.read_text("utf-8"))), path.name


# ---------------------------------------------------------------- rendering helpers


def test_cards_escape_text_and_mark_the_quote() -> None:
    from planqa.web.render import render_answer, render_card

    cite = {"ref": "二、2", "title": "A › B", "text": "前文。<script>x</script>引文。后文。",
            "highlights": ["引文。"], "quote": "引文。"}
    card = render_card(cite)
    assert "<script>" not in card and "&lt;script&gt;" in card
    assert "<mark>引文。</mark>" in card and card.startswith("<details")
    refused = render_answer({"answer": "没有规定。", "found": False, "related": [cite]})
    assert "方案未涉及" in refused and "pq-notfound" in refused and "pq-card-related" in refused
    streaming = render_answer({"answer": "全文", "found": True, "citations": [cite]}, shown="全")
    assert "pq-streaming" in streaming and "<details" not in streaming
    assert "\n\n" not in render_answer({"answer": "一\n\n二", "found": True})  # one HTML block


@pytest.mark.parametrize("question", [Q_STAFF, Q_ALLIANCE, Q_REFUSE])
def test_script_switch_matches_the_library(shared_qa, question: str) -> None:
    """Switching the display script re-renders stored answers; the result must be what
    the library itself says in that script (quotes verbatim from the plan)."""
    from planqa.web.convert import convert_answer

    simp = shared_qa.ask(question, script="simplified").to_dict()
    trad = shared_qa.ask(question, script="traditional").to_dict()
    assert convert_answer(shared_qa.plan, simp, True) == trad
    assert convert_answer(shared_qa.plan, trad, False) == simp
