"""Answers: extractive and exact, in the question's script, with the source named."""

import re

import pytest

from planqa.answer_type import expected_type, sentence_answers
from planqa.answering import enumerate_items
from planqa.query import LIST, PLAIN, ROUNDUP, STRUCTURE, classify
from planqa.text import normalize_query, to_simplified


def test_the_1120_question(qa):
    a = qa.ask("事业编制要精简到多少名？")
    assert a.found
    assert a.citations[0].ref == "二、2"
    assert "1120名" in a.text
    assert "事业编制2016年年底前精简至1120名左右。" in a.citations[0].quote
    assert ("（出处：第二部分“改革联系服务科技工作者的体制机制”第2条“深化科协机关改革"
            in a.text)


def test_the_plan_does_not_say(qa):
    a = qa.ask("科协现任主席是谁？")
    assert not a.found
    assert a.citations == []
    assert "没有" in a.text and "规定" in a.text
    assert a.related, "nearest clauses are offered as 可能相关"


@pytest.mark.parametrize("question", [
    "明天北京天气怎么样？",
    "网上科技工作者之家每年的预算是多少？",
    "改革之前中国科协有多少事业编制？",
    "海外人才离岸创新创业基地建在哪几个城市？",
    # on topic, but a detail of carrying the clause out that the plan leaves open
    "网上科技工作者之家的官网网址是多少？",
    "学会党建工作交流会每年开几次？",
    "高等学校科协联盟是哪所高校牵头的？",
    "要成立几个产业协同创新共同体？",  # 一批: the plan gives no number
])
def test_refusals(qa, question):
    assert not qa.ask(question).found


def test_traditional_question_gets_the_source_traditional(qa, plan):
    a = qa.ask("事業編制要精簡到多少名？")
    assert a.traditional and a.found
    assert "事業編制2016年年底前精簡至1120名左右。" in a.text
    assert "出處" in a.text
    corpus = "".join(p.text for p in plan.passages)
    assert all(h in corpus for h in a.citations[0].highlights)


def test_english_question_gets_simplified_chinese(qa):
    a = qa.ask("How many career-establishment posts will CAST keep?")
    assert a.found and not a.traditional
    assert a.citations[0].ref == "二、2"
    assert "1120名" in a.text


def test_list_of_principles_by_heading(qa):
    a = qa.ask("基本原则有哪些？")
    assert a.citations[0].ref == "一、2"
    principles = ["加强政治引领", "密切联系群众", "突出问题导向", "强化学会主体地位",
                  "坚持系统推进"]
    for heading in principles:
        assert f". {heading}" in a.text


def test_list_from_an_enumeration(qa):
    a = qa.ask("要增强哪四个意识？")
    assert a.citations[0].ref == "五、3"
    for item in ["政治意识", "大局意识", "核心意识", "看齐意识"]:
        assert item in a.text


def test_document_structure_from_the_tree(qa):
    a = qa.ask("方案分为哪几个部分？")
    assert a.found
    assert [c.ref for c in a.citations] == ["一", "二", "三", "四", "五"]
    assert "加强对科技工作者的政治引领" in a.text


def test_section_overview(qa):
    a = qa.ask("第三部分讲什么？")
    assert a.citations[0].ref == "三"
    assert "4条" in a.text and "探索建立学会联合体" in a.text


def test_direct_reference_quotes_the_clause_with_its_heading(qa, plan):
    a = qa.ask("第二部分第5条")
    clause = plan.clause("二", "5")
    assert a.citations[0].ref == "二、5"
    assert clause.heading_simplified in a.text
    assert all(s in a.text for s in clause.sentences_simplified)


def test_reference_beyond_the_plan(qa):
    assert "只有7条" in qa.ask("第二部分第9条讲什么？").text
    assert "只有5个部分" in qa.ask("第七部分讲什么？").text


def test_stream_yields_the_answer_in_pieces(qa):
    pieces = list(qa.stream("基本原则有哪些？"))
    assert len(pieces) > 3
    assert "".join(pieces) == qa.ask("基本原则有哪些？").text


def test_forced_script(qa):
    assert qa.ask("事业编制要精简到多少名？", script="traditional").traditional
    with pytest.raises(ValueError):
        qa.ask("编制", script="klingon")


@pytest.mark.parametrize("history", ["nope", [("only one",)], [(1, 2)]])
def test_malformed_history_is_a_clear_error(qa, history):
    with pytest.raises(ValueError, match="history"):
        qa.ask("编制呢？", history)


# ---------------------------------------------------------------- pure pieces


