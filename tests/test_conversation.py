"""Follow-ups resolved from history, without an LLM."""

import pytest

from planqa.conversation import PRIOR_CLAUSE, follow_up_kind, is_bare_request, resolve
from planqa.refs import cited_passages


def _talk(qa, *questions: str) -> list[tuple[str, str]]:
    """The history after asking `questions` in turn, each with the history before it."""
    history: list[tuple[str, str]] = []
    for q in questions:
        history.append((q, qa.ask(q, history).text))
    return history


def _after(qa, question: str, ref: str) -> list[tuple[str, str]]:
    """The history after `question`, whose answer must cite `ref` first."""
    answer = qa.ask(question)
    assert answer.citations and answer.citations[0].ref == ref
    return [(question, answer.text)]


def test_cited_passages_are_read_back_from_the_source_line(plan):
    answer = ("据方案第二部分第2条：…"
              "（出处：第二部分“改革联系服务科技工作者的体制机制”第2条“深化…”）")
    assert cited_passages(answer, plan) == ["二.2"]
    assert cited_passages("见 三、4 与 第三部分“…”导语", plan) == ["三.lead", "三.4"]
    assert cited_passages("二、9 不存在", plan) == []


@pytest.mark.parametrize(("question", "kind"), [
    ("那全委会委员呢？", "explicit"),
    ("编制呢？", "explicit"),
    ("这一条具体怎么落实？", "explicit"),
    ("第二个原则是什么意思？", "explicit"),
    ("最晚什么时候完成？", "tentative"),
    ("明天会下雨吗？", ""),
    ("选什么人？", "tentative"),  # a question word and no topic of its own
    ("今天天气怎么样？", ""),
    ("学会秘书长能不能由学会自己聘任？", ""),
    ("具体怎么做？", "explicit"),  # a bare request: nothing named, more of the same clause
    ("为啥要这样", "explicit"),
    ("why?", "explicit"),
    ("科普怎么做？", "tentative"),  # names a topic: may stand alone
    # "this document" / "这个方案" is the plan itself, not the earlier turn's topic
    ("what are the big parts of this document", ""),
    ("How does this plan describe CAST's role?", ""),
    ("这个方案一共分几个部分", ""),
    ("What is this about?", "explicit"),
    ("这个由谁牵头？", "explicit"),
    # an English word counts as two Chinese characters: as short as "那X呢", or not
    ("and the affiliated units?", "explicit"),
    # a short "X有要求吗" asks about X within the topic, as "那X呢" does
    ("年轻的有要求没", "explicit"),
    ("党建方面有啥规定", "explicit"),
    ("科协机关的干部下基层挂职有什么要求吗", ""),
    # where the answer just given stands
    ("这是哪一条里的", "explicit"),
    ("出自第几条？", "explicit"),
    ("Which clause is this?", "explicit"),
    # a question word and a few words, most of them the plan's, read by jieba's words
    ("谁牵头设？", "tentative"),
    ("主要面向谁", "tentative"),
    ("领导要干啥", "tentative"),
    ("食堂几点开饭", ""),
    # 这块 / 这里面 point back at the topic just answered, however long the question
    ("地方科协在这块要做啥？", "explicit"),
    ("这里面哪个单位要重点做强？", "explicit"),
    ("And what do the new rules say about how societies elect their boards?", ""),
    ("Tell me what the plan says about how local associations at county level change.", ""),
])
def test_follow_up_kind(question, kind, plan):
    assert follow_up_kind(question, plan) == kind


def test_conversation_carries_the_topic(qa):
    q1 = "常委会委员里基层一线的比例要提到多少？"
    a1 = qa.ask(q1)
    assert a1.citations[0].ref == "二、1" and "75%" in a1.text
    a2 = qa.ask("那全委会委员呢？", [(q1, a1.text)])
    assert a2.citations[0].ref == "二、1"
    assert "70%" in a2.text


def test_a_short_question_with_no_topic_stays_on_the_clause(qa):
    history = _after(qa, "中国科协机关的局处级岗位要拿出多少给挂职的人？", "二、3")
    a2 = qa.ask("选什么人？", history)
    assert a2.found and a2.citations[0].ref == "二、3" and "科研单位" in a2.text


