"""Dify's External Knowledge API: `POST /retrieval`, so a Dify app can use the plan as an
external knowledge base (Dify appends /retrieval to the endpoint it is given).

Request: `{"knowledge_id": "planqa", "query", "retrieval_setting": {"top_k",
"score_threshold"}}` with `Authorization: Bearer <PLANQA_API_TOKEN>`. Response:
`{"records": [{"content", "score", "title", "metadata"}]}`, best first; `score` is the
calibrated relevance (planqa.calibration, the same scale for every query) and
`score_threshold` cuts on it. When planqa would refuse the question (the plan does not
say), `records` is empty. Errors: `{"error_code", "error_msg"}` with Dify's codes —
1001 bad Authorization header, 1002 wrong key (both 403), 2001 unknown knowledge_id (404).
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from planqa.calibration import calibrated_scores
from planqa.errors import IndexUnavailable, InvalidQuestion, PlanQAError
from planqa.retrieval import hit_to_document
from planqa.text import clean_input
from planqa.web.api import BadRequest, read_json_object
from planqa.web.service import AnswerTimeout, ChatService

logger = logging.getLogger(__name__)

#: The External Knowledge ID to enter in Dify.
KNOWLEDGE_ID = "planqa"
#: Most records one request may ask for (the plan has under 40 passages).
MAX_TOP_K = 50


class DifyError(PlanQAError):
    """A refusal with one of Dify's error codes."""

    def __init__(self, code: int, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = status


def dify_error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"error_code": code, "error_msg": message}, status_code=status)


def dify_error_response(exc: Exception) -> JSONResponse:
    """Dify's error shape for an exception; bad bodies get their HTTP status as code."""
    if isinstance(exc, DifyError):
        return dify_error(exc.http_status, exc.code, str(exc))
    if isinstance(exc, BadRequest):
        return dify_error(exc.http_status, exc.http_status, str(exc))
    if isinstance(exc, InvalidQuestion):
        return dify_error(400, 400, str(exc))
    if isinstance(exc, IndexUnavailable):
        return dify_error(503, 503, f"{exc} (run `make index`)")
    if isinstance(exc, AnswerTimeout):
        return dify_error(504, 504, str(exc))
    if isinstance(exc, PlanQAError):
        return dify_error(exc.http_status, exc.http_status, str(exc))
    logger.error("retrieval failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return dify_error(500, 500, "internal error while retrieving")


def dify_errors(handler: Callable[[Request], Awaitable[JSONResponse]]
                ) -> Callable[[Request], Awaitable[JSONResponse]]:
    @functools.wraps(handler)
    async def route(request: Request) -> JSONResponse:
        try:
            return await handler(request)
        except Exception as exc:
            return dify_error_response(exc)

    return route


def check_dify_auth(request: Request, api_token: str) -> None:
    """1001 unless the header is `Bearer <key>`; 1002 unless the key is PLANQA_API_TOKEN.

    Without a token configured any well-formed header is accepted (Dify always sends
    one), as the other routes accept requests without a token then."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise DifyError(1001, "Invalid Authorization header format. Expected "
                              "'Bearer <api-key>' format.", 403)
    if api_token and not hmac.compare_digest(key.strip().encode(), api_token.encode()):
        raise DifyError(1002, "Authorization failed", 403)


def read_retrieval(payload: dict[str, Any]) -> tuple[str, int, float]:
    """(query, top_k, score_threshold) from a /retrieval body; BadRequest or 2001."""
    knowledge_id = payload.get("knowledge_id")
    if not isinstance(knowledge_id, str):
        raise BadRequest('"knowledge_id" is required and must be a string')
    if knowledge_id != KNOWLEDGE_ID:
        raise DifyError(2001, f"The knowledge does not exist: use knowledge_id "
                              f"\"{KNOWLEDGE_ID}\"", 404)
    query = payload.get("query")
    if not isinstance(query, str) or not clean_input(query):
        raise BadRequest('"query" is required and must be a non-empty string')
    setting = payload.get("retrieval_setting")
    if not isinstance(setting, dict):
        raise BadRequest('"retrieval_setting" is required and must be an object')
    top_k = setting.get("top_k")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise BadRequest(f'"retrieval_setting.top_k" must be an integer 1..{MAX_TOP_K}')
    threshold = setting.get("score_threshold", 0.0)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) \
            or not 0.0 <= threshold <= 1.0:
        raise BadRequest('"retrieval_setting.score_threshold" must be a number 0..1')
    return query, top_k, float(threshold)


def retrieve_records(qa: Any, query: str, top_k: int, threshold: float) -> list[dict]:
    """The records for one query: none when planqa refuses it, else the top_k passages
    whose calibrated score reaches the threshold, in the query's script."""
    if not qa.ask(query, [], None).found:
        return []
    searcher = qa.searcher
    q = searcher.parse(query)
    hits = searcher.search(q, k=top_k)
    records = []
    for hit, score in zip(hits, calibrated_scores(hits), strict=True):
        if score < threshold:
            continue
        doc = hit_to_document(hit, q.traditional, score)
        meta = doc.metadata
        title = meta["section_title"] + (f" › {meta['heading']}" if meta["heading"] else "")
        records.append({"content": doc.page_content, "score": score,
                        "title": f"{meta['ref']} {title}", "metadata": dict(meta)})
    return records


_RETRIEVAL_SCHEMA = {
    "type": "object", "required": ["knowledge_id", "query", "retrieval_setting"],
    "properties": {
        "knowledge_id": {"type": "string", "enum": [KNOWLEDGE_ID]},
        "query": {"type": "string"},
        "retrieval_setting": {
            "type": "object", "required": ["top_k"],
            "properties": {"top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K},
                           "score_threshold": {"type": "number", "minimum": 0,
                                               "maximum": 1, "default": 0}}},
        "metadata_condition": {"type": "object",
                               "description": "accepted and not applied"},
    },
}


def add_dify_routes(app: FastAPI, service: ChatService) -> None:
    """POST /retrieval on `app` (before Gradio is mounted at "/")."""
    settings = service.settings

    @app.post("/retrieval", tags=["dify"],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": _RETRIEVAL_SCHEMA}}}})
    @dify_errors
    async def retrieval(request: Request) -> JSONResponse:
        """Dify's External Knowledge API: passages for a query, calibrated scores."""
        check_dify_auth(request, settings.api_token)
        query, top_k, threshold = read_retrieval(await read_json_object(request))
        qa = service.check_ready()
        records = await service.run(retrieve_records, qa, query, top_k, threshold)
        return JSONResponse({"records": records})

    @app.api_route("/retrieval", methods=["GET", "PUT", "PATCH", "DELETE"],
                   include_in_schema=False)
    async def retrieval_method() -> JSONResponse:
        return JSONResponse({"error_code": 405, "error_msg": "method not allowed; use POST"},
                            status_code=405, headers={"Allow": "POST"})


__all__ = ["KNOWLEDGE_ID", "MAX_TOP_K", "DifyError", "add_dify_routes", "check_dify_auth",
           "read_retrieval", "retrieve_records"]