@pytest.mark.parametrize(("question", "kind"), [
    ("方案分为哪几个部分？", STRUCTURE),
    ("这个文件一共有几大部分", STRUCTURE),
    ("方案包括哪几个方面？", STRUCTURE),
    ("学会治理里要抓好几个方面？", LIST),  # a clause's 方面, not the document's
    ("基本原则有哪些？", LIST),
    ("要增强哪四个意识？", LIST),
    ("事业编制要精简到多少名？", PLAIN),
    # which clauses, not how many items: round-ups in other words
    ("挂职交流方案哪几条都讲到了？", ROUNDUP),
    ("把涉及智库的内容汇总一下", ROUNDUP),
    ("讲院士的条款全找出来", ROUNDUP),
    ("Which clauses mention science popularization?", ROUNDUP),
    ("基本原则有哪几条？", LIST),
    ("What is the structure of the plan?", STRUCTURE),
    ("How is the document structured?", STRUCTURE),
    ("What are the main parts of this document?", STRUCTURE),
    ("Which parts of the plan deal with science popularisation?", ROUNDUP),
    ("What sort of academic exchange structure should associations set up?", PLAIN),
    # the structure of something the plan describes, not of the plan
    ("How should the youth award scheme be structured?", PLAIN),
    ("Can you outline what the plan says about academicians?", PLAIN),
    ("Give me an outline.", STRUCTURE),
    # "散落各处" of papers lost in the world, not of the plan's clauses
    ("老先生们的手稿散落各处，有人管吗", PLAIN),
    ("跟挂职有关的规定散落在哪些条款", ROUNDUP),
    # where in the plan, however it is put
    ("挂职交流分别在哪几条有规定？", ROUNDUP),
    ("智库这个词在方案里出现过几次", ROUNDUP),
    ("科普一共在几个地方提到？", ROUNDUP),
    ("方案里哪几个地方讲到院士？", ROUNDUP),
    ("学会改革方方面面都是怎么写的？", ROUNDUP),
    ("评奖的事方案里都在哪儿提到？", ROUNDUP),
    # the places are what is listed, not the items of one clause
    ("提到“桥梁纽带”的地方有哪些？", ROUNDUP),
    ("讲到院士的条款都有哪几条", ROUNDUP),
])
def test_classify(question, kind):
    assert classify(question) == kind


@pytest.mark.parametrize(("question", "anchor"), [
    ("改革之前有多少个事业单位？", True),
    ("原来的编制是多少？", True),
    ("编制压缩啥时候之前要完成？", False),  # a deadline, not the figure before the reform
    ("要在2016年年底以前完成吗？", False),
])
def test_a_deadline_is_not_a_time_anchor(question, anchor):
    from planqa.answer_type import asks_for_anchor

    assert asks_for_anchor(question) is anchor


@pytest.mark.parametrize(("question", "anchor"), [
    ("科协机关现在有多少人？", True),  # today's head-count: the plan gives only targets
    ("How many staff does the society office have now?", True),
    ("现在学会的秘书长由谁来聘？", False),  # "now" = under the plan, for a body
    ("Under the reform, who hires a society's secretary-general now?", False),
    ("现任主席是谁？", True),
])
def test_now_anchors_a_figure_not_a_body(question, anchor):
    from planqa.answer_type import asks_for_anchor, expected_type

    assert asks_for_anchor(question, expected_type(question)) is anchor


def test_now_under_the_plan_is_answered_with_the_body(qa):
    a = qa.ask("In the reformed system, who gets to hire a society's secretary-general now?")
    assert a.found and a.citations[0].ref == "三、3"
    assert "理事会聘任秘书长制" in a.text


@pytest.mark.parametrize(("question", "topic"), [
    ("方案里讲到科普的地方，一条条列出来", "科普"),
    ("学术交流在方案里哪几处有要求？", "学术交流"),
    ("跟挂职有关的规定散落在哪些条款，汇总一下", "挂职"),
    ("院士这件事，方案哪几条都提到了？", "院士"),
    ("期刊在这个方案里被提到过几回？每处说的啥，帮我列全", "期刊"),
    ("跟国外打交道的内容，方案里散在哪几处？给我捋一捋", "跟国外打交道"),
    ("科普相关的内容分散在哪几条？帮我捋一捋", "科普"),
    ("Where all does the plan mention academic journals?", "academic journals"),
    ("Which parts of the plan deal with science outreach? List them all.", "science outreach"),
])
def test_roundup_topic_leaves_the_topic(question, topic):
    from planqa.query import roundup_topic
    from planqa.text import tokenize

    assert tokenize(roundup_topic(question)) == tokenize(topic)


def test_enumerate_items_trims_lead_in_and_tail():
    s = "要进一步增强政治意识、大局意识、核心意识、看齐意识,坚定政治立场。"
    assert enumerate_items(s) == ["政治意识", "大局意识", "核心意识", "看齐意识"]
    assert enumerate_items("成立甲中心、乙中心和丙中心等。")[-1] == "乙中心和丙中心"
    assert enumerate_items("没有列举。") == []
    # items inside a phrase: the lead-in before the first and the tail after the last go
    three = ["政治性", "先进性", "群众性"]
    assert enumerate_items("以有效增强政治性、先进性、群众性为目标。") == three


def test_a_list_is_the_enumeration_the_question_asks_about(qa):
    """Of the quoted sentences' enumerations, the one the question's words are in."""
    a = qa.ask("Which three qualities is the reform trying to strengthen?")
    assert a.found and a.citations[0].ref == "一、1"
    assert "1. 政治性\n2. 先进性\n3. 群众性" in a.text


@pytest.mark.parametrize("question", ["帮我写首七言绝句，夸一夸搞科研的人。",
                                      "给科协改革编个顺口溜"])
def test_verse_to_order_is_refused(qa, question):
    assert not qa.ask(question).found
    # of two lists as long, the one the question is about
    two = "解决甲化、乙化、丙化等问题,服务企业、服务农村、服务高校的能力增强。"
    assert "乙化" in enumerate_items(two)
    assert "服务农村" in enumerate_items(two, "要增强哪几种服务能力")


