"""The OpenAI-compatible face of the server: `GET /v1/models` and
`POST /v1/chat/completions` (plain and streamed), so Open WebUI, Cherry Studio, ChatBox,
LobeChat and the official `openai` SDK can use planqa as a "model".

The last user message is the question; earlier user → assistant pairs are the history.
The reply is planqa's own answer (quote, 出处 line, or refusal), never an LLM's free text;
its citations are also in the response's `planqa.citations` field, machine-readable.
Errors have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from planqa.errors import IndexUnavailable, InvalidQuestion, PlanQAError
from planqa.text import clean_input
from planqa.web.api import BadRequest, Unauthorized, check_token, errors_as, read_json_object
from planqa.web.service import AnswerTimeout, ChatService, answer

logger = logging.getLogger(__name__)

#: The one model the server offers.
MODEL_ID = "planqa"
#: When the model "was created" (OpenAI clients show it): planqa 0.1's first release.
MODEL_CREATED = 1_764_633_600  # 2025-12-02 00:00 UTC
#: Roles a message may have; only user and assistant turns make the history.
ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
#: The /v1 routes and their one method (another method gets 405).
ROUTES = {"models": "GET", f"models/{MODEL_ID}": "GET", "chat/completions": "POST"}


class ModelNotFound(PlanQAError):
    """A model other than MODEL_ID was asked for."""

    http_status = 404


# ---------------------------------------------------------------- errors


def openai_error(status: int, message: str, type_: str, code: str | None,
                 param: str | None = None, headers: dict[str, str] | None = None
                 ) -> JSONResponse:
    """An error in the shape OpenAI's API (and so every client of it) expects."""
    return JSONResponse({"error": {"message": message, "type": type_, "param": param,
                                   "code": code}}, status_code=status, headers=headers)


def openai_error_response(exc: Exception) -> JSONResponse:
    """The /v1 response for an exception: 4xx for what the client sent, 5xx otherwise."""
    if isinstance(exc, Unauthorized):
        return openai_error(401, str(exc), "invalid_request_error", "invalid_api_key",
                            headers=exc.headers)
    if isinstance(exc, ModelNotFound):
        return openai_error(404, str(exc), "invalid_request_error", "model_not_found",
                            "model")
    if isinstance(exc, BadRequest) and exc.http_status == 413:
        return openai_error(413, str(exc), "invalid_request_error", "request_too_large")
    if isinstance(exc, InvalidQuestion):  # BadRequest included: OpenAI answers 400
        return openai_error(400, str(exc), "invalid_request_error", "invalid_request")
    if isinstance(exc, IndexUnavailable):
        return openai_error(503, f"{exc} (run `make index`)", "server_error",
                            "index_unavailable")
    if isinstance(exc, AnswerTimeout):
        return openai_error(504, str(exc), "server_error", "timeout")
    if isinstance(exc, PlanQAError):
        return openai_error(exc.http_status, str(exc), "server_error", None)
    logger.error("request failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return openai_error(500, "internal error while answering", "server_error", None)


#: A route whose exceptions become OpenAI-shaped errors.
openai_errors = errors_as(openai_error_response)


# ---------------------------------------------------------------- reading requests


def message_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts
    (`[{"type": "text", "text": …}, …]`; images and other parts are ignored)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict):
                raise BadRequest("each content part must be an object")
            if part.get("type") in ("text", "input_text"):
                text = part.get("text")
                if not isinstance(text, str):
                    raise BadRequest('a text content part needs a string "text"')
                texts.append(text)
        return "\n".join(texts)
    raise BadRequest("message content must be a string or a list of content parts")


def read_chat(payload: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bool, bool]:
    """(question, history, stream, include_usage) from a chat completion request.

    The last message must be the user's; earlier user messages followed by an assistant
    message are the history (system prompts are the client's, not planqa's: ignored)."""
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest('"model" is required (use "planqa")')
    if model != MODEL_ID:
        raise ModelNotFound(f"The model `{model}` does not exist; this server offers "
                            f"`{MODEL_ID}` only")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest('"messages" must be a non-empty list')
    turns: list[tuple[str, str]] = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise BadRequest(f"each message needs a role, one of {', '.join(sorted(ROLES))}")
        turns.append((m["role"], message_text(m.get("content"))))
    role, question = turns[-1]
    if role != "user":
        raise BadRequest("the last message must be the user's question")
    if not clean_input(question):
        raise BadRequest("the last user message has no text")
    history: list[tuple[str, str]] = []
    pending: str | None = None
    for role, text in turns[:-1]:
        if role == "user":
            pending = text
        elif role == "assistant" and pending is not None:
            history.append((pending, text))
            pending = None
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest('"stream" must be true or false')
    options = payload.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadRequest('"stream_options" must be an object')
    return question, history, stream, bool(options.get("include_usage"))


# ---------------------------------------------------------------- responses


