"""The eval set, run in CI with the real model: `make test` fails below the gates."""

import json
from pathlib import Path

import pytest

from planqa.evaluation import (
    GATES,
    HELDOUT_GATES,
    HELDOUT_SET,
    SET_GATES,
    check_gates,
    format_report,
    load_cases,
    run_eval,
)

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def report(qa):
    r = run_eval(qa, load_cases())
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "eval.md").write_text(format_report(r), encoding="utf-8")
    (ARTIFACTS / "eval.json").write_text(json.dumps(r, ensure_ascii=False, indent=1),
                                         encoding="utf-8")
    return r


def test_eval_set_shape():
    cases = load_cases()
    kinds = {c.kind for c in cases}
    assert {"plain", "paraphrase", "number", "list", "traditional", "english", "reference",
            "structure", "out_of_scope", "multiturn"} <= kinds
    assert sum(c.kind != "out_of_scope" and c.kind != "multiturn" for c in cases) >= 100
    assert sum(c.kind == "out_of_scope" for c in cases) >= 25
    assert sum(c.kind == "multiturn" for c in cases) >= 20


def test_eval_meets_the_gates(report):
    print("\n" + format_report(report))
    assert check_gates(report) == [], format_report(report)


def test_every_answer_quotes_the_plan_verbatim(report):
    """Over every question of the eval set (multi-turn included), each quoted sentence of
    every answer stands verbatim in the plan, in the answer's script."""
    assert report["answers"]["verbatim_checked"] >= 150
    assert report["answers"]["verbatim"] == 1.0


def test_gates_can_fail():
    """The gate is real: a report below any bound is flagged."""
    bad = {"retrieval": {"hit@1": 0.5, "hit@3": 0.5},
           "answers": {"citation@1": 0.5, "fact_recall": 0.5, "refusal_recall": 0.5,
                       "false_refusal_rate": 0.5, "verbatim": 0.5}}
    assert len(check_gates(bad)) == len(GATES)


def _report_of(qa, path, name: str) -> dict:
    """Run one eval set and keep its tables under test-artifacts/."""
    r = run_eval(qa, load_cases(path))
    (ARTIFACTS / name).parent.mkdir(exist_ok=True)
    (ARTIFACTS / name).write_text(format_report(r), encoding="utf-8")
    return r


@pytest.fixture(scope="module")
def heldout_report(qa):
    return _report_of(qa, HELDOUT_SET, "eval-heldout.md")


def test_heldout_set_shape():
    cases = load_cases(HELDOUT_SET)
    assert sum(c.kind == "out_of_scope" for c in cases) >= 20
    assert sum(c.kind == "paraphrase" for c in cases) >= 30
    # Independent of the main set. Two writers may land on the same obvious question
    # (both asked about membership fees), but not on more than a couple.
    main = {t.question for c in load_cases() for t in c.turns}
    assert len(main & {t.question for c in cases for t in c.turns}) <= 2


def test_heldout_meets_its_gates(heldout_report):
    print("\n" + format_report(heldout_report))
    assert check_gates(heldout_report, HELDOUT_GATES) == [], format_report(heldout_report)
    assert heldout_report["answers"]["verbatim"] == 1.0


#: The sets written apart from the project from the plan alone (blind2 has since been
#: read and tuned on; blind3 … blind15 are blind, only their aggregates read), with their gates.
BLIND_SETS = {p.stem: (p, g) for p, g in SET_GATES.items() if p.stem.startswith("blind")}


@pytest.fixture(scope="module", params=sorted(BLIND_SETS))
def blind(request, qa):
    path, gates = BLIND_SETS[request.param]
    return gates, _report_of(qa, path, f"eval-{request.param}.md")


@pytest.mark.parametrize("name", sorted(BLIND_SETS))
def test_blind_set_shape(name):
    cases = load_cases(BLIND_SETS[name][0])
    kinds = {c.kind: sum(x.kind == c.kind for x in cases) for c in cases}
    assert kinds["out_of_scope"] >= 20 and kinds["roundup"] >= 10 and kinds["followup"] >= 15
    assert all(len(t.refs) >= 2 for c in cases if c.kind == "roundup" for t in c.turns)
    # None of its questions may be a question link (links are written apart from it).
    from planqa.config import Settings
    from planqa.links import read_links

    links = {lk.question for lk in read_links(Settings().links_path)}
    assert not links & {t.question for c in cases for t in c.turns}


def test_blind_sets_meet_their_gates(blind):
    gates, report = blind
    print("\n" + format_report(report))
    assert check_gates(report, gates) == [], format_report(report)
    assert report["answers"]["verbatim"] == 1.0
