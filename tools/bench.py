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
import contextlib
import cProfile
import datetime as dt
import os
import platform
import pstats
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planqa.config import Settings

if TYPE_CHECKING:
    from planqa.chain import PlanQA
    from planqa.evaluation import Case, Turn
    from tools.recipes import Recipe

#: Where `make bench` writes (untracked: build/ is ignored); `--out bench` for the
#: committed copy.
DEFAULT_OUT_DIR = Path("build") / "bench"
DEFAULT_EVAL_SET = Path("eval") / "qa.jsonl"

#: The cold-start probe, verbatim: a new interpreter that imports planqa, loads the
#: retriever (model + index) and answers one query; it prints its own elapsed time.
COLD_START_SNIPPET = (
    "import time;t=time.perf_counter();import planqa;r=planqa.load_retriever();"
    "r.invoke('事业编制要精简到多少名？');print(time.perf_counter()-t)"
)

#: (metric, p50 target, p95 target) in ms; cold start in s; RSS in MB (10^6 bytes).
TARGETS = {
    "retrieval_ms": (30.0, 60.0),
    "answer_ms": (50.0, 120.0),
    "cold_start_s": 8.0,
    "peak_rss_mb": 1200.0,
}

_VERSIONED = ("planqa", "torch", "sentence-transformers", "transformers", "tokenizers",
              "faiss-cpu", "numpy", "rank-bm25", "jieba", "langchain", "langchain-core",
              "langchain-community", "langchain-classic", "langchain-text-splitters",
              "matplotlib")


@dataclass(frozen=True)
class BenchConfig:
    """Repetition counts. `FULL` for `make bench`, `QUICK` for `--quick`; tests use less."""

    passes: int = 3  # timed passes over the question set
    warmup: int = 20  # untimed calls before each timed run
    build_runs: int = 3
    cold_runs: int = 3
    profile_asks: int = 50
    thread_probe: bool = True  # also time retrieval on 1 thread and on every core


FULL = BenchConfig()
QUICK = BenchConfig(passes=1, warmup=5, build_runs=1, cold_runs=1, profile_asks=50)


# ---------------------------------------------------------------- measuring


@dataclass
class Timing:
    """Per-call wall and CPU seconds of one measured operation, with the 1-minute
    load average before and after."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    load_before: float = 0.0
    load_after: float = 0.0

    @property
    def n(self) -> int:
        return len(self.wall)

    def p(self, q: float, cpu: bool = False) -> float:
        """The q-th percentile (0..100) in seconds."""
        return percentile(self.cpu if cpu else self.wall, q)

    def ms(self, q: float, cpu: bool = False) -> float:
        return 1000.0 * self.p(q, cpu)

    @property
    def load(self) -> str:
        return f"{self.load_before:.2f} → {self.load_after:.2f}"


def percentile(samples: Iterable[float], q: float) -> float:
    """Linear-interpolated percentile; NaN for no samples."""
    import numpy as np

    values = list(samples)
    return float(np.percentile(values, q)) if values else float("nan")


def load1() -> float:
    return os.getloadavg()[0]


def timed(calls: Iterable[Callable[[], Any]], warmup: Iterable[Callable[[], Any]] = ()
          ) -> Timing:
    """Run the warm-up calls untimed, then time each call (wall and process CPU)."""
    for fn in warmup:
        fn()
    t = Timing(load_before=load1())
    for fn in calls:
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        t.wall.append(time.perf_counter() - w0)
        t.cpu.append(time.process_time() - c0)
    t.load_after = load1()
    return t


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the questions


def all_questions(cases: list[Case]) -> list[str]:
    """Every turn's question, dialogues included, in file order."""
    return [t.question for c in cases for t in c.turns]


def single_turns(cases: list[Case]) -> list[tuple[Case, Turn]]:
    """The single-turn questions (the comparison's set: recipes have no history)."""
    from planqa.evaluation import MULTITURN

    return [(c, c.turns[0]) for c in cases if c.kind != MULTITURN]


def _cycle(items: list, n: int) -> list:
    return [items[i % len(items)] for i in range(n)] if items else []


# ---------------------------------------------------------------- 1–2 latency


