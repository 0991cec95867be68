"""Who can reach planqa, and what their input can reach.

* `python app.py` with no --host and no PLANQA_HOST listens on 127.0.0.1 only (the
  kernel's socket table says so, not just the printed URL);
* the bearer token (PLANQA_API_TOKEN) is compared in constant time, guards every
  JSON route that does work, and not /api/health (test_webapp covers the basic
  401/200 cases; here: near-miss tokens, schemes, /api/feedback, no echo);
* with PLANQA_AUTH, Gradio's own API needs the login too;
* no user input reaches a file path or a shell: hostile questions and feedback are
  answered or stored as text, and the package has no shell, eval or exec outside the
  command-line tools, whose argument lists are fixed.

The bind address is checked on a real `python app.py`; everything else in-process, on
the session's app (`api`) or on one with a token or a login (`run_app`).
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from planqa.config import Settings

# `api` (a client on the session's app), `run_app` (an app with other settings), `shared_qa`
pytest_plugins = ["web_fixtures"]

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "src" / "planqa"
Q_STAFF = "事业编制要精简到多少名？"
TOKEN = "planqa-test-token-5f2c"
#: PLANQA_IDLE_TIMEOUT of the real server here (short, so the test is quick).
IDLE_TIMEOUT = 2.0


# ---------------------------------------------------------------- default bind address


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """`python app.py --port N` with neither --host nor PLANQA_HOST: the defaults."""
    from web_fixtures import STARTUP_TIMEOUT, free_port

    tmp = tmp_path_factory.mktemp("access")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PLANQA_HOST", "PLANQA_AUTH",
                                                            "PLANQA_API_TOKEN")}
    env.update(PLANQA_FEEDBACK_LOG=str(tmp / "feedback.jsonl"), PYTHONUNBUFFERED="1",
               PLANQA_IDLE_TIMEOUT=str(IDLE_TIMEOUT),
               # this checkout's code, even from another directory (PYTHONPATH may be relative)
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port)],
                            cwd=tmp, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def drain() -> None:  # never let the server block on a full pipe
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("ready at "):
                ready.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not ready.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("app.py did not become ready:\n" + "".join(lines[-40:]))
        yield {"port": port, "pid": proc.pid, "proc": proc, "lines": lines, "tmp": tmp,
               "url": f"http://127.0.0.1:{port}"}
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _listeners(port: int) -> list[tuple[str, str]]:
    """(table, local address in /proc hex) of every listening socket on `port`."""
    found = []
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                fields = row.split()
                addr, _, hexport = fields[1].partition(":")
                if int(hexport, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                    found.append((table, addr))
    return found


def test_default_bind_is_loopback_only(default_server: dict) -> None:
    ready = next(x for x in default_server["lines"] if x.startswith("ready at "))
    assert ready.strip() == f"ready at http://127.0.0.1:{default_server['port']}/"
    # the kernel's view: one IPv4 listener on 127.0.0.1 (0100007F), none on 0.0.0.0 or ::
    assert _listeners(default_server["port"]) == [("tcp", "0100007F")]
    assert httpx.get(default_server["url"] + "/api/health", timeout=10).status_code == 200


def test_settings_default_host_is_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLANQA_HOST", raising=False)
    assert Settings().host == Settings.from_env().host == "127.0.0.1"


# ---------------------------------------------------------------- user input stays text


def _canaries(tmp: Path) -> dict[str, Path]:
    return {name: tmp / f"canary-{name}" for name in ("subst", "backtick", "semicolon", "pipe")}


def _hostile_questions(tmp: Path) -> list[str]:
    c = _canaries(tmp)
    return [
        "../../etc/passwd", "../../../../../../etc/shadow", "/etc/passwd", "file:///etc/passwd",
        "..%2f..%2fetc%2fpasswd", "C:\\Windows\\System32\\config\\SAM", "~/.ssh/id_rsa",
        "$(rm -rf /)", f"$(touch {c['subst']})", f"`touch {c['backtick']}`",
        f"编制; touch {c['semicolon']}", f"编制 | touch {c['pipe']}", "`id`", "${HOME}",
        "__import__('os').system('id')", "{{ self.__init__.__globals__ }}", "%(x)s {0}",
        "事业编制要精简到多少名？../../etc/passwd", "事业编制$(id)要精简到多少名？",
    ]


def test_paths_and_shell_syntax_are_just_text(api, tmp_path: Path) -> None:
    for question in _hostile_questions(tmp_path):
        r = api.post("/api/ask", json={"question": question,
                                       "history": [["../../etc/passwd", "$(id)"]]})
        assert r.status_code == 200, (question, r.text)
        data = r.json()
        text = json.dumps(data, ensure_ascii=False)
        assert "root:x:0:0" not in text and "uid=0" not in text, question
        # every passage shown is the plan's, whatever the question named
        for c in data["citations"] + data["related"]:
            assert c["ref"] and "/etc" not in c["text"]
    r = api.post("/api/ask", json={"question": "事业编制$(id)要精简到多少名？"})
    assert r.json()["citations"][0]["ref"] == "二、2"  # answered, as text
    for name, path in _canaries(tmp_path).items():
        assert not path.exists(), f"a shell ran the {name} payload"


def test_feedback_fields_never_become_paths(api) -> None:
    log = api.feedback_log
    tmp = log.parent  # the session app's own directory, holding only its log
    hostile = str(tmp / "evil" / ".." / "evil-file")
    before = set(tmp.rglob("*"))
    r = api.post("/api/feedback", json={
        "id": hostile, "question": "../../etc/passwd", "answer": f"$(touch {hostile})",
        "vote": "useful", "comment": "`rm -rf /`", "citations": [{"ref": "../../x"}]})
    assert r.status_code == 200, r.text
    assert set(tmp.rglob("*")) - before == set()  # only the configured log was written
    last = json.loads(log.read_text("utf-8").splitlines()[-1])
    assert last["id"] == hostile[:64] and last["question"] == "../../etc/passwd"
    assert last["answer"] == f"$(touch {hostile})" and last["comment"] == "`rm -rf /`"


# ---------------------------------------------------------------- bearer token, login


def test_token_is_compared_in_constant_time() -> None:
    """The check uses hmac.compare_digest, and never == / != on the token."""
    from planqa.web import api as web_api

    source = inspect.getsource(web_api)
    assert "hmac.compare_digest(" in source
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq)
                                                 for op in node.ops):
            assert "api_token" not in ast.unparse(node), ast.unparse(node)


def test_token_near_misses_and_schemes(shared_qa, run_app, tmp_path: Path) -> None:
    with run_app(shared_qa, tmp_path, api_token=TOKEN) as client:
        def ask(auth: str | None) -> httpx.Response:
            headers = {"Authorization": auth} if auth is not None else {}
            return client.post("/api/ask", json={"question": Q_STAFF}, headers=headers)

        for auth in ("", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Bearer {TOKEN.upper()}",
                     f"Basic {TOKEN}", TOKEN, f"Bearer{TOKEN}", "Bearer", f"Token {TOKEN}"):
            r = ask(auth)
            assert r.status_code == 401, auth
            assert r.headers["www-authenticate"] == "Bearer"
            assert TOKEN not in r.text  # a refusal never echoes the secret
        assert ask(f"bearer {TOKEN}").status_code == 200  # the scheme is case-insensitive
        vote = {"question": Q_STAFF, "answer": "a", "vote": "useful"}
        assert client.post("/api/feedback", json=vote).status_code == 401
        ok = client.post("/api/feedback", json=vote,
                         headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert client.get("/api/health").status_code == 200


def test_login_guards_gradio_api_too(shared_qa, run_app, tmp_path: Path) -> None:
    with run_app(shared_qa, tmp_path, auth="staff:pa55word") as client:
        r = client.post("/gradio_api/call/ask", json={"data": [Q_STAFF, []]})
        assert r.status_code == 401
        assert client.get("/gradio_api/info").status_code == 401


# ---------------------------------------------------------------- no shell, no eval


#: Modules that may start processes: command-line tools and the test server starter,
#: with fixed argument lists.
PROCESS_TOOLS = {"cli.py", "tools/measure.py", "tests/server.py"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_ATTRS = {("os", "system"), ("os", "popen"), ("os", "execv"), ("os", "execvp"),
                   ("os", "execve"), ("os", "spawnl"), ("os", "spawnv"), ("os", "posix_spawn"),
                   ("pickle", "loads"), ("pickle", "load"), ("marshal", "loads")}


def _modules() -> list[Path]:
    """The runtime package, the tools beside it (bench, load) and the server starter."""
    found = [*sorted(PACKAGE.rglob("*.py")), *sorted((REPO / "tools").glob("*.py")),
             REPO / "tests" / "server.py"]
    assert {"web/api.py", "chain.py", "tools/load.py"} <= {_name(p) for p in found}
    return found


def _name(path: Path) -> str:
    base = PACKAGE if path.is_relative_to(PACKAGE) else REPO
    return path.relative_to(base).as_posix()


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_no_shell_eval_or_exec(path: Path) -> None:
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    for node in ast.walk(tree):
        where = f"{_name(path)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""])
            for name in names:
                if name.split(".")[0] in ("subprocess", "pty", "pickle", "marshal"):
                    assert _name(path) in PROCESS_TOOLS and name == "subprocess", where
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name):
            assert func.id not in FORBIDDEN_CALLS, where
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            assert (func.value.id, func.attr) not in FORBIDDEN_ATTRS, where
            if func.value.id == "subprocess":
                # an argument list (a literal, or a variable holding one), never a
                # command string, never through a shell
                assert node.args and isinstance(node.args[0], ast.List | ast.Name), where
                assert all(k.arg != "shell" for k in node.keywords), where


# ---------------------------------------------------------------- one access model

LOGIN = ("staff", "pa55word")
#: Each credential setting, and the headers that carry its credential.
SETTINGS = {
    "token": ({"api_token": TOKEN}, {"Authorization": f"Bearer {TOKEN}"}),
    "login": ({"auth": ":".join(LOGIN)}, {"Authorization": "Basic c3RhZmY6cGE1NXdvcmQ="}),
    "both": ({"api_token": TOKEN, "auth": ":".join(LOGIN)}, {}),
}


def app_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route the app serves, read from the app itself
    (mounts walked into), path parameters filled with "x"."""
    import re

    from starlette.routing import Mount, Route

    found: list[tuple[str, str]] = []

    def walk(routes, prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount):
                walk(route.routes, prefix + route.path)
            elif hasattr(route, "original_router"):  # FastAPI's include_router
                context = getattr(route, "include_context", None)
                walk(route.original_router.routes, prefix + getattr(context, "prefix", ""))
            elif isinstance(route, Route) or hasattr(route, "methods"):
                path = re.sub(r"\{[^}]+\}", "x", prefix + route.path) or "/"
                found.extend((m, path) for m in sorted(route.methods or ()) if m != "HEAD")

    walk(app.routes, "")
    return sorted(set(found))


