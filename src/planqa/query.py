"""A question, parsed once: the typed value every step of the chain passes on.

`parse_query` cleans and normalizes the user's text a single time and reads off
what the later steps need — the Simplified form both retrieval channels see, the
script it was asked in, whether it is English (and the plan's terms for its
phrases), a direct reference (二、5), the kind of fact it asks for (a figure, a
date, …) and the shape of answer it wants (an outline, a list, plain).
Pure functions; nothing here touches the model or the index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from planqa.answer_type import AnswerType, expected_type
from planqa.errors import InvalidQuestion
from planqa.refs import Reference, parse_reference
from planqa.text import (
    clean_input,
    colloquial_terms,
    english_reading,
    has_cjk,
    is_traditional,
    to_simplified,
)

#: The shapes of answer a question can want.
STRUCTURE, ROUNDUP, LIST, PLAIN = "structure", "roundup", "list", "plain"

_DOC_STRUCTURE = re.compile(
    r"(分为|分成|包括|包含|有)(哪|几)(几|个|些|大)?(个)?(大)?(部分|板块|章)|几个?大?部分|哪几部分|"
    # "几个方面" is the document's only when the document is its subject ("总体目标里
    # 有几个方面" asks about one clause)
    r"^(?:这个|整个)?(?:方案|文件|实施方案)(?:的?内容)?(?:分为|分成|包括|包含|有)(?:哪|几)(?:几|个|些)?"
    r"(?:个)?方面|"
    r"(整体|总体|文件|方案的?|大)(结构|框架|目录|提纲)|每(个)?部分|各(个)?部分|"
    # "the plan's structure", not "a think-tank structure"
    r"\b(?:plan|document|its)(?:'s)? (?:structure|outline)\b|\b(?:structure|outline) of "
    r"(?:the|this) (?:plan|document)\b|\b(?:sections? (?:does|are))\b|"
    # "how is the document structured", not "how is the think tank network structured";
    # "give me an outline", not "outline what it says about youth"
    r"\b(?:plan|document|it)(?: is| be)? (?:structured|organi[sz]ed)\b|"
    r"\boutline\b(?=\s*(?:of (?:the|this) (?:plan|document)|please)?\s*[?.!]?\s*$)|"
    r"how many (?:parts|sections)|"
    # "the big parts of this document", not "which parts of the plan deal with 科普"
    r"\b(?:parts|sections|chapters) (?:of|in) (?:the|this|that) (?:whole )?(?:plan|document)"
    r"(?=\s*(?:[?.!]|$|(?:has|have|are|is)\b))",
    re.I)
_LIST = re.compile(r"哪些|哪几|哪[两三四五六七八九十\d]+(个|项|条|种|方面)|有几(个|项|条|种|方面)|"
                   r"包括什么|包含什么|分别是|列举|几个方面|"
                   r"\b(what are|which|list)\b", re.I)


#: "在哪几处 / 都列出来 / 列全 / 分别怎么说": every passage on a topic, not the best one.
ROUNDUP_WORDS = re.compile(
    r"(?:在|有)?哪(?:几|些)(?:处|个地方|地方|条款|部分|条)(?:有|提到|讲到|说到|涉及|谈到)?|"
    r"几处|(?:都|全都|全部|统统)?列(?:出来|全|一下|举全)|都(?:有)?哪些(?:条款|地方)|"
    r"分别(?:怎么|是怎么|如何)(?:说|讲|规定|要求)的?|所有(?:讲|提到|涉及|关于)?|"
    r"帮我|给我|(?:有)?关于|(?:这份|这个|整个)?(?:方案|文件)(?:里|中|里面)?|"
    r"(?:的)?(?:条款|地方|内容)|讲到|说到|谈到|讲|提到|涉及|"
    r"(?:有|作了|做了|提了|提出了?)?(?:哪些)?(?:要求|规定|部署|表述)|一条条|逐条|一一|"
    r"汇总(?:一下)?|(?:全|都|全部)找出来|散落在?|分布在?|出现(?:过)?(?:几次|在)?|各(?:自)?(?:说|讲)了?(?:些)?(?:什么|啥)|"
    r"(?:都|还)?有哪(?:些|几(?:处|条|个))|"
    r"这件事|这(?:方面|块|一块)|跟(?=[^，,。？?]{1,12}(?:有关|相关))|有关的?|相关的?|"
    # "分别在哪几条 / 出现过几次 / 一共在几个地方 / 方方面面都是怎么写的 / 一个不落 / 别漏"
    r"(?:一共|总共|共)?在?几个地方|前前后后|分别(?:在)?|方方面面|都在哪(?:儿|里)|"
    r"(?:都|是)?(?:怎么|如何)(?:写|说|讲|安排|规定|表述)的?|一个不落地?(?:说说)?|别漏|不要漏|"
    r"这类|这摊(?:事|子事)?|之类的?|沾边的?|"
    # "被提到过几回", "每处说的啥", "散在哪几处", "捋一捋"
    r"被?提到过|过?几(?:回|次)|每(?:处|条|个地方)(?:都)?(?:说|讲)(?:的|了)?(?:啥|什么)|"
    r"分?散(?:在|落在?)|捋一?捋|"
    r"\bwhere (?:all |else )?(?:in (?:the|this) (?:plan|document) )?(?:does|do|is|are) "
    r"(?:the |this )?(?:plan|document) (?:mention|talk about|say about|deal with|cover|"
    r"discuss|speak (?:of|about))\b|"
    r"\bwhich (?:parts|clauses|sections|places)(?: of (?:the|this) (?:plan|document))? "
    r"(?:mention|talk about|say about|deal with|cover|discuss)\b|"
    r"\b(?:list|give me|show me|name) (?:them all|all of them|every (?:place|clause|part|"
    r"mention)|all (?:the )?(?:places|clauses|parts|mentions))\b|"
    r"\b(?:list )?(?:all|every) (?:the )?(?:clauses|places|parts|mentions)\b|"
    r"\bwhere (?:all|else)\b", re.I)
# "往哪些地方延伸" asks where to, not where in the plan
_ROUNDUP = re.compile(r"哪几处|(?<![往向到去])哪(?:些|几个)地方|几处|列出来|列全|全部列|"
                      r"分别(?:怎么|是怎么|如何)|汇总|(?:全|都|全部)找出来|"
                      # "散落在各条里": scattered over the plan; "手稿散落各处": lost
                      r"散落在?(?:方案|哪|各(?:条|部分|处条款)|不同|好几)|"
                      # "哪几条都提到了": which clauses, not how many items one clause has
                      r"哪(?:几|些)条(?:款)?都?(?:提到|讲到|说到|涉及|谈到|有(?:提|讲|说))|"
                      r"哪些条款|所有.{0,8}条款|"
                      # "提到“桥梁纽带”的地方有哪些": the places are what is listed
                      r"(?:提到|讲到|说到|涉及|谈到|出现)[^,。?]{0,20}的(?:地方|条款|段落)"
                      r"(?:都|还)?有(?:哪些|哪几(?:处|条|个))|"
                      # where in the plan, not which items: "分别在哪几条", "出现过几次",
                      # "一共在几个地方提到", "方方面面", "都在哪儿提到", "各讲了啥"
                      r"在哪(?:几|些)(?:条|处|部分)|出现(?:过)?(?:几次|在哪)|在几个地方|"
                      r"方方面面|都在哪(?:儿|里)(?:提|讲|说)|各(?:自)?(?:讲|说)了(?:啥|什么|些)|"
                      r"一个不落|别漏|\b(?:all|every) (?:the )?(?:clauses|places|"
                      r"parts|mentions)\b|\bwhere (?:all|else)\b|"
                      r"\bwhich (?:clauses|parts|sections|places)"
                      r"(?: of (?:the|this) (?:plan|document))? (?:mention|talk about|cover|"
                      r"deal with|say)", re.I)


def roundup_topic(q: str) -> str:
    """A round-up question with its round-up words taken out: what to search for."""
    return ROUNDUP_WORDS.sub(" ", q).strip(" ？?。，,")


def classify_normalized(q: str) -> str:
    """The answer shape of an already normalized (Simplified, half-width) question."""
    if _DOC_STRUCTURE.search(q):
        return STRUCTURE
    if _ROUNDUP.search(q):
        return ROUNDUP
    if _LIST.search(q):
        return LIST
    return PLAIN


def classify(question: str) -> str:
    """What shape of answer a question wants: the document's structure, a list, or plain."""
    return classify_normalized(to_simplified(clean_input(question)))


