"""The retriever as other programs use it: LangChain Documents with fixed metadata."""

import random

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from planqa.query import parse_query
from planqa.refs import Reference, parse_reference
from planqa.retrieval import PlanRetriever

METADATA = {"section", "section_title", "clause", "ref", "heading", "score", "matched_sentence"}


@pytest.fixture(scope="module")
def retriever(searcher):
    return PlanRetriever(searcher=searcher, k=5)


def test_is_a_langchain_retriever_returning_documents(retriever):
    docs = retriever.invoke("事业编制要精简到多少名？")
    assert isinstance(retriever, BaseRetriever)
    assert all(isinstance(d, Document) for d in docs)
    assert len(docs) == 5
    top = docs[0]
    assert top.metadata["ref"] == "二、2"
    assert set(top.metadata) >= METADATA
    assert "1120" in top.metadata["matched_sentence"]
    assert top.page_content.startswith("深化科协机关改革")
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)


def test_one_document_per_passage(retriever):
    docs = retriever.invoke("学会")
    ids = [d.metadata["id"] for d in docs]
    assert len(ids) == len(set(ids))


def test_traditional_question_gets_traditional_text(retriever):
    docs = retriever.invoke("事業編制要精簡到多少名？")
    assert docs[0].metadata["ref"] == "二、2"
    assert "編制" in docs[0].page_content
    assert docs[0].metadata["section_title"] == "改革聯系服務科技工作者的體制機制"


def test_english_question(retriever):
    docs = retriever.invoke("What are the basic principles of the reform?")
    assert docs[0].metadata["ref"] == "一、2"


def test_lead_paragraphs_come_back_with_empty_clause(retriever):
    docs = retriever.invoke("第三部分讲什么")
    assert (docs[0].metadata["section"], docs[0].metadata["clause"]) == ("三", "")
    assert docs[0].metadata["ref"] == "三"


@pytest.mark.parametrize(("question", "ref"), [
    ("第二部分第5条", "二、5"),
    ("二、5", "二、5"),
    ("第五部分第四条说了什么", "五、4"),
    ("第一部分的基本原则", "一、2"),
    ("part 2 clause 3", "二、3"),
])
def test_direct_references_resolve_exactly(retriever, question, ref):
    top = retriever.invoke(question)[0]
    assert top.metadata["ref"] == ref
    assert top.metadata["exact_ref"] is True
    assert top.metadata["score"] == 1.0


@pytest.mark.parametrize(("question", "expected"), [
    ("第二部分第5条讲什么", Reference("二", "5")),
    ("请问二、5是什么", Reference("二", "5")),
    ("第三部分", Reference("三")),
    ("第2部分第3条", Reference("二", "3")),
    ("What does part II clause 5 say?", Reference("二", "5")),
    # English number words: "section one", "the second part", "the third clause of …"
    ("What is section one about?", Reference("一")),
    ("What's the second part of the document about?", Reference("二")),
    ("the third clause of section four", Reference("四", "3")),
    ("one part of the reform is hard", None),  # a cardinal before the noun is no ref
    ("事业编制要精简到多少名？", None),
    ("2016年底前完成", None),
    ("第一动力是什么", None),
])
def test_parse_reference(question, expected):
    assert parse_reference(question) == expected


@pytest.mark.parametrize("bad", ["", "   ", "\n\t", "\u200b"])
def test_empty_question_is_a_clear_error(retriever, bad):
    with pytest.raises(ValueError, match="问题为空"):
        retriever.invoke(bad)


def test_huge_and_odd_input_does_not_crash(retriever):
    assert retriever.invoke("编制" * 10_000)[0].metadata["ref"]  # 20,000 chars: truncated
    for odd in ["😀🚀 编制？", "\x00\x07科普\x1b", "\ud800学会", "ＡＢＣ１２３科协"]:
        assert len(retriever.invoke(odd)) == 5


def test_load_retriever_rejects_bad_k():
    from planqa.retrieval import load_retriever

    with pytest.raises(ValueError):
        load_retriever(k=0)


def test_invoke_honours_k_per_call(searcher):
    """LangChain's standard retriever contract: invoke(q, k=1) returns one document."""
    from planqa.errors import InvalidQuestion

    retriever = PlanRetriever(searcher=searcher, k=5)
    assert len(retriever.invoke("学会治理", k=1)) == 1
    assert len(retriever.invoke("学会治理", k=3)) == 3
    assert len(retriever.invoke("学会治理")) == 5
    with pytest.raises(InvalidQuestion):
        retriever.invoke("学会治理", k=0)