@pytest.mark.parametrize(("question", "type_name"), [
    ("事业编制要精简到多少名？", "count"),
    ("学会秘书长的年薪是多少？", "money"),
    ("试点在哪些省份？", "place"),
    ("这个平台在哪里报名？", "errand"),  # a site, an address: never in the plan
    ("Where can I sign up for the training?", "errand"),
    ("Where can I get a new staff badge printed?", "errand"),
    ("How can I reset the password of my office account?", "errand"),
    ("大礼堂怎么预约", "errand"),
    ("那个网站的网址是啥", "errand"),
    ("想报名的话要交什么材料", "errand"),
    ("What is the URL of the online home?", "errand"),
    ("培训班一年办几期", "frequency"),
    ("公开招聘考哪些科目", "exam"),
    ("联盟由哪所大学牵头", "institution"),
    ("办学会要找哪个部门审批？", "errand"),  # a procedure
    ("要走什么流程", "errand"),
    ("承接职能的审批程序有规定吗", None),  # the plan speaks of 审批程序
    ("年终考核怎么考", "exam"),
    ("Which university leads the alliance?", "institution"),
    ("秘书长招聘有年龄限制吗，多大以下才能报", "age"),
    ("查实以后几年内不能再申报？", "date"),
    ("我们的想法不知道该跟谁说", None),  # a channel to be heard, not a body
    ("这事归谁管？", "agent"),
    ("主要宣传谁", None),  # for whom it is done: people, not a body
    ("这个活动面向谁？", None),
    ("学会党建的毛病主要出在哪？", None),  # where = in what respect
    ("全国代表大会几年开一次？", "frequency"),
    ("最晚什么时候完成？", "date"),
    ("基层比例要提高到多少？", "ratio"),
    ("现任主席是谁？", "person"),
    ("学会要设立哪几个机构？", None),
    ("研究方向差不多的几个学会能不能抱团发展？", None),
    ("学会一共有几个？", "count"),
    ("要建几个共同体？", "count"),  # a verb between 要 and 几
    ("县里要配几个编制", "count"),
    ("要建哪几个共同体？", None),  # a list
    # why-questions ask for the reason, not for the figure they mention
    ("提高基层代表的比例有什么意义？", None),
    ("为什么要把事业单位压缩到13个？", None),
    ("Why cut the staff to 1120?", None),
    # "就是几个…" is "just a few", not "how many"
    ("科协就是几个专家说了算吗", None),
    # "能不能几家合伙" asks whether some may join hands, not how many
    ("我们厂小，能不能几家合起来建一个科协？", None),
    # a month, a penalty, a cadre's rank, an app: details the plan never gives
    ("试点方案几月份出来？", "date"),
    ("Which month does the pilot start?", "date"),
    ("违反学风的人会受到什么处罚", "penalty"),
    ("Are there sanctions for fake data?", "penalty"),
    ("党工委书记一般是什么级别？", "rank"),
    ("这个活动在哪个app上报名", "errand"),
    ("在什么网站上能查到名单", "errand"),
    ("资料库最后建成个什么网站？", None),  # what it becomes: the plan may name it
    # the plan's own 社会资本, asked about without an amount
    ("科普要不要拉社会资本进来？", None),
    ("需要多少社会资本？", "money"),
    ("理事会多长时间一回改选？", "frequency"),
    # something to write to order, or a roster: nothing the plan holds
    ("帮我写一首夸青年科技工作者的诗", "composition"),
    ("Could you write a short speech for our awards night?", "composition"),
    ("歌颂科学家的活动有哪些", None),
    ("第一批联合体的学会名单", "roster"),
    ("入选试点的是哪几家学会？", "roster"),
    ("哪些学会可以承接政府转移职能？", None),  # a kind of society, which the plan names
    ("机关精简以后，编外人员怎么分流？", "resettlement"),
    # "比谁都大" compares, it asks for nobody; "会不会设几个" asks whether, not how many
    ("那帮人架子比谁都大，方案管不管？", None),
    ("学会能不能多配几个专职的？", None),
    ("学会要配几个专职的？", "count"),
    # a venue is a place the plan never names
    ("下一届学术年会在哪里举办？", "place"),
    ("Where will the next congress be held?", "place"),
    ("What is the maximum number of members a council may have?", "count"),
])
def test_expected_answer_type(question, type_name):
    t = expected_type(normalize_query(question))
    assert (t.name if t else None) == type_name


def test_sentence_must_hold_the_asked_fact():
    s = to_simplified("事業編制2016年年底前精簡至1120名左右。")
    assert sentence_answers("事业编制要精简到多少名？", s)
    assert not sentence_answers("事业编制的预算是多少钱？", s)
    # "before the reform" needs a sentence that states an earlier value
    assert not sentence_answers("改革前事业编制有多少名？", s)
    assert sentence_answers("目前的比例是多少？", "比例由目前的58%提高至65%左右。")
    # "大学生科协" and "大学科领域" name no university
    assert not sentence_answers("哪所大学牵头？", "支持大学生科协活动,推动面向大学科领域的联合体。")
    assert sentence_answers("哪所大学牵头？", "由清华大学牵头。")


@pytest.mark.parametrize(("question", "sentence", "answers"), [
    # a count in the unit asked for: things and people alike, a span of time only in years
    ("秘书长一届要干几年？", "原则上要干满一届。", False),
    ("秘书长至少干几年？", "挂职时间不少于两年。", True),
    ("事业编制精简到几个？", "事业编制2016年年底前精简至1120名左右。", True),
    ("事业单位要压缩到几家？", "所属事业单位2016年年底前压缩至13个。", True),
    ("学会要配几个专职人员？", "2016年年底前完成。", False),
])
def test_a_count_is_in_the_unit_asked_for(question, sentence, answers):
    assert sentence_answers(normalize_query(question), sentence) is answers


def test_a_person_asked_for_by_post_is_named_with_it():
    # the head of the party is no answer to who chairs the association
    assert not sentence_answers("Who is the association's president?", "贯彻习近平总书记讲话精神。")
    assert sentence_answers("主席是谁？", "韩启德主席指出。")
    assert sentence_answers("总书记是谁？", "贯彻习近平总书记讲话精神。")


