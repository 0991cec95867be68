"""The OpenAI-compatible endpoint as clients use it: the official `openai` SDK against the
real server (`python app.py` on a loopback port, one per module, a bearer token set).

What Open WebUI, Cherry Studio, ChatBox and LobeChat do is what the SDK does: list the
models, then ask (plain or streamed), sending the conversation so far."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import openai
import pytest

from web_fixtures import token_server

if TYPE_CHECKING:
    from web_fixtures import LiveServer

# `library` (what the library answers, as JSON), `shared_qa`
pytest_plugins = ["web_fixtures"]

TOKEN = "sdk-test-token"
Q = "事业编制要精简到多少名？"


server = token_server("openai", TOKEN)


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    # no retries: a 5xx must fail the test, not be hidden by a second try
    return openai.OpenAI(base_url=server.api("/v1"), api_key=TOKEN, max_retries=0,
                         timeout=60)


def test_models_list_offers_planqa(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == ["planqa"]
    assert client.models.retrieve("planqa").owned_by == "planqa"


def test_plain_completion_is_planqas_answer(client: openai.OpenAI, library) -> None:
    resp = client.chat.completions.create(model="planqa",
                                          messages=[{"role": "user", "content": Q}])
    expected = library(Q)
    choice = resp.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == expected["answer"]
    assert "1120" in choice.message.content and "出处" in choice.message.content
    # machine-readable citations beside the text
    extra = resp.model_extra
    assert [c["ref"] for c in extra["planqa"]["citations"]] == ["二、2"]
    assert extra["planqa"]["found"] is True
    assert resp.usage.completion_tokens == len(choice.message.content)


def test_streamed_completion_joins_to_the_same_answer(client: openai.OpenAI,
                                                      library) -> None:
    stream = client.chat.completions.create(
        model="planqa", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "system", "content": "You are helpful."},
                  {"role": "user", "content": [{"type": "text", "text": Q}]}])
    chunks = list(stream)
    content = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert len(content) > 2  # role, then the text line by line
    assert "".join(content) == library(Q)["answer"]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    last = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert [c["ref"] for c in last.model_extra["planqa"]["citations"]] == ["二、2"]
    assert chunks[-1].usage.total_tokens > 0


def test_stream_ends_with_done_as_server_sent_events(server: LiveServer) -> None:
    lines = []
    with httpx.stream("POST", server.api("/v1/chat/completions"), timeout=60,
                      headers={"Authorization": f"Bearer {TOKEN}"},
                      json={"model": "planqa", "stream": True,
                            "messages": [{"role": "user", "content": Q}]}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [x for x in r.iter_lines() if x]
    assert all(x.startswith("data: ") for x in lines)
    assert lines[-1] == "data: [DONE]"


def test_history_makes_a_follow_up(client: openai.OpenAI, library) -> None:
    first = "全国代表大会代表里基层一线的比例要提到多少？"
    answer = library(first)["answer"]
    resp = client.chat.completions.create(model="planqa", messages=[
        {"role": "user", "content": first},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "那全委会委员呢？"}])
    expected = library("那全委会委员呢？", [(first, answer)])
    assert resp.choices[0].message.content == expected["answer"]
    assert "70%" in resp.choices[0].message.content


def test_out_of_scope_question_is_refused(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="planqa", messages=[{"role": "user", "content": "明天北京天气怎么样？"}])
    assert "没有关于这个问题的规定" in resp.choices[0].message.content
    assert resp.model_extra["planqa"]["citations"] == []
    assert resp.model_extra["planqa"]["found"] is False


def test_bad_token_is_refused_in_openais_shape(server: LiveServer) -> None:
    bad = openai.OpenAI(base_url=server.api("/v1"), api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.chat.completions.create(model="planqa",
                                    messages=[{"role": "user", "content": Q}])
    assert err.value.status_code == 401
    assert err.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": Q}]}, 404,
     "model_not_found"),
    ({"model": "planqa", "messages": []}, 400, "invalid_request"),
    ({"model": "planqa", "messages": [{"role": "assistant", "content": "hi"}]}, 400,
     "invalid_request"),
    ({"model": "planqa", "messages": [{"role": "user", "content": "   "}]}, 400,
     "invalid_request"),
    ({"model": "planqa", "messages": [{"role": "robot", "content": Q}]}, 400,
     "invalid_request"),
    ({"model": "planqa", "messages": [{"role": "user", "content": 42}]}, 400,
     "invalid_request"),
])
def test_bad_body_is_a_4xx_in_openais_shape(client: openai.OpenAI, kwargs, status,
                                            code) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(**kwargs)
    assert err.value.status_code == status
    assert err.value.code == code
    assert err.value.body["message"]


def test_not_json_and_unknown_routes(server: LiveServer) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    r = httpx.post(server.api("/v1/chat/completions"), content=b"{not json", headers=auth)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.get(server.api("/v1/chat/completions"), headers=auth)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = httpx.post(server.api("/v1/embeddings"), json={}, headers=auth)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"


def test_openapi_schema_is_served_and_names_the_client_routes(server: LiveServer) -> None:
    r = httpx.get(server.api("/openapi.json"), timeout=10)
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert {"/v1/models", "/v1/chat/completions", "/retrieval", "/api/ask"} <= set(paths)
    body = paths["/v1/chat/completions"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"]["required"] == ["model", "messages"]
    # no docs page: FastAPI's would load its scripts from another site
    for page in ("/docs", "/redoc"):
        assert "swagger-ui" not in httpx.get(server.api(page)).text.lower()
        assert "redoc.standalone" not in httpx.get(server.api(page)).text


# ---------------------------------------------------------------- server-side failures
# In process (run_app: the app on the session's library with other settings): what a
# client sees when planqa cannot answer, on /v1 and on Dify's /retrieval alike.

CHAT = {"model": "planqa", "messages": [{"role": "user", "content": Q}]}
RETRIEVAL = {"knowledge_id": "planqa", "query": Q,
             "retrieval_setting": {"top_k": 3, "score_threshold": 0.0}}


def test_time_limit_is_504_in_each_clients_shape(shared_qa, run_app, tmp_path) -> None:
    with run_app(shared_qa, tmp_path, request_timeout=0.000001) as app:
        r = app.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        r = app.post("/retrieval", json=RETRIEVAL, headers={"Authorization": "Bearer x"})
        assert r.status_code == 504 and r.json()["error_code"] == 504


def test_missing_index_is_503_not_a_crash(run_app, tmp_path) -> None:
    from planqa.chain import PlanQA
    from planqa.config import Settings

    empty = tmp_path / "no-index"
    empty.mkdir()
    qa = PlanQA(Settings.from_env().replace(index_dir=empty))
    with run_app(qa, tmp_path, index_dir=empty) as app:
        r = app.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "index_unavailable"
        assert "make index" in r.json()["error"]["message"]
        r = app.post("/retrieval", json=RETRIEVAL, headers={"Authorization": "Bearer x"})
        assert r.status_code == 503 and "make index" in r.json()["error_msg"]
        assert app.get("/v1/models").status_code == 200  # listing needs no index
