"""The JSON API: /api/ask, /api/feedback, /api/health — reading and checking request
bodies, and the one place where an exception becomes an HTTP response (`error_response`).

A PlanQAError answers with its own `http_status`; anything else is a bug: logged, 500.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from planqa import __version__
from planqa.chain import MAX_HISTORY_TURNS
from planqa.errors import IndexUnavailable, InvalidQuestion, PlanQAError
from planqa.text import clean_input
from planqa.web.feedback import VOTES, feedback_record
from planqa.web.service import AnswerTimeout, ChatService

logger = logging.getLogger(__name__)

#: Largest request body /api/ask reads; more is refused with 413 before parsing.
MAX_BODY_BYTES = 64 * 1024
SCRIPTS = ("simplified", "traditional")
#: The JSON routes and their one method (another method gets 405).
ROUTES = {"ask": "POST", "feedback": "POST", "health": "GET"}


# ---------------------------------------------------------------- errors


class BadRequest(InvalidQuestion):
    """A request the API refuses with a 4xx; `http_status` says which (400 by default:
    the body is not what a client meant to send; 422: it is, but a field is wrong)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.http_status = status


class Unauthorized(PlanQAError):
    """No or a wrong bearer token (PLANQA_API_TOKEN)."""

    http_status = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}


class FeedbackNotSaved(PlanQAError):
    """The feedback log cannot be written; answering is unaffected."""

    http_status = 503


