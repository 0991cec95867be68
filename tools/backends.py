"""`python -m tools.backends`: the embedding backends side by side, in one run.

For each PLANQA_BACKEND (torch, onnx, onnx-int8), on the same committed index:

* latency, after warm-up, as p50/p95: one query embedding alone (the floor), retrieval
  (`search(q, k=5)`) and answers (`PlanQA.ask`); timed round-robin — pass 1 of every
  backend, then pass 2, … — so a busy neighbour slows them all alike;
* the two stock recipes of tools.recipes on the same model, run the stock way
  (sentence-transformers on torch), timed in the same rounds; the ratios divide the
  recipe's retrieval p50 by planqa's answer p50;
* cold start (a fresh interpreter: import, load, first query) and its peak RSS;
* with ``--eval``: the eval figures of every backend on eval/qa.jsonl and
  eval/heldout.jsonl, and per kind how many questions each differs from torch
  (retrieval hit@1/hit@3, answer citation@1; refusals for out-of-scope).

Writes backends.md into `--out` (build/bench/ by default) and prints it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planqa.config import Settings
from tools.measure import ColdRun, all_questions, cold_start_once, cycle, log
from tools.stats import Timing, loadavg_text

if TYPE_CHECKING:
    from planqa.evaluation import Case

BACKENDS = ("torch", "onnx", "onnx-int8")
EVAL_SETS = (Path("eval") / "qa.jsonl", Path("eval") / "heldout.jsonl")
DEFAULT_OUT_DIR = Path("build") / "bench"
#: The eval metrics whose per-kind counts decide whether a backend may be the default.
DECIDING = (("retrieval", "planqa.hit@1"), ("retrieval", "planqa.hit@3"),
            ("answer", "citation@1"), ("answer", "refusal_recall"))


@dataclass
class BackendRun:
    """One backend's figures (seconds in the Timings)."""

    backend: str
    floor: Timing = field(default_factory=Timing)
    retrieval: Timing = field(default_factory=Timing)
    answers: Timing = field(default_factory=Timing)
    cold: ColdRun | None = None
    evals: dict[str, dict] = field(default_factory=dict)  # set name -> run_eval report


def _timed_into(t: Timing, calls: list) -> None:
    for call in calls:
        w0, c0 = time.perf_counter(), time.process_time()
        call()
        t.wall.append(time.perf_counter() - w0)
        t.cpu.append(time.process_time() - c0)


def measure(settings: Settings, cases: list[Case], passes: int, warmup: int,
            backends: tuple[str, ...] = BACKENDS, cold: bool = True,
            recipes: bool = True) -> tuple[list[BackendRun], dict[str, Timing]]:
    """Latency of every backend and of the stock recipes, round-robin over `passes`."""
    from planqa.chain import PlanQA
    from planqa.corpus import load_plan
    from planqa.evaluation import MULTITURN

    env = os.environ.copy()
    qs = all_questions(cases)
    singles = [c.turns[0].question for c in cases if c.kind != MULTITURN]
    runs, qas = [], []
    for b in backends:
        log(f"loading backend {b}")
        qa = PlanQA(settings.replace(backend=b))
        qa.warm_up()
        runs.append(BackendRun(b))
        qas.append(qa)
    stock: dict[str, Any] = {}
    if recipes:
        from tools.recipes import chatchat_ensemble, stock_langchain

        torch_emb = next((qa.searcher.embeddings for qa, r in zip(qas, runs, strict=True)
                          if r.backend == "torch"), None)
        if torch_emb is None:
            from planqa.embeddings import load_embeddings

            torch_emb = load_embeddings(settings.replace(backend="torch"))
        plan = load_plan(settings.plan_path)
        for recipe in (stock_langchain(plan, torch_emb), chatchat_ensemble(plan, torch_emb)):
            stock[recipe.name] = recipe
    stock_t = {name: Timing() for name in stock}
    for p in range(passes):
        log(f"pass {p + 1}/{passes}; load {loadavg_text()}")
        for run, qa in zip(runs, qas, strict=True):
            emb, searcher = qa.searcher.embeddings, qa.searcher
            for q in cycle(qs, warmup):
                qa.ask(q)
            _timed_into(run.floor, [lambda q=q, e=emb: e.encode_queries([q]) for q in qs])
            _timed_into(run.retrieval, [lambda q=q, s=searcher: s.search(q, k=5)
                                        for q in qs])
            for case in cases:
                history: list[tuple[str, str]] = []
                for turn in case.turns:
                    w0, c0 = time.perf_counter(), time.process_time()
                    answer = qa.ask(turn.question, history)
                    run.answers.wall.append(time.perf_counter() - w0)
                    run.answers.cpu.append(time.process_time() - c0)
                    history.append((turn.question, answer.text))
        for name, recipe in stock.items():
            for q in cycle(singles, warmup):
                recipe.retriever.invoke(q)
            _timed_into(stock_t[name], [lambda q=q, r=recipe: r.retriever.invoke(q)
                                        for q in singles])
    if cold:
        for run in runs:
            log(f"cold start, {run.backend}")
            run.cold = cold_start_once({**env, "PLANQA_BACKEND": run.backend})
    return runs, stock_t


def run_evals(settings: Settings, runs: list[BackendRun],
              sets: tuple[Path, ...] = EVAL_SETS) -> None:
    """`planqa eval` of every backend on every set, into `run.evals`."""
    from planqa.chain import PlanQA
    from planqa.evaluation import load_cases, run_eval

    for run in runs:
        qa = PlanQA(settings.replace(backend=run.backend))
        for path in sets:
            log(f"eval {path.name}, {run.backend}")
            run.evals[path.name] = run_eval(qa, load_cases(path))


