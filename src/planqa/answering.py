"""Answers and citations, and the default extractive answerer.

The extractive answerer never writes a fact of its own: it picks sentences of the
retrieved passages that answer the question, quotes them verbatim (in the
question's script), frames them with one short line and names the source. When
the best passage does not answer the question, it says so plainly.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from planqa.corpus import PREAMBLE, Passage, Plan
from planqa.retrieval import Hit, parse_reference
from planqa.text import normalize_query, to_traditional


@dataclass(frozen=True)
class Citation:
    """Where an answer stands in the plan.

    `quote` is the sentences the answer used, verbatim, joined; `highlights` are
    those sentences one by one (for highlighting inside `text`, the full passage)."""

    section: str  # "前言" or "一".."五"
    clause: str  # "1".."7"; "" for a section's title/lead or the preamble
    ref: str  # "二、2"
    title: str  # section title › clause heading
    quote: str
    highlights: tuple[str, ...] = ()
    text: str = ""  # the whole passage, in the answer's script
    score: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["highlights"] = list(self.highlights)
        return d


@dataclass(frozen=True)
class Answer:
    """An answer in the question's script.

    `found` is False when the plan has no provision on the question; then
    `citations` is empty and `related` lists the nearest passages ("可能相关")."""

    text: str
    found: bool
    citations: list[Citation] = field(default_factory=list)
    related: list[Citation] = field(default_factory=list)
    question: str = ""  # the question as understood (after follow-up resolution)
    source: str = "extractive"  # "extractive" | "llm"
    traditional: bool = False

    def to_dict(self) -> dict:
        return {
            "answer": self.text,
            "found": self.found,
            "citations": [c.to_dict() for c in self.citations],
            "related": [c.to_dict() for c in self.related],
            "question": self.question,
            "source": self.source,
        }



# ---------------------------------------------------------------- question kinds

STRUCTURE, LIST, FIGURE, PLAIN = "structure", "list", "figure", "plain"

_DOC_STRUCTURE = re.compile(
    r"(分为|分成|包括|包含|有)(哪|几)(几|个|些)?(个)?(部分|方面|板块|章)|几个部分|哪几部分|"
    r"(整体|总体|文件|方案的?)(结构|框架|目录|提纲)|"
    r"\b(structure|outline|sections? (?:does|are))\b|how many (?:parts|sections)", re.I)
_SECTION_ABOUT = re.compile(r"(讲|说|写|涉及|包括|包含|有)(了)?(什么|啥|哪些|些什么)|主要内容|"
                            r"是关于什么|\bwhat (?:is|does).*(?:about|cover|say)", re.I)
_LIST = re.compile(r"哪些|哪几|有几(个|项|条|种|方面)|包括什么|包含什么|分别是|列举|几个方面|"
                   r"\b(what are|which|list)\b", re.I)
_FIGURE = re.compile(r"多少|几(个|名|年|成|岁|次)|比例|百分|比重|何时|什么时候|哪一?年|"
                     r"期限|截止|年底|多大|\b(how (?:many|much)|when|percentage|share|"
                     r"proportion|by what year|what year)\b", re.I)
_HAS_FIGURE = re.compile(r"\d|[一二三四五六七八九十百千万两]+(?:分之|个|名|年|岁|成)|分之")


def classify(question: str) -> str:
    """What shape of answer a question wants: structure, list, figure or plain."""
    q = normalize_query(question)
    if _DOC_STRUCTURE.search(q):
        return STRUCTURE
    if _FIGURE.search(q) and not re.search(r"哪些|哪几", q):
        return FIGURE
    if _LIST.search(q):
        return LIST
    return PLAIN


# ---------------------------------------------------------------- wording

_SECTION_ORDINAL = {"一": "第一部分", "二": "第二部分", "三": "第三部分", "四": "第四部分",
                    "五": "第五部分", "六": "第六部分", "七": "第七部分", "八": "第八部分",
                    "九": "第九部分", "十": "第十部分"}


def _w(text: str, traditional: bool) -> str:
    """planqa's own words in the answer's script."""
    return to_traditional(text) if traditional else text


def locate(p: Passage) -> str:
    """Where a passage stands, in words: 第二部分第2条 / 第三部分导语 / 前言."""
    if p.section == PREAMBLE:
        return "前言"
    sec = _SECTION_ORDINAL.get(p.section, f"第{p.section}部分")
    if p.clause:
        return f"{sec}第{p.clause}条"
    return f"{sec}导语" if p.kind == "lead" else f"{sec}标题"


def source_line(p: Passage, traditional: bool) -> str:
    """（出处：第二部分“section title”第2条“clause heading”）"""
    shown = p.in_script(traditional)
    if p.section == PREAMBLE:
        body = _w("前言（第一部分之前）", traditional)
    else:
        sec = _w(_SECTION_ORDINAL.get(p.section, p.section), traditional)
        body = f"{sec}“{shown['section_title']}”"
        if p.clause:
            body += _w(f"第{p.clause}条", traditional) + f"“{shown['heading']}”"
        elif p.kind == "lead":
            body += _w("导语", traditional)
    return f"（{_w('出处', traditional)}：{body}）"


def citation_title(p: Passage, traditional: bool) -> str:
    shown = p.in_script(traditional)
    if p.clause:
        return f"{shown['section_title']} › {shown['heading']}"
    return str(shown["section_title"])


def make_citation(p: Passage, positions: list[int], traditional: bool,
                  score: float = 0.0) -> Citation:
    """A citation quoting the passage's sentences at `positions`, verbatim."""
    shown = p.in_script(traditional)
    sentences = shown["sentences"]
    quoted = tuple(sentences[i] for i in positions if 0 <= i < len(sentences))
    return Citation(section=p.section, clause=p.clause, ref=p.ref,
                    title=citation_title(p, traditional), quote="".join(quoted),
                    highlights=quoted, text=str(shown["text"]), score=round(score, 4))


