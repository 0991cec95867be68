"""The server: `create_app` puts the JSON API and the Gradio page on one FastAPI app,
`serve` runs it with uvicorn and prints "ready at …" once it accepts connections."""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gradio as gr
from fastapi import FastAPI

from planqa import __version__
from planqa.config import Settings
from planqa.errors import ConfigError
from planqa.web.api import add_api_routes
from planqa.web.dify import add_dify_routes
from planqa.web.feedback import FeedbackLog
from planqa.web.openai_compat import add_openai_routes
from planqa.web.security import Guard, gradio_session_cookie, gradio_session_user
from planqa.web.service import ChatService
from planqa.web.ui import add_static_routes, build_blocks, css, head, theme

if TYPE_CHECKING:
    from planqa.chain import PlanQA

logger = logging.getLogger(__name__)

#: Open connections uvicorn serves at once. Idle ones are closed after PLANQA_IDLE_TIMEOUT;
#: the guard (web.security.MAX_PENDING) refuses bursts of requests, health excepted.
MAX_CONNECTIONS = 4096
#: Seconds SIGTERM waits for requests in flight before open streams (a browser tab's
#: heartbeat) are cancelled and the process exits.
SHUTDOWN_GRACE = 3.0


def parse_auth(auth: str) -> tuple[str, str] | None:
    """PLANQA_AUTH ("user:password") as Gradio's login pair; None when it is unset."""
    if not auth:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise ConfigError('PLANQA_AUTH must look like "user:password"')
    return user, password


def page_login(settings: Settings) -> tuple[str, str] | Callable[[str, str], bool] | None:
    """What Gradio's login form accepts: PLANQA_AUTH; with only PLANQA_API_TOKEN set, the
    token as the password (any user name), so the token guards the page as well."""
    login = parse_auth(settings.auth)
    if login or not settings.api_token:
        return login
    token = settings.api_token.encode()

    def token_login(user: str, password: str) -> bool:
        return hmac.compare_digest(password.encode(), token)

    return token_login