def bench_retrieval(qa: PlanQA, cases: list[Case], cfg: BenchConfig) -> Timing:
    """`search(q, k=5)` over every eval question, `cfg.passes` times."""
    searcher = qa.searcher
    qs = all_questions(cases)
    return timed([lambda q=q: searcher.search(q, k=5) for q in qs * cfg.passes],
                 [lambda q=q: searcher.search(q, k=5) for q in _cycle(qs, cfg.warmup)])


def bench_answers(qa: PlanQA, cases: list[Case], cfg: BenchConfig) -> Timing:
    """`PlanQA.ask` over every case; a dialogue's turns carry the history so far."""
    for q in _cycle(all_questions(cases), cfg.warmup):
        qa.ask(q)
    t = Timing(load_before=load1())
    for _ in range(cfg.passes):
        for case in cases:
            history: list[tuple[str, str]] = []
            for turn in case.turns:
                c0, w0 = time.process_time(), time.perf_counter()
                answer = qa.ask(turn.question, history)
                t.wall.append(time.perf_counter() - w0)
                t.cpu.append(time.process_time() - c0)
                history.append((turn.question, answer.text))
    t.load_after = load1()
    return t


def bench_threads(qa: PlanQA, cases: list[Case], cfg: BenchConfig,
                  settings: Settings) -> dict[int, Timing]:
    """Retrieval latency with torch/faiss on 1 thread, the configured count and every
    core (up to 4). One pass each; the configured count is restored afterwards."""
    from planqa.embeddings import configure_threads

    searcher = qa.searcher
    qs = all_questions(cases)
    out: dict[int, Timing] = {}
    try:
        for n in sorted({1, settings.threads, min(4, os.cpu_count() or 1)}):
            configure_threads(n)
            out[n] = timed([lambda q=q: searcher.search(q, k=5) for q in qs],
                           [lambda q=q: searcher.search(q, k=5) for q in _cycle(qs, cfg.warmup)])
    finally:
        configure_threads(settings.threads)
    return out


# ---------------------------------------------------------------- 3 build


@dataclass
class BuildResult:
    timing: Timing
    units: int


def bench_build(qa: PlanQA, runs: int) -> BuildResult:
    """`build_index` of the plan into memory, `runs` times (no warm-up: the model is
    already loaded and warm from the latency runs)."""
    from planqa.index import build_index

    plan, emb = qa.plan, qa.searcher.embeddings
    units = [0]

    def build() -> None:
        units[0] = len(build_index(plan, emb).units)

    return BuildResult(timed([build] * runs), units[0])


# ---------------------------------------------------------------- 4 cold start


@dataclass
class ColdRun:
    inner_s: float  # what the child measured: import + load + first query
    wall_s: float  # the whole subprocess, interpreter start-up and exit included
    peak_rss_mb: float  # the child's VmHWM, in 10^6 bytes
    load_before: float
    load_after: float


def cold_start_once(env: dict[str, str] | None = None, timeout: float = 600.0) -> ColdRun:
    """Run the cold-start snippet in a fresh interpreter; the child reports its own
    elapsed time and then its peak RSS."""
    # Peak RSS comes from the child's VmHWM, not from ru_maxrss: Linux records the
    # parent's high-water mark into the child's ru_maxrss when it execs (fork and vfork
    # alike), so after loading the model here every child would "peak" at our size.
    probe = COLD_START_SNIPPET + (";print(next(l.split()[1] for l in open('/proc/self/status')"
                                  " if l.startswith('VmHWM')))")
    before = load1()
    w0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env if env is not None else os.environ.copy(), timeout=timeout)
    wall = time.perf_counter() - w0
    if proc.returncode != 0:
        raise RuntimeError(f"cold-start probe failed ({proc.returncode}): {proc.stderr[-2000:]}")
    elapsed, hwm_kib = proc.stdout.split()[-2:]
    return ColdRun(float(elapsed), wall, int(hwm_kib) * 1024 / 1e6, before, load1())


# ---------------------------------------------------------------- 5 comparison


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
        return _share([x for v in self.hit.values() for x in v])

    @property
    def n_in_scope(self) -> int:
        return sum(len(v) for v in self.hit.values())


