"""`planqa eval`: retrieval and answer metrics on the eval set, per question kind.

Retrieval: hit@1, hit@3 and MRR@5 of the gold passage, for planqa's hybrid
retriever beside BM25 alone and dense alone (same units, same model), so each
part's gain shows. Answers: citation@1, fact recall, refusal precision/recall,
verbatim-quote rate, over single questions and multi-turn dialogues.

The eval set measures; nothing in planqa reads it to answer.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from planqa.answering import Answer
from planqa.config import Settings
from planqa.corpus import Plan
from planqa.refs import make_ref
from planqa.retrieval import Hit
from planqa.text import to_simplified

#: Eval sets are files of a checkout, not of the package: paths relative to the current
#: directory (run from the repository root), any other set by argument (`planqa eval --set`).
DEFAULT_SET = Path("eval") / "qa.jsonl"
#: Written apart from the system by someone who saw only the plan (see eval/README.md):
#: what planqa scores on questions nobody tuned it on.
HELDOUT_SET = DEFAULT_SET.with_name("heldout.jsonl")
OUT_OF_SCOPE, MULTITURN, WHOLE_DOCUMENT, ROUNDUP = "out_of_scope", "multiturn", "*", "roundup"

ABLATIONS = {
    "bm25": {"bm25_sentence": 1.0, "bm25_passage": 0.5},
    "dense": {"dense_sentence": 1.0, "dense_passage": 0.5},
}

#: `make test` fails below these. Set from the figures measured on this set (see the
#: closing notes / bench/report.md) less about one question's worth of margin, so a
#: regression of two questions fails CI while float noise across machines does not.
GATES = {
    "retrieval.hit@1": 0.945,  # measured 0.965 (0.901 without the question links)
    "retrieval.hit@3": 0.97,  # measured 0.986
    "answers.citation@1": 0.945,  # measured 0.965
    "answers.fact_recall": 0.905,  # measured 0.924
    "answers.refusal_recall": 0.925,  # measured 0.950 (one of 40 is 0.025)
    "answers.false_refusal_rate": 0.025,  # at most; measured 0.010
    "answers.verbatim": 1.0,  # measured 1.0: every quote stands in the plan
}
#: The held-out set is smaller (68 in-scope, 20 out-of-scope questions: one question is
#: 0.015 or 0.05), so its margins are wider. Measured figures in the comments.
HELDOUT_GATES = {
    "retrieval.hit@1": 0.93,  # measured 0.956
    "retrieval.hit@3": 0.95,  # measured 0.971
    "answers.citation@1": 0.91,  # measured 0.941
    "answers.fact_recall": 0.875,  # measured 0.904
    "answers.refusal_recall": 0.80,  # measured 0.850
    "answers.false_refusal_rate": 0.03,  # at most; measured 0.015
    "answers.verbatim": 1.0,
}


def _blind_gates(hit1: float, citation: float, fact: float, refusal: float,
                 false_refusals: float) -> dict[str, float]:
    """A blind set's gates: floors for retrieval hit@1, citation@1, fact recall and
    refusal recall, a ceiling on false refusals, and every quote verbatim."""
    return {"retrieval.hit@1": hit1, "answers.citation@1": citation,
            "answers.fact_recall": fact, "answers.refusal_recall": refusal,
            "answers.false_refusal_rate": false_refusals, "answers.verbatim": 1.0}


#: The sets written apart from the project, by a different hand each, from the plan alone
#: (eval/README.md says how; eval/runs/<set>-runs.md holds every run's aggregates). Each
#: gate sits about two questions under the run named in its comment, whose figures are
#: hit@1 / citation@1 / fact recall / refusal recall / false refusals.
BLIND_GATES: dict[str, dict[str, float]] = {
    # a development set since 2026-12-02 (its misses were read): tuned figures, measured
    # 0.935 / 0.931 / 0.853 / 0.909 / 0.019 (first run 0.887 / 0.844 / 0.771 / 0.773 / 0.075)
    "blind2": _blind_gates(0.91, 0.905, 0.825, 0.86, 0.04),
    # the code of 2026-12-02: 0.911 / 0.883 / 0.837 / 0.909 / 0.055 (first 0.927 / 0.890 /
    # 0.831 / 0.773 / 0.061)
    "blind3": _blind_gates(0.89, 0.86, 0.81, 0.86, 0.075),
    # second run 0.911 / 0.884 / 0.843 / 0.864 / 0.037; third 0.919 / 0.902 / 0.860 / 0.818
    # / 0.018 (first 0.903 / 0.872 / 0.809 / 0.909 / 0.061)
    "blind4": _blind_gates(0.89, 0.86, 0.82, 0.81, 0.06),
    # 40 spoken and 25 English of 175 cases; second run 0.896 / 0.868 / 0.803 / 0.926 /
    # 0.075, third 0.896 / 0.885 / 0.820 / 0.926 / 0.046 (first 0.866 / 0.805 / 0.765 /
    # 0.852 / 0.121)
    "blind5": _blind_gates(0.87, 0.845, 0.78, 0.85, 0.095),
    # 0.938 / 0.892 / 0.877 / 0.778 / 0.049 (first 0.917 / 0.881 / 0.871 / 0.815 / 0.049)
    "blind6": _blind_gates(0.91, 0.865, 0.85, 0.74, 0.075),
    # second run (0b873d1) 0.931 / 0.880 / 0.863 / 0.889 / 0.054, then refusals 0.926
    "blind7": _blind_gates(0.915, 0.865, 0.845, 0.81, 0.075),
    # first run 0.963 / 0.948 / 0.908 / 0.909 / 0.017
    "blind8": _blind_gates(0.945, 0.93, 0.89, 0.81, 0.045),
    # fourth run (the night session's final code) 0.917 / 0.913 / 0.872 / 0.955 / 0.017
    # (first run, b582016: 0.895 / 0.855 / 0.813 / 0.955 / 0.035)
    "blind9": _blind_gates(0.90, 0.895, 0.855, 0.86, 0.035),
    # third run (the night session's final code) 0.925 / 0.913 / 0.883 / 0.864 / 0.035
    "blind10": _blind_gates(0.905, 0.895, 0.865, 0.77, 0.05),
    # second run 0.918 / 0.908 / 0.858 / 0.889 / 0.023 (first, 8853948: 0.918 / 0.914 /
    # 0.850 / 0.778 / 0.017)
    "blind11": _blind_gates(0.90, 0.89, 0.84, 0.81, 0.04),
    # first run (8c7f72d, before the evening session's changes) 0.955 / 0.939 / 0.895 /
    # 0.955 / 0.011
    "blind12": _blind_gates(0.94, 0.925, 0.88, 0.86, 0.03),
    # first run (958d0b2, written after the evening session's changes) 0.940 / 0.933 /
    # 0.911 / 0.909 / 0.006
    "blind13": _blind_gates(0.925, 0.92, 0.895, 0.81, 0.03),
    # first run (e95ced3, before the night session's changes) 0.941 / 0.920 / 0.901 / 0.920
    # / 0.034; third (0fadaaf, its final code) 0.948 / 0.937 / 0.907 / 0.920 / 0.023
    "blind14": _blind_gates(0.925, 0.905, 0.885, 0.86, 0.05),
    # first run (0fadaaf, written during the night session and run only on its final code)
    # 0.963 / 0.931 / 0.914 / 0.957 / 0.034
    "blind15": _blind_gates(0.945, 0.915, 0.895, 0.91, 0.05),
}

#: The sets with gates of their own (any other set has the main GATES).
SET_GATES: dict[Path, dict[str, float]] = {
    HELDOUT_SET: HELDOUT_GATES,
    **{DEFAULT_SET.with_name(f"{name}.jsonl"): g for name, g in BLIND_GATES.items()},
}


def gates_for(path: Path | None) -> dict[str, float]:
    """The gates of an eval set: the held-out and blind sets have their own, any other
    set the main ones."""
    name = path.name if path is not None else ""
    return next((g for p, g in SET_GATES.items() if p.name == name), GATES)


@dataclass(frozen=True)
class Turn:
    """One question and its gold: every ref an expert accepts, best first (all of
    them expected for a round-up), and the key facts a correct answer contains."""

    question: str
    refs: tuple[str, ...]  # "二、2", "二" (a section's title or lead), "前言", "*"; () = refuse
    facts: tuple[str, ...]

    @property
    def in_scope(self) -> bool:
        return bool(self.refs)

    @property
    def whole_document(self) -> bool:
        return self.refs == (WHOLE_DOCUMENT,)


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    turns: tuple[Turn, ...]
    dialogue: bool = False  # turns lean on the earlier ones (no retrieval metrics)


def _turn(row: dict) -> Turn:
    # Two schemas: "refs" (a list, blind2) or one "section" + "clause" (qa, heldout).
    if "refs" in row:
        refs = tuple(row["refs"])
    else:
        section = row.get("section", "")
        refs = (make_ref(section, row.get("clause", "")),) if section else ()
    return Turn(row["question"], refs, tuple(row.get("facts", [])))


def load_cases(path: Path | None = None) -> list[Case]:
    """Read the JSONL eval set (see eval/README.md for the schema)."""
    cases = []
    for n, line in enumerate((path or DEFAULT_SET).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        dialogue = "turns" in row
        turns = tuple(_turn(t) for t in (row["turns"] if dialogue else [row]))
        if not turns:
            raise ValueError(f"eval line {n}: no turns")
        # blind4 and dev5 write "oos"; one name per kind in every report
        kind = {"oos": "out_of_scope"}.get(row["kind"], row["kind"])
        cases.append(Case(row["id"], kind, turns, dialogue))
    return cases


def gold_rank(hits: list[Hit], turn: Turn, k: int = 5) -> int | None:
    """1-based rank of the first accepted passage among the first k hits, or None."""
    for i, h in enumerate(hits[:k], 1):
        if h.passage.ref in turn.refs:
            return i
    return None


def cites_gold(answer: Answer, turn: Turn) -> bool:
    """citation@1: the answer's first citation is an accepted ref (for a question about
    the whole document, it cites at least two sections)."""
    if not answer.found or not answer.citations:
        return False
    if turn.whole_document:
        return len(answer.citations) >= 2
    return answer.citations[0].ref in turn.refs


@dataclass
class Tally:
    """Running sums for one group of questions."""

    n: int = 0
    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, metric: str, value: float) -> None:
        self.sums[metric] += value
        self.counts[metric] += 1

    def mean(self, metric: str) -> float | None:
        c = self.counts.get(metric, 0)
        return self.sums[metric] / c if c else None


def verbatim_ok(answer: Answer, plan: Plan) -> bool:
    """Every quoted sentence stands verbatim in the plan (in the answer's script) and
    in the answer's text."""
    corpus = "\n".join(p.text if answer.traditional else p.text_simplified
                       for p in plan.passages)
    quotes = [q for c in answer.citations for q in c.highlights]
    return all(q in corpus for q in quotes) and all(
        q in answer.text for c in answer.citations[:1] for q in c.highlights
        if answer.citations[0].clause)


def _retrieval(searcher, turn: Turn, groups: list[Tally]) -> None:
    ranks = {"planqa": gold_rank(searcher.search(turn.question, k=5), turn)}
    for name, weights in ABLATIONS.items():
        ranks[name] = gold_rank(searcher.score_passages(turn.question, weights), turn)
    for g in groups:
        g.n += 1
        for name, r in ranks.items():
            g.add(f"{name}.hit@1", float(r == 1))
            g.add(f"{name}.hit@3", float(r is not None and r <= 3))
            g.add(f"{name}.mrr@5", 1.0 / r if r else 0.0)


def _answer_metrics(answer: Answer, turn: Turn, plan: Plan, groups: list[Tally],
                    kind: str = "") -> None:
    for g in groups:
        g.add("refused", float(not answer.found))
        if turn.in_scope:
            g.add("citation@1", float(cites_gold(answer, turn)))
            if len(turn.refs) > 1 and kind == ROUNDUP:
                cited = {c.ref for c in answer.citations} if answer.found else set()
                g.add("ref_recall", len(cited & set(turn.refs)) / len(turn.refs))
            text = to_simplified(answer.text)
            if turn.facts:
                g.add("fact_recall", sum(f in text for f in turn.facts) / len(turn.facts))
            g.add("false_refusal", float(not answer.found))
        else:
            g.add("refusal_recall", float(not answer.found))
        g.add("in_scope_refused", float(turn.in_scope and not answer.found))
        if answer.found:
            g.add("verbatim", float(verbatim_ok(answer, plan)))


def run_eval(qa, cases: list[Case]) -> dict:
    """Evaluate a PlanQA on cases; returns the report as plain data."""
    searcher = qa.searcher
    by_kind: dict[str, Tally] = defaultdict(Tally)
    overall_r, overall_a = Tally(), Tally()
    failures = []
    latencies = []
    for case in cases:
        history: list[tuple[str, str]] = []
        for i, turn in enumerate(case.turns):
            kind = case.kind
            if not case.dialogue and turn.in_scope and not turn.whole_document:
                _retrieval(searcher, turn, [by_kind[kind], overall_r])
            t0 = time.perf_counter()
            answer = qa.ask(turn.question, history)
            latencies.append(time.perf_counter() - t0)
            _answer_metrics(answer, turn, qa.plan, [by_kind[kind], overall_a], kind)
            first = answer.citations[0].ref if answer.citations else "-"
            wrong_ref = turn.in_scope and not cites_gold(answer, turn)
            if wrong_ref or (not turn.in_scope and answer.found):
                failures.append({"id": f"{case.id}#{i + 1}", "question": turn.question,
                                 "resolved": answer.question,
                                 "gold": " / ".join(turn.refs) or "(refuse)",
                                 "got": first if answer.found else "(refused)"})
            history.append((turn.question, answer.text))
    refused_total = overall_a.sums["refused"]
    oos_refused = overall_a.sums["refusal_recall"]
    report = {
        "retrieval": {k: overall_r.mean(k) for k in overall_r.counts},
        "answers": {
            "citation@1": overall_a.mean("citation@1"),
            "fact_recall": overall_a.mean("fact_recall"),
            "refusal_recall": overall_a.mean("refusal_recall"),
            "refusal_precision": (oos_refused / refused_total) if refused_total else 1.0,
            "false_refusal_rate": overall_a.mean("false_refusal"),
            "verbatim": overall_a.mean("verbatim"),
            "verbatim_checked": overall_a.counts.get("verbatim", 0),
        },
        "per_kind": {
            kind: {"n_questions": tally.counts.get("refused", 0),
                   "n_retrieval": tally.counts.get("planqa.hit@1", 0),
                   **{k: tally.mean(k) for k in sorted(tally.counts)}}
            for kind, tally in sorted(by_kind.items())
        },
        "latency_ms": {"answer_mean": 1000 * sum(latencies) / max(1, len(latencies))},
        "failures": failures,
    }
    report["retrieval"] = {
        "n": overall_r.counts.get("planqa.hit@1", 0),
        "hit@1": report["retrieval"].get("planqa.hit@1"),
        "hit@3": report["retrieval"].get("planqa.hit@3"),
        "mrr@5": report["retrieval"].get("planqa.mrr@5"),
        **{k: v for k, v in report["retrieval"].items() if not k.startswith("planqa.")},
    }
    return report


def check_gates(report: dict, gates: dict[str, float] | None = None) -> list[str]:
    """Human-readable failures of the report against `gates` (default GATES; empty
    when all pass)."""
    failed = []
    for key, bound in (gates or GATES).items():
        group, metric = key.split(".", 1)
        value = report[group].get(metric)
        at_most = metric == "false_refusal_rate"
        if value is None or (value > bound if at_most else value < bound):
            failed.append(f"{key} = {value} ({'max' if at_most else 'min'} {bound})")
    return failed


def _fmt(v: float | None) -> str:
    return "  -  " if v is None else f"{v:.3f}"


def format_report(report: dict) -> str:
    """The eval as Markdown tables."""
    lines = ["## Retrieval (gold passage among the top 5)", "",
             "| kind | n | planqa hit@1 | hit@3 | MRR@5 | BM25 hit@1 | hit@3 | MRR@5 "
             "| dense hit@1 | hit@3 | MRR@5 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    r = report["retrieval"]
    overall = {"planqa.hit@1": r["hit@1"], "planqa.hit@3": r["hit@3"], "planqa.mrr@5": r["mrr@5"],
               "n_retrieval": r["n"], **r}
    for kind, m in [*report["per_kind"].items(), ("**overall**", overall)]:
        if m.get("planqa.hit@1") is None:
            continue
        n = m["n_retrieval"]
        cells = [_fmt(m.get(f"{s}.{x}")) for s in ("planqa", "bm25", "dense")
                 for x in ("hit@1", "hit@3", "mrr@5")]
        lines.append(f"| {kind} | {n} | " + " | ".join(cells) + " |")
    lines += ["", "## Answers", "",
              "| kind | questions | citation@1 | fact recall | refused | verbatim |",
              "|---|---|---|---|---|---|"]
    for kind, m in report["per_kind"].items():
        lines.append(f"| {kind} | {m['n_questions']} | {_fmt(m.get('citation@1'))} | "
                     f"{_fmt(m.get('fact_recall'))} | {_fmt(m.get('refused'))} | "
                     f"{_fmt(m.get('verbatim'))} |")
    a = report["answers"]
    lines += ["", "| overall | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in a.items() if k != "verbatim_checked"]
    lines += ["", f"mean answer latency: {report['latency_ms']['answer_mean']:.1f} ms"]
    if report["failures"]:
        lines += ["", f"## Misses ({len(report['failures'])})", ""]
        lines += [f"- {f['id']}: {f['question']} → got {f['got']}, gold {f['gold']}"
                  + (f" (resolved: {f['resolved']})" if f["resolved"] != f["question"] else "")
                  for f in report["failures"]]
    return "\n".join(lines)


def without_links(settings: Settings):
    """A searcher over the same plan and model whose index has no question links (built
    in memory), so every figure can be shown with and without them."""
    from planqa.corpus import load_plan
    from planqa.embeddings import load_embeddings
    from planqa.index import build_index
    from planqa.retrieval import PlanSearcher

    plan = load_plan(settings.plan_path)
    embeddings = load_embeddings(settings)
    return PlanSearcher(plan, build_index(plan, embeddings, ()), embeddings,
                        settings.max_question_chars)


def main(settings: Settings, path: Path | None = None, *, gate: bool = False,
         out: Path | None = None, links: bool = True) -> int:
    """CLI entry: run, print the tables, optionally write JSON and enforce the gates."""
    from planqa.chain import PlanQA

    qa = PlanQA(settings, searcher=None if links else without_links(settings))
    report = run_eval(qa, load_cases(path))
    print(format_report(report))
    if out:
        out.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    failed = check_gates(report, gates_for(path))
    if failed:
        print("\nbelow the gate: " + "; ".join(failed))
    return 1 if (gate and failed) else 0
