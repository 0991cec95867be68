"""Follow-up questions resolved from the conversation, without an LLM.

A follow-up such as "那全委会委员呢？", "编制呢？" or "这一条具体怎么落实？" leans on
earlier turns. `resolve` rewrites it into a self-contained question and names the
earlier turn's clause as a prior for retrieval. History is plain (question, answer)
text, so the earlier clause is read back from the answer's 出处 line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache

from planqa.answer_type import asks_by_itself
from planqa.corpus import Plan
from planqa.refs import cited_passages, cn_to_int, parse_reference
from planqa.text import (
    STOPWORDS,
    clean_input,
    normalize_query,
    pos_tags,
    to_simplified,
    tokenize,
)

# "他的级别怎么算？", "这事谁来推？": someone or something just spoken of — in a short
# question only (a long one names them itself: "学会接政府的活，这事方案怎么说").
_SHORT_ANAPHORA = re.compile(r"他|她|这事|这件事|此事|这活")
_LEADS = ("那么", "那", "还有", "另外", "再问", "又", "and ", "what about ", "how about ")
# "这一条" points at the earlier clause; "它" at the earlier topic; "这个方案" and "this
# document" at the plan itself, never at an earlier turn.
# "这是哪一条里的", "出自第几条": where the answer just given stands.
_CLAUSE_ANAPHORA = re.compile(r"这一?条|该条|此条|这项规定|这一?项|这一?点|这部分|上述|上面|"
                              r"前面说的|这是(?:在)?(?:哪一?条|第几条|哪一?部分)|出自哪|"
                              r"出自第几|\bthis (?:clause|article|item|point)\b|"
                              r"\bwhich (?:clause|section|part) (?:is|was) (?:this|that|it)\b",
                              re.I)
_ENTITY_ANAPHORA = re.compile(
    # "这两件事", "这几项", "这俩": the things just named, counted
    r"它|其|这个(?!(?:实施)?方案|文件)|这些|这种|那个|那些|这俩|"
    r"这[两几二三四五](?:件|个|项|条|点|种|样)|\b(?:it|they|them)\b|"
    r"\b(?:this|that)\b(?! (?:whole )?(?:document|plan|reform)\b)", re.I)
_ORDINAL_ITEM = re.compile(r"第([一二三四五六七八九十\d]{1,2})(?:个|项|点|条)?"
                           r"(原则|意识|方面|要求|措施|项|点|个)")
# "第三条是什么意思" / "第二点呢" right after an answer that listed items.
_ORDINAL_ANY = re.compile(r"第([一二三四五六七八九十\d]{1,2})(?:个|项|点|条|种)")
_LISTED = re.compile(r"(?m)^(\d{1,2})\. (.+)$")
_QUESTION_WORDS = re.compile(r"什么时候|啥时候|什么|怎么样|怎么|怎样|如何|哪些|哪个|多少|多久|"
                             r"多长时间|几|吗|呢|吧|啊|是否|能否|有没有|是不是|请问|具体|"
                             r"一下|要|的|了|是|没$")  # "有要求没": 没 closing a question
_ASKS = re.compile(r"什么时候|啥时候|哪些|哪个|哪儿|哪里|多少|多久|多长时间|几|谁|何时|什么|"
                   r"啥|干嘛|没$")
# "除了这个，还有啥措施" / "还有别的吗": the rest of the clause, not what was just quoted.
_MORE = re.compile(r"除了?(?:这|那|上面|前面|刚才)|除此之外|此外还|"
                   r"还有(?:别的|其他|其它|啥|什么|哪些)|还有吗|还有呢|"
                   r"\b(?:what|anything) else\b|\bbesides (?:this|that)\b", re.I)
_QUOTED = re.compile(r"“([^”]+)”")
# "年轻人有要求没", "党建方面有啥规定": a short "X有要求吗" after an answer asks about X
# within what was being discussed, as "那X呢" does.
_ASKS_ABOUT = r"(?:有没有|有|有啥|有什么)(?:要求|规定|说法|安排)(?:吗|没有|没)?$"
_ASPECT_ASK = re.compile(r"^[^，,。]{1,6}" + _ASKS_ABOUT)
# "道德学风方面呢", "农村那块": the word that frames the new topic is not part of it.
_ASPECT = re.compile(r"[这那]?一?方面|[这那]一?块|[这那]边|这里面|这当中")
# ... and with 这/那 it points back at the topic just answered ("地方科协在这块要做啥",
# "这里面哪个单位要重点做强"): the question is a follow-up however much it says.
_ASPECT_BACK = re.compile(r"[这那]一?(?:方面|块)|这里面|这当中")
# A request about the clause just quoted that names nothing of its own: "具体怎么做",
# "为啥要这样", "展开说说", "why?", "in English please". Every word of it (jieba's,
# less the stopwords) is one of these.
_BARE_WORDS = frozenset(
    "具体 具体内容 体内 内容 详细 详情 细说 细节 展开 说 说说 讲 讲讲 解释 举 举个 举例 例子 "
    "做 怎么做 怎么办 办 搞 弄 干 整 咋 咋办 咋整 咋弄 咋做 落实 做法 目的 意思 原因 为啥 为何 "
    "干嘛 凭 凭啥 这样 这么 这么做 这样做 原文 写 再 能 可以 请 点 些 下 还 就 有 啥 要求 规定 "
    "安排 措施 时候 什么时候 负责 牵头 呀 嘛 "
    "why how when who where what which exactly specifically concretely detail details more "
    "explain explanation mean means meaning example examples english chinese please tell me "
    "about that this it so and do does did is are was the a an in of for say says said plan "
    "again can could you would elaborate further go on they them their we responsible "
    "charge by".split())
#: A question refused on its own this short (content characters, an English word two)
#: is read once more as a follow-up of the last turn.
_SECOND_READING_LEN = 12
#: Prior weights, in units of one channel's full range (see PlanSearcher.search).
PRIOR_CLAUSE, PRIOR_TOPIC = 1.0, 0.3
# A Chinese character counts one, a Latin word two (an English word carries about two
# characters' worth): "and the affiliated units?" is as short as "那所属事业单位呢".
_CONTENT = re.compile(r"[A-Za-z]+|[^\W_A-Za-z]", re.UNICODE)


@dataclass(frozen=True)
class Resolved:
    """A question made self-contained, plus what retrieval should favour."""

    question: str  # what retrieval and the answerer see
    original: str
    follow_up: bool = False
    prior: dict[str, float] = field(default_factory=dict)  # passage id -> bonus
    #: only a guess (a short question with no follow-up marker): the chain keeps the
    #: question as asked when that alone finds a confident answer.
    tentative: bool = False
    #: the new words of a follow-up ("全委会委员" in "那全委会委员呢？"): the answer must
    #: speak of them, not only of the earlier topic.
    focus: str = ""
    #: sentences the previous answer quoted, when the follow-up asks for something else
    #: ("除了这个，还有啥措施？"); Simplified
    seen: tuple[str, ...] = ()
    #: for a follow-up that only points back ("县一级呢？"), the last question that asked
    #: something by itself ("农村那块怎么弄？", not the count asked before it): what it asks
    asks: str = ""


def _without_asking(text: str) -> str:
    """`text` less its question words, word by word ("主要宣传谁" is 主要宣传, not 主宣传:
    the 要 of 主要 is no question word), the words of a bare request ("做", "说说") and
    prepositions and particles: what is left names the follow-up's topic ("地方科协在这块
    要做啥" is 地方科协, not 地方科协在做)."""
    return "".join(w for w, tag in pos_tags(text)
                   if not (_QUESTION_WORDS.fullmatch(w) or _ASKS.fullmatch(w)
                           or w in _BARE_WORDS or tag in _PARTICLE_TAGS
                           or (tag == "p" and len(w) == 1)))


