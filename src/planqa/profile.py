"""The document as data: what planqa says *about* the plan it serves.

Everything that names this plan — its title in a refusal or an outline, the page's
title, the example questions, the warm-up question — comes from a profile read
beside the plan's text (`<plan>.profile.json`), not from code. A plan without a
profile still gets a working one, derived from its own text: the title it gives
itself (the first 《…》 of its preamble, or its first line) and example questions
from its first clause headings. So pointing PLANQA_PLAN_PATH at another plan in
the same style serves that plan, with nothing of this one left.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from planqa.errors import ConfigError

if TYPE_CHECKING:
    from planqa.corpus import Plan

_TITLE = re.compile(r"《([^》]{2,40})》")


@dataclass(frozen=True)
class Profile:
    """How planqa presents one plan."""

    title: str  # 科协系统深化改革实施方案 (shown as 《title》)
    short_title: str  # 科协改革方案 (the browser tab, 问答 appended)
    examples: tuple[str, ...]  # example questions on the page
    warm_up_question: str  # asked once at start-up so the first answer is fast

    @property
    def quoted_title(self) -> str:
        return f"《{self.title}》"


def profile_path(plan_path: Path) -> Path:
    """Where a plan's profile lives: `kexie-reform-plan.txt` → `kexie-reform-plan.profile.json`."""
    return plan_path.with_name(plan_path.stem + ".profile.json")


def derive_profile(plan: Plan) -> Profile:
    """A profile from the plan's own text, for a plan that ships none."""
    lead = " ".join(p.text_simplified for p in plan.preamble)
    m = _TITLE.search(lead)
    first_line = plan.preamble[0].text_simplified.strip("。") if plan.preamble else "方案"
    title = m.group(1) if m else first_line
    clauses = [c for s in plan.sections for c in s.clauses]
    examples = tuple(f"{c.heading_simplified}有哪些要求？" for c in clauses[:3])
    if plan.sections:
        examples += ("方案分为哪几个部分？",)
    return Profile(title=title, short_title=title, examples=examples or ("方案讲了什么？",),
                   warm_up_question=(examples or ("方案讲了什么？",))[0])


def load_profile(plan_path: Path, plan: Plan) -> Profile:
    """The profile beside the plan's text, or one derived from the plan; a profile that
    is there but malformed raises ConfigError naming the file."""
    path = profile_path(plan_path)
    derived = derive_profile(plan)
    if not path.is_file():
        return derived
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        examples = data.get("examples", list(derived.examples))
        if not (isinstance(examples, list) and all(isinstance(x, str) and x for x in examples)):
            raise ValueError('"examples" must be a list of questions')
        fields = {k: data.get(k, getattr(derived, k))
                  for k in ("title", "short_title", "warm_up_question")}
        if not all(isinstance(v, str) and v.strip() for v in fields.values()):
            raise ValueError("title, short_title and warm_up_question must be text")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"plan profile {path} is unusable: {exc}") from exc
    return Profile(examples=tuple(examples), **fields)


__all__ = ["Profile", "derive_profile", "load_profile", "profile_path"]
