"""Dify's External Knowledge API: `POST /retrieval`, so a Dify app can use the plan as an
external knowledge base (Dify appends /retrieval to the endpoint it is given).

Request: `{"knowledge_id": "planqa", "query", "retrieval_setting": {"top_k",
"score_threshold"}}` with `Authorization: Bearer <PLANQA_API_TOKEN>`. Response:
`{"records": [{"content", "score", "title", "metadata"}]}`, best first; `score` is the
calibrated relevance (planqa.calibration, the same scale for every query) and
`score_threshold` cuts on it. When planqa would refuse the question (the plan does not
say), `records` is empty; `metadata_condition` filters on the records' metadata (ref,
section, clause, kind, …) with Dify's operators. Errors: `{"error_code", "error_msg"}`
with Dify's codes — 1001 bad Authorization header, 1002 wrong key (both 403), 2001
unknown knowledge_id (404).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from planqa.calibration import calibrated_scores
from planqa.errors import IndexUnavailable, InvalidQuestion, PlanQAError
from planqa.retrieval import hit_to_document
from planqa.text import clean_input
from planqa.web.api import BadRequest, errors_as, read_json_object
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


#: A route whose exceptions become Dify-shaped errors.
dify_errors = errors_as(dify_error_response)


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
    """(query, top_k, score_threshold) from a /retrieval body; BadRequest or 2001.
    (`metadata_condition` is read by `read_metadata_condition`.)"""
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


# ---------------------------------------------------------------- metadata_condition

#: Dify's comparison operators → a test of (metadata value, condition value). Text
#: operators compare as strings; the numeric ones need numbers on both sides.
_TEXT_OPS: dict[str, Callable[[str, Any], bool]] = {
    "contains": lambda v, x: str(x) in v,
    "not contains": lambda v, x: str(x) not in v,
    "start with": lambda v, x: v.startswith(str(x)),
    "end with": lambda v, x: v.endswith(str(x)),
    "is": lambda v, x: v == str(x),
    "is not": lambda v, x: v != str(x),
    "in": lambda v, x: v in [str(i) for i in x],
    "not in": lambda v, x: v not in [str(i) for i in x],
    "before": lambda v, x: v < str(x),
    "after": lambda v, x: v > str(x),
}
_NUMBER_OPS: dict[str, Callable[[float, float], bool]] = {
    "=": lambda v, x: v == x, "≠": lambda v, x: v != x, "!=": lambda v, x: v != x,
    ">": lambda v, x: v > x, "<": lambda v, x: v < x,
    "≥": lambda v, x: v >= x, ">=": lambda v, x: v >= x,
    "≤": lambda v, x: v <= x, "<=": lambda v, x: v <= x,
}
_EMPTY_OPS = {"empty", "not empty"}


@dataclass(frozen=True)
class Condition:
    """One metadata filter of Dify's `metadata_condition.conditions`."""

    names: tuple[str, ...]  # Dify sends one name, older versions a list: any may match
    operator: str
    value: Any = None

    def test(self, metadata: dict[str, Any]) -> bool:
        return any(self._test_one(metadata.get(name)) for name in self.names)

    def _test_one(self, value: Any) -> bool:
        if self.operator in _EMPTY_OPS:
            empty = value is None or value == "" or value == []
            return empty if self.operator == "empty" else not empty
        if value is None:
            return self.operator in ("not contains", "is not", "not in", "≠", "!=")
        if self.operator in _NUMBER_OPS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            return _NUMBER_OPS[self.operator](float(value), float(self.value))
        return _TEXT_OPS[self.operator](str(value), self.value)


