"""An optional LLM answerer that is always checked against the plan before use.

When an OpenAI-compatible endpoint is configured (PLANQA_LLM_BASE_URL), the chain
first composes the extractive answer, then asks the LLM to answer from the top
retrieved clauses and to cite them. The reply is used only when `verify` finds
nothing wrong with it:

* it cites at least one clause, as [二、2] (or 【二、2】), and only clauses it was shown;
* every figure in it (Arabic numbers, percentages, 三分之一-style fractions, Chinese
  numerals with a unit such as 两年) occurs in one of the clauses it cites;
* it is not empty, not overlong, and not "方案未涉及" (the extractive answerer found
  a provision, so that reply is wrong).

Otherwise, on an error, or on a timeout, the extractive answer is kept and one
WARNING line on the "planqa" logger says why. `LLMAnswerer.answer` never raises.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from planqa.answering import Answer, Citation, citation_title, make_citation
from planqa.refs import (
    CN_BIG_UNITS,
    CN_NUMERAL_CHARS,
    CN_SMALL_UNITS,
    SECTION_CHARS,
    bracket_citations,
    cited_refs,
    cn_to_int,
)
from planqa.text import to_simplified

if TYPE_CHECKING:
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import Runnable

    from planqa.config import Settings
    from planqa.retrieval import Hit

log = logging.getLogger("planqa")

#: How many retrieved passages the LLM sees (and may cite).
LLM_TOP_K = 3
#: Longer replies are rejected: the plan's longest clause is about this long.
MAX_REPLY_CHARS = 1500
#: What the model must answer when the clauses do not answer the question.
NOT_COVERED = "方案未涉及"

SYSTEM_PROMPT = """你是{title}的问答助手，为工作人员解答关于这份方案的问题。
请严格遵守以下规则：
1. 只依据用户消息中给出的方案条款作答，不使用条款以外的任何知识，不推测，不补充。
2. 用问题所用的字体作答：问题是繁体中文就用繁体中文回答，否则一律用简体中文回答。
3. 每用到一条条款，都要在相应句子后用方括号标注它的编号，例如[二、2]；只能引用给出的条款编号。
4. 数字、比例、年份、期限等必须与条款原文完全一致，照原文引用，不得换算、估算或改写。
5. 如果这些条款不能回答问题，只回复“方案未涉及”，不要写其他任何内容。
6. 回答简洁，一般不超过300字。
本题请用{script}作答。"""

HUMAN_PROMPT = """方案条款（可引用的编号：{refs}）：

{clauses}

{question_block}"""


# ---------------------------------------------------------------- the prompt


@lru_cache(maxsize=1)
def build_prompt() -> ChatPromptTemplate:
    """The chat prompt: system rules, then the clauses and the question."""
    from langchain_core.prompts import ChatPromptTemplate

    return ChatPromptTemplate.from_messages([("system", SYSTEM_PROMPT), ("human", HUMAN_PROMPT)])


def format_clause(hit: Hit, traditional: bool) -> str:
    """One clause for the prompt: `[ref] section title › heading` then its full text."""
    p = hit.passage
    return f"[{p.ref}] {citation_title(p, traditional)}\n{p.in_script(traditional)['text']}"


def prompt_inputs(question: str, resolved_question: str, hits: Sequence[Hit],
                  traditional: bool, top_k: int = LLM_TOP_K,
                  title: str = "这份方案") -> dict[str, str]:
    """The prompt's variables for a question and its first `top_k` hits.

    The clauses are given in the answer's script so the model can quote them as is."""
    shown = list(hits)[:top_k]
    if resolved_question and resolved_question != question:
        # A follow-up: the model needs the self-contained question, and the user's
        # words for what exactly they asked.
        question_block = f"问题（结合上文补全）：{resolved_question}\n用户原话：{question}"
    else:
        question_block = f"问题：{question}"
    return {
        "title": title,
        "script": "繁体中文" if traditional else "简体中文",
        "refs": "、".join(f"[{h.passage.ref}]" for h in shown),
        "clauses": "\n\n".join(format_clause(h, traditional) for h in shown),
        "question_block": question_block,
    }


# ---------------------------------------------------------------- references

# ---------------------------------------------------------------- figures

