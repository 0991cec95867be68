"""`python -m tools.bench`: speed, memory and the gain over stock recipes.

Run from the repository root (`make bench`); paths are arguments relative to the
current directory: `--eval-set` (eval/qa.jsonl), `--out` (build/bench/, untracked).
`--out bench` refreshes the committed bench/report.md and bench/comparison.png.

Measures, after warm-up, as medians and 95th percentiles:

1. retrieval latency (`PlanSearcher.search(q, k=5)`) over every eval question;
2. answer latency (`PlanQA.ask`, multi-turn dialogues with their history);
3. index build time (`build_index` into memory);
4. cold start (a fresh interpreter: import, load, first query) and its peak RSS;
5. planqa beside two stock recipes on the same eval set and embedding model
   (see tools.recipes): hit@1 of the evidence, exact clause, evidence length,
   out-of-scope refusal, latency;

plus a cProfile of where an answer's time goes. Every figure carries the load
average measured around it: the machines are shared, and a busy neighbour shows.
Writes report.md and comparison.png into the output folder; prints the summary.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from planqa.config import Settings
from tools.bench_report import comparison_table, summary_table, write_outputs
from tools.compare import SystemResult, compare
from tools.measure import (
    FULL,
    QUICK,
    BenchConfig,
    BuildResult,
    ColdRun,
    ProfileResult,
    all_questions,
    bench_answers,
    bench_build,
    bench_retrieval,
    bench_threads,
    cold_start_once,
    log,
    machine_info,
    profile_answers,
)
from tools.stats import Timing, loadavg_text, percentile

if TYPE_CHECKING:
    from planqa.chain import PlanQA
    from planqa.evaluation import Case

#: Where `make bench` writes (untracked: build/ is ignored); `--out bench` for the
#: committed copy.
DEFAULT_OUT_DIR = Path("build") / "bench"
DEFAULT_EVAL_SET = Path("eval") / "qa.jsonl"


# ---------------------------------------------------------------- results


@dataclass
class BenchResult:
    """Everything `make bench` measured (figures in seconds unless named otherwise)."""

    mode: str
    config: BenchConfig
    machine: dict[str, str]
    n_questions: int
    n_cases: int
    retrieval: Timing
    answers: Timing
    threads: dict[int, Timing]
    build: BuildResult | None
    cold: list[ColdRun]
    systems: list[SystemResult]
    profile: ProfileResult | None
    load_start: str
    load_end: str
    elapsed_s: float

    @property
    def cold_start_s(self) -> float:
        return percentile([c.inner_s for c in self.cold], 50)

    @property
    def peak_rss_mb(self) -> float:
        return percentile([c.peak_rss_mb for c in self.cold], 50)


def run(settings: Settings, cfg: BenchConfig, cases: list[Case] | None = None,
        qa: PlanQA | None = None, mode: str = "full") -> BenchResult:
    """Measure everything on `cases` (default: DEFAULT_EVAL_SET); `qa` may be an already
    loaded PlanQA (tests share one)."""
    from planqa.chain import PlanQA
    from planqa.evaluation import load_cases

    t_start = time.perf_counter()
    load_start = loadavg_text()
    # The cold-start probe gets the environment as it was before loading the model
    # here (which sets HF_HUB_OFFLINE, KMP_* and friends).
    env = os.environ.copy()
    cases = cases if cases is not None else load_cases(DEFAULT_EVAL_SET)
    machine = machine_info(settings)
    if qa is None:
        qa = PlanQA(settings)
    qa.warm_up()
    qs = all_questions(cases)
    log(f"{len(qs)} questions in {len(cases)} cases; load {load_start}")

    log("retrieval latency")
    retrieval = bench_retrieval(qa, cases, cfg)
    log(f"  p50 {retrieval.ms(50):.1f} ms, p95 {retrieval.ms(95):.1f} ms")
    log("answer latency")
    answers = bench_answers(qa, cases, cfg)
    log(f"  p50 {answers.ms(50):.1f} ms, p95 {answers.ms(95):.1f} ms")
    threads = bench_threads(qa, cases, cfg, settings) if cfg.thread_probe else {}
    build = None
    if cfg.build_runs > 0:
        log("index build")
        build = bench_build(qa, cfg.build_runs)
        log(f"  median {build.timing.p(50):.2f} s")
    cold = []
    for i in range(cfg.cold_runs):
        log(f"cold start {i + 1}/{cfg.cold_runs}")
        cold.append(cold_start_once(env))
        log(f"  {cold[-1].inner_s:.2f} s, peak RSS {cold[-1].peak_rss_mb:.0f} MB")
    systems = compare(qa, cases, cfg)
    profile = None
    if cfg.profile_asks > 0:
        log(f"profile of {cfg.profile_asks} asks")
        profile = profile_answers(qa, cases, cfg.profile_asks)
    return BenchResult(mode=mode, config=cfg, machine=machine, n_questions=len(qs),
                       n_cases=len(cases), retrieval=retrieval, answers=answers,
                       threads=threads, build=build, cold=cold, systems=systems,
                       profile=profile, load_start=load_start, load_end=loadavg_text(),
                       elapsed_s=time.perf_counter() - t_start)


def bench(settings: Settings, cfg: BenchConfig, out_dir: Path,
          cases: list[Case] | None = None, qa: PlanQA | None = None,
          mode: str = "full") -> BenchResult:
    """Run the benchmark, write report.md and comparison.png into `out_dir`, print the
    summary."""
    result = run(settings, cfg, cases=cases, qa=qa, mode=mode)
    report, png = write_outputs(result, out_dir)
    print("\n".join(["", *summary_table(result), "", *comparison_table(result.systems), ""]))
    if result.profile:
        print("time per ask by stage (cProfile): " + "; ".join(
            f"{label.strip('· ')} {ms:.1f} ms" for label, ms in result.profile.stages))
    print(f"load average: start {result.load_start}; end {result.load_end}")
    print(f"wrote {report} and {png}")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--eval-set", type=Path, default=DEFAULT_EVAL_SET,
                        help="JSONL eval set whose questions are timed "
                        f"(default {DEFAULT_EVAL_SET})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR,
                        help="folder for report.md and comparison.png "
                        f"(default {DEFAULT_OUT_DIR}; `bench` refreshes the committed copy)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`python -m tools.bench`. Targets are reported, not enforced (shared machines are
    noisy): 0 unless the benchmark could not run (2)."""
    from planqa.errors import PlanQAError
    from planqa.evaluation import load_cases

    args = build_parser().parse_args(argv)
    try:
        cases = load_cases(args.eval_set)
        bench(Settings.from_env(), QUICK if args.quick else FULL, args.out, cases=cases,
              mode="quick" if args.quick else "full")
    except (PlanQAError, OSError) as exc:
        print(f"tools.bench: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
