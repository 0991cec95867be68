"""References to places in the plan, in one home: reading them and writing them.

A plan in this style is numbered 一、二、… (sections, any number of them) and 1., 2., …
(clauses). This module owns every form a reference takes:

* the short ref a passage carries: "二、2" (a clause), "二" (a section's title or
  lead), "前言" (the preamble) — :func:`make_ref`;
* the words an answer uses: 第二部分第2条 (:func:`locate`) and the 出处 line
  （出处：第二部分“…”第2条“…”） (:func:`source_line`);
* what users type: 第二部分第5条, 二、5, "part 2 clause 5", 最后一部分
  (:func:`parse_reference`);
* what an earlier answer or an LLM reply cites: the 出处 line or [二、2]
  (:func:`cited_passages`, :func:`cited_refs`);
* Chinese numerals both ways (:func:`cn_to_int`, :func:`int_to_cn`).

Pure functions over text; the plan is passed in where a ref must exist.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from planqa.text import normalize_query, to_traditional

if TYPE_CHECKING:
    from planqa.corpus import Passage, Plan

PREAMBLE = "前言"

# ---------------------------------------------------------------- numerals

_CN_DIGIT = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5,
             "六": 6, "七": 7, "八": 8, "九": 9}
CN_SMALL_UNITS = {"十": 10, "百": 100, "千": 1000}
CN_BIG_UNITS = {"万": 10_000, "萬": 10_000, "亿": 100_000_000, "億": 100_000_000}
#: Every character a Chinese numeral may be written with.
CN_NUMERAL_CHARS = "".join((*_CN_DIGIT, *CN_SMALL_UNITS, *CN_BIG_UNITS))
#: The characters section numbers are written with (一…九十, so up to 九十九).
SECTION_CHARS = "一二三四五六七八九十"
_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6, "vii": 7, "viii": 8, "ix": 9,
          "x": 10}


def cn_to_int(token: str) -> int | None:
    """A number as an int, from Arabic digits, Roman numerals (i…x) or a Chinese
    numeral: "5" → 5, "iv" → 4, 十八 → 18, 一千一百二十 → 1120, 两 → 2; None otherwise."""
    token = token.strip().lower()
    if not token:
        return None
    if token.isdigit():
        return int(token)
    if token in _ROMAN:
        return _ROMAN[token]
    if not all(ch in CN_NUMERAL_CHARS for ch in token):
        return None
    total = section = digit = 0
    for ch in token:
        if ch in _CN_DIGIT:
            digit = _CN_DIGIT[ch]
        elif ch in CN_SMALL_UNITS:
            section += (digit or 1) * CN_SMALL_UNITS[ch]
            digit = 0
        else:
            total = (total + section + digit) * CN_BIG_UNITS[ch]
            section = digit = 0
    return total + section + digit


def int_to_cn(n: int) -> str:
    """1…99 as a Chinese numeral, the way sections are numbered: 2 → 二, 12 → 十二, 20 → 二十."""
    if not 1 <= n <= 99:
        raise ValueError(f"section numbers run from 1 to 99, got {n}")
    digits = "零一二三四五六七八九"
    tens, ones = divmod(n, 10)
    if not tens:
        return digits[ones]
    return ("" if tens == 1 else digits[tens]) + "十" + (digits[ones] if ones else "")


# ---------------------------------------------------------------- writing refs


def make_ref(section: str, clause: str = "") -> str:
    """The short ref: 二、2 for a clause, 二 for a section, 前言 for the preamble."""
    if section == PREAMBLE:
        return PREAMBLE
    return f"{section}、{clause}" if clause else section


def section_ordinal(number: str) -> str:
    """第二部分 for section 二."""
    return f"第{number}部分"


def own_words(text: str, traditional: bool) -> str:
    """planqa's own words (never a quote of the plan) in the answer's script."""
    return to_traditional(text) if traditional else text


_w = own_words


def locate(p: Passage) -> str:
    """Where a passage stands, in words: 第二部分第2条 / 第三部分导语 / 前言."""
    if p.section == PREAMBLE:
        return PREAMBLE
    where = section_ordinal(p.section)
    if p.clause:
        return f"{where}第{p.clause}条"
    return f"{where}导语" if p.kind == "lead" else f"{where}标题"


def source_line(p: Passage, traditional: bool) -> str:
    """（出处：第二部分“section title”第2条“clause heading”）, in the answer's script."""
    shown = p.in_script(traditional)
    if p.section == PREAMBLE:
        body = _w("前言（第一部分之前）", traditional)
    else:
        body = _w(section_ordinal(p.section), traditional) + f"“{shown['section_title']}”"
        if p.clause:
            body += _w(f"第{p.clause}条", traditional) + f"“{shown['heading']}”"
        elif p.kind == "lead":
            body += _w("导语", traditional)
    return f"（{_w('出处', traditional)}：{body}）"


