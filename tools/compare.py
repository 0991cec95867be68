"""planqa beside the two stock recipes (tools.recipes) on the same single-turn eval
questions and the same embedding model: hit@1 of the evidence, exact clause,
evidence length, refusals, latency."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from planqa.evaluation import cites_gold
from tools.measure import BenchConfig, cycle, log, single_turns
from tools.stats import Timing, timed

if TYPE_CHECKING:
    from planqa.chain import PlanQA
    from planqa.evaluation import Case, Turn
    from tools.recipes import Recipe


@dataclass
class SystemResult:
    """One system's figures on the single-turn eval questions."""

    name: str
    hit: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))  # per kind
    exact_clause: list[bool] | None = None  # planqa only
    evidence_chars: list[int] = field(default_factory=list)
    oos_refused: list[bool] = field(default_factory=list)
    in_scope_refused: list[bool] = field(default_factory=list)
    latency: Timing = field(default_factory=Timing)
    build_seconds: float | None = None
    chunks: int | None = None

    @property
    def hit_at_1(self) -> float:
        return share([x for v in self.hit.values() for x in v])

    @property
    def n_in_scope(self) -> int:
        return sum(len(v) for v in self.hit.values())


def share(xs: list[bool]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def contains_all(evidence: str, facts: Iterable[str]) -> bool:
    """Does the evidence hold every gold fact (facts are Simplified; t2s first)?"""
    from planqa.text import to_simplified

    text = to_simplified(evidence)
    facts = list(facts)
    return bool(facts) and all(f in text for f in facts)


def evaluate_recipe(recipe: Recipe, singles: list[tuple[Case, Turn]],
                    cfg: BenchConfig) -> SystemResult:
    """Hit@1 and evidence length of a recipe's top chunk; its latency per question."""
    res = SystemResult(recipe.name, build_seconds=recipe.build_seconds,
                       chunks=len(recipe.chunks))
    for case, turn in singles:
        top = recipe.top_chunk(turn.question)
        if turn.in_scope:
            res.hit[case.kind].append(contains_all(top, turn.facts))
            res.evidence_chars.append(len(top))
            res.in_scope_refused.append(False)
        else:
            res.oos_refused.append(False)  # a retriever always returns its top chunk
    qs = [t.question for _, t in singles]
    res.latency = timed([lambda q=q: recipe.retriever.invoke(q) for q in qs * cfg.passes],
                        [lambda q=q: recipe.retriever.invoke(q) for q in cycle(qs, cfg.warmup)])
    return res


def evaluate_planqa(qa: PlanQA, singles: list[tuple[Case, Turn]],
                    cfg: BenchConfig) -> SystemResult:
    """The same figures for planqa's answers (the answer text is the evidence)."""
    res = SystemResult("planqa", exact_clause=[], chunks=len(qa.searcher.units))
    assert res.exact_clause is not None
    for case, turn in singles:
        answer = qa.ask(turn.question)
        if turn.in_scope:
            res.hit[case.kind].append(answer.found and contains_all(answer.text, turn.facts))
            res.exact_clause.append(cites_gold(answer, turn))  # eval's citation@1
            res.in_scope_refused.append(not answer.found)
            if answer.found:
                res.evidence_chars.append(len(answer.text))
        else:
            res.oos_refused.append(not answer.found)
    qs = [t.question for _, t in singles]
    res.latency = timed([lambda q=q: qa.ask(q) for q in qs * cfg.passes],
                        [lambda q=q: qa.ask(q) for q in cycle(qs, cfg.warmup)])
    return res


def compare(qa: PlanQA, cases: list[Case], cfg: BenchConfig) -> list[SystemResult]:
    """The two stock recipes and planqa, same questions, same embedding model."""
    from tools.recipes import chatchat_ensemble, stock_langchain

    singles = single_turns(cases)
    emb = qa.searcher.embeddings  # the very PlanEmbeddings planqa uses (a LangChain Embeddings)
    out = []
    for make in (stock_langchain, chatchat_ensemble):
        recipe = make(qa.plan, emb)
        log(f"comparison: {recipe.name} ({len(recipe.chunks)} chunks)")
        out.append(evaluate_recipe(recipe, singles, cfg))
    log("comparison: planqa")
    out.append(evaluate_planqa(qa, singles, cfg))
    return out