def _denominators(cases: list[Case]) -> dict[str, dict[str, int]]:
    """Per kind, how many questions each deciding metric is a share of."""
    from planqa.evaluation import MULTITURN

    out: dict[str, dict[str, int]] = {}
    for case in cases:
        d = out.setdefault(case.kind, {"retrieval": 0, "citation@1": 0, "refusal_recall": 0})
        for turn in case.turns:
            if case.kind != MULTITURN and turn.in_scope and not turn.whole_document:
                d["retrieval"] += 1
            d["citation@1" if turn.in_scope else "refusal_recall"] += 1
    return out


def question_deltas(reference: dict, other: dict, cases: list[Case]) -> dict[str, float]:
    """Per ``kind metric``: questions `other` gets right minus `reference` (eval reports
    of the same cases); rounded to whole questions."""
    n = _denominators(cases)
    out: dict[str, float] = {}
    for kind, ref in reference["per_kind"].items():
        got = other["per_kind"].get(kind, {})
        for part, metric in DECIDING:
            denom = n.get(kind, {}).get("retrieval" if part == "retrieval" else metric, 0)
            a, b = ref.get(metric), got.get(metric)
            if denom and a is not None and b is not None:
                out[f"{kind} {metric}"] = round((b - a) * denom)
    return out


def within_one_question(deltas: dict[str, float]) -> bool:
    """The bar for a default backend: no figure of any kind moves by more than one."""
    return all(abs(d) <= 1 for d in deltas.values())


def _ms(t: Timing, q: int) -> str:
    return f"{t.ms(q):.1f}" if t.wall else "–"


def report(runs: list[BackendRun], stock: dict[str, Timing], meta: str) -> list[str]:
    """The Markdown report."""
    lines = [f"# Embedding backends side by side\n\n{meta}\n",
             "| backend | floor p50 | retrieval p50 | p95 | answer p50 | p95 | cold start s | "
             "peak RSS MB |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        cold = (f"{r.cold.inner_s:.2f} | {r.cold.peak_rss_mb:.0f}" if r.cold else "– | –")
        lines.append(f"| {r.backend} | {_ms(r.floor, 50)} | {_ms(r.retrieval, 50)} | "
                     f"{_ms(r.retrieval, 95)} | {_ms(r.answers, 50)} | {_ms(r.answers, 95)} | "
                     f"{cold} |")
    if stock:
        lines += ["", "Stock recipes on the same model, the stock way (torch); ratio = the "
                  "recipe's retrieval p50 / planqa's answer p50 (higher: planqa faster).", "",
                  "| recipe | retrieval p50 ms | p95 | " +
                  " | ".join(f"ratio vs {r.backend}" for r in runs) + " |",
                  "|---|---|---|" + "---|" * len(runs)]
        for name, t in stock.items():
            ratios = " | ".join(f"{t.ms(50) / r.answers.ms(50):.2f}×" if r.answers.wall else "–"
                                for r in runs)
            lines.append(f"| {name} | {_ms(t, 50)} | {_ms(t, 95)} | {ratios} |")
    ref = next((r for r in runs if r.backend == "torch" and r.evals), None)
    if ref is not None:
        from planqa.evaluation import load_cases

        lines += ["", "## Eval per backend", "",
                  "| backend | set | hit@1 | hit@3 | citation@1 | refusal recall | "
                  "false refusals | most questions moved vs torch (kind metric) | "
                  "within one |", "|---|---|---|---|---|---|---|---|---|"]
        for r in runs:
            for name, rep in r.evals.items():
                cases = load_cases(next(p for p in EVAL_SETS if p.name == name))
                deltas = question_deltas(ref.evals[name], rep, cases)
                worst = max(deltas.items(), key=lambda kv: abs(kv[1]), default=("", 0))
                a = rep["answers"]
                lines.append(
                    f"| {r.backend} | {name} | {rep['retrieval']['hit@1']:.3f} | "
                    f"{rep['retrieval']['hit@3']:.3f} | {a['citation@1']:.3f} | "
                    f"{a['refusal_recall']:.3f} | {a['false_refusal_rate']:.3f} | "
                    f"{worst[1]:+g} ({worst[0] or '–'}) | "
                    f"{'yes' if within_one_question(deltas) else 'no'} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """`python -m tools.backends`; 2 when it could not run."""
    from planqa.errors import PlanQAError
    from planqa.evaluation import load_cases

    parser = argparse.ArgumentParser(prog="python -m tools.backends", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 timed pass instead of 3")
    parser.add_argument("--eval", action="store_true", help="also the eval figures per backend")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated (default: all)")
    parser.add_argument("--eval-set", type=Path, default=EVAL_SETS[0],
                        help="the set whose questions are timed")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR)
    args = parser.parse_args(argv)
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    if not backends or any(b not in BACKENDS for b in backends):
        parser.error(f"--backends takes some of {', '.join(BACKENDS)}")
    try:
        settings = Settings.from_env()
        start = loadavg_text()
        runs, stock = measure(settings, load_cases(args.eval_set),
                              passes=1 if args.quick else 3, warmup=5 if args.quick else 20,
                              backends=backends)
        if args.eval:
            run_evals(settings, runs)
    except (PlanQAError, OSError) as exc:
        print(f"tools.backends: {exc}", file=sys.stderr)
        return 2
    meta = (f"{os.cpu_count()} cores, PLANQA_THREADS={settings.threads}; questions of "
            f"{args.eval_set}; load average {start} → {loadavg_text()}")
    text = "\n".join(report(runs, stock, meta)) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backends.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