def _hit(passage, scores):
    from planqa.retrieval import Hit

    return Hit(passage, 1.0, passage.sentences_simplified[0], 0, 0.9, 0.5,
               sentence_scores=tuple(scores))


def test_a_figure_must_stand_in_a_sentence_about_the_question(plan):
    from planqa.answering import pick_sentences

    clause = plan.clause("二", "1")
    # Sentence 4 holds "任期一届" (a date-like figure), sentence 1 is about the congress.
    assert "一届" in clause.sentences_simplified[4]
    asked = normalize_query("中国科协下一届全国代表大会定在哪一年召开？")
    far = [0.2, 1.0, 0.5, 0.3, 0.6]
    assert pick_sentences(_hit(clause, far), asked) == []
    near = [0.2, 1.0, 0.5, 0.3, 0.9]
    assert 4 in pick_sentences(_hit(clause, near), asked)


def test_a_question_about_a_whole_clause_gets_all_its_measures(qa, plan):
    """Asked in the words of a clause's heading, the answer is the whole clause, not the
    heading and one sentence of it."""
    # In the heading's own words (改革学会党建工作机制). "学会的党建工作机制要怎么改" now
    # reaches 五、2, whose body says 理顺…学会党建工作的体制机制 too (see the closing note).
    a = qa.ask("学会党建工作机制怎么改革？")
    clause = plan.clause("五", "1")
    assert a.found and a.citations[0].ref == "五、1"
    assert all(s in a.text for s in clause.sentences_simplified)
    # A specific question still gets its one sentence.
    b = qa.ask("事业编制要精简到多少名？")
    assert len(b.citations[0].highlights) == 1


def test_a_tracer_sees_the_retrieve_step_as_a_retriever_run(qa):
    """PlanQA's chain reports retrieval to LangChain callbacks with its documents."""
    from langchain_core.callbacks import BaseCallbackHandler

    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.queries: list[str] = []
            self.documents: list = []

        def on_retriever_start(self, serialized, query, **kwargs):
            self.queries.append(query)

        def on_retriever_end(self, documents, **kwargs):
            self.documents.append(documents)

    rec = Recorder()
    answer = qa.ask("事业编制要精简到多少名？", config={"callbacks": [rec]})
    assert rec.queries == ["事业编制要精简到多少名?"]  # as retrieval sees it (half-width)
    assert rec.documents[0][0].metadata["ref"] == answer.citations[0].ref == "二、2"

    # asked inside someone's own Runnable, the ask is part of their run and traced too
    from langchain_core.runnables import RunnableLambda

    inner = Recorder()
    RunnableLambda(lambda q: qa.ask(q)).invoke("学会联合体怎么建？", config={"callbacks": [inner]})
    assert inner.queries == ["学会联合体怎么建?"]


@pytest.mark.parametrize("turns", [
    ["事业编制要精简到多少名？"],
    ["学会理事会里基层的要占多少？", "那常委会呢？"],
    ["方案里哪几处讲到青年科技工作者？"],
    ["今天天气怎么样"],
    ["How many units will CAST keep?"],
])
def test_an_unobserved_ask_answers_as_the_chain_does(qa, turns):
    """With no callbacks, parent run or tracing, `ask` runs the chain's steps directly;
    the answer is the chain's to the letter."""
    from planqa.chain import _observed

    assert not _observed(None)
    history: list[tuple[str, str]] = []
    for question in turns:
        direct = qa.ask(question, history)
        chained = qa.ask(question, history, config={"tags": ["observed"]})
        assert direct == chained
        history.append((question, direct.text))


def test_counts_are_answered_from_the_structure(qa):
    a = qa.ask("方案提出了几条基本原则？")
    assert a.found and a.citations[0].ref == "一、2" and "共五条" in a.text
    assert "强化学会主体地位" in a.text


def test_a_roundup_lists_every_clause_on_the_topic_in_plan_order(qa):
    a = qa.ask("关于学术交流方案在哪几处有要求？帮我列全")
    refs = [c.ref for c in a.citations]
    assert a.found and a.mode == "roundup" and len(refs) >= 2
    order = [p.ref for p in qa.plan.passages]
    assert refs == sorted(refs, key=order.index)
    from planqa.refs import int_to_cn

    said = "两" if len(refs) == 2 else int_to_cn(len(refs))
    assert f"方案中共有{said}处" in a.text


def test_a_roundup_of_a_topic_one_clause_holds_says_so(qa):
    """Every passage holding the term is listed; when that is one, the answer says
    只有一处 rather than quoting it as if nothing else were asked."""
    holders = [p.ref for p in qa.plan.passages if "智库" in p.text_simplified]
    a = qa.ask("智库建设在方案里哪几处有要求？")
    assert a.found and a.mode == "roundup"
    assert [c.ref for c in a.citations] == holders == ["四、4"]
    assert "只有一处" in a.text


def test_a_roundup_topic_is_the_plans_words_in_it(qa):
    """Words the plan never uses ("硬性") cannot pick its passages: every clause holding
    the topic's own words is listed, not only one."""
    holders = [p.ref for p in qa.plan.passages
               if "期刊" in p.text_simplified and p.kind == "clause"]
    assert len(holders) >= 2
    a = qa.ask("对期刊的硬性要求有几处？都列出来")
    assert a.mode == "roundup" and [c.ref for c in a.citations] == holders


