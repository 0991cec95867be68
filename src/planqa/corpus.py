"""The plan as structured data: cleaning and a structure-aware parser.

Plans in this style are laid out as

    preamble paragraphs
    一、section title
    lead paragraph(s)
    1.clause heading。clause text …        (or （一）clause heading。…)
    ——principle heading。principle text …  (items inside a clause; also （1）)

The parser follows those markers, not this file's quirks, so another plan written
the same way parses too. Everything here is pure: text in, frozen dataclasses out.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path

from planqa.profile import Profile, derive_profile, load_profile, profile_path
from planqa.refs import PREAMBLE, make_ref
from planqa.text import split_sentences, to_simplified

_TONED = "āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜü"
# A pinyin syllable in parentheses right after a CJK character: 了(le), 區(qū), 作(zuò).
# Real parentheses such as (試行), (PPP) or (常務理事會) do not match.
_PINYIN = re.compile(
    rf"(?<=[\u3400-\u9fff])\((?:zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])?[aeiouv{_TONED}]+(?:ng|n|r)?\)"
)
_CN_NUM = "一二三四五六七八九十"
_SECTION = re.compile(rf"^([{_CN_NUM}]+)、\s*(.+)$")
_CLAUSE_ARABIC = re.compile(r"^(\d{1,2})[.．、]\s*(.*)$")
_CLAUSE_PAREN_CN = re.compile(rf"^[（(]([{_CN_NUM}]+)[）)]\s*(.*)$")
_ITEM_PAREN_NUM = re.compile(r"^[（(](\d{1,2})[）)]\s*(.*)$")
_ITEM_DASH = re.compile(r"^——\s*(.*)$")


def strip_pinyin(text: str) -> str:
    """Remove inline pinyin annotations, keep every real parenthesis."""
    return _PINYIN.sub("", text)


def first_sentence(text: str) -> str:
    """The heading of a clause or item: its text up to the first 。 (without it)."""
    head = text.split("。", 1)[0]
    return head.strip()


@dataclass(frozen=True)
class Item:
    """A marked item inside a clause: a —— principle or a （1） sub-item."""

    marker: str
    heading: str
    text: str
    heading_simplified: str
    text_simplified: str


@dataclass(frozen=True)
class Passage:
    """A citable unit: a clause, a section's title or lead, or a preamble paragraph.

    Text fields come in the source's Traditional script and in Simplified."""

    id: str
    kind: str  # "preamble" | "title" | "lead" | "clause"
    section: str  # "前言" or "一".."五"
    section_title: str
    clause: str  # "1".."7" (or "一" for a （一） clause); "" for title, lead, preamble
    ref: str  # "二、2", "二", "前言"
    heading: str
    text: str
    sentences: tuple[str, ...]
    items: tuple[Item, ...] = ()
    section_title_simplified: str = ""
    heading_simplified: str = ""
    text_simplified: str = ""
    sentences_simplified: tuple[str, ...] = ()

    @property
    def announces(self) -> bool:
        """A preamble line that only announces the text ("《…》全文如下。"): it says
        nothing, so it answers no question."""
        return (self.kind == "preamble" and len(self.sentences_simplified) == 1
                and self.text_simplified.rstrip("。:： ").endswith("如下"))

    def in_script(self, traditional: bool) -> dict[str, object]:
        """The passage's display fields in one script."""
        if traditional:
            return {
                "section_title": self.section_title,
                "heading": self.heading,
                "text": self.text,
                "sentences": self.sentences,
            }
        return {
            "section_title": self.section_title_simplified,
            "heading": self.heading_simplified,
            "text": self.text_simplified,
            "sentences": self.sentences_simplified,
        }


@dataclass(frozen=True)
class Section:
    number: str  # "一".."五"
    title: str
    title_simplified: str
    lead: Passage | None
    clauses: tuple[Passage, ...]


@dataclass(frozen=True)
class Plan:
    """The parsed plan: preamble paragraphs and sections, plus lookups."""

    preamble: tuple[Passage, ...]
    sections: tuple[Section, ...]
    sha256: str
    _by_id: dict[str, Passage] = field(default_factory=dict, repr=False, compare=False)
    #: how planqa presents this plan (read beside its text by load_plan; see planqa.profile)
    _profile: Profile | None = field(default=None, repr=False, compare=False)

    @property
    def profile(self) -> Profile:
        """The plan's profile: the one shipped beside its text, else derived from it."""
        return self._profile or derive_profile(self)

    @property
    def passages(self) -> tuple[Passage, ...]:
        """Every passage in reading order: preamble, then per section title, lead, clauses."""
        out: list[Passage] = list(self.preamble)
        for sec in self.sections:
            out.append(self.get(f"{sec.number}.title"))
            if sec.lead:
                out.append(sec.lead)
            out.extend(sec.clauses)
        return tuple(out)

    @cached_property
    def text_simplified(self) -> str:
        """Every passage's Simplified text, in reading order (for "does the plan use
        this word at all")."""
        return "\n".join(p.text_simplified for p in self.passages)

    def get(self, passage_id: str) -> Passage:
        return self._by_id[passage_id]

    def has(self, passage_id: str) -> bool:
        return passage_id in self._by_id

    def section(self, number: str) -> Section | None:
        return next((s for s in self.sections if s.number == number), None)

    def clause(self, section: str, clause: str) -> Passage | None:
        sec = self.section(section)
        if sec is None:
            return None
        return next((c for c in sec.clauses if c.clause == clause), None)