def test_ordinal_item_of_the_previous_list(qa):
    q1 = "基本原则有哪些？"
    a1 = qa.ask(q1)
    a2 = qa.ask("第二个原则是什么意思？", [(q1, a1.text)])
    assert a2.citations[0].ref == "一、2"
    assert "密切联系群众" in a2.text
    assert "准确把握群众性这个根本特点" in a2.text


def test_this_clause_stays_in_the_clause(qa):
    q1 = "网上科技工作者之家要做什么？"
    a1 = qa.ask(q1)
    a2 = qa.ask("这一条具体怎么落实？", [(q1, a1.text)])
    assert a2.citations[0].ref == a1.citations[0].ref == "二、6"


def test_a_new_question_is_not_dragged_back(qa):
    q1 = "事业编制要精简到多少名？"
    a1 = qa.ask(q1)
    a2 = qa.ask("学会秘书长可以公开招聘吗？", [(q1, a1.text)])
    assert a2.citations[0].ref == "三、3"
    a3 = qa.ask("明天会下雨吗？", [(q1, a1.text)])
    assert not a3.found


def test_resolve_without_history_is_identity(plan):
    r = resolve("编制呢？", [], plan)
    assert r.question == "编制呢？" and not r.follow_up


def test_the_follow_ups_own_words_choose_the_sentence(qa):
    # the earlier answer quoted 四、3's PPP sentence; "那地方科协呢" asks for the one
    # about what 地方科协 do, not for the same sentence again
    history = _after(qa, "科普信息化怎么搞？", "四、3")
    a2 = qa.ask("那地方科协呢？", history)
    assert a2.citations[0].ref == "四、3"
    assert any(s.startswith("支持地方科协搭建精准推送科普服务平台")
               for s in a2.citations[0].highlights)


@pytest.mark.parametrize("more", ["除此之外还有什么办法？", "还有别的吗？", "What else?"])
def test_asking_for_more_quotes_what_was_not_quoted(qa, more):
    q1 = "怎么加强县级科协工作？"
    a1 = qa.ask(q1)
    assert a1.citations[0].ref == "二、4"
    a2 = qa.ask(more, [(q1, a1.text)])
    assert a2.found and a2.citations[0].ref == "二、4"
    assert a2.citations[0].highlights
    assert not set(a2.citations[0].highlights) & set(a1.citations[0].highlights)
    # and once more: neither earlier answer again
    a3 = qa.ask("还有吗？", [(q1, a1.text), (more, a2.text)])
    earlier = set(a1.citations[0].highlights) | set(a2.citations[0].highlights)
    assert a3.found and not set(a3.citations[0].highlights) & earlier


def test_more_is_a_follow_up_only_after_an_answer(plan):
    assert follow_up_kind("除此之外还有什么办法？", plan) == "explicit"
    history = [("县级科协怎么办？", "据方案：\n“抓紧出台加强县级科协工作的意见。”")]
    r = resolve("还有别的吗？", history, plan)
    assert r.seen == ("抓紧出台加强县级科协工作的意见。",)
    assert resolve("那编制呢？", [("县级科协怎么办？", "“抓紧出台。”")], plan).seen == ()


def test_the_follow_ups_words_count_even_where_the_plans_tokens_split_them(qa):
    # "依托互联网的线上交流" is tokenized 线|上交…: 线上 is found as written
    history = _after(qa, "学术会议结构怎么优化？", "四、1")
    a2 = qa.ask("那线上呢？", history)
    assert a2.citations[0].ref == "四、1" and "线上交流" in a2.text


@pytest.mark.parametrize(("question", "bare"), [
    ("具体怎么做？", True), ("为什么", True), ("这样做的目的是什么", True), ("展开说说", True),
    ("能举个例子吗", True), ("原文怎么写的", True), ("English please?", True),
    ("who is responsible?", True), ("by when", True),
    ("科普怎么做？", False), ("编制呢？", False), ("多少人", False), ("明天下雨吗", False),
    ("what about funding?", False), ("？", False),
])
def test_bare_request(question, bare):
    assert is_bare_request(question) is bare


def test_a_bare_request_stays_in_the_clause_with_no_focus_of_its_own(plan):
    q1 = "科协机关编制要怎么改"
    a1 = "……（出处：第二部分“改革联系服务科技工作者的体制机制”第2条“深化科协机关改革…”）"
    r = resolve("具体怎么做？", [(q1, a1)], plan)
    assert r.follow_up and r.prior == {"二.2": PRIOR_CLAUSE} and r.focus == ""
    assert not r.tentative


