"""Answers and citations: the data every front end (CLI, web, API, eval) consumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