def _make_passage(
    pid: str,
    kind: str,
    section: str,
    section_title: str,
    clause: str,
    heading: str,
    paragraphs: list[str],
    items: tuple[Item, ...] = (),
) -> Passage:
    text = "\n".join(paragraphs)
    sentences = tuple(s for p in paragraphs for s in split_sentences(p))
    ref = make_ref(section, clause)
    return Passage(
        id=pid,
        kind=kind,
        section=section,
        section_title=section_title,
        clause=clause,
        ref=ref,
        heading=heading,
        text=text,
        sentences=sentences,
        items=items,
        section_title_simplified=to_simplified(section_title),
        heading_simplified=to_simplified(heading),
        text_simplified=to_simplified(text),
        sentences_simplified=tuple(to_simplified(s) for s in sentences),
    )


def _make_item(marker: str, body: str) -> Item:
    heading = first_sentence(body)
    return Item(marker, heading, body, to_simplified(heading), to_simplified(body))


def _clause_marker(line: str, style: str | None) -> tuple[str, str, str] | None:
    """(style, number, rest) when the line opens a clause. The first clause marker seen
    in a section fixes its style, so "1." lines inside a （一） clause stay items."""
    for name, rx in (("arabic", _CLAUSE_ARABIC), ("paren", _CLAUSE_PAREN_CN)):
        m = rx.match(line)
        if m and (style is None or style == name):
            return name, m.group(1), m.group(2)
    return None


def _item_marker(line: str) -> tuple[str, str] | None:
    m = _ITEM_DASH.match(line)
    if m:
        return "——", m.group(1)
    m = _ITEM_PAREN_NUM.match(line)
    if m:
        return f"（{m.group(1)}）", m.group(2)
    m = _CLAUSE_ARABIC.match(line)
    if m:
        return f"{m.group(1)}.", m.group(2)
    return None


def parse_plan(raw: str) -> Plan:
    """Parse a plan's raw text (pinyin annotations allowed) into a :class:`Plan`."""
    sha = hashlib.sha256(raw.encode("utf-8")).hexdigest()
    lines = [ln.strip() for ln in strip_pinyin(raw).replace("\r\n", "\n").split("\n")]
    lines = [ln for ln in lines if ln]

    preamble_paras: list[str] = []
    sections: list[dict] = []
    for line in lines:
        m = _SECTION.match(line)
        if m:
            sections.append(
                {"number": m.group(1), "title": m.group(2).strip(), "lead": [], "clauses": []}
            )
            continue
        if not sections:
            preamble_paras.append(line)
            continue
        sec = sections[-1]
        style = sec.get("style")
        opened = _clause_marker(line, style)
        if opened and (style is not None or not sec["clauses"]):
            sec["style"] = opened[0]
            sec["clauses"].append({"number": opened[1], "paras": [opened[2]], "items": []})
            continue
        if not sec["clauses"]:
            sec["lead"].append(line)
            continue
        clause = sec["clauses"][-1]
        clause["paras"].append(line)
        item = _item_marker(line)
        if item:
            clause["items"].append(_make_item(*item))

    by_id: dict[str, Passage] = {}
    preamble = tuple(
        _make_passage(f"{PREAMBLE}.{i}", "preamble", PREAMBLE, PREAMBLE, "", first_sentence(p), [p])
        for i, p in enumerate(preamble_paras, 1)
    )
    built: list[Section] = []
    for sec in sections:
        num, title = sec["number"], sec["title"]
        title_p = _make_passage(f"{num}.title", "title", num, title, "", title, [title])
        lead = (
            _make_passage(f"{num}.lead", "lead", num, title, "", first_sentence(sec["lead"][0]),
                          sec["lead"])
            if sec["lead"]
            else None
        )
        clauses = []
        for c in sec["clauses"]:
            heading = first_sentence(c["paras"][0]).rstrip("：:")
            clauses.append(
                _make_passage(f"{num}.{c['number']}", "clause", num, title, c["number"],
                              heading, c["paras"], tuple(c["items"]))
            )
        for p in (title_p, lead, *clauses):
            if p is not None:
                by_id[p.id] = p
        built.append(Section(num, title, to_simplified(title), lead, tuple(clauses)))
    for p in preamble:
        by_id[p.id] = p
    return Plan(preamble=preamble, sections=tuple(built), sha256=sha, _by_id=by_id)


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int, profile_mtime_ns: int) -> Plan:
    plan = parse_plan(Path(path).read_text(encoding="utf-8"))
    return replace(plan, _profile=load_profile(Path(path), plan))


def load_plan(path: Path | str | None = None) -> Plan:
    """Parse the plan at `path` (default: the copy shipped with planqa). Cached per file."""
    from planqa.config import Settings

    p = Path(path) if path else Settings.from_env().plan_path
    prof = profile_path(p)
    return _load_cached(str(p), p.stat().st_mtime_ns,
                        prof.stat().st_mtime_ns if prof.is_file() else 0)