# jieba's tags for particles and modal particles. Of the prepositions only the one-character
# ones go (在, 对, 给): 根据 in "根据什么提出的" asks for the plan's basis.
_PARTICLE_TAGS = frozenset({"u", "uj", "ul", "uz", "ud", "ug", "uv", "y"})


def _content_len(text: str) -> int:
    return sum(2 if m[0].isascii() and m[0].isalpha() else 1 for m in _CONTENT.findall(text))


@lru_cache(maxsize=4)
def _vocabulary(plan: Plan) -> frozenset[str]:
    return frozenset(t for p in plan.passages for t in tokenize(p.text_simplified))


def is_bare_request(question: str) -> bool:
    """A follow-up that asks more of the clause just quoted and names nothing else
    ("具体怎么做？", "为啥", "why?"): it stays in that clause."""
    q = clean_input(question)
    return _content_len(q) > 0 and all(t in _BARE_WORDS for t in tokenize(normalize_query(q)))


def follow_up_kind(question: str, plan: Plan) -> str:
    """"explicit" when the question leans on an earlier turn by its form ("那X呢？",
    "这一条…", "第二个原则…"); "tentative" when it is merely short and speaks only of
    things the plan has words for ("最晚什么时候完成？", not "明天会下雨吗？"); else ""."""
    q = clean_input(question).lower()
    core = q.rstrip("？?。.!！ ")
    if (_CLAUSE_ANAPHORA.search(q) or _ENTITY_ANAPHORA.search(q) or _ORDINAL_ITEM.search(q)
            or _ASPECT_BACK.search(q) or is_bare_request(q)):
        return "explicit"
    if (_ORDINAL_ANY.search(q) or _SHORT_ANAPHORA.search(q)) and _content_len(core) <= 12:
        return "explicit"
    if (core.endswith("呢") or _MORE.search(q)) and _content_len(core) <= 16:
        return "explicit"
    if q.startswith(_LEADS) and _content_len(core) <= 14:
        return "explicit"
    if _ASPECT_ASK.match(core) and _content_len(core) <= 10:
        return "explicit"
    rest = _QUESTION_WORDS.sub("", core)
    # "挑哪些人来？": a question word and two or three words of no topic of their own
    if _content_len(rest) <= 3 and rest != core and _ASKS.search(core):
        return "tentative"
    if _content_len(rest) <= 6:
        terms = tokenize(normalize_query(rest))
        vocab = _vocabulary(plan)
        if sum(t in vocab for t in terms) * 2 >= len(terms):
            return "tentative"
    # "谁牵头设？", "主要面向谁", "工作手段上要达到啥样": a question word and a few words,
    # most of them the plan's.
    if _ASKS.search(core) and _content_len(core) <= 10 and _mostly_plan_words(core, plan, 3):
        return "tentative"
    return ""