def _error(status: int, message: str, headers: dict[str, str] | None = None,
           **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def error_response(exc: Exception) -> JSONResponse:
    """The API's response for an exception, `{"error": …}` with the status it names.

    PlanQAError: its `http_status` (IndexUnavailable adds `"hint": "make index"`);
    Starlette's HTTPException (e.g. a 405 from routing): its status; anything else is
    a bug, logged with its traceback and answered 500, whatever its type."""
    if isinstance(exc, PlanQAError):
        extra = {"hint": "make index"} if isinstance(exc, IndexUnavailable) else {}
        return _error(exc.http_status, str(exc), getattr(exc, "headers", None), **extra)
    if isinstance(exc, StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), exc.headers)
    logger.error("request failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return _error(500, "internal error while answering")


_PATH = re.compile(r"(?:~|\.{1,2})?(?:/[^/\s:'\"()]+)+/?")


def without_paths(message: str) -> str:
    """`message` with each filesystem path cut to its last part ("/srv/x/index" → "index")."""
    return _PATH.sub(lambda m: m.group().rstrip("/").rsplit("/", 1)[-1], message)


Handler = Callable[[Request], Awaitable[Response]]


def errors_as(to_response: Callable[[Exception], Response]) -> Callable[[Handler], Handler]:
    """A decorator: the route's exceptions become `to_response(exc)` (never a bare 500
    page) — planqa's shape here, OpenAI's in /v1, Dify's in /retrieval."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return to_response(exc)

        return route

    return decorate


def json_errors(handler: Handler) -> Handler:
    """A route whose exceptions become `error_response`s."""
    return errors_as(error_response)(handler)


# ---------------------------------------------------------------- reading requests


async def read_body_limited(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refusing (413) more than `limit` bytes whatever Content-Length says."""
    declared = request.headers.get("content-length", "")
    if declared.strip().isdigit() and int(declared) > limit:
        raise BadRequest(f"request body over {limit // 1024} KB", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # counted, not trusted: chunked bodies have no length header
            raise BadRequest(f"request body over {limit // 1024} KB", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object (size-limited); BadRequest otherwise."""
    body = await read_body_limited(request)
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("body must be a JSON object (UTF-8)") from exc
    except RecursionError as exc:  # e.g. 30 000 nested "[": fits in 64 KB, was a 500
        raise BadRequest("body is nested too deeply") from exc
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object", 422)
    return payload


def coerce_history(history: Any) -> list[tuple[str, str]]:
    """History as [(question, answer), …] from a list of pairs or a JSON string of one;
    only the last MAX_HISTORY_TURNS (the chain's limit) are kept and checked.

    Raises BadRequest (422) for anything else."""
    if history is None or history == "":
        return []
    if isinstance(history, str):
        try:
            history = json.loads(history)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
            raise BadRequest("history must be a JSON list of [question, answer] pairs",
                             422) from exc
    if not isinstance(history, list | tuple):
        raise BadRequest("history must be a list of [question, answer] pairs", 422)
    pairs = []
    for turn in history[-MAX_HISTORY_TURNS:]:  # older turns cannot change the answer
        if (not isinstance(turn, list | tuple) or len(turn) != 2
                or not all(isinstance(x, str) for x in turn)):
            raise BadRequest("each history item must be a [question, answer] pair of strings",
                             422)
        pairs.append((turn[0], turn[1]))
    return pairs


def coerce_script(script: Any) -> str | None:
    """None, "simplified" or "traditional"; BadRequest (422) otherwise."""
    if script is None or script == "":
        return None
    if isinstance(script, str) and script.lower() in SCRIPTS:
        return script.lower()
    raise BadRequest('script must be "simplified" or "traditional"', 422)


def check_token(request: Request, api_token: str) -> None:
    """Unauthorized unless the bearer token matches `api_token` (when one is set).

    Compared in constant time, so the time taken says nothing about the token."""
    if not api_token:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                            api_token.encode()):
        raise Unauthorized("missing or invalid bearer token")


def _ask_args(payload: dict[str, Any]) -> tuple[str, list[tuple[str, str]], str | None]:
    question = payload.get("question")
    if not isinstance(question, str):
        raise BadRequest('"question" is required and must be a string', 422)
    if not clean_input(question):
        raise BadRequest('"question" is empty', 422)
    return question, coerce_history(payload.get("history")), coerce_script(payload.get("script"))


def _feedback_turn(payload: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    """(turn as the log wants it, vote, comment) from a feedback body; BadRequest if bad."""
    record = {k: payload.get(k) for k in ("question", "answer")}
    if not all(isinstance(v, str) and v.strip() for v in record.values()):
        raise BadRequest('"question" and "answer" are required strings', 422)
    vote = payload.get("vote")
    if vote not in VOTES:
        raise BadRequest(f'"vote" must be one of {", ".join(VOTES)}', 422)
    comment = payload.get("comment") or ""
    cites = payload.get("citations") or []
    if not isinstance(comment, str) or not isinstance(cites, list):
        raise BadRequest('"comment" must be a string and "citations" a list', 422)
    turn = {"id": str(payload.get("id") or uuid.uuid4().hex)[:64],
            "question": record["question"],
            "answer": {"answer": record["answer"], "found": payload.get("found"),
                       "citations": [c for c in cites if isinstance(c, dict)]}}
    return turn, vote, clean_input(comment)


# ---------------------------------------------------------------- the routes

#: The bodies the routes read (by hand, from the raw request), for the OpenAPI schema.
_HISTORY = {"oneOf": [{"type": "array", "items": {"type": "array", "items": {"type": "string"},
                                                   "minItems": 2, "maxItems": 2}},
                      {"type": "string", "description": "the same list as a JSON string"}]}
ASK_SCHEMA = {"type": "object", "required": ["question"], "properties": {
    "question": {"type": "string"}, "history": _HISTORY,
    "script": {"type": "string", "enum": list(SCRIPTS)}}}
FEEDBACK_SCHEMA = {"type": "object", "required": ["question", "answer", "vote"], "properties": {
    "question": {"type": "string"}, "answer": {"type": "string"},
    "vote": {"type": "string", "enum": list(VOTES)}, "comment": {"type": "string"},
    "id": {"type": "string"}, "found": {"type": "boolean"},
    "citations": {"type": "array", "items": {"type": "object"}}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}



def add_api_routes(app: FastAPI, service: ChatService) -> None:
    """The JSON routes on `app` (before Gradio is mounted at "/", which would shadow them)."""
    settings = service.settings

    @app.get("/api/health")
    async def health() -> JSONResponse:
        """{"status": "ok"} once model and index are loaded; 503 otherwise (the reason
        without filesystem paths: health answers without a login)."""
        if not service.ready:
            return JSONResponse({"status": "unavailable",
                                 "error": without_paths(service.startup_error or ""),
                                 "hint": "make index"}, status_code=503)
        plan = service.plan
        return JSONResponse({
            "status": "ok",
            "version": __version__,
            "sections": len(plan.sections),
            "passages": len(plan.passages),
            "feedback_log_writable": service.feedback.error is None,
        })

    # HEAD as HTTP says: GET's headers, no body (the server drops it); not in the schema,
    # which would give both methods one operation id
    app.add_api_route("/api/health", health, methods=["HEAD"], include_in_schema=False)

    @app.post("/api/ask", openapi_extra=_body(ASK_SCHEMA))
    @json_errors
    async def ask(request: Request) -> JSONResponse:
        """JSON {"question", "history"?, "script"?} → Answer.to_dict()."""
        check_token(request, settings.api_token)
        question, history, script = _ask_args(await read_json_object(request))
        future = service.submit(question, history, script)
        try:
            answer = await asyncio.wait_for(asyncio.wrap_future(future),
                                            timeout=settings.request_timeout)
        except TimeoutError as exc:
            future.cancel()
            raise AnswerTimeout(f"no answer within {settings.request_timeout:g} s") from exc
        return JSONResponse(answer.to_dict())

    @app.post("/api/feedback", openapi_extra=_body(FEEDBACK_SCHEMA))
    @json_errors
    async def feedback(request: Request) -> JSONResponse:
        """JSON {"question", "answer", "vote": "useful"|"not_useful", "comment"?, "citations"?}
        appended to the feedback log; 503 when the log cannot be written."""
        check_token(request, settings.api_token)
        turn, vote, comment = _feedback_turn(await read_json_object(request))
        if not await asyncio.to_thread(service.feedback.append,
                                       feedback_record(turn, vote, comment)):
            raise FeedbackNotSaved(
                "feedback log is not writable; the answer service is unaffected")
        return JSONResponse({"saved": True, "id": turn["id"]})

    @app.api_route("/api/{rest:path}", include_in_schema=False,
                   methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    async def api_not_found(request: Request, rest: str) -> Response:
        # A known route reached with the wrong method lands here too (the catch-all
        # matches every method): OPTIONS says what it allows, other methods get 405;
        # unknown routes 404.
        allowed = ROUTES.get(rest.strip("/"))
        if allowed:
            allow = f"{allowed}, HEAD, OPTIONS" if allowed == "GET" else f"{allowed}, OPTIONS"
            if request.method == "OPTIONS":
                return Response(status_code=204, headers={"Allow": allow})
            return _error(405, f"method not allowed; use {allowed}", {"Allow": allow})
        return _error(404, "no such API route; use POST /api/ask or GET /api/health")

    @app.exception_handler(StarletteHTTPException)
    async def json_http_errors(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # e.g. GET /api/ask → 405: keep the {"error": …} shape on our own routes
        return error_response(exc)


__all__ = ["MAX_BODY_BYTES", "BadRequest", "FeedbackNotSaved", "Unauthorized",
           "add_api_routes", "check_token", "coerce_history", "coerce_script",
           "error_response", "read_body_limited", "read_json_object", "without_paths"]
