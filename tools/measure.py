"""What `tools.bench` measures, piece by piece: latency of retrieval and answers (and by
thread count), the in-memory index build, a cold start in a fresh interpreter, a
cProfile of answers, and the machine it all ran on."""

from __future__ import annotations

import contextlib
import cProfile
import datetime as dt
import os
import platform
import pstats
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from planqa.config import Settings
from tools.stats import Timing, load1, timed

if TYPE_CHECKING:
    from planqa.chain import PlanQA
    from planqa.evaluation import Case, Turn

#: The cold-start probe, verbatim: a new interpreter that imports planqa, loads the
#: retriever (model + index) and answers one query; it prints its own elapsed time.
COLD_START_SNIPPET = (
    "import time;t=time.perf_counter();import planqa;r=planqa.load_retriever();"
    "r.invoke('事业编制要精简到多少名？');print(time.perf_counter()-t)"
)

_VERSIONED = ("planqa", "torch", "onnxruntime", "sentence-transformers", "transformers",
              "tokenizers",
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


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the questions


def all_questions(cases: list[Case]) -> list[str]:
    """Every turn's question, dialogues included, in file order."""
    return [t.question for c in cases for t in c.turns]


def single_turns(cases: list[Case]) -> list[tuple[Case, Turn]]:
    """The single-turn questions (the comparison's set: recipes have no history)."""
    from planqa.evaluation import MULTITURN

    return [(c, c.turns[0]) for c in cases if c.kind != MULTITURN]


def cycle(items: list, n: int) -> list:
    return [items[i % len(items)] for i in range(n)] if items else []


# ---------------------------------------------------------------- 1–2 latency


def bench_retrieval(qa: PlanQA, cases: list[Case], cfg: BenchConfig) -> Timing:
    """`search(q, k=5)` over every eval question, `cfg.passes` times."""
    searcher = qa.searcher
    qs = all_questions(cases)
    return timed([lambda q=q: searcher.search(q, k=5) for q in qs * cfg.passes],
                 [lambda q=q: searcher.search(q, k=5) for q in cycle(qs, cfg.warmup)])


def bench_answers(qa: PlanQA, cases: list[Case], cfg: BenchConfig) -> Timing:
    """`PlanQA.ask` over every case; a dialogue's turns carry the history so far."""
    for q in cycle(all_questions(cases), cfg.warmup):
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
                           [lambda q=q: searcher.search(q, k=5) for q in cycle(qs, cfg.warmup)])
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
    from planqa.links import read_links

    plan, emb = qa.plan, qa.searcher.embeddings
    links = read_links(qa.settings.links_path)
    units = [0]

    def build() -> None:
        units[0] = len(build_index(plan, emb, links).units)

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


# ---------------------------------------------------------------- profile

#: (label, file suffix, function) of the stages an answer goes through.
PROFILE_STAGES = (
    ("PlanQA.ask, whole", "planqa/chain.py", "ask"),
    ("condense: follow-up resolution", "planqa/chain.py", "_condense"),
    ("retrieve: hybrid search", "planqa/chain.py", "_retrieve_hits"),
    ("· query embedding (e5-small forward)", "planqa/embeddings.py", "_encode"),
    ("· BM25 scoring (postings over rank_bm25)", "planqa/retrieval.py", "get_scores"),
    ("· per-sentence evidence scores", "planqa/retrieval.py", "_sentence_scores"),
    ("· unit similarities (one product over the FAISS vectors)", "planqa/index.py",
     "similarities"),
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
    qs = cycle([t.question for _, t in single_turns(cases)], asks)
    # once unprofiled: one-time costs (the glossary's patterns compile on the first
    # English question, 0.4 s) would otherwise read as part of every ask
    for q in qs:
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
    # unobserved asks skip the Runnable machinery (see PlanQA.ask): what is left is
    # input checks and the answer's copy
    stages.insert(after_compose, ("the rest of ask (input checks; no tracer, no Runnable)",
                                  overhead))
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
        "threads": f"PLANQA_THREADS={settings.threads} (encoder intra-op and faiss OpenMP)",
        "backend": f"PLANQA_BACKEND={settings.backend}",
        "versions": ", ".join(versions),
    }