@dataclass(frozen=True)
class Query:
    """One question, cleaned and read once."""

    text: str  # as asked: cleaned, half-width, truncated, in the user's script
    simplified: str  # what retrieval sees: `text` in Simplified script
    traditional: bool  # asked in Traditional script
    english_terms: tuple[str, ...]  # the plan's Chinese terms for its English phrases
    reference: Reference | None  # a direct reference such as 二、5
    answer_type: AnswerType | None  # the kind of fact asked for, if any
    shape: str  # STRUCTURE | LIST | PLAIN
    #: its English content words the glossary has no plan term for (see text.english_unknown)
    english_unknown: tuple[str, ...] = ()
    #: the plan's terms for its everyday Chinese words (see text.colloquial_terms)
    colloquial_terms: tuple[str, ...] = ()

    @property
    def english(self) -> bool:
        return not has_cjk(self.text)

    @property
    def factoid(self) -> bool:
        """Asks for a figure, a date, a name, … rather than for what the plan says."""
        return self.answer_type is not None

    def __str__(self) -> str:
        return self.text


def input_window(question: str, max_chars: int = 2000) -> str:
    """As much of the raw input as a question of `max_chars` can come from: it is cut
    before cleaning too, so a megabyte of input costs nothing."""
    return question[: max_chars * 2]


def parse_query(question: str | Query, max_chars: int = 2000) -> Query:
    """Clean, truncate and read a question; a Query passes through unchanged.

    Raises InvalidQuestion when it is not a string or nothing is left to ask."""
    if isinstance(question, Query):
        return question
    if not isinstance(question, str):
        raise InvalidQuestion("question must be a string")
    text = clean_input(input_window(question, max_chars))[:max_chars]
    if not text:
        raise InvalidQuestion("问题为空：请输入一个问题。(The question is empty.)")
    simplified = to_simplified(text)
    cjk = has_cjk(text)
    # the glossary is read once for both: the plan's terms for any English phrase, and
    # (for a question wholly in English) the words it has none for
    terms, unknown = english_reading(simplified)
    return Query(
        text=text,
        simplified=simplified,
        traditional=cjk and is_traditional(text),
        english_terms=tuple(terms),
        reference=parse_reference(simplified),
        answer_type=expected_type(simplified),
        shape=classify_normalized(simplified),
        english_unknown=() if cjk else tuple(unknown),
        colloquial_terms=tuple(colloquial_terms(simplified)) if cjk else (),
    )


__all__ = ["LIST", "PLAIN", "ROUNDUP", "STRUCTURE", "Query", "classify", "parse_query",
           "roundup_topic"]
