"""The guard in front of every route: one ASGI middleware for access, limits and headers.

Wrapped around the whole app (JSON API, Gradio and whatever is added later), it reads no
route list: every path is guarded unless it is on the short public list below (what the
login page needs, and /api/health). Per request, in this order:

* at most MAX_PENDING requests waiting for their response's first byte (streams free
  their slot once they start); more get 503 — /api/health is never refused;
* uploads are off (the app takes none): 403;
* unsafe methods from another origin (Origin / Sec-Fetch-Site) get 403;
* with any credential configured (PLANQA_AUTH, PLANQA_API_TOKEN) a request needs one of:
  the bearer token, HTTP Basic with the login, or the page's login cookie — else 401;
  clients that keep failing are refused with 429 for a while (login rate limit);
* unsafe methods on /api/* with a body need `Content-Type: application/json` (or the
  token): 415;
* bodies over MAX_BODY_BYTES get 413, counted as they arrive;
* no response start within the request time limit: 504;
* an exception that escapes a route is one log line and a 400 (Gradio's routes raise on
  malformed calls) or 500 (/api/*), never a traceback per request; Gradio's own 500 for a
  call it cannot run becomes 400;
* every response carries the security headers (CSP, frame-ancestors, nosniff).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from planqa.web.api import MAX_BODY_BYTES, BadRequest

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Paths anyone may reach with a credential configured: what draws the login page,
#: the login itself, and health (for load balancers). Everything else is guarded.
PUBLIC_PATHS = frozenset({"/", "/login", "/login/", "/logout", "/favicon.ico", "/robots.txt",
                          "/theme.css", "/gradio_api/theme.css", "/manifest.json",
                          "/api/health",
                          "/openapi.json"})  # the API's description: tools import it first
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/gradio_api/static/",
                   "/planqa-static/")  # the page's own script (web/ui.py)
#: Uploads are off: the chat takes text only.
UPLOAD_PATHS = ("/upload", "/upload_progress")
#: Routes that check the bearer token themselves and refuse in their protocol's own
#: shape (OpenAI's error object, Dify's 1001/1002): with a token set, the guard lets a
#: request without a valid one through to them rather than answer planqa's 401.
SELF_AUTH_PREFIXES = ("/v1/", "/retrieval")
#: Requests that may wait for their response's first byte at once (answers queue for 8
#: workers; beyond this a burst is refused quickly instead of piling up).
MAX_PENDING = 256
#: Login rate limit: this many failed credentials per client within the window, then 429.
LOGIN_FAILURES = 10
LOGIN_WINDOW = 60.0
#: Seconds beyond PLANQA_REQUEST_TIMEOUT before the guard answers 504 itself (the
#: routes' own limit answers first; this catches slow bodies and Gradio's routes).
TIMEOUT_MARGIN = 5.0

#: A CSP Gradio's page runs under: its scripts and styles are inline and same-origin;
#: nothing is loaded from elsewhere, and no site may frame the page.
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
       "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
       "media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; "
       "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = ((b"content-security-policy", CSP.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"))


class BodyTooLarge(BadRequest):
    """The request body passed MAX_BODY_BYTES (counted, whatever Content-Length said)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit // 1024} KB", 413)