def test_a_roundup_in_everyday_words_lists_the_places_of_the_plans_term(qa):
    """"大学" is 高等学校 in the plan: the places holding 高等学校 are listed, not only
    those that also happen to say 大学."""
    assert qa.searcher.plan_terms("大学") == ["高等", "学校", "高等学校"]
    a = qa.ask("大学在这个方案里被提到过几回？每处说的啥，帮我列全")
    refs = [c.ref for c in a.citations]
    assert a.mode == "roundup" and len(refs) >= 4
    assert all("高等学校" in qa.plan.get(c.passage_id).text_simplified for c in a.citations)


def test_a_roundup_counts_places_never_the_items_of_one_sentence(qa):
    """"在几个地方提到 / 出现过几次" ask how many places of the plan; a failed round-up must
    not turn into "第X条共三个" (the items of one sentence)."""
    holders = [p.ref for p in qa.plan.passages if "学会联合体" in p.text_simplified]
    a = qa.ask("学会联合体在方案里出现过几次？各讲了啥")
    assert a.mode == "roundup" and [c.ref for c in a.citations] == holders
    assert "共有三处" in a.text
    for q in ("科技期刊一共在几个地方提到？", "天气预报在方案里一共在几个地方提到？"):
        assert not re.search(r"第.条共", qa.ask(q).text)


def test_a_roundup_in_everyday_words_reads_the_whole_topic(qa):
    """A topic with few of the plan's words ("年轻科研人员") is read by its meaning too:
    the clause that sets the share of young scientists is among those listed."""
    a = qa.ask("方案里讲年轻科研人员的地方都列出来")
    assert a.found and a.mode == "roundup" and len(a.citations) >= 2
    assert "二、1" in [c.ref for c in a.citations]
    assert "45岁以下青年科技工作者" in a.text


def test_a_list_question_inside_one_item_answers_from_that_item(qa):
    """"基本原则有哪些" lists the five —— items; a question that names one of them asks
    what that item says, not for the list again."""
    listed = qa.ask("基本原则有哪些？")
    assert "坚持系统推进" in listed.text
    a = qa.ask("坚持系统推进这条原则里提了哪些要求？")
    assert a.found and a.citations[0].ref == "一、2"
    assert "强化顶层设计" in a.text and "密切联系群众" not in a.text


def test_a_roundup_quotes_the_sentence_that_holds_the_topic():
    """Of a clause's sentences, those with the topic's words, not a heading that
    scores well on the common ones; the fullest first, at most three, in text order."""
    from planqa.answering import roundup_sentences
    from planqa.corpus import Passage
    from planqa.retrieval import Hit

    p = Passage(id="x", ref="二、7", kind="clause", section="二", clause="7",
                heading="", section_title="", text="", sentences=("a", "b", "c", "d"))
    hit = Hit(p, 0.5, "a", 0, 0.8, 0.5, sentence_scores=(0.9, 0.2, 0.4, 0.3),
              sentence_coverage=(0.5, 1.0, 1.0, 1.0))
    assert roundup_sentences(hit) == [1, 2, 3]
    assert roundup_sentences(hit, most=2) == [2, 3]
    assert roundup_sentences(hit, most=1) == [2]
    # a sentence with most of the best one's share counts; one with half of it does not
    near = Hit(p, 0.5, "a", 0, 0.8, 0.5, sentence_scores=(0.9, 0.2, 0.4, 0.3),
               sentence_coverage=(0.5, 1.0, 0.85, 0.2))
    assert roundup_sentences(near) == [1, 2]


def test_an_elliptical_follow_up_is_answered_from_the_clause_in_focus(qa):
    first = qa.ask("事业编制要精简到多少名？")
    a = qa.ask("什么时候完成？", [("事业编制要精简到多少名？", first.text)])
    assert a.found and a.citations[0].ref == "二、2" and "2016年年底前" in a.text


def test_the_nth_item_of_the_previous_list(qa):
    first = qa.ask("基本原则有哪些？")
    a = qa.ask("第三条是什么意思？", [("基本原则有哪些？", first.text)])
    assert a.found and a.citations[0].ref == "一、2" and "突出问题导向" in a.text


def _sentence_with(plan, ref, needle):
    p = next(x for x in plan.passages if x.ref == ref and x.kind == "clause")
    return p, [s for s in p.sentences_simplified if needle in s]


