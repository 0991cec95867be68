"""Dify's External Knowledge API (POST /retrieval) against its published contract, on the
real server (`python app.py` on a loopback port, a bearer token set):

* request `{knowledge_id, query, retrieval_setting: {top_k, score_threshold}}` with
  `Authorization: Bearer <key>`; response `{"records": [{content, score, title,
  metadata}]}`, `metadata` always an object, `records: []` when nothing matches;
* errors `{"error_code", "error_msg"}`: 1001 bad Authorization header, 1002 wrong key
  (403), 2001 unknown knowledge (404).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from web_fixtures import token_server

if TYPE_CHECKING:
    from web_fixtures import LiveServer

pytest_plugins = ["web_fixtures"]

TOKEN = "dify-test-key"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Q = "事业编制要精简到多少名？"


server = token_server("dify", TOKEN)


def retrieve(server: LiveServer, query: str = Q, top_k: int = 3, threshold: float = 0.0,
             headers: dict | None = None, **body) -> httpx.Response:
    payload = {"knowledge_id": "planqa", "query": query,
               "retrieval_setting": {"top_k": top_k, "score_threshold": threshold}, **body}
    return httpx.post(server.api("/retrieval"), json=payload,
                      headers=AUTH if headers is None else headers, timeout=60)


def test_records_follow_the_contract(server: LiveServer) -> None:
    r = retrieve(server, top_k=3)
    assert r.status_code == 200
    records = r.json()["records"]
    assert 1 <= len(records) <= 3
    for rec in records:
        assert set(rec) == {"content", "score", "title", "metadata"}
        assert isinstance(rec["content"], str) and rec["content"]
        assert isinstance(rec["metadata"], dict)  # never null: Dify's pipeline breaks
        assert 0.0 <= rec["score"] <= 1.0
    top = records[0]
    assert top["metadata"]["ref"] == "二、2" and "1120" in top["content"]
    assert top["title"].startswith("二、2 ")
    assert [x["score"] for x in records] == sorted((x["score"] for x in records),
                                                   reverse=True)
    # the raw per-query scores ride along
    assert {"fused", "dense", "lexical", "link"} <= set(top["metadata"])


def test_score_threshold_cuts_on_the_calibrated_score(server: LiveServer) -> None:
    every = retrieve(server, top_k=5).json()["records"]
    assert len(every) == 5
    cut = every[1]["score"]
    kept = retrieve(server, top_k=5, threshold=cut).json()["records"]
    assert kept and all(x["score"] >= cut for x in kept)
    assert len(kept) < len(every)
    assert retrieve(server, top_k=5, threshold=1.0).json()["records"] == []


def test_refused_question_has_no_records(server: LiveServer) -> None:
    for q in ("明天北京天气怎么样？", "asdfgh"):
        r = retrieve(server, query=q)
        assert r.status_code == 200 and r.json() == {"records": []}


def test_traditional_query_gets_traditional_content(server: LiveServer) -> None:
    top = retrieve(server, query="事業編制要精簡到多少名？").json()["records"][0]
    assert "編制" in top["content"]


@pytest.mark.parametrize(("headers", "status", "code"), [
    ({}, 403, 1001),
    ({"Authorization": TOKEN}, 403, 1001),  # no "Bearer "
    ({"Authorization": "Basic abc"}, 403, 1001),
    ({"Authorization": "Bearer wrong-key"}, 403, 1002),
])
def test_auth_errors_use_difys_codes(server: LiveServer, headers, status, code) -> None:
    r = retrieve(server, headers=headers)
    assert r.status_code == status
    assert r.json()["error_code"] == code and r.json()["error_msg"]


def test_unknown_knowledge_id_is_2001(server: LiveServer) -> None:
    r = retrieve(server, knowledge_id="AAA-BBB-CCC")
    assert r.status_code == 404 and r.json()["error_code"] == 2001


@pytest.mark.parametrize("body", [
    {"knowledge_id": "planqa", "query": Q},  # no retrieval_setting
    {"knowledge_id": "planqa", "query": "", "retrieval_setting": {"top_k": 1}},
    {"knowledge_id": "planqa", "query": Q, "retrieval_setting": {"top_k": 0}},
    {"knowledge_id": "planqa", "query": Q, "retrieval_setting": {"top_k": "3"}},
    {"knowledge_id": "planqa", "query": Q,
     "retrieval_setting": {"top_k": 3, "score_threshold": 2}},
    [1, 2, 3],
])
def test_bad_bodies_are_4xx_with_an_error_code(server: LiveServer, body) -> None:
    r = httpx.post(server.api("/retrieval"), json=body, headers=AUTH, timeout=30)
    assert 400 <= r.status_code < 500
    assert isinstance(r.json()["error_code"], int) and r.json()["error_msg"]


def test_wrong_method_is_405(server: LiveServer) -> None:
    r = httpx.get(server.api("/retrieval"), headers=AUTH)
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_metadata_condition_filters_the_records(server: LiveServer) -> None:
    only_three = {"logical_operator": "and", "conditions": [
        {"name": "section", "comparison_operator": "is", "value": "三"}]}
    records = retrieve(server, query="学会要怎么改革？", top_k=3,
                       metadata_condition=only_three).json()["records"]
    assert len(records) == 3 and {r["metadata"]["section"] for r in records} == {"三"}
    either = {"logical_operator": "or", "conditions": [
        {"name": "ref", "comparison_operator": "in", "value": ["二、1", "二、3"]},
        {"name": ["heading"], "comparison_operator": "contains", "value": "机关"}]}
    refs = [r["metadata"]["ref"] for r in retrieve(
        server, top_k=5, metadata_condition=either).json()["records"]]
    assert set(refs) == {"二、1", "二、2", "二、3"} and refs[0] == "二、2"


@pytest.mark.parametrize("condition", [
    {"conditions": [{"name": "ref", "comparison_operator": "like", "value": "二"}]},
    {"conditions": [{"name": "score", "comparison_operator": ">", "value": "high"}]},
    {"conditions": [{"comparison_operator": "is", "value": "二"}]},
    {"logical_operator": "xor", "conditions": []},
    {"conditions": "section=二"},
])
def test_bad_metadata_condition_is_400(server: LiveServer, condition) -> None:
    r = retrieve(server, metadata_condition=condition)
    assert r.status_code == 400 and r.json()["error_code"] == 400


def test_conditions_in_isolation() -> None:
    from planqa.web.dify import matches, read_metadata_condition

    meta = {"ref": "二、2", "section": "二", "clause": "2", "score": 0.49, "heading": ""}
    cases = [("contains", "、", True), ("not contains", "三", True),
             ("start with", "二", True), ("end with", "3", False), ("is not", "二、2", False),
             ("not in", ["二、2"], False), ("empty", None, False), ("not empty", None, True)]
    for op, value, expected in cases:
        conds, logic = read_metadata_condition(
            {"conditions": [{"name": "ref", "comparison_operator": op, "value": value}]})
        assert matches(meta, conds, logic) is expected, op
    for op, value, expected in [(">", 0.4, True), ("≤", 0.4, False), ("=", 0.49, True)]:
        conds, logic = read_metadata_condition(
            {"conditions": [{"name": "score", "comparison_operator": op, "value": value}]})
        assert matches(meta, conds, logic) is expected, op
    conds, _ = read_metadata_condition(
        {"conditions": [{"name": "heading", "comparison_operator": "empty"}]})
    assert matches(meta, conds, "and")
    assert matches(meta, [], "and")  # no conditions: every record