def _mostly_plan_words(text: str, plan: Plan, most: int | None = None) -> bool:
    """Are at least half of `text`'s words (jieba's, two characters or more, less the
    stopwords and question words; at most `most` of them) words of the plan? Read by
    words, not with the question words cut out of the characters (主要 less 要 is no
    word); "明天会下雨吗" has none."""
    words = _content_words(text)
    vocab = _vocabulary(plan)
    return (bool(words) and (most is None or len(words) <= most)
            and sum(t in vocab for t in words) * 2 >= len(words))


def _content_words(text: str) -> set[str]:
    """jieba's words of `text` of two characters or more, less stopwords and question words."""
    return {t for t in tokenize(normalize_query(text))
            if len(t) >= 2 and t not in STOPWORDS and not _ASKS.search(t)}


def _within(focus: str, text: str, plan: Plan) -> bool:
    """Does `text` hold every word of `focus` that the plan uses, and is there one?"""
    words = _content_words(focus) & _vocabulary(plan)
    return bool(words) and all(t in text for t in words)


def _nth_item(plan: Plan, passage_id: str, n: int) -> str:
    """The heading of the passage's n-th —— item (1-based), or "" when it has none."""
    items = plan.get(passage_id).items
    return items[n - 1].heading_simplified if 1 <= n <= len(items) else ""


def resolve(question: str, history: list[tuple[str, str]] | None, plan: Plan) -> Resolved:
    """Make `question` self-contained using `history` (oldest turn first)."""
    if not history:
        return Resolved(question, question)
    # Resolve earlier turns in order, so a chain of follow-ups keeps its topic. A
    # follow-up the plan did not answer ("奖金有多少？") is passed over: the next turn
    # leans on the last answer that cited the plan, not on the refused words.
    previous, answer = Resolved(history[0][0], history[0][0]), history[0][1]
    for q, a in history[1:]:
        turn = _resolve_one(q, previous, answer, plan)
        if not turn.follow_up or cited_passages(a, plan):
            previous, answer = turn, a
    return _resolve_one(question, previous, answer, plan)