@pytest.mark.parametrize("question, ref, needle, expected", [
    # a group the plan never names, and not one character of it in the sentence
    ("常委会委员里女性要占多少比例？", "二、1", "常委会委员", "女性"),
    # a body the plan names elsewhere, not in this clause: whom the figure is not for
    ("省市级地方科协的编制要精简多少？", "二、2", "1120", "省市级地方科协"),
    # an attributive the plan never uses (jieba's "b"): 省级 is not the national body
    ("省级科协常委会委员的比例要到多少？", "二、1", "常委会委员", "省级科协"),
    # a compound the plan never uses, one part of it a plan word this clause lacks:
    # 行政编制 is not 二、2's 事业编制 (the plan says 行政化 elsewhere)
    ("中国科协机关的行政编制是多少个？", "二、2", "1120", "行政编制"),
    # the object of a verb before 的 describes people ("搞科研的": researchers), no body
    ("学会理事会里一线搞科研的要占多少？", "三、3", "四分之三以上", None),
    # the plan's own words, and a paraphrase that shares a character (年轻人 ~ 青年)
    ("常委会委员比例要提高到多少？", "二、1", "常委会委员", None),
    ("全国代表里45岁以下的年轻人占多少？", "二、1", "45岁", None),
    # the asked type's own words (多长时间, 比例) are no qualifier
    ("事业编制多长时间内精简到位？", "二、2", "1120", None),
    # the speaker's setting, in another clause, is no qualifier; nor is 合格 (a standard)
    ("他的编制还留在所里吗？得待多久才能回来", "二、1", "人事关系保留在原单位", None),
    ("学会理事里基层的人得占多少才算合格", "三、3", "四分之三以上", None),
    # the asked time in other words (限期, 时限) is the question, not whom it is for
    ("编制精简的限期到啥时候", "二、2", "1120", None),
    # 重点 says how much, not for whom ("哪个单位要重点做强")
    ("这里面哪个单位要重点做强？", "四、4", "创新战略研究院", None),
    ("事业单位压缩有时限吗，时限到哪年", "二、2", "13个", None),
    # the speaker's word for what the sentence gives (名额 for 比例, 位置 for a post) is
    # no other group: a word the plan never uses counts only if it names people or a body
    ("全国大会代表里年纪轻的名额给多少？", "二、1", "45岁", None),
    ("新组建的服务中心主任由谁担任？", "二、2", "企业创新服务中心", "主任"),
    # a plan word the passage has only in another of its sentences: that sentence's
    # figure is for them (代表), this one's for the committee
    ("全委会委员里45岁以下的青年占多少？", "二、1", "45岁", "全委会委员"),
    # a level below the national bodies, wherever it stands in the question
    ("咱们县里科协编制能有多少名？", "二、2", "1120", "县里科协"),
    ("我们省科协常委会里头，一线的要占多少？", "二、1", "常委会委员", "省科协"),
    ("我是省科协的，中国科协事业编制要精简到多少名？", "二、2", "1120", None),
])
def test_uncovered_qualifier(plan, question, ref, needle, expected):
    from planqa.answering import uncovered_qualifier
    from planqa.query import parse_query

    passage, sentences = _sentence_with(plan, ref, needle)
    assert sentences
    assert uncovered_qualifier(parse_query(question), sentences, passage, plan) == expected


def test_an_english_near_miss_names_the_level_the_plan_never_gives(qa):
    """The plan's figures are for the national bodies: asked for the provincial ones or
    for women in English, planqa says the plan does not give them, as in Chinese."""
    for q in ("What share of the provincial associations' committee members must come "
              "from the grassroots?", "What share of the national congress delegates "
              "must be women?"):
        a = qa.ask(q)
        assert not a.found and a.related and a.related[0].ref == "二、1", q
        assert "方案没有专门给出" in a.text
    # the same figure asked for the national body is answered
    a = qa.ask("What share of the national congress delegates must come from the grassroots?")
    assert a.found and a.citations[0].ref == "二、1"


def test_a_near_miss_names_whom_the_figure_is_for(qa):
    """Another group's figure is not handed over as the answer: the plan's own
    figure is quoted as what it says, and the answer is not found."""
    a = qa.ask("女性委员在常委会里要占多大比例？")
    assert not a.found and a.citations == []
    assert "女性" in a.text and a.related and a.related[0].ref == "二、1"
    assert "75%" in a.text


def test_those_few_is_not_a_count(qa):
    # "那几个大佬" points at some people; counting the clause's sentences answers nothing
    a = qa.ask("学会开会永远是那几个大佬，底下干活的人插不上话，管不管")
    assert a.found and "共" not in a.text.splitlines()[0]


def test_a_count_counts_a_list_of_what_was_asked(qa):
    # 四、2's 、-list there is of strategies (京津冀协同发展、“一带一路”…); of the
    # communities the plan says only 一批, so it has no count to give: it says so and
    # points at the clause
    a = qa.ask("依托学会要建几个产业协同创新共同体？")
    assert not a.found and a.related and a.related[0].ref == "四、2"
    assert "共三" not in a.text
    assert "共四个" in qa.ask("科协要增强几个意识？").text  # a list of 意识 is counted


def test_a_count_answered_by_a_figure_quotes_the_figure(qa):
    # "保留几个" asks for the plan's figure (压缩至13个), not for how many centres it lists
    a = qa.ask("直属事业单位最后保留几个？")
    assert a.citations[0].ref == "二、2"
    assert "13个" in a.text and "共六" not in a.text


def test_what_is_it_for_quotes_what_the_clause_says_it_does(qa):
    a = qa.ask("学会联合体有什么用？")
    assert a.citations[0].ref == "三、4"
    assert "集群发展" in a.text


def test_where_to_is_not_a_round_up():
    # "向哪些地方延伸" asks where the organisations go, not where the plan speaks of it
    assert classify("基层组织应当向哪些地方延伸覆盖？") != ROUNDUP
    assert classify("方案在哪些地方讲到延伸？") == ROUNDUP


def test_a_question_in_the_headings_words_gets_the_whole_clause(qa):
    # no sentence of 三、4 holds more of the question's words than its heading, so the
    # question is about the clause as a whole, and the 集群发展 sentence belongs to it
    a = qa.ask("建立学会联合体这件事方案怎么要求的？")
    assert a.citations[0].ref == "三、4"
    assert len(a.citations[0].highlights) == 4 and "集群发展" in a.text


def test_an_english_count_is_answered_with_the_count(qa):
    a = qa.ask("How many basic principles does the reform follow?")
    assert a.found and a.citations[0].ref == "一、2"
    assert "共五项" in a.text and "坚持系统推进" in a.text
    # a figure in the best sentence is the answer, not a count of a list
    b = qa.ask("How many staff posts will CAST have after the cuts?")
    assert b.found and b.citations[0].ref == "二、2" and "1120" in b.text


