"""`python -m tools.bench` smoke test: every stage runs on a few questions and the report and
chart are written with sane figures. No timing thresholds (shared CI machines)."""

from __future__ import annotations

import math

import pytest
from tools import bench, bench_report, compare, measure, stats

from planqa.evaluation import MULTITURN, load_cases

TINY = measure.BenchConfig(passes=1, warmup=1, build_runs=1, cold_runs=1, profile_asks=3,
                         thread_probe=False)


def _few_cases():
    """Two cases of each kind, so every comparison row has questions."""
    picked, seen = [], {}
    for case in load_cases():
        if seen.get(case.kind, 0) < 2:
            picked.append(case)
            seen[case.kind] = seen.get(case.kind, 0) + 1
    return picked


@pytest.fixture(scope="module")
def run_once(settings, qa, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cases = _few_cases()
    result = bench.run(settings, TINY, cases=cases, qa=qa, mode="quick")
    bench_report.write_outputs(result, out)
    return result, out, cases


def _sane_ms(x: float) -> bool:
    return math.isfinite(x) and 0 < x < 600_000


def test_latency_figures_are_sane(run_once):
    result, _, cases = run_once
    n = sum(len(c.turns) for c in cases)
    assert result.retrieval.n == result.answers.n == n
    for t in (result.retrieval, result.answers):
        assert _sane_ms(t.ms(50)) and _sane_ms(t.ms(95)) and t.ms(50) <= t.ms(95)
        assert all(c >= 0 for c in t.cpu)


def test_build_and_cold_start(run_once):
    result, _, _ = run_once
    assert result.build is not None and result.build.units > 0
    assert 0 < result.build.timing.p(50) < 3600
    (cold,) = result.cold
    assert 0 < cold.inner_s <= cold.wall_s
    # The probe loads torch and the model: tens of MB at the very least, far below 100 GB.
    assert 50 < cold.peak_rss_mb < 100_000


def test_comparison_covers_three_systems(run_once):
    result, _, cases = run_once
    names = [s.name for s in result.systems]
    assert len(names) == 3 and names[-1] == "planqa"
    in_scope = sum(c.kind != MULTITURN and c.turns[0].in_scope for c in cases)
    oos = sum(c.kind != MULTITURN and not c.turns[0].in_scope for c in cases)
    for s in result.systems:
        assert s.n_in_scope == in_scope and len(s.oos_refused) == oos
        assert 0.0 <= s.hit_at_1 <= 1.0
        assert _sane_ms(s.latency.ms(50))
        assert s.evidence_chars and min(s.evidence_chars) > 0
    recipes, planqa = result.systems[:2], result.systems[2]
    assert all(not any(r.oos_refused) for r in recipes)  # a retriever never refuses
    assert all(r.exact_clause is None for r in recipes) and planqa.exact_clause is not None


def test_report_and_chart_are_written(run_once):
    result, out, _ = run_once
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Machine", "## Summary", "## Cold start", "## Index build",
                    "## planqa against stock recipes", "## Where an answer's time goes"):
        assert heading in report
    assert "load average" in report and "nan" not in report.lower()
    png = (out / "comparison.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert result.profile is not None and result.profile.stages[0][1] > 0


def test_contains_all_needs_every_fact():
    assert compare.contains_all("事業編制精簡到1120名", ["事业编制", "1120"])  # t2s first
    assert not compare.contains_all("事业编制", ["事业编制", "1120"])
    assert not compare.contains_all("anything", [])


def test_percentile_is_nearest_rank():
    assert stats.percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert stats.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.0  # a sample, not 2.5
    hundred = [float(x) for x in range(1, 101)]
    assert stats.percentile(hundred, 95) == 95.0 and stats.percentile(hundred, 99) == 99.0
    assert stats.percentile(hundred, 0) == 1.0 and stats.percentile(hundred, 100) == 100.0
    assert math.isnan(stats.percentile([], 50))
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)


def test_one_definition_per_statistic():
    """The load test's p95 is the benchmark's, and the benchmark's exact-clause figure is
    eval's citation@1."""
    from tools import load

    from planqa import evaluation

    assert load.percentile is stats.percentile
    assert compare.cites_gold is evaluation.cites_gold


def test_backend_deltas_count_whole_questions():
    """tools.backends: per kind, how many questions a backend gains or loses against torch,
    and the one-question bar that decides the default backend."""
    from tools import backends

    cases = [c for c in load_cases() if c.kind in ("plain", "out_of_scope")]
    n_plain = sum(c.kind == "plain" for c in cases)
    ref = {"per_kind": {"plain": {"planqa.hit@1": 1.0, "planqa.hit@3": 1.0, "citation@1": 1.0},
                        "out_of_scope": {"refusal_recall": 1.0}}}
    same = backends.question_deltas(ref, ref, cases)
    assert set(same) == {"plain planqa.hit@1", "plain planqa.hit@3", "plain citation@1",
                         "out_of_scope refusal_recall"}
    assert backends.within_one_question(same) and not any(same.values())
    worse = {"per_kind": {"plain": {"planqa.hit@1": 1 - 2 / n_plain, "planqa.hit@3": 1.0,
                                    "citation@1": 1 - 1 / n_plain},
                          "out_of_scope": {"refusal_recall": 1.0}}}
    moved = backends.question_deltas(ref, worse, cases)
    assert moved["plain planqa.hit@1"] == -2 and moved["plain citation@1"] == -1
    assert not backends.within_one_question(moved)