def _usage(question: str, text: str) -> dict[str, int]:
    # Characters, not tokens: planqa runs no tokenizer for its replies (for Chinese
    # text one character is about one token).
    prompt, completion = len(question), len(text)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _planqa_fields(answer: dict[str, Any]) -> dict[str, Any]:
    """The machine-readable part, under a key of its own: a top-level `citations` is
    Perplexity's list of URLs, which some clients render, so planqa's dicts stay apart."""
    return {"planqa": {k: answer[k]
                       for k in ("found", "citations", "related", "question", "source")}}


def completion_body(answer: dict[str, Any], question: str, completion_id: str,
                    created: int) -> dict[str, Any]:
    """A `chat.completion` object for one answer (Answer.to_dict())."""
    return {
        "id": completion_id, "object": "chat.completion", "created": created,
        "model": MODEL_ID, "system_fingerprint": None,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": answer["answer"],
                                 "refusal": None}}],
        "usage": _usage(question, answer["answer"]),
        **_planqa_fields(answer),
    }


def stream_chunks(answer: dict[str, Any], question: str, completion_id: str, created: int,
                  include_usage: bool = False) -> list[dict[str, Any]]:
    """The answer as `chat.completion.chunk`s: the role, the text line by line, then an
    empty delta with finish_reason "stop" (with `planqa`: the citations); usage last if
    asked."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict:
        return {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                "model": MODEL_ID, "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                             "logprobs": None}], **extra}

    text = answer["answer"]
    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": line}) for line in text.splitlines(keepends=True)]
    chunks.append(chunk({}, "stop", **_planqa_fields(answer)))
    if include_usage:
        chunks.append({"id": completion_id, "object": "chat.completion.chunk",
                       "created": created, "model": MODEL_ID, "choices": [],
                       "usage": _usage(question, text)})
    return chunks


async def _sse(chunks: list[dict[str, Any]]) -> AsyncIterator[str]:
    for c in chunks:
        yield f"data: {json.dumps(c, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


# ---------------------------------------------------------------- the routes

_CHAT_SCHEMA = {
    "type": "object", "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "enum": [MODEL_ID]},
        "messages": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["role"],
            "properties": {"role": {"type": "string", "enum": sorted(ROLES)},
                           "content": {"anyOf": [
                               {"type": "string"},
                               {"type": "array", "items": {
                                   "type": "object",
                                   "properties": {"type": {"type": "string"},
                                                  "text": {"type": "string"}}}},
                               {"type": "null"}]}}}},
        "stream": {"type": "boolean", "default": False},
        "stream_options": {"type": "object",
                           "properties": {"include_usage": {"type": "boolean"}}},
    },
}


def model_card() -> dict[str, Any]:
    """The one model, as /v1/models lists it."""
    return {"id": MODEL_ID, "object": "model", "created": MODEL_CREATED, "owned_by": "planqa"}


def add_openai_routes(app: FastAPI, service: ChatService) -> None:
    """/v1/models and /v1/chat/completions on `app` (before Gradio is mounted at "/")."""
    settings = service.settings

    @app.get("/v1/models", tags=["openai"])
    @openai_errors
    async def list_models(request: Request) -> Response:
        """The models on offer: one, `planqa`."""
        check_token(request, settings.api_token)
        return JSONResponse({"object": "list", "data": [model_card()]})

    @app.get(f"/v1/models/{MODEL_ID}", tags=["openai"])
    @openai_errors
    async def get_model(request: Request) -> Response:
        """The `planqa` model card."""
        check_token(request, settings.api_token)
        return JSONResponse(model_card())

    @app.post("/v1/chat/completions", tags=["openai"],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": _CHAT_SCHEMA}}}})
    @openai_errors
    async def chat_completions(request: Request) -> Response:
        """OpenAI's chat completion: the last user message answered from the plan, the
        earlier turns as history; `"stream": true` sends text/event-stream chunks."""
        check_token(request, settings.api_token)
        question, history, stream, include_usage = read_chat(await read_json_object(request))
        reply = (await service.run(answer, question, history, None)).to_dict()
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not stream:
            return JSONResponse(completion_body(reply, question, completion_id, created))
        chunks = stream_chunks(reply, question, completion_id, created, include_usage)
        return StreamingResponse(_sse(chunks), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    @app.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                   include_in_schema=False)
    async def v1_not_found(rest: str) -> JSONResponse:
        allowed = ROUTES.get(rest.strip("/"))
        if allowed:
            return openai_error(405, f"method not allowed; use {allowed}",
                                "invalid_request_error", "method_not_allowed",
                                headers={"Allow": allowed})
        return openai_error(404, f"Unknown request URL: /v1/{rest}; this server has "
                                 "GET /v1/models and POST /v1/chat/completions",
                            "invalid_request_error", "unknown_url")


__all__ = ["MODEL_ID", "ModelNotFound", "add_openai_routes", "completion_body",
           "message_text", "openai_error_response", "read_chat", "stream_chunks"]
