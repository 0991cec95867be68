"""The server: `create_app` puts the JSON API and the Gradio page on one FastAPI app,
`serve` runs it with uvicorn and prints "ready at …" once it accepts connections."""

from __future__ import annotations

import logging
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
from planqa.web.service import ChatService
from planqa.web.ui import add_static_routes, build_blocks, css, head, theme

if TYPE_CHECKING:
    from planqa.chain import PlanQA

logger = logging.getLogger(__name__)

#: Open connections uvicorn serves at once; more get 503 at once instead of piling up.
MAX_CONNECTIONS = 256


def parse_auth(auth: str) -> tuple[str, str] | None:
    """PLANQA_AUTH ("user:password") as Gradio's login pair; None when it is unset."""
    if not auth:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise ConfigError('PLANQA_AUTH must look like "user:password"')
    return user, password


def create_app(qa: PlanQA | None = None, settings: Settings | None = None) -> FastAPI:
    """The FastAPI app with the JSON routes and the Gradio chat mounted at "/".

    Loads model and index before returning (an unavailable index is shown on the page
    and answered with 503 by the API, not raised). `qa` defaults to the library built
    from `settings`, its queries batched for many users."""
    settings = settings or Settings.from_env()
    login = parse_auth(settings.auth)  # a bad setting fails before the model loads
    feedback = FeedbackLog(settings.feedback_log)
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
    return gr.mount_gradio_app(
        app, build_blocks(service), path="/",
        auth=login,
        auth_message="请登录后使用方案问答。" if settings.auth else None,
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

    config = uvicorn.Config(app, host=settings.host, port=settings.port,
                            root_path=settings.root_path, log_level="warning",
                            proxy_headers=True, limit_concurrency=MAX_CONNECTIONS)
    _Server(config).run()


__all__ = ["MAX_CONNECTIONS", "create_app", "parse_auth", "serve"]