def _share(xs: list[bool]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def contains_all(evidence: str, facts: Iterable[str]) -> bool:
    """Does the evidence hold every gold fact (facts are Simplified; t2s first)?"""
    from planqa.text import to_simplified

    text = to_simplified(evidence)
    facts = list(facts)
    return bool(facts) and all(f in text for f in facts)


def cites_gold(answer: Any, turn: Turn) -> bool:
    """The first citation names the gold section and clause (for the whole-document
    questions, gold "*", an answer citing the sections, as `planqa eval` counts it)."""
    from planqa.evaluation import WHOLE_DOCUMENT

    if not answer.found or not answer.citations:
        return False
    if turn.section == WHOLE_DOCUMENT:
        return len(answer.citations) >= 2
    first = answer.citations[0]
    return first.section == turn.section and first.clause == turn.clause


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
                        [lambda q=q: recipe.retriever.invoke(q) for q in _cycle(qs, cfg.warmup)])
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
            res.exact_clause.append(cites_gold(answer, turn))
            res.in_scope_refused.append(not answer.found)
            if answer.found:
                res.evidence_chars.append(len(answer.text))
        else:
            res.oos_refused.append(not answer.found)
    qs = [t.question for _, t in singles]
    res.latency = timed([lambda q=q: qa.ask(q) for q in qs * cfg.passes],
                        [lambda q=q: qa.ask(q) for q in _cycle(qs, cfg.warmup)])
    return res


def compare(qa: PlanQA, cases: list[Case], cfg: BenchConfig) -> list[SystemResult]:
    """The two stock recipes and planqa, same questions, same embedding model."""
    from tools.recipes import chatchat_ensemble, stock_langchain

    singles = single_turns(cases)
    emb = qa.searcher.embeddings  # the very PlanEmbeddings planqa uses (a LangChain Embeddings)
    out = []
    for make in (stock_langchain, chatchat_ensemble):
        recipe = make(qa.plan, emb)
        _log(f"comparison: {recipe.name} ({len(recipe.chunks)} chunks)")
        out.append(evaluate_recipe(recipe, singles, cfg))
    _log("comparison: planqa")
    out.append(evaluate_planqa(qa, singles, cfg))
    return out


# ---------------------------------------------------------------- profile

#: (label, file suffix, function) of the stages an answer goes through.
PROFILE_STAGES = (
    ("PlanQA.ask, whole", "planqa/chain.py", "ask"),
    ("condense: follow-up resolution", "planqa/chain.py", "_condense"),
    ("retrieve: hybrid search", "planqa/chain.py", "_retrieve"),
    ("· query embedding (e5-small forward)", "planqa/embeddings.py", "_encode"),
    ("· BM25 scoring (rank_bm25)", "rank_bm25.py", "get_scores"),
    ("· per-sentence evidence scores", "planqa/retrieval.py", "_sentence_scores"),
    ("· FAISS search", "planqa/index.py", "search"),
    ("compose: extractive answer", "planqa/chain.py", "_compose"),
    ("jieba tokenization (all calls)", "planqa/text.py", "tokenize"),
)


@dataclass
class ProfileResult:
    asks: int
    wall_s: float
    stages: list[tuple[str, float]]  # (label, ms per ask, cumulative)
    top: list[tuple[str, int, float]]  # (function, calls, ms per ask, internal time)


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def profile_answers(qa: PlanQA, cases: list[Case], asks: int) -> ProfileResult:
    """cProfile over `asks` single-turn asks: time per stage and the top functions."""
    qs = _cycle([t.question for _, t in single_turns(cases)], asks)
    for q in qs[:5]:
        qa.ask(q)
    prof = cProfile.Profile()
    w0 = time.perf_counter()
    prof.enable()
    for q in qs:
        qa.ask(q)
    prof.disable()
    wall = time.perf_counter() - w0
    stats: dict = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    n = max(1, len(qs))
    stages = []
    for label, suffix, func in PROFILE_STAGES:
        ct = sum(v[3] for (fname, _, fn), v in stats.items()
                 if fn == func and fname.replace("\\", "/").endswith(suffix))
        stages.append((label, 1000 * ct / n))
    parts = {label: ms for label, ms in stages}
    overhead = parts["PlanQA.ask, whole"] - sum(
        parts[k] for k in ("condense: follow-up resolution", "retrieve: hybrid search",
                           "compose: extractive answer"))
    after_compose = [label for label, *_ in PROFILE_STAGES].index("compose: extractive answer") + 1
    stages.insert(after_compose, ("LangChain Runnable plumbing (rest of ask)", overhead))
    top = sorted(stats.items(), key=lambda kv: -kv[1][2])[:12]
    top_rows = [(f"{_short(f)}:{ln}({fn})" if ln else fn, v[1], 1000 * v[2] / n)
                for (f, ln, fn), v in top]
    return ProfileResult(len(qs), wall, stages, top_rows)