@pytest.mark.parametrize(("question", "kind"), [
    ("方案里点名了哪些国家战略", None),  # strategies, not countries
    ("哪些国家的科学家可以入会", "place"),
    ("which strategies are named when they talk about it?", None),  # "when" as "where"
    ("when will the cuts be done?", "date"),
    ("When it's all done, what should it have turned into?", None),  # a clause, then the ask
    ("what funding model does the platform use?", None),  # a model, not an amount
    ("how much funding does the platform get?", "money"),
    ("How much will a secretary-general be paid?", "money"),
])
def test_answer_types_read_in_context(question, kind):
    t = expected_type(question)
    assert (t.name if t else None) == kind


@pytest.mark.parametrize(("question", "kind"), [
    # the scene set first is the speaker's story; what is asked stands after it
    ("领导让我摸个底，代表里一线的人得占更大份额。我记得现在是五成多一点，要涨到多少？", "figure"),
    ("那时候不拿这边工资的副主席多是挂名的。现在这些副主席从什么人里挑？", None),
    ("要是几个学会合伙搞了个联盟，里面谁说了算？", "agent"),  # 要是几个: if some, no count
    ("常委会委员里女性要占多少比例？", "ratio"),
    ("我们学会人少。编制一共有多少名？", "count"),
    ("他们说要压缩编制", None),  # nothing asks: the whole is read
    # "有几位…想留" tells (a sentence asks with 几 only when it ends in ？)
    ("有几位老领导想留，吵了好几轮也没定下来。理事里头一线的起码得占多少？", "ratio"),
    ("我们学会接了政府的活儿，会不会哪天被上面查风险", None),  # some day, no date
    # one clause asks what, the other how many: the figure is not all that is asked
    ("想去机关挂职，留给外面人的是哪一级岗位，大概能有多少个位置", None),
    ("杰出工程师奖每年评几个人，奖金多少？", "money"),
    ("中国科协现在的主席是谁？叫什么名字？", "person"),  # 叫什么名字: of the same person
    ("地方科协的编制是不是也要砍，砍到多少人？", "count"),  # whether, then how many
    ("智库研究基地打算在几个省建？", "count"),  # how many places
    ("我们学会想新办一本刊，刊号怎么申请？", "errand"),  # a procedure the plan never gives
])
def test_answer_types_are_read_from_the_asking_sentences(question, kind):
    t = expected_type(question)
    assert (t.name if t else None) == kind


def test_now_anchors_only_in_the_asking_clause():
    from planqa.answer_type import asks_for_anchor, expected_type

    q = "我记得现在是五成多一点，要涨到多少？"  # today's share told, the target asked
    assert not asks_for_anchor(q, expected_type(q))
    q = "我们单位五成多。现在科协机关有多少人？"
    assert asks_for_anchor(q, expected_type(q))


def test_a_figure_asked_after_a_story_is_answered(qa):
    a = qa.ask("领导让我先摸个底，下次全国大会代表里从企业、高校、农村这些地方来的人得占更大份额。"
               "我记得现在是五成多一点，要涨到多少？")
    assert a.found and a.citations[0].ref == "二、1" and "65%" in a.text


def test_moving_something_over_is_no_time_anchor():
    from planqa.answer_type import asks_for_anchor

    assert not asks_for_anchor("挂职得待多久，我的人事关系要不要转过去")
    assert asks_for_anchor("过去的编制是多少")


def test_a_factoid_in_everyday_words_is_answerable_by_its_link(plan):
    from planqa.answering import DEFAULT_CALIBRATION, answerable
    from planqa.retrieval import Hit

    p = plan.clause("二", "1")

    def hit(link: float) -> Hit:
        return Hit(p, 1.0, p.sentences_simplified[0], 0, dense=0.89, lexical=0.1, link=link)

    assert answerable(hit(0.93), DEFAULT_CALIBRATION, factoid=True)
    assert not answerable(hit(0.90), DEFAULT_CALIBRATION, factoid=True)


def test_an_english_question_is_judged_on_the_cross_lingual_scale():
    from planqa.answering import DEFAULT_CALIBRATION as cal
    from planqa.query import parse_query

    assert cal.for_query(parse_query("学会怎么改？")) is cal
    english = cal.for_query(parse_query("How will the societies change?"))
    assert english.min_dense == pytest.approx(cal.min_dense - cal.english_dense_offset)
    assert english.strong_link == pytest.approx(cal.strong_link - cal.english_link_offset)
    assert english.for_query(parse_query("And then?")) == english  # shifted once only


def test_an_english_question_below_the_chinese_thresholds_is_answered(qa):
    # cosine 0.816 to 五、2, under the Chinese min_dense (0.85): on topic for English
    a = qa.ask("what is the 'learn and do' education about for societies")
    assert a.found and a.citations[0].ref == "五、2" and "两学一做" in a.text


def test_how_many_must_be_asks_for_a_share_not_a_count_of_items(qa):
    # the answer is a fraction (三分之二以上), not "共三项" over some list in the clause
    a = qa.ask("For a society's standing council, how many have to be front-line scientists?")
    assert a.found and a.citations[0].ref == "三、3" and "三分之二以上" in a.text
    assert "共" not in a.text.split("\n")[0]


def test_an_english_count_counts_only_a_list_of_what_it_names(qa):
    # 三、1's 、-list is of the 团体会员 it admits: it is no count of individual members
    assert not qa.ask("How many individual members will CAST have?").found
    a = qa.ask("How many kinds of awareness should Party members strengthen?")
    assert a.found and a.citations[0].ref == "五、3" and "四" in a.text.split("\n")[0]


def test_a_roundup_in_everyday_words_finds_the_plans_term(qa):
    """年轻人 is never the plan's word; 青年 is, in four clauses."""
    a = qa.ask("跟年轻人有关的条款有哪几处？")
    assert a.found and [c.ref for c in a.citations] == ["二、1", "二、7", "三、3", "五、3"]


