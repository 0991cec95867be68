"""The web app end to end over HTTP: real servers on loopback ports, the real PlanQA.

The main server is `python app.py` (see web_fixtures.web_server); variants that need
other settings (token, login, unwritable feedback log, missing index, time limit) run
in-process on one shared, warmed-up PlanQA.
"""

from __future__ import annotations

import json
import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import httpx
import pytest

if TYPE_CHECKING:
    from web_fixtures import LiveServer

# fixtures: `web_server` (python app.py, per module), `shared_qa` (one real PlanQA) and
# `run_app` (an in-process server with other settings)
pytest_plugins = ["web_fixtures"]

Q_STAFF = "事业编制要精简到多少名？"
Q_REFUSE = "科协现任主席是谁？"
Q_ALLIANCE = "学会联合体是做什么的？"


def ask(server: LiveServer, body: object, **kw) -> httpx.Response:
    return httpx.post(server.api("/api/ask"), json=body, timeout=60, **kw)


# ---------------------------------------------------------------- startup, health, page


def test_app_py_prints_ready_after_warm_up(web_server: LiveServer) -> None:
    ready = [line for line in web_server.output if line.startswith("ready at ")]
    assert ready and ready[0].strip() == f"ready at {web_server.url}"
    health = httpx.get(web_server.api("/api/health"), timeout=10).json()
    assert health["status"] == "ok" and health["sections"] == 5


