"""Question links (关联问题): how staff put a clause in their own words.

A link is a question or an everyday description attached to the passage that
answers it (`ref<TAB>question`, one per line, in `data/links.tsv`). Links are
retrieval units only: they score for their passage, dense and lexical, and are
never quoted as an answer — the answer always quotes the plan. They were written
from each clause's text alone (see eval/README.md), never from an eval set.
An admin adds one with `planqa link "问题" 二、3` and rebuilds the index.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from planqa.corpus import Passage, Plan
from planqa.errors import InvalidQuestion
from planqa.text import clean_input

MAX_LINK_CHARS = 120


@dataclass(frozen=True)
class Link:
    ref: str  # "二、3", "二" (the section's lead), "前言"
    question: str


def read_links(path: Path | None) -> tuple[Link, ...]:
    """The links in a TSV file (blank lines and `#` comments skipped); none if absent."""
    if path is None or not path.is_file():
        return ()
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        ref, sep, question = line.partition("\t")
        if not sep or not question.strip():
            raise InvalidQuestion(f"{path}:{n}: expected 'ref<TAB>question'")
        out.append(Link(ref.strip(), question.strip()))
    return tuple(out)


def links_sha256(links: tuple[Link, ...]) -> str:
    """What the index manifest records, so an edited links file makes the index stale."""
    payload = "\n".join(f"{lk.ref}\t{lk.question}" for lk in links)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def ref_passage(plan: Plan, ref: str) -> Passage | None:
    """The passage a link's ref stands for: a clause; a section's lead (or its title);
    for the preamble, its longest paragraph (the others are the news lead-in)."""
    for p in plan.passages:
        if p.ref == ref and p.kind == "clause":
            return p
    if ref == "前言":
        return max(plan.preamble, key=lambda p: len(p.text), default=None)
    sec = plan.section(ref)
    if sec is None:
        return None
    return sec.lead or plan.get(f"{ref}.title")


def add_link(path: Path, question: str, ref: str, plan: Plan) -> Link:
    """Append one link (validated) to the links file; raises InvalidQuestion."""
    question = clean_input(question)
    if not question or len(question) > MAX_LINK_CHARS:
        raise InvalidQuestion(f"a link is 1 to {MAX_LINK_CHARS} characters")
    ref = clean_input(ref).replace(".", "、")
    if ref_passage(plan, ref) is None:
        raise InvalidQuestion(f"no passage {ref!r} in the plan (e.g. 二、3, 四, 前言)")
    if any(lk.question == question for lk in read_links(path)):
        raise InvalidQuestion("this link is already there")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    with path.open("a", encoding="utf-8") as f:
        f.write(("" if not text or text.endswith("\n") else "\n") + f"{ref}\t{question}\n")
    return Link(ref, question)


def suggestions(feedback_log: Path) -> list[dict]:
    """Questions staff marked 👎, newest first, each once: candidates for new links."""
    if not feedback_log.is_file():
        return []
    seen, out = set(), []
    for line in reversed(feedback_log.read_text(encoding="utf-8", errors="replace").splitlines()):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        q = rec.get("question") if isinstance(rec, dict) else None
        if rec.get("vote") == "not_useful" and isinstance(q, str) and q not in seen:
            seen.add(q)
            cites = rec.get("citations") or []
            out.append({"question": q, "cited": [c.get("ref") for c in cites
                                                  if isinstance(c, dict)],
                        "comment": rec.get("comment", "")})
    return out
