"""The document as data: another plan in the same style is served end to end, its own
title, outline and examples, with nothing of the CAST plan left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planqa.corpus import load_plan, parse_plan
from planqa.errors import ConfigError
from planqa.profile import derive_profile, load_profile, profile_path
from test_corpus import SECOND_PLAN

CAST = ("科协", "科協")


@pytest.fixture(scope="module")
def second(tmp_path_factory, searcher, settings):
    """The second plan on disk, indexed in memory with the real model, and a PlanQA on it."""
    from planqa.chain import PlanQA
    from planqa.index import build_index
    from planqa.retrieval import PlanSearcher

    path = tmp_path_factory.mktemp("plan2") / "open-data-plan.txt"
    path.write_text(SECOND_PLAN, encoding="utf-8")
    plan = load_plan(path)
    index = build_index(plan, searcher.embeddings, ())
    s2 = settings.replace(plan_path=path, llm_base_url="")
    return PlanQA(s2, searcher=PlanSearcher(plan, index, searcher.embeddings))


def test_the_shipped_profile_names_this_plan(plan):
    assert plan.profile.title == "科协系统深化改革实施方案"
    assert plan.profile.examples and plan.profile.warm_up_question


def test_a_plan_without_a_profile_derives_one_from_its_text():
    p = derive_profile(parse_plan(SECOND_PLAN))
    assert p.title == "某市推进数据开放的实施方案"
    assert p.examples[0] == "健全制度有哪些要求？"


def test_a_malformed_profile_is_a_config_error(tmp_path: Path):
    path = tmp_path / "p.txt"
    path.write_text(SECOND_PLAN, encoding="utf-8")
    profile_path(path).write_text(json.dumps({"examples": "not a list"}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"p\.profile\.json"):
        load_profile(path, parse_plan(SECOND_PLAN))


def test_the_second_plan_answers_refuses_and_outlines_as_itself(second):
    answer = second.ask("年度考核怎么做？")
    assert answer.found and answer.citations[0].ref == "二、1"
    refusal = second.ask("明天北京天气怎么样？")
    assert not refusal.found and "《某市推进数据开放的实施方案》" in refusal.text
    outline = second.ask("方案分为哪几个部分？")
    assert "分为2个部分" in outline.text
    for a in (answer, refusal, outline):
        assert not any(word in a.text for word in CAST), a.text


def test_the_second_plan_is_served_on_the_web_as_itself(second, tmp_path: Path):
    from web_fixtures import app_client

    with app_client(second, tmp_path) as client:
        config = json.dumps(client.get("/config").json(), ensure_ascii=False)
        assert "某市推进数据开放的实施方案" in config
        assert not any(word in config for word in CAST)
        r = client.post("/api/ask", json={"question": "明天北京天气怎么样？"})
        assert r.status_code == 200 and "某市推进数据开放的实施方案" in r.json()["answer"]