def test_app_py_flags_default_to_env_and_import_does_no_work(monkeypatch) -> None:
    import importlib.util
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, app; print(sorted(m for m in sys.modules "
         "if m.startswith(('gradio', 'planqa.web', 'uvicorn', 'torch'))))"],
        cwd=root, capture_output=True, text=True, timeout=60, check=True)
    assert probe.stdout.strip() == "[]"  # importing app.py loads nothing heavy
    spec = importlib.util.spec_from_file_location("planqa_app_entry", root / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("PLANQA_HOST", "127.0.0.2")
    monkeypatch.setenv("PLANQA_PORT", "9123")
    monkeypatch.setenv("PLANQA_ROOT_PATH", "/planqa")
    args = module.parse_args([])
    assert (args.host, args.port, args.root_path) == ("127.0.0.2", 9123, "/planqa")
    args = module.parse_args(["--port", "8000", "--host", "0.0.0.0", "--root-path", ""])
    assert (args.host, args.port, args.root_path) == ("0.0.0.0", 8000, "")


def test_page_is_served_in_chinese(web_server: LiveServer) -> None:
    r = httpx.get(web_server.url, timeout=10)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    config = httpx.get(web_server.api("/config"), timeout=10).json()
    text = json.dumps(config, ensure_ascii=False)
    assert config["title"] == "科协改革方案问答"
    for shown in ("《科协系统深化改革实施方案》问答", "方案目录", "新对话", "示例问题"):
        assert shown in text
    assert "fonts.googleapis" not in text  # the theme uses system fonts only


# ---------------------------------------------------------------- POST /api/ask


def test_question_is_answered_with_its_clause(web_server: LiveServer) -> None:
    r = ask(web_server, {"question": Q_STAFF})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["found"] is True
    assert data["citations"][0]["ref"] == "二、2"
    assert "1120" in data["answer"]
    cite = data["citations"][0]
    assert {"ref", "section", "clause", "title", "quote", "highlights", "text"} <= set(cite)
    assert cite["quote"] in cite["text"] and "›" in cite["title"]


def test_follow_up_uses_history(web_server: LiveServer) -> None:
    first = ask(web_server, {"question": Q_STAFF}).json()
    history = [[Q_STAFF, first["answer"]]]
    r = ask(web_server, {"question": "那所属事业单位呢？", "history": history})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["found"] is True and data["citations"][0]["ref"] == "二、2"
    assert "13" in data["answer"]


def test_question_outside_the_plan_is_refused(web_server: LiveServer) -> None:
    data = ask(web_server, {"question": Q_REFUSE}).json()
    assert data["found"] is False
    assert data["citations"] == []
    assert isinstance(data["related"], list)


def test_traditional_script_on_request(web_server: LiveServer) -> None:
    data = ask(web_server, {"question": Q_STAFF, "script": "traditional"}).json()
    assert data["found"] is True
    assert "編制" in data["answer"] and "编制" not in data["answer"]


def test_concurrent_sessions_keep_their_own_history(web_server: LiveServer) -> None:
    """Two conversations asked at the same time: each follow-up stays in its own clause."""
    a1 = ask(web_server, {"question": Q_STAFF}).json()
    b1 = ask(web_server, {"question": Q_ALLIANCE}).json()
    assert a1["citations"][0]["ref"] == "二、2"
    b_ref = b1["citations"][0]["ref"]
    assert b_ref != "二、2"
    follow = "这一条具体怎么落实？"
    jobs = {
        "a": {"question": follow, "history": [[Q_STAFF, a1["answer"]]]},
        "b": {"question": follow, "history": [[Q_ALLIANCE, b1["answer"]]]},
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {k: [pool.submit(ask, web_server, body) for _ in range(3)]
                   for k, body in jobs.items()}
        results = {k: [f.result().json() for f in fs] for k, fs in futures.items()}
    for data in results["a"]:
        assert data["citations"][0]["ref"] == "二、2"
    for data in results["b"]:
        assert data["citations"][0]["ref"] == b_ref


def test_long_question_is_truncated_not_refused(web_server: LiveServer) -> None:
    r = ask(web_server, {"question": "事业编制" + "很" * 9000 + "？"})  # ~27 KB: under 64 KB
    assert r.status_code == 200, r.text
    assert "found" in r.json()


BAD_BODIES = {
    "missing question": {"history": []},
    "empty question": {"question": "   "},
    "question not a string": {"question": 123},
    "body not an object": ["事业编制要精简到多少名？"],
    "history not a list": {"question": Q_STAFF, "history": "previous"},
    "history items not pairs": {"question": Q_STAFF, "history": [["only one"]]},
    "history items not strings": {"question": Q_STAFF, "history": [[1, 2]]},
    "unknown script": {"question": Q_STAFF, "script": "klingon"},
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_json_requests_get_4xx_json(web_server: LiveServer, body: object) -> None:
    r = ask(web_server, body)
    assert 400 <= r.status_code < 500, r.text
    assert isinstance(r.json()["error"], str)


def _post_raw(server: LiveServer, path: str, content, headers: dict | None = None):
    return httpx.post(server.api(path), content=content, timeout=60,
                      headers={"content-type": "application/json", **(headers or {})})


def test_invalid_json_and_wrong_method_get_4xx_json(web_server: LiveServer) -> None:
    for content in (b"{not json", b"\xff\xfe\x00", b""):
        r = _post_raw(web_server, "/api/ask", content)
        assert r.status_code == 400 and "error" in r.json(), r.text
    r = httpx.get(web_server.api("/api/ask"), timeout=10)
    assert r.status_code == 405 and "error" in r.json()
    r = httpx.get(web_server.api("/api/nothing-here"), timeout=10)
    assert r.status_code == 404 and "error" in r.json()


def test_body_over_64_kb_is_refused(web_server: LiveServer) -> None:
    big = json.dumps({"question": "编" * 30000}).encode()  # ~90 KB
    r = _post_raw(web_server, "/api/ask", big)  # with a true Content-Length
    assert r.status_code == 413 and "error" in r.json()

    def chunks():  # no Content-Length at all: chunked transfer encoding
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    r = _post_raw(web_server, "/api/ask", chunks())
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and "error" in r.json()


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
    assert status == 413 and b"error" in resp
    # claims less than it sends: only the declared bytes are read, which are not JSON
    status, resp = _raw_http(web_server, (
        b"POST /api/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: 10\r\n\r\n" + body))
    assert status == 400 and b"error" in resp


# ---------------------------------------------------------------- Gradio API


def test_gradio_client_ask_with_history(web_server: LiveServer) -> None:
    from gradio_client import Client

    client = Client(web_server.url, verbose=False)
    first = client.predict(Q_STAFF, [], api_name="/ask")
    assert first["found"] is True and first["citations"][0]["ref"] == "二、2"
    follow = client.predict("那所属事业单位呢？", [[Q_STAFF, first["answer"]]],
                            api_name="/ask")
    assert follow["citations"][0]["ref"] == "二、2" and "13" in follow["answer"]
    as_json = client.predict(question="那所属事业单位呢？",
                             history=json.dumps([[Q_STAFF, first["answer"]]]),
                             api_name="/ask")
    assert as_json["citations"][0]["ref"] == "二、2"
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


# ---------------------------------------------------------------- feedback


def _read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_feedback_is_appended_to_the_log(web_server: LiveServer) -> None:
    data = ask(web_server, {"question": Q_STAFF}).json()
    before = _read_log(web_server.feedback_log) if web_server.feedback_log.exists() else []
    r = httpx.post(web_server.api("/api/feedback"), timeout=10, json={
        "question": Q_STAFF, "answer": data["answer"], "citations": data["citations"],
        "vote": "useful", "comment": "很清楚"})
    assert r.status_code == 200, r.text
    lines = _read_log(web_server.feedback_log)
    assert len(lines) == len(before) + 1
    line = lines[-1]
    assert line["question"] == Q_STAFF and line["vote"] == "useful"
    assert line["comment"] == "很清楚" and line["citations"][0]["ref"] == "二、2"
    assert "1120" in line["answer"] and line["time"].startswith("20")
    r = httpx.post(web_server.api("/api/feedback"), timeout=10,
                   json={"question": Q_STAFF, "answer": "x", "vote": "meh"})
    assert r.status_code == 422 and "error" in r.json()


def test_unwritable_feedback_log_does_not_break_answering(
        shared_qa, run_app, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")  # even root cannot mkdir here
    caplog.set_level(logging.WARNING, logger="planqa.web")
    with run_app(shared_qa, tmp_path, feedback_log=blocker / "feedback.jsonl") as server:
        r = ask(server, {"question": Q_STAFF})
        assert r.status_code == 200 and r.json()["citations"][0]["ref"] == "二、2"
        for _ in range(3):
            r = httpx.post(server.api("/api/feedback"), timeout=10, json={
                "question": Q_STAFF, "answer": "a", "vote": "not_useful"})
            assert r.status_code == 503 and "error" in r.json()
        assert ask(server, {"question": Q_STAFF}).status_code == 200
        health = httpx.get(server.api("/api/health"), timeout=10).json()
        assert health["status"] == "ok" and health["feedback_log_writable"] is False
        config = json.dumps(httpx.get(server.api("/config"), timeout=10).json(),
                            ensure_ascii=False)
        assert "反馈记录暂时无法保存" in config  # the small notice on the page
    warnings = [r for r in caplog.records if "not writable" in r.getMessage()]
    assert len(warnings) == 1  # reported once, not per request


# ---------------------------------------------------------------- settings variants


def test_bearer_token_guards_the_json_api(shared_qa, run_app, tmp_path: Path) -> None:
    with run_app(shared_qa, tmp_path, api_token="s3cret-token") as server:
        assert ask(server, {"question": Q_STAFF}).status_code == 401
        wrong = ask(server, {"question": Q_STAFF}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "error" in wrong.json()
        ok = ask(server, {"question": Q_STAFF},
                 headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and ok.json()["found"] is True
        assert httpx.get(server.api("/api/health"), timeout=10).status_code == 200


def test_web_login_when_auth_is_set(shared_qa, run_app, tmp_path: Path) -> None:
    with run_app(shared_qa, tmp_path, auth="staff:pa55word") as server:
        assert httpx.get(server.api("/config"), timeout=10).status_code == 401
        with httpx.Client(base_url=server.url.rstrip("/"), timeout=10) as c:
            bad = c.post("/login", data={"username": "staff", "password": "wrong"})
            assert bad.status_code >= 400
            good = c.post("/login", data={"username": "staff", "password": "pa55word"})
            assert good.status_code == 200, good.text
            assert c.get("/config").status_code == 200


def test_root_path_for_a_reverse_proxy(shared_qa, run_app, tmp_path: Path) -> None:
    with run_app(shared_qa, tmp_path, root_path="/planqa") as server:
        # the proxy strips /planqa; the page must build its links with it
        config = httpx.get(server.api("/config"), timeout=10).json()
        assert config["root"].endswith("/planqa")
        assert httpx.get(server.api("/api/health"), timeout=10).status_code == 200


def test_request_time_limit_gives_504(shared_qa, run_app, tmp_path: Path) -> None:
    with run_app(shared_qa, tmp_path, request_timeout=0.000001) as server:
        r = ask(server, {"question": Q_STAFF})
        assert r.status_code == 504 and "error" in r.json()


def test_missing_index_is_explained_not_crashed(run_app, tmp_path: Path) -> None:
    from planqa.chain import PlanQA
    from planqa.config import Settings

    empty = tmp_path / "no-index"
    empty.mkdir()
    qa = PlanQA(__import__("dataclasses").replace(Settings.from_env(), index_dir=empty))
    with run_app(qa, tmp_path, index_dir=empty) as server:
        health = httpx.get(server.api("/api/health"), timeout=10)
        assert health.status_code == 503 and "make index" in health.text
        r = ask(server, {"question": Q_STAFF})
        assert r.status_code == 503 and "make index" in r.json()["error"]
        config = json.dumps(httpx.get(server.api("/config"), timeout=10).json(),
                            ensure_ascii=False)
        assert "问答服务暂不可用" in config and "make index" in config
        assert "Traceback" not in config


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