# ---------------------------------------------------------------- machine


def machine_info(settings: Settings) -> dict[str, str]:
    """Cores, CPU model, memory, date, commit, versions and thread settings."""
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines()
                      if x.startswith("MemTotal")).split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    versions = []
    for dist in _VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{dist} {metadata.version(dist)}")
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = os.cpu_count() or 0
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "cpu": cpu_model,
        "cores": f"{os.cpu_count()} logical ({affinity} usable)",
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "threads": f"PLANQA_THREADS={settings.threads} (torch intra-op and faiss OpenMP)",
        "versions": ", ".join(versions),
    }


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
    load_start = _loadavg_text()
    # The cold-start probe gets the environment as it was before loading the model
    # here (which sets HF_HUB_OFFLINE, KMP_* and friends).
    env = os.environ.copy()
    cases = cases if cases is not None else load_cases(DEFAULT_EVAL_SET)
    machine = machine_info(settings)
    if qa is None:
        qa = PlanQA(settings)
    qa.warm_up()
    qs = all_questions(cases)
    _log(f"{len(qs)} questions in {len(cases)} cases; load {load_start}")

    _log("retrieval latency")
    retrieval = bench_retrieval(qa, cases, cfg)
    _log(f"  p50 {retrieval.ms(50):.1f} ms, p95 {retrieval.ms(95):.1f} ms")
    _log("answer latency")
    answers = bench_answers(qa, cases, cfg)
    _log(f"  p50 {answers.ms(50):.1f} ms, p95 {answers.ms(95):.1f} ms")
    threads = bench_threads(qa, cases, cfg, settings) if cfg.thread_probe else {}
    build = None
    if cfg.build_runs > 0:
        _log("index build")
        build = bench_build(qa, cfg.build_runs)
        _log(f"  median {build.timing.p(50):.2f} s")
    cold = []
    for i in range(cfg.cold_runs):
        _log(f"cold start {i + 1}/{cfg.cold_runs}")
        cold.append(cold_start_once(env))
        _log(f"  {cold[-1].inner_s:.2f} s, peak RSS {cold[-1].peak_rss_mb:.0f} MB")
    systems = compare(qa, cases, cfg)
    profile = None
    if cfg.profile_asks > 0:
        _log(f"profile of {cfg.profile_asks} asks")
        profile = profile_answers(qa, cases, cfg.profile_asks)
    return BenchResult(mode=mode, config=cfg, machine=machine, n_questions=len(qs),
                       n_cases=len(cases), retrieval=retrieval, answers=answers,
                       threads=threads, build=build, cold=cold, systems=systems,
                       profile=profile, load_start=load_start, load_end=_loadavg_text(),
                       elapsed_s=time.perf_counter() - t_start)


def _loadavg_text() -> str:
    try:
        fields = Path("/proc/loadavg").read_text().split()
        return f"{fields[0]} / {fields[1]} / {fields[2]} (1/5/15 min; running/total {fields[3]})"
    except (OSError, IndexError):
        one, five, fifteen = os.getloadavg()
        return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min)"


# ---------------------------------------------------------------- report


def _met(value: float, target: float) -> str:
    return "yes" if value <= target else "**no**"


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.0f}%"  # x != x: NaN