def expected(method: str, path: str, token: bool) -> set[int] | None:
    """The statuses a request without a credential may get when one is configured
    (None: any status but 401 — the login page and what draws it, and health).

    With a token, /v1 and /retrieval refuse in their own protocol's shape (OpenAI's
    401, Dify's 403 with 1001/1002), or 404/405 for a path or method they do not serve:
    never 200."""
    from planqa.web.security import SELF_AUTH_PREFIXES, Guard

    if path.startswith("/gradio_api") and path.rstrip("/").endswith(("/upload",
                                                                     "/upload_progress")):
        return {403}
    if token and path.startswith(SELF_AUTH_PREFIXES):
        return {401, 403, 404, 405}
    return None if Guard.is_public(path, method) else {401}


@pytest.fixture(scope="module")
def guarded_apps(shared_qa, tmp_path_factory: pytest.TempPathFactory):
    """A client per credential setting (module scope: each app is built once)."""
    from web_fixtures import app_client

    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(app_client(
            shared_qa, tmp_path_factory.mktemp(f"access-{name}"), **over))
            for name, (over, _) in SETTINGS.items()}


@pytest.mark.parametrize("setting", SETTINGS)
def test_every_route_is_guarded_under_each_setting(guarded_apps, setting: str) -> None:
    """Walk every route the app has (Gradio's and the JSON API's, read from the app):
    without a credential each answers 401 (uploads 403) unless it only draws the login
    page; PLANQA_API_TOKEN alone used to leave Gradio's run/call/queue/upload open, and
    PLANQA_AUTH alone /api/ask and /api/feedback."""
    client = guarded_apps[setting]
    routes = app_routes(client.app)
    paths = {p for _, p in routes}
    assert {"/api/ask", "/api/feedback", "/gradio_api/run/x", "/gradio_api/call/v2/x",
            "/gradio_api/queue/join", "/gradio_api/upload", "/config"} <= paths
    table = {}
    for method, path in routes:
        r = client.request(method, path, json={"data": [Q_STAFF, []]}
                           if method in ("POST", "PUT", "PATCH") else None)
        table[method, path] = r.status_code
        want = expected(method, path, token="api_token" in SETTINGS[setting][0])
        if want is None:
            assert r.status_code != 401, (method, path, r.text[:200])
        else:
            assert r.status_code in want, (method, path, r.status_code, r.text[:200])
        assert r.status_code < 500, (method, path, r.text[:200])
    guarded = [k for k, v in table.items() if v == 401]
    assert len(guarded) > 40, guarded  # the walk reached Gradio's routes, not only ours


