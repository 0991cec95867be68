"""The calibrated score's machinery without the model: the fit recovers known
coefficients, the AUC is the textbook one, and scores of a ranking fall in rank order."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from tools.calibrate import auc, fit_logistic

from planqa.calibration import calibrated_scores, relevance
from planqa.corpus import Passage
from planqa.retrieval import Hit


def test_fit_recovers_the_coefficients_of_synthetic_data() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4000, 2))
    y = (rng.random(4000) < 1 / (1 + np.exp(-(-1.0 + 2.0 * x[:, 0] - 0.5 * x[:, 1])))) * 1.0
    intercept, coef = fit_logistic(x, y, l2=0.0)
    assert intercept == pytest.approx(-1.0, abs=0.15)
    assert coef == pytest.approx([2.0, -0.5], abs=0.15)


def test_auc() -> None:
    assert auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auc([0.1], [0.9]) == 0.0
    assert auc([0.5], [0.5]) == 0.5


@pytest.fixture(scope="module")
def hit(plan) -> Hit:
    passage: Passage = plan.passages[3]
    return Hit(passage, score=1.0, matched_sentence="", matched_position=-1, dense=0.88,
               lexical=0.3, link=0.9)


def test_more_evidence_scores_higher_and_stays_in_0_1(hit: Hit) -> None:
    base = relevance(hit)
    assert 0.0 < base < 1.0
    for better in (replace(hit, dense=0.93), replace(hit, lexical=0.9),
                   replace(hit, link=0.95), replace(hit, score=1.0 + 0.5)):
        assert relevance(better) > base
    assert relevance(replace(hit, dense=0.5, lexical=0.0, link=0.5, score=0.0)) < 0.01
    assert relevance(replace(hit, exact_ref=True, dense=0.0)) == 1.0


def test_a_ranking_never_rises(hit: Hit) -> None:
    ranking = [hit, replace(hit, score=0.5, lexical=0.9, link=0.97), replace(hit, score=0.1)]
    scores = calibrated_scores(ranking)
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == round(relevance(hit), 4)