# Things that look like numbers but are not figures: citations, ordinals (第二部分,
# 第2条), bare refs (二、2) and list markers at a line's start ("1. ", "（2）").
_NOT_FIGURES = (
    re.compile(rf"第\s*[\d{CN_NUMERAL_CHARS}]+"),
    re.compile(rf"(?<![{SECTION_CHARS}])[{SECTION_CHARS}]{{1,2}}\s*[、.．]\s*\d{{1,2}}(?!\d|\.\d|%)"),
    re.compile(r"(?m)^\s*(?:\d{1,2}[.、．)）](?!\d)|[（(]\d{1,2}[）)])"),
)
_ARABIC = re.compile(r"(?<![\d.])(\d{1,3}(?:,\d{3})+(?!\d)|\d+(?:\.\d+)?)\s*(%)?\s*([万萬亿億])?")
_FRACTION = re.compile(rf"([\d{CN_NUMERAL_CHARS}]+)分之([\d{CN_NUMERAL_CHARS}]+)")
_SLASH = re.compile(r"(?<![\d.])(\d+)\s*/\s*(\d+)(?![\d.])")
# Chinese numerals count only with a unit after them, never after 第 or inside a longer
# numeral; a lone 一 is left out (一个/一批 is mostly an article, not a figure).
_CN_WITH_UNIT = re.compile(
    rf"(?<![第{CN_NUMERAL_CHARS}\d])([{CN_NUMERAL_CHARS}]+)[年名个個项項倍届屆岁歲人月天周週]")
_RANGE_JOIN = re.compile(r"^\s*[-–—~～至到]\s*$")

Figure = tuple[Fraction, bool]  # (value, is a percentage)


def figures(text: str) -> list[tuple[str, Figure]]:
    """The figures in a text as (as written, (value, is_percent)), e.g. "1120名" gives
    ("1120", (1120, False)); "三分之一" gives ("三分之一", (1/3, False)); "58%" gives
    ("58%", (58, True)). Traditional and Simplified, Arabic and Chinese compare equal."""
    text = unicodedata.normalize("NFKC", text)
    for g in reversed(bracket_citations(text)):
        text = text[: g.start()] + " " + text[g.end():]
    for rx in _NOT_FIGURES:
        text = rx.sub(" ", text)
    found: list[tuple[int, int, str, Figure]] = []  # (start, end, written, figure)

    def add(m: re.Match[str], value: Fraction, percent: bool) -> None:
        found.append((m.start(), m.end(), m.group(0).strip(), (value, percent)))

    for m in _FRACTION.finditer(text):
        den, num = (cn_to_int(x) or 0 for x in m.groups())
        if int(den) == 0:
            continue
        if int(den) == 100:  # 百分之五十八 is 58%
            add(m, Fraction(int(num)), True)
        else:
            add(m, Fraction(int(num), int(den)), False)
    for m in _SLASH.finditer(text):
        if int(m.group(2)):
            add(m, Fraction(int(m.group(1)), int(m.group(2))), False)
    taken = [(s, e) for s, e, _, _ in found]

    def free(m: re.Match[str]) -> bool:
        return not any(s <= m.start() < e for s, e in taken)

    for m in _ARABIC.finditer(text):
        if not free(m):
            continue
        value = Fraction(m.group(1).replace(",", ""))
        if m.group(3):
            value *= CN_BIG_UNITS[m.group(3)]
        add(m, value, bool(m.group(2)))
    for m in _CN_WITH_UNIT.finditer(text):
        token = m.group(1)
        if not free(m) or token == "一" or all(c in CN_SMALL_UNITS or c in CN_BIG_UNITS
                                              for c in token):
            continue  # 一个 is an article, 百年/万人 are mostly words
        add(m, Fraction(cn_to_int(token) or 0), False)
    found.sort()
    # "10-15%" and "10至15%": the range's first figure is a percentage too.
    out: list[tuple[str, Figure]] = []
    for i, (_s, end, written, (value, percent)) in enumerate(found):
        if not percent and i + 1 < len(found):
            nxt = found[i + 1]
            if nxt[3][1] and _RANGE_JOIN.match(text[end:nxt[0]]):
                percent = True
        out.append((written, (value, percent)))
    return out


# ---------------------------------------------------------------- verification


def _is_not_covered(reply: str, refs: list[str]) -> bool:
    """"方案未涉及" (in either script), alone or, without citations, leading the reply."""
    text = unicodedata.normalize("NFKC", reply)
    for g in reversed(bracket_citations(text)):
        text = text[: g.start()] + text[g.end():]
    bare = re.sub(r"[\W_]+", "", to_simplified(text))
    return bare == NOT_COVERED or (not refs and bare.startswith(NOT_COVERED))


def verify(reply: str, hits: Sequence[Hit], max_chars: int = MAX_REPLY_CHARS) -> list[str]:
    """Problems with an LLM reply to a question whose retrieved clauses were `hits`
    (exactly those shown to the model); an empty list means the reply may be used.

    Checks: non-empty and at most `max_chars` long; not "方案未涉及"; at least one
    clause cited; every cited ref among the hits; every figure in one of the cited
    clauses (in either script)."""
    text = (reply or "").strip()
    if not text:
        return ["empty reply"]
    if len(text) > max_chars:
        return [f"reply too long ({len(text)} chars)"]
    refs = cited_refs(text)
    if _is_not_covered(text, refs):
        return [f"the model replied {NOT_COVERED!r} but the plan has a provision"]
    if not refs:
        return ["no clause cited"]
    by_ref = {h.passage.ref: h.passage for h in hits}
    problems = [f"ref {r} not among the retrieved clauses {'/'.join(by_ref)}"
                for r in refs if r not in by_ref]
    cited = [by_ref[r] for r in refs if r in by_ref]
    allowed = {fig for p in cited for t in (p.text, p.text_simplified) for _, fig in figures(t)}
    missing: list[str] = []
    for written, fig in figures(text):
        if fig not in allowed and written not in missing:
            missing.append(written)
    problems += [f"number {w} not in cited clauses" for w in missing]
    return problems