def read_metadata_condition(raw: Any) -> tuple[list[Condition], str]:
    """(conditions, "and" | "or") from `metadata_condition`; none when it is absent."""
    if raw is None:
        return [], "and"
    if not isinstance(raw, dict):
        raise BadRequest('"metadata_condition" must be an object')
    logic = raw.get("logical_operator") or "and"
    if logic not in ("and", "or"):
        raise BadRequest('"metadata_condition.logical_operator" must be "and" or "or"')
    items = raw.get("conditions")
    if not isinstance(items, list):
        raise BadRequest('"metadata_condition.conditions" must be a list')
    conditions = []
    for item in items:
        if not isinstance(item, dict):
            raise BadRequest("each metadata condition must be an object")
        names = item.get("name")
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names or \
                not all(isinstance(n, str) for n in names):
            raise BadRequest('a metadata condition needs a "name" (a string)')
        op, value = item.get("comparison_operator"), item.get("value")
        if op not in _TEXT_OPS and op not in _NUMBER_OPS and op not in _EMPTY_OPS:
            raise BadRequest(f"unknown comparison_operator: {op!r}")
        if op in _NUMBER_OPS and (isinstance(value, bool)
                                  or not isinstance(value, int | float)):
            raise BadRequest(f'"{op}" needs a number as its value')
        if op in ("in", "not in") and not isinstance(value, list):
            raise BadRequest(f'"{op}" needs a list as its value')
        if op in _TEXT_OPS and op not in ("in", "not in") and \
                not isinstance(value, str | int | float):
            raise BadRequest(f'"{op}" needs a string as its value')
        conditions.append(Condition(tuple(names), op, value))
    return conditions, logic


def matches(metadata: dict[str, Any], conditions: list[Condition], logic: str) -> bool:
    """Whether a record's metadata passes the filter (no conditions: every record)."""
    if not conditions:
        return True
    results = (c.test(metadata) for c in conditions)
    return all(results) if logic == "and" else any(results)


# ---------------------------------------------------------------- retrieval


def retrieve_records(qa: Any, query: str, top_k: int, threshold: float,
                     conditions: list[Condition] | None = None,
                     logic: str = "and") -> list[dict]:
    """The records for one query: none when planqa refuses it, else the best top_k
    passages whose calibrated score reaches the threshold and whose metadata passes
    the conditions, in the query's script."""
    if not qa.ask(query, [], None).found:
        return []
    searcher = qa.searcher
    q = searcher.parse(query)
    # every passage is scored anyway: rank them all, so a filter still finds top_k
    hits = searcher.search(q, k=len(searcher.passage_ids) if conditions else top_k)
    records = []
    for hit, score in zip(hits, calibrated_scores(hits), strict=True):
        if score < threshold or len(records) == top_k:
            break  # scores fall in rank order: nothing later reaches the threshold
        doc = hit_to_document(hit, q.traditional, score)
        meta = doc.metadata
        if not matches(meta, conditions or [], logic):
            continue
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
        "metadata_condition": {
            "type": "object", "description": "filters on the records' metadata",
            "properties": {
                "logical_operator": {"type": "string", "enum": ["and", "or"]},
                "conditions": {"type": "array", "items": {
                    "type": "object", "required": ["name", "comparison_operator"],
                    "properties": {
                        "name": {"anyOf": [{"type": "string"},
                                           {"type": "array", "items": {"type": "string"}}]},
                        "comparison_operator": {"type": "string", "enum": sorted(
                            [*_TEXT_OPS, *_NUMBER_OPS, *_EMPTY_OPS])},
                        "value": {}}}}}},
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
        payload = await read_json_object(request)
        query, top_k, threshold = read_retrieval(payload)
        conditions, logic = read_metadata_condition(payload.get("metadata_condition"))
        records = await service.run(retrieve_records, query, top_k, threshold,
                                    conditions, logic)
        return JSONResponse({"records": records})

    @app.api_route("/retrieval", methods=["GET", "PUT", "PATCH", "DELETE"],
                   include_in_schema=False)
    async def retrieval_method() -> JSONResponse:
        return JSONResponse({"error_code": 405, "error_msg": "method not allowed; use POST"},
                            status_code=405, headers={"Allow": "POST"})


__all__ = ["KNOWLEDGE_ID", "MAX_TOP_K", "Condition", "DifyError", "add_dify_routes",
           "check_dify_auth", "matches", "read_metadata_condition", "read_retrieval",
           "retrieve_records"]