def resolve_as_follow_up(question: str, history: list[tuple[str, str]],
                         plan: Plan) -> Resolved | None:
    """`question` read as a follow-up of the last turn whatever its form, or None when
    it cannot be one (no history, a reference of its own, too long to lean on it, or
    not mostly in the plan's words): the second reading of a short question the plan
    does not answer on its own ("工作方式上要成啥样" after 总体目标)."""
    if (not history or parse_reference(question)
            or _content_len(clean_input(question)) > _SECOND_READING_LEN
            or not _mostly_plan_words(clean_input(question), plan)):
        return None
    previous = resolve(history[-1][0], history[:-1], plan)
    return replace(_resolve_one(question, previous, history[-1][1], plan, "tentative"),
                   tentative=False)


def _resolve_one(question: str, previous: Resolved, previous_answer: str,
                 plan: Plan, kind: str | None = None) -> Resolved:
    if kind is None:
        kind = "" if parse_reference(question) else follow_up_kind(question, plan)
    if not kind:
        return Resolved(question, question)  # self-contained: never drag the old topic in
    cited = cited_passages(previous_answer, plan)
    q = clean_input(question)

    m = _ORDINAL_ITEM.search(q)
    if m and cited and (item := _nth_item(plan, cited[0], cn_to_int(m.group(1)) or 0)):
        # "第二个原则是什么意思" -> that item's heading, within the cited clause.
        return Resolved(f"{item}{question}", question, True, {cited[0]: PRIOR_CLAUSE})
    m = _ORDINAL_ANY.search(q)
    # Line by line: normalize_query would fold the newlines away.
    listed = dict(_LISTED.findall(to_simplified(previous_answer)))
    if m and (line := listed.get(str(cn_to_int(m.group(1)) or 0))):
        # The n-th line the previous answer listed (an item, or a round-up's clause).
        ref = parse_reference(line)
        prior = {f"{ref.section}.{ref.clause}": PRIOR_CLAUSE} if ref and ref.clause else (
            {cited[0]: PRIOR_CLAUSE} if cited else {})
        return Resolved(f"{line} {question}", question, True,
                        {k: v for k, v in prior.items() if plan.has(k)})
    if m and cited and (item := _nth_item(plan, cited[0], cn_to_int(m.group(1)) or 0)):
        # "第四条呢" after an answer on one of the clause's items ("第二条是什么意思"):
        # the list in focus is still that clause's
        return Resolved(f"{item} {question}", question, True, {cited[0]: PRIOR_CLAUSE})

    focus = q
    for lead in _LEADS:
        if focus.lower().startswith(lead):
            focus = focus[len(lead):]
            break
    focus = focus.rstrip("？?。.!！ ").removesuffix("呢").removesuffix("又如何").strip()
    # "这一条具体怎么落实" stays inside the earlier clause; "它…" or "那X呢" only leans on it.
    bare = is_bare_request(q)
    named = _SHORT_ANAPHORA.sub("", focus)  # "他的级别": 级别 is what is new
    explicit_focus = "" if (bare or _ENTITY_ANAPHORA.search(focus)
                            or _CLAUSE_ANAPHORA.search(focus)) \
        else _ASPECT.sub("", _without_asking(re.sub(_ASKS_ABOUT, "", named)))
    # "这一条…" stays in the clause; so does a follow-up whose every plan word stands in
    # it ("人事关系怎么算？" after 挂职: 二、3 keeps 人事关系 too, 二、1 only shares it).
    inside = bool(cited) and _within(explicit_focus, plan.get(cited[0]).text_simplified, plan)
    weight = (PRIOR_CLAUSE if _CLAUSE_ANAPHORA.search(q) or _ASPECT_BACK.search(q) or bare
              or inside else PRIOR_TOPIC)
    prior = {cited[0]: weight} if cited else {}
    # "还有别的吗" twice running: neither earlier answer's sentences again
    seen = (previous.seen + tuple(_QUOTED.findall(to_simplified(previous_answer)))
            if _MORE.search(q) else ())
    asks = question if asks_by_itself(to_simplified(q)) else (previous.asks or previous.original)
    return Resolved(f"{focus} {previous.question}".strip(), question, True, prior,
                    tentative=kind == "tentative", focus=explicit_focus, seen=seen, asks=asks)