# ---------------------------------------------------------------- answerability

@dataclass(frozen=True)
class Calibration:
    """Thresholds for "the plan answers this"; fitted on eval/ (see `planqa eval`)."""

    min_score_dense: float = 0.86  # best unit cosine (e5 similarities sit high, ~0.8-0.95)
    min_lexical: float = 0.34  # IDF-weighted share of question terms the passage has
    strong_dense: float = 0.905  # dense alone suffices above this (paraphrases, English)
    strong_lexical: float = 0.75  # lexical alone suffices above this


DEFAULT_CALIBRATION = Calibration()


def answerable(hit: Hit, kind: str, cal: Calibration = DEFAULT_CALIBRATION) -> bool:
    """Does the best passage answer the question? (Exact references always do.)"""
    if hit.exact_ref:
        return True
    if kind == FIGURE and not any(_HAS_FIGURE.search(s) for s in hit.passage.sentences_simplified):
        return False  # a figure question needs a figure in the passage
    if hit.dense >= cal.strong_dense or hit.lexical >= cal.strong_lexical:
        return True
    return hit.dense >= cal.min_score_dense and hit.lexical >= cal.min_lexical


# ---------------------------------------------------------------- sentence choice


def pick_sentences(hit: Hit, kind: str, max_sentences: int = 2) -> list[int]:
    """Positions of the sentences that answer the question, in reading order."""
    scores = list(hit.sentence_scores)
    if not scores:
        return list(range(len(hit.passage.sentences)))
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    sentences = hit.passage.sentences_simplified
    if kind == FIGURE:
        with_figure = [i for i in order if _HAS_FIGURE.search(sentences[i])]
        if with_figure and scores[with_figure[0]] >= 0.5 * scores[order[0]]:
            order.remove(with_figure[0])
            order.insert(0, with_figure[0])
    best = order[0]
    chosen = [best]
    # A clause's first sentence is only its heading: when it wins, add the best body sentence.
    if best == 0 and hit.passage.kind == "clause" and len(order) > 1:
        chosen.append(order[1])
    for i in order[1:]:
        if len(chosen) >= max_sentences:
            break
        if i not in chosen and scores[i] >= max(0.85 * scores[best], 0.45):
            chosen.append(i)
    return sorted(chosen)


_ENUM_SPLIT = re.compile(r"[,;:：，；。]")


def enumerate_items(sentence: str) -> list[str]:
    """The items of the longest 、-enumeration in a sentence (verbatim substrings)."""
    clauses = [c for c in _ENUM_SPLIT.split(sentence) if "、" in c]
    if not clauses:
        return []
    run = max(clauses, key=lambda c: c.count("、"))
    items = [x.strip() for x in run.split("、") if x.strip()]
    if len(items) < 2:
        return []
    last = re.sub(r"(等|等等)$", "", items[-1])
    items[-1] = last or items[-1]
    tail = [len(x) for x in items[1:]]
    # "增强政治意识、大局意识…": trim the first item's lead-in verb to its siblings' shape.
    if len(set(tail)) == 1 and len(items[0]) > tail[0] and items[0].endswith(items[1][-2:]):
        items[0] = items[0][-tail[0]:]
    return items


# ---------------------------------------------------------------- composing


def _quote_block(sentences: list[str]) -> str:
    return "\n".join(f"“{s}”" for s in sentences)


def refusal(hits: list[Hit], traditional: bool, reason: str = "") -> Answer:
    """"The plan does not say", with the nearest passages as 可能相关."""
    related = [make_citation(h.passage, [h.matched_position], traditional, h.score)
               for h in hits[:3] if h.passage.sentences]
    text = reason or "《科协系统深化改革实施方案》中没有关于这个问题的规定，无法从方案中作答。"
    if related:
        text += "\n可能相关的条款：" + "；".join(f"{locate_by_ref(c)}“{c.title}”" for c in related)
    return Answer(text=_w(text, traditional) if not reason else text, found=False,
                  related=related, traditional=traditional)