class LoginLimiter:
    """Failed credentials per client; LOGIN_FAILURES within LOGIN_WINDOW s block it
    until the oldest failure leaves the window."""

    def __init__(self, failures: int = LOGIN_FAILURES, window: float = LOGIN_WINDOW) -> None:
        self.failures, self.window = failures, window
        self._seen: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._seen.setdefault(client, deque())
        while times and now - times[0] > self.window:
            times.popleft()
        return times

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may now."""
        now = time.monotonic()
        times = self._recent(client, now)
        if len(times) < self.failures:
            return 0.0
        return max(0.0, self.window - (now - times[0]))

    def failed(self, client: str) -> None:
        """Record one failed attempt (memory stays bounded: old clients are dropped)."""
        now = time.monotonic()
        self._recent(client, now).append(now)
        if len(self._seen) > 10_000:
            for key in [k for k, v in self._seen.items() if not v or now - v[-1] > self.window]:
                del self._seen[key]


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return ""


def _json(status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()
          ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"error": message}, ensure_ascii=False).encode()
    return status, [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), *headers], body


class Guard:
    """The ASGI middleware described in the module docstring.

    `session_user(cookies)` names the user of a page login cookie (None: not logged in);
    `api_token` and `login` are the configured credentials ("" / None: not set)."""

    def __init__(self, app: ASGIApp, *, api_token: str = "",
                 login: tuple[str, str] | None = None,
                 session_user: Callable[[dict[str, str]], str | None] = lambda c: None,
                 session_cookie: Callable[[], str | None] = lambda: None,
                 request_timeout: float = 30.0, max_body: int = MAX_BODY_BYTES,
                 max_pending: int = MAX_PENDING,
                 closing: threading.Event | None = None) -> None:
        self.app, self.api_token, self.login = app, api_token, login
        #: Set when the server shuts down: open streams (a tab's heartbeat, the queue's
        #: event stream) then read a disconnect and end, so SIGTERM does not wait on them.
        self.closing = closing or threading.Event()
        self.session_user = session_user
        #: "name=value" of a page login cookie, added for clients that sent the token or
        #: HTTP Basic, so Gradio's own login check (cookie only) lets them in too.
        self.session_cookie = session_cookie
        self.timeout = request_timeout + TIMEOUT_MARGIN
        self.max_body, self.max_pending = max_body, max_pending
        self.pending = 0
        self.limiter = LoginLimiter()
        self._log_times: deque[float] = deque()

    # ------------------------------------------------------------ checks

    @property
    def guarded(self) -> bool:
        return bool(self.api_token or self.login)

    @staticmethod
    def is_public(path: str, method: str) -> bool:
        if path == "/api/health" or (path.startswith("/api/") and method == "OPTIONS"):
            return method in ("GET", "HEAD", "OPTIONS")  # OPTIONS only says what is allowed
        if path in ("/login", "/login/"):
            return method == "POST"
        return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)

    def _token_ok(self, scope: Scope) -> bool:
        scheme, _, token = _header(scope, b"authorization").partition(" ")
        return bool(self.api_token) and scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.api_token.encode())

    def credential(self, scope: Scope) -> bool | None:
        """True: a valid credential; False: one was presented and is wrong; None: none."""
        auth = _header(scope, b"authorization")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer":
            return self._token_ok(scope)
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True
                                                     ).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return self.login is not None and hmac.compare_digest(
                f"{user}:{password}".encode(), ":".join(self.login).encode())
        cookies = _cookies(_header(scope, b"cookie"))
        if cookies and self.session_user(cookies) is not None:
            return True
        return False if auth else None

    @staticmethod
    def cross_origin(scope: Scope) -> bool:
        """An unsafe request sent by a page of another origin (CSRF)."""
        site = _header(scope, b"sec-fetch-site")
        if site in ("cross-site", "same-site"):
            return True
        origin = _header(scope, b"origin")
        if not origin:
            return False  # not from a browser page (curl, the API's clients)
        hosts = {_header(scope, b"host"), *_header(scope, b"x-forwarded-host").split(",")}
        _, _, netloc = origin.partition("://")
        return origin == "null" or netloc not in {h.strip() for h in hosts if h.strip()}

    # ------------------------------------------------------------ the middleware

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        root = scope.get("root_path", "")
        path = scope["path"]
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        method = scope["method"]
        client = (scope.get("client") or ("?", 0))[0]

        refusal = self._refusal(scope, path, method, client)
        if refusal is not None:
            await _respond(send, *refusal)
            return
        if (self.guarded and not path.startswith("/api/")
                and _header(scope, b"authorization") and self.credential(scope)):
            cookie = self.session_cookie()
            if cookie:
                old = _header(scope, b"cookie")
                scope = {**scope, "headers": [
                    *(h for h in scope["headers"] if h[0] != b"cookie"),
                    (b"cookie", (f"{old}; {cookie}" if old else cookie).encode())]}
        await self._run(scope, receive, send, path, method, client)

    def _refusal(self, scope: Scope, path: str, method: str, client: str
                 ) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        if self.pending >= self.max_pending and path != "/api/health":
            return _json(503, "server busy; try again shortly", ((b"retry-after", b"1"),))
        if path.startswith("/gradio_api") and path.rstrip("/").endswith(UPLOAD_PATHS):
            return _json(403, "uploads are off")
        if method in UNSAFE_METHODS and self.cross_origin(scope):
            return _json(403, "cross-origin request refused")
        if self.guarded:
            presented = self.credential(scope)
            is_login = path in ("/login", "/login/") and method == "POST"
            if (presented is not None or is_login) and self.limiter.retry_after(client):
                wait = str(int(self.limiter.retry_after(client)) + 1).encode()
                return _json(429, "too many failed logins; wait and try again",
                             ((b"retry-after", wait),))
            if presented is False:
                self.limiter.failed(client)
            self_auth = bool(self.api_token) and path.startswith(SELF_AUTH_PREFIXES)
            if not presented and not self_auth and not self.is_public(path, method):
                schemes = ", ".join(([] if not self.api_token else ["Bearer"])
                                    + ([] if not self.login else ['Basic realm="planqa"']))
                what = ("login or bearer token required" if self.api_token and self.login
                        else "login required" if self.login
                        else "missing or invalid bearer token")
                return _json(401, what,
                             ((b"www-authenticate", schemes.encode()),))
        declared = _header(scope, b"content-length").strip()
        if declared.isdigit() and int(declared) > self.max_body:
            return _json(413, f"request body over {self.max_body // 1024} KB")
        has_body = (declared not in ("", "0")
                    or bool(_header(scope, b"transfer-encoding")))
        if (path.startswith("/api/") and method in UNSAFE_METHODS and has_body
                and not self._token_ok(scope)):  # an empty body can carry no write
            kind = _header(scope, b"content-type").split(";")[0].strip().lower()
            if kind != "application/json":
                return _json(415, "Content-Type must be application/json")
        return None

    async def _run(self, scope: Scope, receive: Receive, send: Send, path: str,
                   method: str, client: str) -> None:
        size = 0
        started = asyncio.Event()
        status_seen = 0

        too_large = False
        deadlines: list[asyncio.Timeout] = []

        async def limited_receive() -> Message:
            nonlocal size, too_large
            if self.closing.is_set():
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > self.max_body:
                    too_large = True
                    raise BodyTooLarge(self.max_body)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal status_seen
            if too_large:  # a route caught BodyTooLarge (FastAPI makes it a 400): say 413
                if message["type"] == "http.response.start" and not started.is_set():
                    started.set()
                    self.pending -= 1
                    status_seen = 413
                    await _respond(send, *_json(413, str(BodyTooLarge(self.max_body))))
                return
            if message["type"] == "http.response.start":
                status_seen = message["status"]
                if status_seen == 500 and not path.startswith("/api/"):
                    # Gradio answers a call it cannot run (wrong arity, unknown fn_index,
                    # a missing field) with 500; our handlers catch their own faults.
                    status_seen = 400
                message = {**message, "status": status_seen,
                           "headers": [*message.get("headers", ()), *SECURITY_HEADERS]}
                if not started.is_set():
                    started.set()
                    self.pending -= 1
                    if deadlines:
                        deadlines[0].reschedule(None)  # streams may run on
            await send(message)

        self.pending += 1
        try:
            # In this task (no extra hops: a client that half-closes after sending must
            # still get its answer); the deadline is lifted once the response starts.
            async with asyncio.timeout(self.timeout) as deadline:
                deadlines.append(deadline)
                await self.app(scope, limited_receive, guarded_send)
        except TimeoutError:
            if not deadlines[0].expired():
                raise
            if not started.is_set():  # nothing sent within the time limit
                await _respond(send, *_json(504, "no response within the time limit"))
        except BodyTooLarge as exc:
            if not started.is_set():
                await _respond(send, *_json(413, str(exc)))
        except Exception as exc:  # a route raised: one line, a 4xx for malformed calls
            self._log_error(method, path, exc)
            if not started.is_set():
                status = 500 if path.startswith("/api/") else 400
                await _respond(send, *_json(status, "request could not be processed"
                                            if status == 400 else "internal error"))
        finally:
            if not started.is_set():
                self.pending -= 1
                started.set()
            if (path in ("/login", "/login/") and method == "POST"
                    and status_seen in (400, 401)):
                self.limiter.failed(client)

    def _log_error(self, method: str, path: str, exc: Exception) -> None:
        """One line per failed request, at most 10 lines per 10 s (a fuzzer must not
        fill the disk with tracebacks)."""
        now = time.monotonic()
        while self._log_times and now - self._log_times[0] > 10.0:
            self._log_times.popleft()
        if len(self._log_times) >= 10:
            return
        self._log_times.append(now)
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = (f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
                 if tb else "")
        logger.warning("%s %s failed: %s: %s%s", method, path[:200], type(exc).__name__,
                       str(exc)[:200], where)


def _cookies(header: str) -> dict[str, str]:
    cookies = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            cookies[name] = value
    return cookies


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]],
                   body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


def gradio_session_user(app: Any) -> Callable[[dict[str, str]], str | None]:
    """A `session_user` for Guard reading the login cookies of the Gradio app mounted
    on `app` (found lazily among its routes: the mount is made after the guard)."""

    def user(cookies: dict[str, str]) -> str | None:
        from starlette.routing import Mount

        for route in app.routes:
            sub = getattr(route, "app", None)
            if isinstance(route, Mount) and hasattr(sub, "tokens") and hasattr(sub, "cookie_id"):
                for name in (f"access-token-{sub.cookie_id}",
                             f"access-token-unsecure-{sub.cookie_id}"):
                    if cookies.get(name) in sub.tokens:
                        return sub.tokens[cookies[name]]
        return None

    return user


def gradio_session_cookie(app: Any) -> Callable[[], str | None]:
    """A `session_cookie` for Guard: one login token minted in the mounted Gradio app
    (for the user "api"), as the cookie Gradio's login check reads."""
    minted: dict[str, str] = {}

    def cookie() -> str | None:
        import secrets

        from starlette.routing import Mount

        for route in app.routes:
            sub = getattr(route, "app", None)
            if isinstance(route, Mount) and hasattr(sub, "tokens") and hasattr(sub, "cookie_id"):
                if "token" not in minted or minted["token"] not in sub.tokens:
                    minted["token"] = secrets.token_urlsafe(24)
                    sub.tokens[minted["token"]] = "api"
                return f"access-token-unsecure-{sub.cookie_id}={minted['token']}"
        return None

    return cookie


__all__ = ["CSP", "MAX_PENDING", "PUBLIC_PATHS", "BodyTooLarge", "Guard", "LoginLimiter",
           "gradio_session_cookie", "gradio_session_user"]