def create_app(qa: PlanQA | None = None, settings: Settings | None = None) -> FastAPI:
    """The FastAPI app with the JSON routes and the Gradio chat mounted at "/".

    Loads model and index before returning (an unavailable index is shown on the page
    and answered with 503 by the API, not raised). `qa` defaults to the library built
    from `settings`, its queries batched for many users."""
    settings = settings or Settings.from_env()
    login = parse_auth(settings.auth)  # a bad setting fails before the model loads
    feedback = FeedbackLog(settings.feedback_log, max_bytes=settings.feedback_log_max_bytes)
    feedback.check()
    service = ChatService(qa=qa, settings=settings, feedback=feedback)
    service.warm_up()

    # The OpenAPI schema is served for tools that import the API; no docs page (those
    # load scripts from other sites).
    app = FastAPI(title="planqa", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json")
    app.state.service = service
    add_api_routes(app, service)  # before the mount: "/" would shadow them
    add_static_routes(app)  # the chat page's script
    add_openai_routes(app, service)  # /v1/models, /v1/chat/completions
    add_dify_routes(app, service)  # POST /retrieval
    # One guard around every route, Gradio's included (see web/security.py).
    app.state.closing = threading.Event()  # set by serve() on SIGTERM: streams end
    app.add_middleware(Guard, api_token=settings.api_token, login=login,
                       session_user=gradio_session_user(app),
                       session_cookie=gradio_session_cookie(app),
                       request_timeout=settings.request_timeout, closing=app.state.closing)
    guarded = bool(settings.auth or settings.api_token)
    return gr.mount_gradio_app(
        app, build_blocks(service), path="/",
        auth=page_login(settings),
        auth_message=(("请登录后使用方案问答。" if settings.auth else
                       "请输入访问令牌（用户名任意）后使用方案问答。") if guarded else None),
        max_file_size=0,  # uploads are off: the chat takes text only
        root_path=settings.root_path or None,
        theme=theme(), css=css(), head=head(), footer_links=[], run_history=False, show_error=True,
        ssr_mode=False, pwa=False, mcp_server=False,
    )


def serve(settings: Settings | None = None) -> None:
    """Build the app (model and index loaded), then serve it with uvicorn until stopped.

    Prints "ready at http://host:port/…" once the socket accepts connections."""
    import uvicorn

    settings = settings or Settings.from_env()
    # Our own progress at INFO; libraries (faiss, sentence-transformers) only when they warn.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("planqa.web").setLevel(logging.INFO)
    app = create_app(settings=settings)
    service: ChatService = app.state.service
    url = f"http://{settings.host}:{settings.port}/"
    if settings.root_path:  # the proxy strips the prefix: the server itself answers at "/"
        url += f" (public path {settings.root_path.rstrip('/')}/ behind the reverse proxy)"

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                status = "" if service.ready else " (index unavailable: run `make index`)"
                print(f"ready at {url}{status}", flush=True)

        async def shutdown(self, sockets: Any = None) -> None:
            stop_streams(app)
            await super().shutdown(sockets)
            service.close()

    config = uvicorn.Config(app, host=settings.host, port=settings.port,
                            root_path=settings.root_path, log_level="warning",
                            proxy_headers=True, limit_concurrency=MAX_CONNECTIONS,
                            http=idle_closing_protocol(settings.idle_timeout),
                            timeout_graceful_shutdown=SHUTDOWN_GRACE)
    one_line_errors()
    _Server(config).run()


def stop_streams(app: FastAPI) -> None:
    """End the open streams so shutdown need not wait for browser tabs to close: the
    guard hands them a disconnect, and Gradio's heartbeats stop on their app's
    stop_event."""
    from starlette.routing import Mount

    app.state.closing.set()
    for route in app.routes:
        stop = getattr(getattr(route, "app", None), "stop_event", None)
        if isinstance(route, Mount) and stop is not None:
            stop.set()


def idle_closing_protocol(timeout: float) -> type:
    """uvicorn's h11 protocol, closing a connection that has not sent a whole request
    head within `timeout` s of connecting or of its last request (slowloris)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class IdleClosingH11(H11Protocol):
        _head_timer: Any = None

        def _waiting(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            if self._head_timer is None and self._waiting():
                self._head_timer = self.loop.call_later(timeout, self._expire)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _expire(self) -> None:
            self._head_timer = None
            if self._waiting() and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._waiting():
                self._arm()
            else:
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return IdleClosingH11


class _OneLine(logging.Filter):
    """Tracebacks as one line, and at most 20 error lines per 10 s (a client sending
    malformed requests must not fill the disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def filter(self, record: logging.LogRecord) -> bool:
        import time

        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(exc).__name__}: {str(exc)[:200]})"
            record.args, record.exc_info, record.exc_text = None, None, None
        if record.levelno < logging.WARNING:
            return True
        now = time.monotonic()
        self.times = [t for t in self.times if now - t < 10.0]
        if len(self.times) >= 20:
            return False
        self.times.append(now)
        return True


class _QuietTraceback:
    """Stands in for the `traceback` module inside Gradio's modules: its print_exc()
    (a 4–7 KB traceback on stderr per malformed call) becomes one rate-limited log line."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def print_exc(self, *args: Any, **kwargs: Any) -> None:
        import sys

        exc = sys.exception()
        logging.getLogger("gradio").warning("a Gradio call failed: %s: %s",
                                            type(exc).__name__, str(exc)[:200])


def one_line_errors() -> None:
    """Install _OneLine on the handlers of the root and uvicorn loggers, and make
    Gradio's printed tracebacks go through them as one line."""
    import importlib
    import traceback

    flt = _OneLine()
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(flt)
    for name in ("gradio.routes", "gradio.queueing", "gradio.utils", "gradio.route_utils"):
        module = importlib.import_module(name)
        if getattr(module, "traceback", None) is traceback:
            module.traceback = _QuietTraceback(traceback)


__all__ = ["MAX_CONNECTIONS", "SHUTDOWN_GRACE", "create_app", "idle_closing_protocol",
           "page_login", "parse_auth", "serve", "stop_streams"]