def test_a_poem_is_not_written_to_order(qa):
    a = qa.ask("用方案里的话给我们单位的工程师写首诗")
    assert not a.found and "没有关于这个问题的规定" in a.text


def test_a_roster_is_answered_only_with_the_names_the_plan_gives(qa):
    # the plan names the three publishers it merges; it names no pilot society
    merged = qa.ask("要合并的出版社名单是什么？")
    assert merged.found and "科普出版社" in merged.text
    assert not qa.ask("试点学会的名单能发我一份吗？").found


def test_a_section_named_by_its_own_title_is_the_section(qa):
    """第四部分's title is 创新面向社会提供公共服务产品的机制; 四、3's heading shares
    some of its words, but the question names the section."""
    a = qa.ask("第四部分为什么要创新面向社会提供公共服务产品的机制？")
    assert a.citations[0].ref == "四"
    # a clause's own heading words still name that clause
    assert qa.ask("第一部分的基本原则是什么？").citations[0].ref == "一、2"


def test_a_group_the_plan_never_names_gets_no_clause(qa):
    """The plan singles out 青年 and 基层一线, never 港澳台 or 少数民族 scientists: asked
    about them, planqa says so rather than quoting what it says of others."""
    for q in ("台湾的科技工作者在方案里有什么安排？", "方案里讲到少数民族科技人才的地方都列出来"):
        a = qa.ask(q)
        assert not a.found and "方案没有专门讲到" in a.text, q
    assert qa.ask("方案对青年科技工作者有什么安排？").found


def test_an_english_question_mostly_outside_the_glossary_needs_more_than_tone(qa):
    """Any English sentence sits near some clause in dense similarity; one whose words
    the glossary mostly lacks is on topic only with shared words or a question link."""
    assert not qa.ask("Can you suggest a good tablet for reading papers?").found
    assert qa.ask("What does the plan say about young scientists?").found


def test_a_near_tied_second_clause_is_shown_beside_the_answer_not_instead():
    """The search could not tell two clauses apart: the answer quotes the first and shows
    the second as 另见 (related, never a citation); a clear winner stands alone, and a
    figure asked for is answered from one sentence."""
    from planqa.answering import compose
    from planqa.corpus import load_plan
    from planqa.retrieval import Hit

    plan = load_plan()
    first, second = plan.clause("二", "2"), plan.clause("二", "3")

    def hits(ratio: float) -> list[Hit]:
        return [Hit(p, s, p.sentences_simplified[1], 1, 0.93, 0.6, link=0.95,
                    sentence_scores=tuple(0.9 if i == 1 else 0.1
                                          for i in range(len(p.sentences))))
                for p, s in ((first, 0.8), (second, 0.8 * ratio))]

    tied = compose("科协机关和事业单位怎么改", hits(0.95), plan, traditional=False)
    assert [c.ref for c in tied.citations] == ["二、2"]
    assert [c.ref for c in tied.related] == ["二、3"]
    assert "另见方案第二部分第3条：" in tied.text
    assert second.sentences_simplified[1] in tied.text
    clear = compose("科协机关和事业单位怎么改", hits(0.8), plan, traditional=False)
    assert clear.found and clear.related == [] and "另见" not in clear.text
    figure = compose("事业编制要精简到多少名", hits(0.95), plan, traditional=False)
    assert figure.found and "1120" in figure.text
    assert figure.related == [] and "另见" not in figure.text


def test_whoever_sent_the_speaker_is_no_qualifier(qa):
    """"领导让我查一下…": the boss asks through the speaker; 领导 names no one the date is
    for, so the dateline is the answer, not a near miss for 领导."""
    a = qa.ask("领导让我查一下这份改革文件是哪个部门发下来的，新闻是几号出的")
    assert a.found and a.citations[0].ref == "前言" and "3月27日" in a.text


@pytest.mark.parametrize("question", ["消息是哪天发的？", "哪天发的消息"])
def test_the_news_of_the_plan_is_the_dateline(qa, question):
    a = qa.ask(question)
    assert a.found and a.citations[0].ref == "前言" and "3月27日" in a.text


@pytest.mark.parametrize(("question", "found"), [
    ("全委会委员里45岁以下的要占多少？", False),  # 45岁以下 is the delegates' share
    ("35岁以下的代表要占多少？", False),  # the plan gives 45岁以下 only
    ("代表里45岁以下的青年要占多少？", True),
    ("代表里三十五岁以下的要占多少？", False),  # a bound in words is read as a number
    # how many of the delegates: the plan's share is the answer
    ("代表里头四十五岁以下的年轻人得有多少人？", True),
])
def test_an_age_bound_is_whom_a_share_is_for(qa, question, found):
    a = qa.ask(question)
    assert a.found is found
    if found:
        assert "不少于三分之一" in a.text


def test_everyday_names_for_scientists_are_the_plans_own(qa):
    """科研人员 is what the plan calls 科技工作者: no near miss for it."""
    a = qa.ask("学会理事会里一线科研人员至少要占多大比例？")
    assert a.found and a.citations[0].ref == "三、3" and "四分之三以上" in a.text


def test_setting_up_party_organisations_is_where_they_are_set_up(qa):
    a = qa.ask("How should party organisations be set up inside the societies?")
    assert a.found and a.citations[0].ref == "五、1"


def test_a_verbs_direction_is_no_qualifier(qa):
    """"从基层上来的人": 上来 (tagged as a time word) names no one the share is for."""
    a = qa.ask("中国科协那个全体委员和常委里面，从基层上来的人比例各自要提到多少？")
    assert a.found and a.citations[0].ref == "二、1" and "70%" in a.text
