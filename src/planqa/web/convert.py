"""Script switching for the page: a stored answer re-expressed in the other script.

The 简体/繁體 switch re-renders answers already shown without asking again; quotations,
section titles and clause headings become the plan's own text in that script, only the
words around them go through OpenCC.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from planqa.text import to_simplified, to_traditional

if TYPE_CHECKING:
    from planqa.corpus import Passage, Plan


def convert_script(text: str, traditional: bool) -> str:
    """Free text (not a quotation) into one script with OpenCC."""
    return to_traditional(text) if traditional else to_simplified(text)


def _find_passage(plan: Plan, cite: dict[str, Any]) -> Passage | None:
    """The plan passage a citation names (its `passage_id`), if any."""
    pid = cite.get("passage_id")
    return plan.get(pid) if isinstance(pid, str) and plan.has(pid) else None


def _swap_exact(text: str, pairs: list[tuple[str, str]], traditional: bool) -> str:
    """`text` in the other script: each `old` of `pairs` becomes its `new` verbatim (the
    plan's own wording), only the rest goes through OpenCC."""
    slots: list[str] = []
    for old, new in sorted(pairs, key=lambda p: -len(p[0])):
        if old and old in text:
            text = text.replace(old, f"\x00{len(slots)}\x00")
            slots.append(new)
    text = convert_script(text, traditional)
    return re.sub("\x00(\\d+)\x00", lambda m: slots[int(m.group(1))], text)


def _citation_pairs(plan: Plan, cite: dict[str, Any], traditional: bool
                    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The citation in the other script, and the (old, new) strings it swapped."""
    out = dict(cite)
    p = _find_passage(plan, cite)
    if p is None:
        for key in ("title", "quote", "text"):
            out[key] = convert_script(cite.get(key, ""), traditional)
        out["highlights"] = [convert_script(h, traditional) for h in cite.get("highlights", [])]
        return out, []
    old, new = p.in_script(not traditional), p.in_script(traditional)
    by_simplified = dict(zip(p.sentences_simplified, new["sentences"], strict=True))
    highlights = [by_simplified.get(to_simplified(h)) or convert_script(h, traditional)
                  for h in cite.get("highlights", [])]
    pairs = list(zip(cite.get("highlights", []), highlights, strict=True))
    pairs += [(str(old[k]), str(new[k])) for k in ("section_title", "heading") if old[k]]
    out.update(title=_swap_exact(cite.get("title", ""), pairs, traditional), text=new["text"],
               highlights=highlights, quote="".join(highlights) or cite.get("quote", ""))
    return out, pairs


def convert_answer(plan: Plan, answer: dict[str, Any], traditional: bool) -> dict[str, Any]:
    """A stored answer dict re-expressed in the other script, without asking again.

    Quotations, section titles and clause headings are swapped for the plan's own text
    in that script; only the words around them go through OpenCC."""
    out = dict(answer)
    pairs: list[tuple[str, str]] = []
    for key in ("citations", "related"):
        converted = []
        for cite in answer.get(key, []):
            new, swapped = _citation_pairs(plan, cite, traditional)
            pairs.extend(swapped)
            converted.append(new)
        out[key] = converted
    out["answer"] = _swap_exact(answer.get("answer", ""), pairs, traditional)
    return out


__all__ = ["convert_answer", "convert_script"]