def test_a_link_scores_for_every_paragraph_of_its_ref(searcher):
    """The preamble's links name "前言", which spans the news lead-in and the body:
    each paragraph gets the link score, so its text decides which one answers."""
    preamble = [p.id for p in searcher.plan.passages if p.ref == "前言" and p.sentences]
    assert len(preamble) >= 2
    channels, floors, _, _ = searcher.channel_scores(parse_query("科协改革方案是谁印发的"))
    link = {pid: float(channels["dense_link"][searcher._pid_pos[pid]]) for pid in preamble}
    assert len(set(link.values())) == 1, link
    assert floors["dense_link"] < min(link.values())
    hits = searcher.search("新华社的电讯说这个方案是谁印发的", k=1)
    assert hits[0].passage.id == "前言.1"


def test_glossary_matches_ies_plurals():
    from planqa.text import english_terms

    assert english_terms("parties") == english_terms("party") != []
    assert english_terms("the keys") == []  # a vowel before the y: no "kie"


@pytest.mark.parametrize(("typed", "meant"), [
    ("the academic jounrals", "the academic journals"),  # two letters swapped
    ("goverment transfers", "government transfers"),  # one dropped
    ("innovaton", "innovation"),
])
def test_a_slip_in_an_english_word_is_read_as_the_glossary_word(typed, meant):
    from planqa.text import english_reading

    assert english_reading(typed) == english_reading(meant)
    assert english_reading(typed)[0]


@pytest.mark.parametrize("word", ["trail", "society's", "branches", "businesses", "thinking"])
def test_real_words_and_inflections_are_not_respelled(word):
    from planqa.text import _spelled

    assert _spelled(word) is None


def test_english_words_without_a_plan_term_count_against_the_share(searcher):
    from planqa.text import english_unknown

    assert english_unknown("What will the euro exchange rate be next month?") == [
        "euro", "rate", "next", "month"]  # "exchange" is 交流; the rest are asking words
    assert english_unknown("Who hires a society's secretary-general?") == []
    # 交流 is in several passages, but it is a quarter of the question, not all of it
    (hit,) = searcher.search("What will the euro exchange rate be next month?", k=1)
    assert hit.lexical < 0.2
    (hit,) = searcher.search("How are academic exchanges organised?", k=1)
    assert hit.lexical > 0.5


def test_english_questions_the_plan_does_not_cover_are_refused(qa):
    assert not qa.ask("What will the euro exchange rate be next month?").found
    a = qa.ask("Which academic exchange activities should societies organise?")
    assert a.found and "学术交流" in a.text


def test_a_line_that_only_announces_the_text_is_never_a_hit(searcher, plan):
    announcing = [p for p in plan.passages if p.announces]
    assert [p.text_simplified for p in announcing] == ["《科协系统深化改革实施方案》全文如下。"]
    hits = searcher.search("方案全文如下", k=len(plan.passages))
    assert hits and all(not h.passage.announces for h in hits)
    assert not any(p.announces for p in plan.passages if p.kind != "preamble")


def test_postings_bm25_gives_rank_bm25s_numbers_bit_for_bit():
    import numpy as np
    from rank_bm25 import BM25Okapi

    from planqa.retrieval import _PostingsBM25

    corpus = [["科协", "改革", "编制"], ["学会", "改革", "改革"], ["科普"], ["学会", "秘书处"]]
    for query in (["改革"], ["学会", "编制", "学会"], ["没有的词"], [], ["科普", "秘书处"]):
        assert np.array_equal(_PostingsBM25(corpus).get_scores(query),
                              BM25Okapi(corpus).get_scores(query)), query
    # Many documents and terms, repeated terms and empty documents: the postings are
    # built in one array expression, so its grouping must hold at scale too.
    rng = random.Random(7)
    words = [f"词{i}" for i in range(60)]
    corpus = [rng.choices(words, k=rng.randrange(0, 12)) for _ in range(400)]
    ours, theirs = _PostingsBM25(corpus), BM25Okapi(corpus)
    for _ in range(50):
        query = rng.choices([*words, "没有的词"], k=rng.randrange(1, 6))
        assert np.array_equal(ours.get_scores(query), theirs.get_scores(query)), query