@pytest.mark.parametrize("setting", ["token", "login"])
def test_the_configured_credential_opens_the_api(guarded_apps, setting: str) -> None:
    client = guarded_apps[setting]
    headers = SETTINGS[setting][1]
    r = client.post("/api/ask", json={"question": Q_STAFF}, headers=headers)
    assert r.status_code == 200 and r.json()["citations"][0]["ref"] == "二、2"
    vote = {"question": Q_STAFF, "answer": "a", "vote": "useful"}
    assert client.post("/api/feedback", json=vote, headers=headers).status_code == 200
    # and Gradio's API, whose own check reads only the page's login cookie
    run = client.post("/gradio_api/run/ask", json={"data": [Q_STAFF, [], None]},
                      headers=headers)
    assert run.status_code == 200, run.text[:200]
    assert client.get("/gradio_api/info", headers=headers).status_code == 200
    wrong = {"Authorization": headers["Authorization"][:-2] + "xx"}
    assert client.get("/gradio_api/info", headers=wrong).status_code == 401


def test_the_token_alone_is_the_page_password(guarded_apps) -> None:
    """With only PLANQA_API_TOKEN, the page's login takes the token as password, and its
    cookie then opens Gradio's API (which had no guard at all)."""
    import httpx as _httpx

    client = guarded_apps["token"]
    cookies_before = dict(client.cookies)
    try:
        assert client.post("/login", data={"username": "anyone",
                                           "password": "wrong"}).status_code == 400
        assert client.post("/gradio_api/run/ask", json={"data": [Q_STAFF, []]}
                           ).status_code == 401
        ok = client.post("/login", data={"username": "anyone", "password": TOKEN})
        assert ok.status_code == 200
        assert client.get("/config").status_code == 200
    finally:
        client.cookies = _httpx.Cookies(cookies_before)