def locate_by_ref(c: Citation) -> str:
    if c.section == PREAMBLE:
        return "前言"
    sec = _SECTION_ORDINAL.get(c.section, c.section)
    return f"{sec}第{c.clause}条" if c.clause else sec


def _section_anchor(plan: Plan, number: str) -> Passage:
    sec = plan.section(number)
    assert sec is not None
    return sec.lead or plan.get(f"{number}.title")


def _structure_answer(plan: Plan, traditional: bool) -> Answer:
    """The document's outline, from the parsed tree."""
    lines = [_w(f"《科协系统深化改革实施方案》在前言之后分为{len(plan.sections)}个部分：",
                traditional)]
    cites = []
    for sec in plan.sections:
        title = sec.title if traditional else sec.title_simplified
        lines.append(f"{sec.number}、{title}" + _w(f"（共{len(sec.clauses)}条）", traditional))
        anchor = _section_anchor(plan, sec.number)
        cites.append(Citation(section=sec.number, clause="", ref=sec.number, title=title,
                              quote=title, highlights=(title,),
                              text=str(anchor.in_script(traditional)["text"]), score=1.0))
    return Answer(text="\n".join(lines), found=True, citations=cites, traditional=traditional)


def _section_answer(plan: Plan, number: str, traditional: bool) -> Answer:
    """What one section covers: its clauses by heading and its lead's first sentence."""
    sec = plan.section(number)
    assert sec is not None
    anchor = _section_anchor(plan, number)
    title = sec.title if traditional else sec.title_simplified
    lines = [_w(_SECTION_ORDINAL[number], traditional) + f"“{title}”"
             + _w(f"共{len(sec.clauses)}条：", traditional)]
    lines += [f"{c.clause}. {c.in_script(traditional)['heading']}" for c in sec.clauses]
    if sec.lead:
        lines.append(_w("导语：", traditional) + _quote_block([anchor.in_script(traditional)
                                                             ["sentences"][0]]))
    lines.append(source_line(anchor, traditional))
    cites = [make_citation(anchor, [0], traditional, 1.0)]
    cites += [make_citation(c, [0], traditional, 1.0) for c in sec.clauses]
    return Answer(text="\n".join(lines), found=True, citations=cites, traditional=traditional)


def compose(question: str, hits: list[Hit], plan: Plan, *, traditional: bool,
            cal: Calibration = DEFAULT_CALIBRATION) -> Answer:
    """The extractive answer to `question` from ranked `hits` (best first)."""
    kind = classify(question)
    ref = parse_reference(question)
    if ref and plan.section(ref.section) is None:
        return refusal(hits, traditional, _w(
            f"方案只有{len(plan.sections)}个部分（一至{plan.sections[-1].number}），"
            f"没有{_SECTION_ORDINAL.get(ref.section, ref.section)}。", traditional))
    if ref and ref.clause and plan.clause(ref.section, ref.clause) is None:
        n = len(plan.section(ref.section).clauses)  # type: ignore[union-attr]
        return refusal(hits, traditional, _w(
            f"方案{_SECTION_ORDINAL[ref.section]}只有{n}条，没有第{ref.clause}条。", traditional))
    if ref and not ref.clause and hits and hits[0].exact_ref and hits[0].passage.clause == "":
        return _section_answer(plan, ref.section, traditional)
    if kind == STRUCTURE and not ref:
        return _structure_answer(plan, traditional)
    if not hits:
        return refusal(hits, traditional)
    top = hits[0]
    if not answerable(top, kind, cal):
        return refusal(hits, traditional)

    p = top.passage
    shown = p.in_script(traditional)
    sentences = list(shown["sentences"])
    where = locate(p)
    if top.exact_ref:
        positions = list(range(len(sentences)))
        head = f"{where}“{shown['heading']}”" + _w("全文如下：", traditional)
        body = _quote_block(sentences)
    elif kind == LIST and p.items:
        positions = [_item_position(p, it.heading) for it in p.items]
        head = _w(f"方案{where}列出了{len(p.items)}项：", traditional)
        body = "\n".join(
            f"{i}. {it.heading if traditional else it.heading_simplified}"
            for i, it in enumerate(p.items, 1))
    else:
        positions = pick_sentences(top, kind)
        quoted = [sentences[i] for i in positions]
        items = enumerate_items(quoted[-1]) if kind == LIST else []
        if len(items) >= 3:
            head = _w(f"方案{where}列举了以下{len(items)}项：", traditional)
            body = "\n".join(f"{i}. {x}" for i, x in enumerate(items, 1)) + "\n" + _w(
                "原文：", traditional) + _quote_block(quoted)
        else:
            head = _w(f"据方案{where}：", traditional)
            body = _quote_block(quoted)
    citation = make_citation(p, positions, traditional, top.score)
    text = f"{head}\n{body}\n{source_line(p, traditional)}"
    return Answer(text=text, found=True, citations=[citation], traditional=traditional)


def _item_position(p: Passage, heading: str) -> int:
    return next((i for i, s in enumerate(p.sentences) if heading in s), 0)