def summary_table(r: BenchResult) -> list[str]:
    """The headline figures against their targets."""
    rows = ["| figure | p50 | p95 | target | met | n | load (1-min, before → after) |",
            "|---|---:|---:|---|---|---:|---|"]
    for label, t, key in (("retrieval `search(q, k=5)`", r.retrieval, "retrieval_ms"),
                          ("answer `PlanQA.ask` (extractive)", r.answers, "answer_ms")):
        p50, p95 = TARGETS[key]  # type: ignore[misc]
        rows.append(f"| {label} | {t.ms(50):.1f} ms | {t.ms(95):.1f} ms | "
                    f"p50 ≤ {p50:.0f} ms, p95 ≤ {p95:.0f} ms | "
                    f"{_met(t.ms(50), p50)} / {_met(t.ms(95), p95)} | {t.n} | {t.load} |")
    if r.build:
        b = r.build.timing
        rows.append(f"| index build (in memory, {r.build.units} units) | {b.p(50):.2f} s | "
                    f"{b.p(95):.2f} s | – | – | {b.n} | {b.load} |")
    if r.cold:
        cs = [c.inner_s for c in r.cold]
        rss = [c.peak_rss_mb for c in r.cold]
        load = f"{r.cold[0].load_before:.2f} → {r.cold[-1].load_after:.2f}"
        rows.append(f"| cold start (import → first answer) | {r.cold_start_s:.2f} s | "
                    f"{percentile(cs, 95):.2f} s | ≤ {TARGETS['cold_start_s']:.0f} s | "
                    f"{_met(r.cold_start_s, TARGETS['cold_start_s'])} | {len(cs)} | {load} |")
        rows.append(f"| cold start peak RSS | {r.peak_rss_mb:.0f} MB | "
                    f"{percentile(rss, 95):.0f} MB | ≤ {TARGETS['peak_rss_mb']:.0f} MB | "
                    f"{_met(r.peak_rss_mb, TARGETS['peak_rss_mb'])} | {len(rss)} | {load} |")
    return rows


def comparison_table(systems: list[SystemResult]) -> list[str]:
    """The systems side by side."""
    head = "| | " + " | ".join(s.name for s in systems) + " |"
    rows = [head, "|---|" + "---:|" * len(systems)]

    def row(label: str, cells: Iterable[str]) -> None:
        rows.append(f"| {label} | " + " | ".join(cells) + " |")

    row(f"hit@1: top evidence holds all gold facts (n={systems[0].n_in_scope})",
        (_pct(s.hit_at_1) for s in systems))
    row("exact clause cited first", (_pct(_share(s.exact_clause)) if s.exact_clause is not None
                                     else "n/a" for s in systems))
    row("median evidence length (chars to read)",
        (f"{percentile(s.evidence_chars, 50):.0f}" for s in systems))
    row(f"out-of-scope refused (n={len(systems[0].oos_refused)})",
        (_pct(_share(s.oos_refused)) + ("" if s.exact_clause is not None else " (never refuses)")
         for s in systems))
    row("in-scope refused (false refusals)", (_pct(_share(s.in_scope_refused)) for s in systems))
    row("latency p50 per question", (f"{s.latency.ms(50):.1f} ms" for s in systems))
    row("latency p95 per question", (f"{s.latency.ms(95):.1f} ms" for s in systems))
    row("load (1-min) during latency", (s.latency.load for s in systems))
    row("chunks (recipes) / units (planqa) indexed", (str(s.chunks) for s in systems))
    return rows


def per_kind_table(systems: list[SystemResult]) -> list[str]:
    kinds = list(systems[-1].hit)
    rows = ["| kind | n | " + " | ".join(s.name for s in systems) + " |",
            "|---|---:|" + "---:|" * len(systems)]
    for kind in kinds:
        n = len(systems[-1].hit[kind])
        rows.append(f"| {kind} | {n} | "
                    + " | ".join(_pct(_share(s.hit.get(kind, []))) for s in systems) + " |")
    return rows


#: The report's first line: how the committed copy in bench/ is refreshed.
REFRESH_NOTE = ("Refresh by hand from the repository root: `python -m tools.bench --out bench` "
                "(`make bench` writes to build/bench/, untracked).")