# ---------------------------------------------------------------- reading what users type

_NUM = r"[一二三四五六七八九十\d]{1,3}"
_SECTION_PATTERNS = (
    re.compile(rf"第({_NUM})(?:大)?(?:部分|章|节|板块|方面)"),
    re.compile(r"(?<![一二三四五六七八九十\d])([一二三四五六七八九十]{1,2})、(?!\d)"),
    re.compile(r"\b(?:section|part|chapter)\s+([ivx]+|\d{1,2})\b", re.I),
)
_LAST_SECTION = re.compile(r"最后(?:一个?)?(?:部分|章|板块)|\b(?:last|final) (?:section|part)\b",
                           re.I)
#: Reference.section for "the last section" (resolved against the plan).
LAST = "末"
# 二、5 / 二.5 carry the section and the clause at once.
_SECTION_AND_CLAUSE = re.compile(
    r"(?<![一二三四五六七八九十\d])([一二三四五六七八九十]{1,2})[、.](\d{1,2})(?!\d)")
_CLAUSE_PATTERNS = (
    re.compile(rf"第({_NUM})(?:条|点|款|项|小节|小点)"),
    re.compile(r"\b(?:clause|item|point|article|paragraph)\s+(\d{1,2})\b", re.I),
    re.compile(r"\b(?:section|part)\s+(?:[ivx]+|\d{1,2})[.,]\s*(\d{1,2})\b", re.I),
)


@dataclass(frozen=True)
class Reference:
    """A direct reference in a question: a section, and maybe a clause in it."""

    section: str  # "一".."九十九", or LAST
    clause: str = ""  # "1".."99" or ""

    def resolved(self, plan: Plan) -> Reference:
        """LAST replaced by the plan's last section number."""
        if self.section == LAST and plan.sections:
            return Reference(plan.sections[-1].number, self.clause)
        return self


def _section_token(token: str) -> str | None:
    n = cn_to_int(token)
    return int_to_cn(n) if n and 1 <= n <= 99 else None


_CARDINALS = ("one two three four five six seven eight nine ten").split()
_ORDINALS = ("first second third fourth fifth sixth seventh eighth ninth tenth").split()
_EN_NUMBERS = {w: str(i) for words in (_CARDINALS, _ORDINALS)
               for i, w in enumerate(words, 1)}
_EN_UNIT = r"(section|part|chapter|clause|item|point|article|paragraph)"
# "section one", "the second part"; not "one part of the reform"
_EN_AFTER = re.compile(rf"\b{_EN_UNIT}\s+({'|'.join(_CARDINALS)})\b", re.I)
_EN_BEFORE = re.compile(rf"\b({'|'.join(_ORDINALS)})\s+{_EN_UNIT}\b", re.I)


def _english_ordinals(q: str) -> str:
    """"section one", "the second part" as "section 1", "part 2"."""
    q = _EN_AFTER.sub(lambda m: f"{m[1]} {_EN_NUMBERS[m[2].lower()]}", q)
    return _EN_BEFORE.sub(lambda m: f"{m[2]} {_EN_NUMBERS[m[1].lower()]}", q)