@pytest.mark.parametrize("follow_up", ["具体怎么做？", "为啥要这样", "why?"])
def test_a_bare_request_is_answered_from_the_clause_just_quoted(qa, follow_up):
    history = _after(qa, "科协机关编制要怎么改", "二、2")
    a2 = qa.ask(follow_up, history)
    assert a2.found and a2.citations[0].ref == "二、2"


def test_a_new_topic_of_the_same_section_is_the_clause_its_heading_names(qa):
    # 一、2 and 一、1 say 目标 in passing; 一、3 is 总体目标. Another section's title
    # naming the new word does not take it over (the follow-up's clause stays first
    # when no clause of its section is named).
    history = _after(qa, "基本原则有哪些", "一、2")
    assert qa.ask("目标呢", history).citations[0].ref == "一、3"


def test_the_word_that_frames_a_new_topic_is_not_part_of_it(qa, plan):
    # "那方面" frames 科学道德, which 五、4 speaks of and 五、3 does not
    history = _after(qa, "对领导干部有什么思想上的要求", "五、3")
    assert resolve("科学道德那方面呢", history, plan).focus == "科学道德"
    assert qa.ask("科学道德那方面呢", history).citations[0].ref == "五、4"


def test_a_short_does_it_say_anything_about_x_asks_about_x_in_the_topic(qa, plan):
    q1 = "全委会里基层一线的要占多少"
    a1 = qa.ask(q1)
    assert resolve("年轻的有要求没", [(q1, a1.text)], plan).focus == "年轻"
    a2 = qa.ask("年轻的有要求没", [(q1, a1.text)])
    assert a2.found and a2.citations[0].ref == "二、1" and "45岁以下" in a2.text


def test_question_words_leave_a_follow_ups_focus_word_by_word(plan):
    from planqa.conversation import _without_asking

    assert _without_asking("主要宣传谁") == "主要宣传"  # not 主宣传: 主要's 要 stays
    # a request's verb and a preposition name no topic; 根据 asks for the plan's basis
    assert _without_asking("地方科协在要做啥") == "地方科协"
    assert _without_asking("根据什么提出的") == "根据提出"
    history = [("科技界那个精神文明表率活动是干啥的", "据方案第五部分第4条：……")]
    assert resolve("主要宣传谁", history, plan).focus == "主要宣传"


def test_the_clause_a_new_topic_names_is_judged_on_the_new_words(qa):
    # two turns on 基本原则 make the rewrite "目标 第二条 基本原则的第一条讲什么", which
    # 一、3 matches poorly as a whole; it is answered for 目标, the word that moved it first
    history = _talk(qa, "基本原则的第一条讲什么", "第二条呢")
    a = qa.ask("那目标呢", history)
    assert a.found and a.citations[0].ref == "一、3"


def test_asked_where_the_last_answer_stands_it_names_the_clause(qa):
    q1 = "网上科技工作者之家要搞些啥活动"
    a1 = qa.ask(q1)
    a2 = qa.ask("这是第几条", [(q1, a1.text)])
    assert a2.found and a2.citations[0].ref == a1.citations[0].ref == "二、6"
    assert "第二部分" in a2.text and "第6条" in a2.text and "共" not in a2.text


def test_a_short_question_refused_alone_is_read_once_more_as_a_follow_up(qa, plan):
    # "工作方式上要成啥样" has no follow-up form and is refused on its own; after 总体目标
    # it asks about 一、3. A question in no words of the plan is not read so.
    from planqa.conversation import resolve_as_follow_up

    history = _after(qa, "总体目标讲了啥", "一、3")
    assert not qa.ask("工作方式上要成啥样").found
    a = qa.ask("工作方式上要成啥样", history)
    assert a.found and a.citations[0].ref == "一、3"
    assert resolve_as_follow_up("明天会下雨吗？", history, plan) is None
    assert resolve_as_follow_up("工作方式上要成啥样", [], plan) is None


def test_a_follow_up_whose_words_stand_in_the_clause_stays_there(qa):
    """"人事关系怎么处理？" after 挂职: 二、3 holds 人事关系 too (保留人事关系不变); 二、1,
    which also speaks of 人事关系 for another post, is not the answer."""
    history = _after(qa, "科协机关派干部到学会挂职要挂几年？", "二、3")
    a = qa.ask("人事关系怎么处理？", history)
    assert a.found and a.citations[0].ref == "二、3" and "保留人事关系不变" in a.text