def format_report(r: BenchResult) -> str:
    """report.md."""
    m = r.machine
    cfg = r.config
    lines = [
        "# planqa benchmark",
        "",
        REFRESH_NOTE,
        "",
        f"Generated by `python -m tools.bench{' --quick' if r.mode == 'quick' else ''}`, "
        f"{m['date']}, commit {m['commit']}; took {r.elapsed_s:.0f} s.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']}; memory {m['memory']}; {m['os']}; Python {m['python']}",
        f"- {m['threads']}",
        f"- load average at start: {r.load_start}",
        f"- load average at end: {r.load_end}",
        f"- versions: {m['versions']}",
        "",
        "The machine is shared: the load average is printed beside each figure. A 1-minute",
        "load above the core count means other processes competed for the CPU while it was",
        "measured; compare CPU time (below) for a load-independent view.",
        "",
        "## Summary",
        "",
        f"All latencies after {cfg.warmup} warm-up calls; {cfg.passes} timed pass(es) over "
        f"{r.n_questions} questions ({r.n_cases} eval cases, every turn of every dialogue).",
        "",
        *summary_table(r),
        "",
        "## Latency detail (ms)",
        "",
        "| operation | n | wall p50 | wall p95 | wall max | CPU p50 | CPU p95 | load |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, t in (("retrieval", r.retrieval), ("answer", r.answers)):
        lines.append(f"| {label} | {t.n} | {t.ms(50):.1f} | {t.ms(95):.1f} | {t.ms(100):.1f} "
                     f"| {t.ms(50, True):.1f} | {t.ms(95, True):.1f} | {t.load} |")
    lines += ["", "CPU is process CPU time (all threads) per call: with several threads it can "
              "exceed wall time, and OpenMP threads spinning while they wait for a core show "
              "up here too."]
    if r.threads:
        lines += ["", "### Retrieval latency by torch/faiss thread count (one pass each)", "",
                  "| torch/faiss threads | wall p50 | wall p95 | CPU p50 | load |",
                  "|---:|---:|---:|---:|---|"]
        for n, t in sorted(r.threads.items()):
            lines.append(f"| {n} | {t.ms(50):.1f} ms | {t.ms(95):.1f} ms | "
                         f"{t.ms(50, True):.1f} ms | {t.load} |")
        lines += ["", "More threads only help while the cores are otherwise idle: when other "
                  "processes hold them, OpenMP workers wait for each other and a query can take "
                  "many times longer (compare the loads). Throughput scales by processes or "
                  "replicas, not by intra-op threads (docs/scaling.md)."]
    if r.cold:
        lines += ["", "## Cold start", "",
                  f"A fresh interpreter runs `{COLD_START_SNIPPET}`, then prints its peak RSS "
                  "(VmHWM from /proc/self/status, in MB of 10^6 bytes; `ru_maxrss` of a child "
                  "would include the benchmark's own footprint, which Linux copies into it at "
                  "exec). The page cache is warm (the model files were read before), as on a "
                  "replica that restarts. \"whole process\" adds interpreter start-up and "
                  "exit.", "",
                  "| run | import → first answer | whole process | peak RSS | load |",
                  "|---:|---:|---:|---:|---|"]
        for i, c in enumerate(r.cold, 1):
            lines.append(f"| {i} | {c.inner_s:.2f} s | {c.wall_s:.2f} s | "
                         f"{c.peak_rss_mb:.0f} MB | {c.load_before:.2f} → {c.load_after:.2f} |")
    if r.build:
        lines += ["", "## Index build", "",
                  f"`build_index` (cut {r.build.units} units, embed them, `IndexFlatIP`) in "
                  f"memory: runs {', '.join(f'{x:.2f} s' for x in r.build.timing.wall)}; "
                  f"median {r.build.timing.p(50):.2f} s; load {r.build.timing.load}."]
    lines += [
        "", "## planqa against stock recipes", "",
        "Same eval set (single-turn questions), same embedding model (planqa's "
        "`PlanEmbeddings`, multilingual-e5-small), same cleaned Simplified plan text:",
        "",
        "- **LangChain stock**: `RecursiveCharacterTextSplitter(chunk_size=500, "
        "chunk_overlap=50)` + `langchain_community.vectorstores.FAISS`; the top chunk is "
        "the answer.",
        "- **Chatchat-style ensemble**: chunks of 750 (overlap 150, Chinese punctuation "
        "separators), `BM25Retriever(preprocess_func=jieba.lcut_for_search)` + FAISS, each "
        "top 3, `EnsembleRetriever` weights 0.5/0.5; the top fused chunk is the answer.",
        "- **planqa**: `PlanQA.ask` (extractive); its answer text is the evidence.",
        "",
        "hit@1: the evidence contains *all* gold facts of an in-scope question (after OpenCC "
        "t2s; a planqa refusal counts as a miss). Evidence length: characters of the top "
        "chunk, or of planqa's answer text including its 出处 line (answered questions "
        "only). The questions are asked as typed: the recipes get no Traditional→Simplified "
        "or English→Chinese help, as in their stock form. Longer evidence holds more facts by "
        "construction (a 750-character chunk is a large share of this short plan), so read hit@1 "
        "together with the evidence length.",
        "",
        *comparison_table(r.systems),
        "",
        "### hit@1 by question kind",
        "",
        *per_kind_table(r.systems),
        "",
        "![comparison](comparison.png)",
    ]
    if r.profile:
        p = r.profile
        lines += ["", "## Where an answer's time goes", "",
                  f"cProfile over {p.asks} single-turn asks ({p.wall_s:.1f} s under the "
                  "profiler, which inflates Python-heavy parts); cumulative time per ask.", "",
                  "| stage | ms per ask |", "|---|---:|"]
        lines += [f"| {label} | {ms:.2f} |" for label, ms in p.stages]
        lines += ["", "Top functions by internal time:", "",
                  "| function | calls | ms per ask |", "|---|---:|---:|"]
        lines += [f"| `{fn}` | {calls} | {ms:.2f} |" for fn, calls, ms in p.top]
    return "\n".join(lines) + "\n"


def plot_comparison(systems: list[SystemResult], path: Path) -> None:
    """comparison.png: hit@1 and out-of-scope refusal (%), and evidence length."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt
    import numpy as np

    names = ["LangChain stock\n(500/50 + FAISS)", "Chatchat-style\n(BM25+FAISS, 750/150)",
             "planqa"][-len(systems):] if len(systems) == 3 else [s.name for s in systems]
    colors = ["#9e9e9e", "#6d8fb3", "#d0582a"][-len(systems):]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6),
                                   gridspec_kw={"width_ratios": [1.6, 1]})
    metrics = [("hit@1\n(all gold facts in top evidence)", lambda s: s.hit_at_1),
               ("out-of-scope questions\nrefused", lambda s: _share(s.oos_refused))]
    x = np.arange(len(metrics))
    width = 0.8 / len(systems)
    for i, (s, name, color) in enumerate(zip(systems, names, colors, strict=True)):
        vals = [100 * f(s) for _, f in metrics]
        bars = ax1.bar(x + (i - (len(systems) - 1) / 2) * width, vals, width, label=name,
                       color=color)
        ax1.bar_label(bars, labels=[f"{v:.0f}%" for v in vals], padding=2, fontsize=9)
    ax1.set_xticks(x, [m for m, _ in metrics])
    ax1.set_ylim(0, 128)  # headroom for the legend above the 100% line
    ax1.set_yticks(range(0, 101, 20))
    ax1.set_ylabel("% of questions")
    ax1.set_title("Answer quality (higher is better)")
    ax1.legend(loc="upper center", ncol=len(systems), fontsize=8, frameon=False)
    lengths = [percentile(s.evidence_chars, 50) for s in systems]
    bars = ax2.bar(range(len(systems)), lengths, color=colors)
    ax2.bar_label(bars, labels=[f"{v:.0f}" for v in lengths], padding=2, fontsize=9)
    ax2.set_xticks(range(len(systems)), names, fontsize=8)
    ax2.set_ylabel("characters (median)")
    ax2.set_title("Evidence a reader must read (lower is better)")
    ax2.set_ylim(0, max(lengths) * 1.15 if lengths else 1)
    for ax in (ax1, ax2):
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(f"planqa vs stock LangChain recipes — {systems[0].n_in_scope} in-scope and "
                 f"{len(systems[0].oos_refused)} out-of-scope eval questions, same e5-small "
                 "embeddings", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(r: BenchResult, out_dir: Path) -> tuple[Path, Path]:
    """Write report.md and comparison.png into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / "report.md"
    report.write_text(format_report(r), encoding="utf-8")
    png = out_dir / "comparison.png"
    plot_comparison(r.systems, png)
    return report, png


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