def test_cross_origin_and_non_json_writes_are_refused(shared_qa, run_app,
                                                      tmp_path: Path) -> None:
    """A page on another origin, logged in by the browser's cookie, sent a no-cors
    text/plain POST and a feedback line was written."""
    with run_app(shared_qa, tmp_path, auth=":".join(LOGIN)) as client:
        assert client.post("/login", data=dict(zip(("username", "password"), LOGIN,
                                                   strict=True))).status_code == 200
        body = json.dumps({"question": Q_STAFF, "answer": "a", "vote": "useful"})
        log = client.feedback_log
        before = log.read_text("utf-8") if log.exists() else ""
        for headers, status in [
            ({"Origin": "http://127.0.0.1:9999", "Content-Type": "text/plain"}, 403),
            ({"Origin": "null", "Content-Type": "application/json"}, 403),
            ({"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, 403),
            ({"Content-Type": "text/plain"}, 415),
            ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ]:
            r = client.post("/api/feedback", content=body, headers=headers)
            assert r.status_code == status, (headers, r.text)
        assert (log.read_text("utf-8") if log.exists() else "") == before
        same = client.post("/api/feedback", content=body, headers={
            "Origin": "http://testserver", "Content-Type": "application/json"})
        assert same.status_code == 200, same.text
        r = client.post("/gradio_api/run/ask", json={"data": [Q_STAFF, []]},
                        headers={"Origin": "http://evil.example"})
        assert r.status_code == 403


def test_logins_are_rate_limited_per_client(shared_qa, run_app, tmp_path: Path) -> None:
    """300 wrong passwords at 600/s met no brake; now the 11th failure within a minute
    gets 429 with Retry-After, and so does the right password until it passes."""
    from planqa.web.security import LOGIN_FAILURES

    with run_app(shared_qa, tmp_path, auth=":".join(LOGIN)) as client:
        codes = [client.post("/login", data={"username": "staff", "password": f"guess{i}"}
                             ).status_code for i in range(LOGIN_FAILURES + 5)]
        assert codes == [400] * LOGIN_FAILURES + [429] * 5
        blocked = client.post("/login", data=dict(zip(("username", "password"), LOGIN,
                                                      strict=True)))
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        basic = client.get("/config", headers={"Authorization": "Basic c3RhZmY6cGE1NXdvcmQ="})
        assert basic.status_code == 429  # any credential from this client waits too


def test_page_sends_security_headers_and_health_no_paths(api, shared_qa, run_app,
                                                         tmp_path: Path) -> None:
    page = api.get("/")
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    empty = tmp_path / "no-index"
    empty.mkdir()
    with run_app(shared_qa.__class__(Settings.from_env().replace(index_dir=empty,
                                                                 llm_base_url="")),
                 tmp_path, index_dir=empty) as client:
        health = client.get("/api/health")
        assert health.status_code == 503
        assert str(tmp_path) not in health.text and "/" not in health.json()["error"]
        assert "make index" in health.json()["error"]


# ---------------------------------------------------------------- the real server: floods, SIGTERM


def test_idle_connections_are_closed_and_health_stays_up(default_server: dict) -> None:
    """300 connections that send one header line and then nothing took the service down
    (every request got 503 while they stayed open; none was closed in 90 s)."""
    import socket

    socks = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", default_server["port"]), timeout=5)
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            socks.append(s)
        t0 = time.monotonic()
        health = httpx.get(default_server["url"] + "/api/health", timeout=10)
        assert health.status_code == 200, health.text
        page = httpx.get(default_server["url"] + "/", timeout=10)
        assert page.status_code == 200
        closed = 0
        for s in socks:  # the server closes each within the idle timeout (plus slack)
            s.settimeout(max(0.1, IDLE_TIMEOUT + 5 - (time.monotonic() - t0)))
            with contextlib.suppress(ConnectionResetError):
                closed += s.recv(1024) == b""
        assert closed == len(socks)
        assert time.monotonic() - t0 < IDLE_TIMEOUT + 5
    finally:
        for s in socks:
            s.close()


def test_sigterm_exits_promptly_with_a_tab_open(default_server: dict) -> None:
    """Runs last (it stops the module's server). With a browser tab's heartbeat stream
    open, SIGTERM closed the listener but the process lived on for over 120 s."""
    import signal

    proc = default_server["proc"]
    url = default_server["url"] + "/gradio_api/heartbeat/test-tab-1"
    opened = threading.Event()

    def tab() -> None:
        with contextlib.suppress(httpx.HTTPError), httpx.stream("GET", url,
                                                                timeout=60) as r:
            opened.set()
            for _ in r.iter_bytes():
                pass

    threading.Thread(target=tab, daemon=True).start()
    assert opened.wait(10)
    time.sleep(0.5)
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    took = time.monotonic() - t0
    output = "".join(default_server["lines"][-20:])
    assert took < 8, f"exited after {took:.1f} s"
    assert proc.returncode in (0, -signal.SIGTERM), output  # uvicorn re-raises SIGTERM
    assert "Cancel" not in output and "Exception" not in output, output  # streams ended