# ---------------------------------------------------------------- the answerer


def _source_line(text: str) -> str | None:
    """The extractive answer's （出处：…） line, the last one if several."""
    for line in reversed(text.split("\n")):
        if line.startswith(("（出处", "（出處")):
            return line
    return None


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class LLMAnswerer:
    """Answers from the retrieved clauses with a chat model, verified by `verify`.

    `model` is any LangChain chat model (or Runnable from a prompt value to a message
    or string); tests inject fakes. `from_settings` builds an OpenAI-compatible one."""

    def __init__(self, model: Runnable, *, top_k: int = LLM_TOP_K,
                 max_chars: int = MAX_REPLY_CHARS, title: str = "这份方案") -> None:
        from langchain_core.output_parsers import StrOutputParser

        self.model = model
        self.top_k = top_k
        self.max_chars = max_chars
        self.title = title  # the plan's 《title》, for the prompt (see planqa.profile)
        #: prompt | model | parser: the LangChain Runnable that produces the reply.
        self.chain: Runnable = build_prompt() | model | StrOutputParser()

    @classmethod
    def from_settings(cls, settings: Settings, title: str = "这份方案") -> LLMAnswerer:
        """An answerer over the OpenAI-compatible endpoint in `settings` (PLANQA_LLM_*).

        No retries: a slow or failing LLM must not hold up the answer, which the
        extractive answerer already has."""
        from langchain_openai import ChatOpenAI

        kwargs: dict[str, Any] = {}
        if settings.llm_model:  # empty: let ChatOpenAI use its default model name
            kwargs["model"] = settings.llm_model
        model = ChatOpenAI(base_url=settings.llm_base_url, api_key=settings.llm_api_key or "none",
                           timeout=settings.llm_timeout, max_retries=0, temperature=0, **kwargs)
        return cls(model, title=title)

    def reply(self, question: str, resolved_question: str, hits: Sequence[Hit],
              traditional: bool) -> str:
        """The model's raw reply (raises whatever the model raises)."""
        inputs = prompt_inputs(question, resolved_question, hits, traditional, self.top_k,
                               self.title)
        return self.chain.invoke(inputs, config={"run_name": "llm_answer"})

    def answer(self, question: str, resolved_question: str, hits: Sequence[Hit],
               extractive: Answer) -> Answer:
        """The LLM's answer if it passes `verify`, else `extractive` unchanged.

        Never raises: errors and timeouts fall back to the extractive answer, with one
        WARNING line on the "planqa" logger."""
        shown = list(hits)[: self.top_k]
        if not shown:
            return extractive
        try:
            text = self.reply(question, resolved_question, shown, extractive.traditional)
        except Exception as exc:  # any failure of the endpoint: the extractive answer stands
            log.warning("LLM call failed (%s: %s); using the extractive answer",
                        type(exc).__name__, _one_line(exc))
            return extractive
        problems = verify(text, shown, self.max_chars)
        if problems:
            log.warning("LLM answer rejected (%s); using the extractive answer",
                        _one_line("; ".join(problems), 400))
            return extractive
        try:
            return self._accepted(text.strip(), shown, extractive)
        except Exception as exc:  # a bug here must not cost the user the answer
            log.warning("LLM answer not usable (%s: %s); using the extractive answer",
                        type(exc).__name__, _one_line(exc))
            return extractive

    def _accepted(self, reply: str, shown: list[Hit], extractive: Answer) -> Answer:
        source = _source_line(extractive.text)
        text = f"{reply}\n{source}" if source else reply
        refs = cited_refs(reply)
        existing = {c.ref: c for c in extractive.citations}
        by_ref = {h.passage.ref: h for h in shown}
        first: list[Citation] = []
        for ref in refs:  # the clauses the LLM used come first, in its order
            if ref in existing:
                first.append(existing[ref])
            else:
                hit = by_ref[ref]
                first.append(make_citation(hit.passage, [hit.matched_position],
                                           extractive.traditional, hit.score))
        rest = [c for c in extractive.citations if c.ref not in refs]
        return replace(extractive, text=text, source="llm", citations=first + rest)


__all__ = ["LLM_TOP_K", "MAX_REPLY_CHARS", "NOT_COVERED", "LLMAnswerer", "build_prompt",
           "cited_refs", "figures", "format_clause", "prompt_inputs", "verify"]
