"""Homophone typos from pinyin input are read as the plan's words, and nothing else is."""

import pytest

from planqa.homophones import Homophones, keys


@pytest.fixture(scope="module")
def homophones(plan):
    return Homophones(plan.text_simplified)


@pytest.mark.parametrize(("typed", "meant"), [
    ("事业编治要精减到多少人", "事业编制要精简到多少人"),  # 编治/精减 for 编制/精简
    ("科协的知道思想是什么", "科协的指导思想是什么"),  # a word (知道) inside a typo run
    ("智酷建设怎么搞", "智库建设怎么搞"),
    ("科协领导要实明上网吗", "科协领导要实名上网吗"),
])
def test_a_typo_reads_as_the_plan_word_that_sounds_the_same(homophones, typed, meant):
    assert homophones.correct(typed) == meant


@pytest.mark.parametrize("question", [
    "什么时候完成？",  # 是什|么时 across word boundaries sound like 实施, 模式
    "改革之前中国科协的事业编制有多少名？",  # 之前 is a word, not the plan's 之间
    "省级科协的比例要达到多少？",  # 省级 is not 升级
    "方案提出了几条基本原则？",  # the plan's own words
    "How many people will the staff be cut to?",
    "天津今天限号尾号是几",  # 是几 is asking (not 事迹), 尾号 no 有效 (rare readings)
    "报告厅在哪预约",  # 在哪 is not the plan's 在内
    "老一班人还在那坐着",  # nor is 在那
    "",
])
def test_words_and_the_plans_own_text_are_left_alone(homophones, question):
    assert homophones.correct(question) == question


def test_keys_spell_polyphonic_words_every_way():
    assert ("chong", "qing") in keys("重庆") and ("zhong", "qing") in keys("重庆")


def test_the_retriever_reads_typos_and_keeps_what_was_typed(searcher):
    q = searcher.parse("事业编治要精减到多少人")
    assert q.text == "事业编治要精减到多少人"
    assert q.simplified == "事业编制要精简到多少人"
    assert searcher.search(q, k=1)[0].passage.ref == "二、2"


def test_the_committed_pinyin_table_is_what_the_tool_writes(tmp_path):
    from tools.pinyin_table import OUT, main

    main(["--out", str(tmp_path / "pinyin.tsv")])
    assert (tmp_path / "pinyin.tsv").read_text(encoding="utf-8") == OUT.read_text(
        encoding="utf-8")
