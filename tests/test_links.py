"""Question links: the data file, adding one, suggestions from feedback, and that they
score for their passage without ever being quoted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planqa.config import Settings
from planqa.corpus import load_plan
from planqa.errors import InvalidQuestion
from planqa.index import plan_units
from planqa.links import add_link, read_links, ref_passage, suggestions


@pytest.fixture(scope="module")
def plan_only():
    return load_plan()


def test_the_shipped_links_cover_every_clause_and_name_real_passages(plan_only):
    links = read_links(Settings().links_path)
    assert len(links) >= 500
    refs = {lk.ref for lk in links}
    clauses = {c.ref for s in plan_only.sections for c in s.clauses}
    assert clauses <= refs
    assert all(ref_passage(plan_only, r) is not None for r in refs)
    per_clause = {r: sum(lk.ref == r for lk in links) for r in clauses}
    assert min(per_clause.values()) >= 15


def test_links_are_units_of_their_passage_never_sentences(plan_only):
    units = plan_units(plan_only, read_links(Settings().links_path))
    link_units = [u for u in units if u.kind == "link"]
    assert link_units and all(u.position == -1 for u in link_units)
    # A section's lead and the preamble's substantive paragraph stand for their refs.
    assert ref_passage(plan_only, "二").kind == "lead"
    assert "科协是科技工作者的群众组织" in ref_passage(plan_only, "前言").text_simplified


def test_add_link_validates_and_appends(plan_only, tmp_path: Path):
    path = tmp_path / "links.tsv"
    path.write_text("二、2\t科协要少养点人吗", encoding="utf-8")  # no final newline
    link = add_link(path, "  机关 要 瘦身吗？ ", "二.3", plan_only)
    assert link.ref == "二、3"
    assert [(lk.ref, lk.question) for lk in read_links(path)] == [
        ("二、2", "科协要少养点人吗"), ("二、3", "机关 要 瘦身吗?")]
    with pytest.raises(InvalidQuestion, match="no passage"):
        add_link(path, "问题", "九、9", plan_only)
    with pytest.raises(InvalidQuestion, match="already"):
        add_link(path, "科协要少养点人吗", "二、2", plan_only)
    with pytest.raises(InvalidQuestion):
        add_link(path, "   ", "二、2", plan_only)


def test_suggestions_list_thumbs_down_questions_once_newest_first(tmp_path: Path):
    log = tmp_path / "feedback.jsonl"
    rows = [{"question": "老问题", "vote": "not_useful", "citations": [{"ref": "二、1"}]},
            {"question": "好问题", "vote": "useful", "citations": []},
            {"question": "新问题", "vote": "not_useful", "citations": [], "comment": "答非所问"},
            {"question": "老问题", "vote": "not_useful", "citations": []}]
    log.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
                   + "\n{torn line", encoding="utf-8")
    got = suggestions(log)
    assert [g["question"] for g in got] == ["老问题", "新问题"]
    assert got[1]["comment"] == "答非所问"
    assert suggestions(tmp_path / "none.jsonl") == []


def test_a_spoken_question_reaches_its_clause_through_the_links(qa):
    """Without shared words ("智囊团" is not in the plan), the links carry it to 四、4."""
    a = qa.ask("科协想当政府的智囊团，方案怎么说")
    assert a.found and a.citations[0].ref == "四、4"
    # Links are never quoted: every highlight stands in the plan.
    corpus = "".join(p.text_simplified for p in qa.plan.passages)
    assert all(h in corpus for c in a.citations for h in c.highlights)


def test_the_cli_adds_a_link(tmp_path: Path, monkeypatch, capsys):
    from planqa.cli import main

    path = tmp_path / "links.tsv"
    monkeypatch.setenv("PLANQA_LINKS_PATH", str(path))
    assert main(["link", "学会能自己当家吗", "三、2"]) == 0
    assert "三、2" in capsys.readouterr().out
    assert read_links(path)[0].question == "学会能自己当家吗"
    assert main(["link", "学会能自己当家吗", "十、1"]) == 2
