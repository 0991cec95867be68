"""Fit planqa.calibration's coefficients and report how the score separates questions.

    python -m tools.calibrate              # fit on eval/qa.jsonl, report on heldout
    python -m tools.calibrate --report     # report only, with the library's constants

Fit set: the single-turn questions of eval/qa.jsonl, their top 5 hits each; a hit is
positive when it is the question's gold clause (out-of-scope questions have none).
Exact references are left out (they score 1.0 by rule). Report set: eval/heldout.jsonl
(never fitted on): the top hit's calibrated score for answerable and out-of-scope
questions, ROC AUC, and what a cut-off at 0.3 / 0.5 / 0.7 keeps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from planqa.calibration import COEFFICIENTS, FEATURES, INTERCEPT, features, relevance
from planqa.config import Settings
from planqa.retrieval import PlanSearcher, load_searcher

K = 5
L2 = 0.01  # a little ridge keeps Newton's steps finite on separable data


def load_cases(path: Path) -> list[dict]:
    """Single-turn cases (multi-turn ones need the conversation to retrieve)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return [r for r in rows if "question" in r]


def is_gold(case: dict, hit) -> bool:
    if case["kind"] == "out_of_scope" or not case.get("section"):
        return False
    return (hit.passage.section, hit.passage.clause) == (case["section"], case["clause"])


def samples(searcher: PlanSearcher, cases: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for case in cases:
        for hit in searcher.search(case["question"], k=K):
            if hit.exact_ref:
                continue
            xs.append(features(hit))
            ys.append(1.0 if is_gold(case, hit) else 0.0)
    return np.asarray(xs), np.asarray(ys)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2) -> tuple[float, np.ndarray]:
    """L2-regularized logistic regression by Newton's method (the intercept unpenalized)."""
    a = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(a.shape[1])
    penalty = np.full(a.shape[1], l2 * len(x))
    penalty[0] = 0.0
    for _ in range(100):
        p = 1 / (1 + np.exp(-(a @ w)))
        grad = a.T @ (p - y) + penalty * w
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return float(w[0]), w[1:]


def auc(pos: list[float], neg: list[float]) -> float:
    """P(a random positive scores above a random negative), ties counting half."""
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def report(searcher: PlanSearcher, cases: list[dict], intercept: float,
           coefficients) -> dict:
    """The top hit's calibrated score, answerable vs out-of-scope questions."""
    answerable, oos, fused_ans, fused_oos = [], [], [], []
    for case in cases:
        top = searcher.search(case["question"], k=1)[0]
        s = relevance(top, intercept, coefficients)
        (oos if case["kind"] == "out_of_scope" else answerable).append(s)
        (fused_oos if case["kind"] == "out_of_scope" else fused_ans).append(top.score)
    out = {"answerable": len(answerable), "out_of_scope": len(oos),
           "median_answerable": float(np.median(answerable)),
           "median_out_of_scope": float(np.median(oos)),
           "auc": auc(answerable, oos), "auc_fused_minmax": auc(fused_ans, fused_oos)}
    for cut in (0.3, 0.5, 0.7):
        out[f"kept_answerable@{cut}"] = sum(s >= cut for s in answerable) / len(answerable)
        out[f"kept_out_of_scope@{cut}"] = sum(s >= cut for s in oos) / len(oos)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit-set", type=Path, default=Path("eval/qa.jsonl"))
    parser.add_argument("--report-set", type=Path, default=Path("eval/heldout.jsonl"))
    parser.add_argument("--report", action="store_true", help="report only, no fit")
    args = parser.parse_args(argv)
    searcher = load_searcher(Settings.from_env())
    intercept, coefficients = INTERCEPT, np.asarray(COEFFICIENTS)
    if not args.report:
        x, y = samples(searcher, load_cases(args.fit_set))
        intercept, coefficients = fit_logistic(x, y)
        print(f"fit on {args.fit_set}: {len(y)} hits, {int(y.sum())} gold")
        print(f"INTERCEPT = {intercept:.4f}")
        print("COEFFICIENTS = (" + ", ".join(f"{c:.4f}" for c in coefficients) + ")"
              f"  # {', '.join(FEATURES)}")
    for name, path in (("fit", args.fit_set), ("report", args.report_set)):
        print(name, path, json.dumps(report(searcher, load_cases(path), intercept,
                                            coefficients), indent=1))
    for q in ("明天北京天气怎么样？", "asdfgh", "事业编制要精简到多少名？"):
        top = searcher.search(q, k=1)[0]
        print(f"{q}: calibrated {relevance(top, intercept, coefficients):.3f}, "
              f"fused {top.score:.3f}, {top.passage.ref}")


if __name__ == "__main__":
    main()