def parse_reference(question: str) -> Reference | None:
    """Find an explicit section (and clause) reference such as 第二部分第5条, 二、5,
    "part 2 clause 5" or "the second clause of section three". Returns None when the
    question names no section."""
    q = _english_ordinals(normalize_query(question))
    both = _SECTION_AND_CLAUSE.search(q)
    if both and (sec := _section_token(both.group(1))):
        return Reference(sec, str(int(both.group(2))))
    section = LAST if _LAST_SECTION.search(q) else None
    for rx in () if section else _SECTION_PATTERNS:
        m = rx.search(q)
        if m and (sec := _section_token(m.group(1))):
            section = sec
            break
    if section is None:
        return None
    for rx in _CLAUSE_PATTERNS:
        m = rx.search(q)
        if m and (n := cn_to_int(m.group(m.lastindex or 1))):
            return Reference(section, str(n))
    return Reference(section)


# ---------------------------------------------------------------- reading what answers cite

# 出处 line: 第二部分“…”第2条“…” (or 导语), in either script.
_CITED = re.compile(rf"第([{SECTION_CHARS}]{{1,2}})部分“[^”]*”(?:第(\d{{1,2}})条)?")
_BARE_REF = re.compile(
    rf"(?<![{SECTION_CHARS}\d])([{SECTION_CHARS}]{{1,2}})、(\d{{1,2}})(?!\d)")


def passage_id(section: str, clause: str = "") -> str:
    """The id of the passage a ref names: 二.2 for a clause, 二.lead for a section."""
    return f"{section}.{clause}" if clause else f"{section}.lead"


def cited_passages(answer: str, plan: Plan) -> list[str]:
    """Passage ids an earlier answer cited, in order (from its 出处 line or bare refs)."""
    ids: list[str] = []
    text = normalize_query(answer)
    for m in (*_CITED.finditer(text), *_BARE_REF.finditer(text)):
        pid = passage_id(m.group(1), m.group(2) or "")
        if pid not in ids:
            ids.append(pid)
    return [pid for pid in ids if plan.has(pid)]


_REF_IN_BRACKETS = re.compile(
    rf"前言|第([{SECTION_CHARS}]{{1,2}})部分(?:第(\d{{1,2}}|[{SECTION_CHARS}]{{1,3}})[条條])?"
    rf"|(?<![{SECTION_CHARS}])([{SECTION_CHARS}]{{1,2}})(?:\s*[、.．]\s*(\d{{1,2}}))?(?!\d)")
_BRACKETS = re.compile(r"[\[【［]([^\[\]【】［］\n]{1,60})[\]】］]")
# What may surround refs inside one citation: separators and a 见/出处 lead-in.
_CITATION_FILLER = re.compile(r"[\s,，;；、/和及与见參参出处處:：]*")


def bracket_citations(text: str) -> list[re.Match[str]]:
    """The bracket groups of a text that are citations: nothing in them but refs."""
    return [g for g in _BRACKETS.finditer(text)
            if _REF_IN_BRACKETS.search(g.group(1))
            and _CITATION_FILLER.fullmatch(_REF_IN_BRACKETS.sub("", g.group(1)))]


def cited_refs(reply: str) -> list[str]:
    """The refs a reply cites in brackets, in order of first citation, normalized to
    the plan's form ("二、2", "二", "前言"). Accepts [二、2], 【二、2】, [二.5],
    [第二部分第2条] and several refs in one bracket ([二、2；三、3]); a bracket holding
    anything else ([三分之一]) is not a citation."""
    out: list[str] = []
    for group in bracket_citations(unicodedata.normalize("NFKC", reply)):
        for m in _REF_IN_BRACKETS.finditer(group.group(1)):
            if m.group(0) == PREAMBLE:
                ref = PREAMBLE
            elif m.group(1):
                ref = make_ref(m.group(1), str(cn_to_int(m.group(2))) if m.group(2) else "")
            else:
                ref = make_ref(m.group(3), str(int(m.group(4))) if m.group(4) else "")
            if ref not in out:
                out.append(ref)
    return out


__all__ = ["LAST", "PREAMBLE", "Reference", "bracket_citations", "cited_passages", "cited_refs",
           "cn_to_int", "int_to_cn", "locate", "make_ref", "own_words", "parse_reference",
           "passage_id", "section_ordinal", "source_line"]