def test_parse_reads_a_question_once_and_keeps_no_megabyte_keys(searcher):
    from planqa.errors import InvalidQuestion

    first = searcher.parse("事业编治要精减到多少？")
    assert searcher.parse("事业编治要精减到多少？") is first  # condense, retrieve, compose
    assert "编制" in first.simplified and first.text == "事业编治要精减到多少?"
    huge = "学会" * 500_000
    assert searcher.parse(huge).text == searcher.parse(huge[:10_000]).text
    with pytest.raises(InvalidQuestion):
        searcher.parse(["not", "a", "string"])


def test_a_clause_heading_names_its_topic_before_its_sections_title(searcher):
    """三's title and 三、2's heading both hold 学会治理结构改革: the clause is named, so
    the section's lead does not come first; one shared word (学会) still counts for 三."""
    heading = searcher._heading_scores(["学会", "治理", "结构", "改革", "到底", "改成"])
    assert heading[searcher._pid_pos["三.lead"]] == 0.0
    assert heading[searcher._pid_pos["三.2"]] > 0.3
    assert searcher.search("学会治理结构改革到底要改成啥样", k=1)[0].passage.ref == "三、2"
    heading = searcher._heading_scores(["学会", "科协", "关系"])
    assert heading[searcher._pid_pos["三.lead"]] > 0.0


def test_a_link_lifts_the_sentence_it_was_written_for(searcher):
    """A link names one sentence of its clause: "孩子喜欢搞科技小发明…" is 二、7's
    青少年 sentence. Where the question matches the links well, that sentence is
    lifted towards the passage's best (so it is quoted); other sentences keep their
    own evidence, and a question that matches no link lifts nothing."""
    link = next(j for j, i in enumerate(searcher._link_idx)
                if "小发明" in searcher.units[i].text and searcher.units[i].passage_id == "二.7")
    anchored = searcher._sent_idx[searcher._link_anchor[link]]
    assert "青少年科学实践活动" in searcher.units[anchored].text

    q = searcher.parse("我孩子喜欢搞科技小发明，以后能不能被当成苗子培养？")
    _, _, signals, terms = searcher.channel_scores(q)
    n = len(searcher.passage_ids)
    plain, _ = searcher._sentence_scores(signals, terms, np.zeros(n))
    lifted, _ = searcher._sentence_scores(signals, terms, np.ones(n))
    at = searcher.units[anchored].position
    own, best = plain["二.7"], lifted["二.7"]
    assert best[at] >= 0.95 * max(own) - 1e-6 and best[at] > own[at]
    assert [b for k, b in enumerate(best) if k != at] == [o for k, o in enumerate(own) if k != at]
    changed = [pid for pid in plain if plain[pid] != lifted[pid]]
    assert all(sum(a != b for a, b in zip(plain[p], lifted[p], strict=True)) == 1 for p in changed)


def test_words_that_frame_a_topic_are_no_query_terms(searcher, qa):
    terms = searcher.query_terms("学会这块这次有啥新变化")
    assert "学会" in terms and not {"这块", "这次"} & set(terms)
    a = qa.ask("期刊这块这次有啥新说法")
    assert a.found and a.citations[0].ref == "四、1"


def test_a_close_clause_goes_before_its_sections_lead():
    """A lead sums up its section in general words; a clause of that section scoring
    nearly as well is the specific answer. A clause of another section, or one well
    behind, leaves the lead first."""
    from planqa.corpus import Passage
    from planqa.retrieval import Hit, prefer_clause_to_lead

    def hit(ref: str, kind: str, score: float) -> Hit:
        section, _, clause = ref.partition("、")
        p = Passage(id=ref, ref=ref, kind=kind, section=section, clause=clause,
                    section_title="", heading="", text="", sentences=("x",))
        return Hit(p, score, "x", 0, 0.9, 0.5)

    lead, near = hit("五", "lead", 1.0), hit("五、3", "clause", 0.96)
    other = hit("二、4", "clause", 0.99)
    moved = prefer_clause_to_lead([lead, other, near])
    assert [h.passage.ref for h in moved] == ["五、3", "五", "二、4"]
    assert prefer_clause_to_lead([lead, other]) == [lead, other]
    far = hit("五、3", "clause", 0.80)
    assert prefer_clause_to_lead([lead, far]) == [lead, far]
    assert prefer_clause_to_lead([near, lead]) == [near, lead]
    assert prefer_clause_to_lead([]) == []
