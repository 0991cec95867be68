"""A retrieval score that means the same for every question.

The fused score (`Hit.score`) is min-max scaled per query, so the top passage always
scores 1.0, even for "明天北京天气怎么样？". `relevance(hit)` is instead an estimate of
P(this passage is the one that answers the question), a logistic function of evidence
that is absolute across queries: the best dense cosine, the share of the question's
terms the passage holds, the best question-link cosine, and the rank-relative fused
score. An exact reference ("二、5") is certain: 1.0.

The coefficients are fitted by `python -m tools.calibrate` (see there); they change
only when that script is rerun after retrieval changes. Ranking never uses them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from planqa.retrieval import Hit

#: Feature order of COEFFICIENTS (see `features`).
FEATURES = ("dense", "lexical", "link", "fused")
# Fitted 2026-12-02 on eval/qa.jsonl (single-turn questions, top 5 hits each, label:
# the hit is the question's gold clause; out-of-scope questions' hits are all 0) by
# tools/calibrate.py, L2-regularized logistic regression (858 hits, 121 gold;
# retrieval, 1,041 links and the int8 encoder of 2026-12-02). On
# eval/heldout.jsonl (not fitted on) the top hit's score ranks answerable above
# out-of-scope questions with ROC AUC 0.75 (the min-max fused score: 0.50).
INTERCEPT = -5.2869
COEFFICIENTS = (0.7094, 1.6318, 1.8845, 1.8673)


def features(hit: Hit) -> tuple[float, ...]:
    """The evidence `relevance` weighs, in FEATURES order. Cosines are centred on 0.85
    (e5 cosines sit between 0.75 and 0.95) and scaled ×10 so the coefficients are
    readable; a passage without question links counts its dense cosine instead."""
    link = hit.link if hit.link >= 0 else hit.dense
    return ((hit.dense - 0.85) * 10, hit.lexical, (link - 0.85) * 10, hit.score)


def relevance(hit: Hit, intercept: float = INTERCEPT,
              coefficients: Sequence[float] = COEFFICIENTS) -> float:
    """P(hit answers the question), 0..1; 1.0 for an exact reference."""
    if hit.exact_ref:
        return 1.0
    z = intercept + sum(w * x for w, x in zip(coefficients, features(hit), strict=True))
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def calibrated_scores(hits: Sequence[Hit]) -> list[float]:
    """`relevance` of each hit of one ranking, never above the hit ranked before it
    (a running minimum), so scores fall in rank order as callers expect."""
    out: list[float] = []
    for hit in hits:
        s = relevance(hit)
        out.append(min(s, out[-1]) if out else s)
    return [round(s, 4) for s in out]


__all__ = ["COEFFICIENTS", "FEATURES", "INTERCEPT", "calibrated_scores", "features",
           "relevance"]