def test_counted_things_just_named_are_an_anaphor(qa, plan):
    """"这两项 / 这两件事" point at what the last turns spoke of."""
    assert follow_up_kind("这两件事要在什么时候之前办完？", plan) == "explicit"
    history = _after(qa, "事业单位要压缩到多少个？", "二、2")
    a = qa.ask("这两项要在什么时候前完成？", history)
    assert a.found and a.citations[0].ref == "二、2" and "2016年年底前" in a.text


def test_a_refused_follow_up_is_passed_over_by_the_next_turn(qa):
    """After "奖金有多少？" (refused: the plan gives no sum), "那院士推荐这块怎么说？" leans
    on the last answer that cited the plan, not on the refused words ("多少" would make
    it ask for a figure)."""
    history = _after(qa, "方案提到要设立哪些科技界社会奖励？", "二、7")
    refused = qa.ask("奖金有多少？", history)
    assert not refused.found
    history.append(("奖金有多少？", refused.text))
    a = qa.ask("那院士推荐这块怎么说？", history)
    assert a.found and a.citations[0].ref == "二、7" and "两院院士推荐渠道" in a.text


def test_a_follow_up_about_this_area_stays_with_the_clause_just_answered(qa):
    q1 = "双创服务云是干什么的"
    a1 = qa.ask(q1)
    assert a1.citations[0].ref == "四、2"
    a2 = qa.ask("地方科协在这块要做啥？", [(q1, a1.text)])
    assert a2.found and a2.citations[0].ref == "四、2" and "地方科协" in a2.text


def test_a_follow_up_that_points_back_asks_what_the_last_asking_turn_asked(qa):
    """"县一级呢？" after "农村那块具体怎么弄？" asks how, as that turn did, not the count the
    first turn asked for; a follow-up with a question word of its own asks that."""
    hist = _talk(qa, "科协组织要往基层延伸，主要往哪几个方向伸？", "农村那块具体怎么弄？")
    assert "乡镇科普协会" in hist[-1][1] and "共三个" not in hist[-1][1]
    a = qa.ask("县一级呢？", hist)
    assert a.found and a.citations[0].ref == "二、4"
    assert "县级科协" in a.text and "共三个" not in a.text


def test_a_follow_up_asking_by_itself_does_not_inherit_a_figure(qa):
    hist = _talk(qa, "学会理事会里基层一线的人至少要占多少？", "常务理事会呢？")
    assert "三分之二" in hist[-1][1]  # pointing back: the share, as asked before
    a = qa.ask("那秘书长怎么产生？", hist)  # not a share: how the post is filled
    assert a.found and a.citations[0].ref == "三、3" and "理事会聘任秘书长制" in a.text


def test_the_nth_item_stays_the_focus_lists(qa):
    """"第四条呢？" after "第二条是什么意思？" is the clause's fourth item, though the last
    answer listed nothing; an item's answer does not open with the first item's heading."""
    hist = _talk(qa, "基本原则一共几条？", "第二条是什么意思？")
    assert "密切联系群众" in hist[-1][1] and "加强政治引领" not in hist[-1][1]
    a = qa.ask("第四条呢？", hist)
    assert a.found and a.citations[0].ref == "一、2"
    assert "强化学会主体地位" in a.text and "治理结构和治理方式现代化" in a.text


@pytest.mark.parametrize(("first", "then", "ref", "fact"), [
    ("听说书记处书记要从科研单位选一个过来？", "他的级别怎么算？", "二、1", "职级不与"),
    ("吸引海外人才方面方案有什么安排？", "这事谁来推？", "四、2", "海外"),
])
def test_a_short_question_about_him_or_this_matter_is_a_follow_up(qa, first, then, ref, fact):
    a = qa.ask(then, _talk(qa, first))
    assert a.found and a.citations[0].ref == ref and fact in a.text


def test_a_long_question_naming_its_own_matter_stands_alone(plan):
    assert follow_up_kind("这事谁来推？", plan) == "explicit"
    q = "我们学会接了政府转过来的评审活儿，这事方案里有没有说怎么监管？"
    assert follow_up_kind(q, plan) == ""
