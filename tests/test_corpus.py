"""The plan as structured data: structure, cleaning, round trip, and a second plan."""

import re

import pytest

from planqa.config import PLAN_TEXT_PATH
from planqa.corpus import load_plan, parse_plan, strip_pinyin
from planqa.text import to_simplified


@pytest.fixture(scope="module")
def plan():
    return load_plan()


def test_structure(plan):
    assert [s.number for s in plan.sections] == ["一", "二", "三", "四", "五"]
    assert [len(s.clauses) for s in plan.sections] == [3, 7, 4, 4, 4]
    assert plan.sections[0].title_simplified == "总体要求"
    assert all(s.lead is not None for s in plan.sections[1:])
    assert plan.sections[0].lead is None  # 一、 opens straight with clause 1.
    principles = plan.clause("一", "2").items
    assert [i.marker for i in principles] == ["——"] * 5
    assert [i.heading_simplified for i in principles] == [
        "加强政治引领", "密切联系群众", "突出问题导向", "强化学会主体地位", "坚持系统推进"]


def test_preamble_holds_everything_before_section_one(plan):
    assert [p.ref for p in plan.preamble] == ["前言"] * 3
    assert plan.preamble[0].text.startswith("新華社北京3月27日電")
    assert plan.preamble[2].text.startswith("科協是科技工作者的群衆組織")


def test_clause_fields(plan):
    c = plan.clause("二", "2")
    assert c.id == "二.2"
    assert c.ref == "二、2"
    assert c.section_title_simplified == "改革联系服务科技工作者的体制机制"
    assert c.heading_simplified == "深化科协机关改革,建立更直接服务基层的体制机制"
    assert c.sentences_simplified[1].endswith("事业编制2016年年底前精简至1120名左右。")
    lead = plan.section("三").lead
    assert (lead.clause, lead.ref, lead.kind) == ("", "三", "lead")


def test_ids_are_unique_and_stable(plan):
    ids = [p.id for p in plan.passages]
    assert len(ids) == len(set(ids))
    assert plan.get("五.4").heading_simplified.startswith("突出和增强先进性")


def test_cleaning_removes_all_pinyin_and_keeps_real_parentheses(plan):
    text = "\n".join(p.text for p in plan.passages)
    assert not re.search(r"\([a-zāáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜü]+\)", text)
    assert not re.search(r"[āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜ]", text)
    parens = re.findall(r"\([^()]*\)", text)
    assert sorted(parens) == sorted(["(試行)", "(常務理事會)", "(離)", "(PPP)"])


def test_redaction_is_kept_verbatim(plan):
    assert "加強*********學會與地方科協" in plan.section("三").lead.text


def test_strip_pinyin_cases():
    assert strip_pinyin("印發了(le)《方案》") == "印發了《方案》"
    assert strip_pinyin("工(gōng)作(zuò)者") == "工作者"
    assert strip_pinyin("理事會(huì)(常務理(lǐ)事(shì)會(huì))") == "理事會(常務理事會)"
    assert strip_pinyin("(PPP)模式(試行)") == "(PPP)模式(試行)"
    assert strip_pinyin("ABC(note)") == "ABC(note)"  # only after a CJK character


def test_round_trip_of_clauses(plan):
    """Every clause's text, re-annotated nowhere, is found in the cleaned source."""
    cleaned = strip_pinyin(PLAN_TEXT_PATH.read_text(encoding="utf-8"))
    for p in plan.passages:
        for para in p.text.split("\n"):
            assert para in cleaned
        assert "".join(p.sentences) == p.text.replace("\n", "")
        assert p.text_simplified == to_simplified(p.text)


def test_cleaned_length_is_about_8000_chars(plan):
    assert 7500 < sum(len(p.text) for p in plan.passages) < 8500


SECOND_PLAN = """\
某市推進數據開放的實施方案
爲落實要求,制定本方案。
一、總體目標
到2030年,建成統一的數據開放平台。
（一）健全制度。制定開放目錄。明確責任分工。
1.建立目錄管理。每年更新一次。
2.建立安全審查。
（二）完善平台。
（1）統一入口。
（2）統一標準。
二、保障措施
1.加強組織領導。成立領導小組。
——壓實責任。各部門負責。
——強化考核。納入年度考核。
2.加強經費保障。
"""


def test_parser_handles_another_plan_in_the_same_style():
    p = parse_plan(SECOND_PLAN)
    assert [s.number for s in p.sections] == ["一", "二"]
    one, two = p.sections
    assert one.lead is not None and "2030年" in one.lead.text
    # （一） fixes the clause style of section 一; its "1." lines become items.
    assert [c.clause for c in one.clauses] == ["一", "二"]
    assert one.clauses[0].ref == "一、一"
    assert [i.marker for i in one.clauses[0].items] == ["1.", "2."]
    assert [i.marker for i in one.clauses[1].items] == ["（1）", "（2）"]
    assert one.clauses[0].heading == "健全制度"
    assert [c.clause for c in two.clauses] == ["1", "2"]
    assert [i.heading for i in two.clauses[0].items] == ["壓實責任", "強化考核"]
    assert len(p.preamble) == 2
    assert two.clauses[1].heading_simplified == "加强经费保障"
