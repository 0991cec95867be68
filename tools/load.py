"""`python -m tools.load`: a load test of the web app's JSON API, on loopback only.

Starts `python app.py` on a free 127.0.0.1 port (or uses `--url`), then N simulated
staff members each run conversations from the eval set against POST /api/ask: single
questions and multi-turn dialogues that send their history, as the chat does. After
the given duration the users stop, the server is stopped, and a report is printed and
written as Markdown, load.md in `--out` (build/bench/ by default, untracked; `--out
bench` refreshes the committed bench/load.md). Paths are relative to the current
directory: run it from the repository root (`make load`).

    answers/s sustained, p50/p95/p99 latency, errors (non-2xx or exceptions),
    the server's RSS before and after the run, and its peak (VmHWM).

The exit status is 1 when any request failed. The eval set only supplies realistic
questions here; nothing is scored.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# The server starter is the web tests' own (tools run from a checkout, beside tests/).
from tests.server import Server, start_server

from planqa.config import Settings
from tools.stats import percentile

#: The server script, relative to the current directory (`--app`).
APP_PY = Path("app.py")
#: The folder load.md goes to (build/ is untracked); `--out bench` for the committed copy.
DEFAULT_OUT = Path("build") / "bench"
#: Seconds of load run before the measured window (its answers and memory not counted).
WARMUP_S = 5.0
DEFAULT_EVAL_SET = Path("eval") / "qa.jsonl"
#: The report's first line: how the committed copy in bench/ is refreshed.
REFRESH_NOTE = ("Refresh by hand from the repository root: `python -m tools.load --out bench` "
                "(`make load` writes to build/bench/, untracked).")
#: One request may not take longer than this; a slower one counts as an error.
REQUEST_TIMEOUT = 30.0
#: The targets on 2 cores (the report marks each as met or missed).
TARGETS = {"answers_per_s": 50.0, "p95_ms": 500.0, "rss_growth_mb": 50.0}


# ---------------------------------------------------------------- conversations


def conversations(path: Path = DEFAULT_EVAL_SET) -> list[list[str]]:
    """Each eval case as the questions of one conversation (one for single questions,
    several for multi-turn dialogues, whose follow-ups need the history)."""
    from planqa.evaluation import load_cases

    return [[t.question for t in case.turns] for case in load_cases(path)]


# ---------------------------------------------------------------- the server


def _family(pid: int) -> list[int]:
    """The process and its descendants (the answer workers with PLANQA_WORKERS > 1)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError, ValueError):
            todo += [int(c) for c in
                     Path(f"/proc/{p}/task/{p}/children").read_text().split()]
    return out


def _rss_kb(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS) and RssAnon in kB, from /proc, summed over the process and
    its workers (the peaks' sum bounds the peak); {} if unreadable. RssAnon is the heap:
    the part of RSS that a leak would grow."""
    out: dict[str, int] = {}
    for p in _family(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon"):
                    out[key] = out.get(key, 0) + int(value.split()[0])
        except (OSError, ValueError, IndexError):
            if p == pid:
                return {}
    return out


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process and its workers have used so far, from
    /proc/<pid>/stat."""
    total = 0.0
    for p in _family(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()  # the name in (…) may hold spaces
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            if p == pid:
                return None
    return total


# ---------------------------------------------------------------- the users


@dataclass
class Tally:
    """What the users saw: latencies of answered requests, and the failures."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    def fail(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:  # a few examples are enough to debug
            self.error_samples.append(what[:300])


async def _user(client, url: str, convs: list[list[str]], seed: int, deadline: float,
                tally: Tally, headers: dict[str, str]) -> None:
    """One staff member: conversation after conversation until the deadline."""
    rng = random.Random(seed)  # each user its own order, the same every run
    order = list(range(len(convs)))
    rng.shuffle(order)
    i = 0
    while time.monotonic() < deadline:
        history: list[list[str]] = []
        for question in convs[order[i % len(order)]]:
            if time.monotonic() >= deadline:
                return
            body = {"question": question, "history": history}
            t0 = time.perf_counter()
            try:
                r = await client.post(f"{url}/api/ask", json=body, headers=headers)
                elapsed = time.perf_counter() - t0
                if not 200 <= r.status_code < 300:
                    raise RuntimeError(f"HTTP {r.status_code}: {r.text}")
                answer = r.json()["answer"]
            except Exception as exc:  # a timeout, a dropped connection, a bad reply
                tally.fail(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.1)  # a dead server must not make this a busy loop
                break  # the conversation cannot go on without its answer
            tally.latencies.append(elapsed)
            history.append([question, answer])
        i += 1


async def drive(url: str, users: int, seconds: float, convs: list[list[str]],
                token: str = "") -> Tally:
    """Run `users` concurrent users against `url` for `seconds`."""
    import httpx

    tally = Tally()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits,
                                 trust_env=False) as client:  # never via a proxy
        tally.started = time.monotonic()
        deadline = tally.started + seconds
        await asyncio.gather(*(_user(client, url, convs, 1000 + n, deadline, tally, headers)
                               for n in range(users)))
        tally.finished = time.monotonic()
    return tally


# ---------------------------------------------------------------- the report


@dataclass
class Report:
    """The figures of one run."""

    users: int
    seconds: float
    answers: int
    errors: int
    answers_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rss_before_mb: float | None
    rss_after_mb: float | None
    rss_peak_mb: float | None
    anon_before_mb: float | None
    anon_after_mb: float | None
    #: the server's CPU time per answer: unlike answers/s, it hardly depends on what
    #: else the machine is doing, so runs on a shared machine stay comparable
    cpu_ms_per_answer: float | None
    #: 1-minute load average of the machine at the end (the load generator included)
    load_average: float
    threads: str
    warmup_s: float = 0.0
    workers: int = 1
    error_samples: list[str] = field(default_factory=list)
    eval_set: str = str(DEFAULT_EVAL_SET)

    @property
    def rss_growth_mb(self) -> float | None:
        if self.rss_before_mb is None or self.rss_after_mb is None:
            return None
        return self.rss_after_mb - self.rss_before_mb

    @property
    def anon_growth_mb(self) -> float | None:
        if self.anon_before_mb is None or self.anon_after_mb is None:
            return None
        return self.anon_after_mb - self.anon_before_mb

    def markdown(self) -> str:
        """A small Markdown table, with the targets (on 2 cores) beside the figures."""

        def mb(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.0f} MB"

        def ms(v: float) -> str:
            return "n/a" if math.isnan(v) else f"{v:.0f} ms"

        def mark(ok: bool) -> str:
            return "met" if ok else "**missed**"

        growth, anon = self.rss_growth_mb, self.anon_growth_mb
        rows = [
            ("answers/s (sustained)", f"{self.answers_per_s:.1f}",
             f"≥ {TARGETS['answers_per_s']:.0f}: "
             + mark(self.answers_per_s >= TARGETS["answers_per_s"])),
            ("answers", str(self.answers), ""),
            ("errors (non-2xx or exceptions)", str(self.errors), "0: " + mark(self.errors == 0)),
            ("latency p50", ms(self.p50_ms), ""),
            ("latency p95", ms(self.p95_ms),
             f"≤ {TARGETS['p95_ms']:.0f} ms: " + mark(self.p95_ms <= TARGETS["p95_ms"])),
            ("latency p99", ms(self.p99_ms), ""),
            ("server RSS before", mb(self.rss_before_mb), ""),
            ("server RSS after", mb(self.rss_after_mb), ""),
            ("server RSS growth", "n/a" if growth is None else f"{growth:+.0f} MB",
             "" if growth is None else f"≤ {TARGETS['rss_growth_mb']:.0f} MB: "
             + mark(growth <= TARGETS["rss_growth_mb"])),
            ("— of which heap (RssAnon)", "n/a" if anon is None else f"{anon:+.0f} MB",
             "" if anon is None else f"≤ {TARGETS['rss_growth_mb']:.0f} MB: "
             + mark(anon <= TARGETS["rss_growth_mb"])),
            ("server RSS peak (VmHWM)", mb(self.rss_peak_mb), ""),
            ("server CPU time per answer", "n/a" if self.cpu_ms_per_answer is None
             else f"{self.cpu_ms_per_answer:.1f} ms", ""),
            ("machine load average (1 min)", f"{self.load_average:.1f}", ""),
        ]
        lines = [
            "# planqa load test",
            "",
            REFRESH_NOTE,
            "",
            f"{self.users} concurrent users for {self.seconds:g} s against POST /api/ask "
            f"(conversations from {self.eval_set}, follow-ups with history); "
            f"{os.cpu_count()} CPU cores; PLANQA_THREADS={self.threads}, "
            f"PLANQA_WORKERS={self.workers} (server RSS and CPU are summed over its worker "
            f"processes), after {self.warmup_s:g} s of the same load that is not counted "
            f"(buffers sized for {self.users} requests at once are no leak). Latency percentiles "
            "by nearest rank (tools.stats.percentile). "
            f"Produced by `python -m tools.load --users {self.users} "
            f"--seconds {self.seconds:g} --workers {self.workers}`.",
            "",
            "| metric | value | target (2 cores) |",
            "|---|---|---|",
            *(f"| {a} | {b} | {c} |" for a, b, c in rows),
        ]
        if growth is not None and anon is not None and growth - anon > 5:
            lines += ["", f"The other {growth - anon:+.0f} MB of RSS growth is file-backed: "
                      "pages of the memory-mapped model weights (model.safetensors, or "
                      "the ONNX backends' .data file) read for "
                      "the first time, e.g. embedding rows of tokens not seen before. They "
                      "are clean page cache, bounded by the file's size, and the kernel may "
                      "drop them; a leak shows in the heap figure."]
        if self.error_samples:
            lines += ["", "First errors:", "", *(f"- `{e}`" for e in self.error_samples)]
        return "\n".join(lines) + "\n"


def _report(tally: Tally, users: int, seconds: float, before: dict[str, int],
            after: dict[str, int], cpu_s: float | None = None,
            eval_set: Path = DEFAULT_EVAL_SET, workers: int = 1,
            warmup_s: float = 0.0) -> Report:
    lat = [x * 1000 for x in tally.latencies]  # none answered: NaN, shown as n/a
    wall = max(tally.finished - tally.started, 1e-9)

    def mb(d: dict[str, int], key: str) -> float | None:
        return d[key] / 1024 if key in d else None

    return Report(
        users=users, seconds=seconds, answers=len(tally.latencies), errors=tally.errors,
        answers_per_s=len(tally.latencies) / wall,
        p50_ms=percentile(lat, 50), p95_ms=percentile(lat, 95), p99_ms=percentile(lat, 99),
        rss_before_mb=mb(before, "VmRSS"), rss_after_mb=mb(after, "VmRSS"),
        rss_peak_mb=mb(after, "VmHWM"),
        anon_before_mb=mb(before, "RssAnon"), anon_after_mb=mb(after, "RssAnon"),
        cpu_ms_per_answer=(cpu_s * 1000 / len(tally.latencies)
                           if cpu_s is not None and tally.latencies else None),
        load_average=os.getloadavg()[0],
        threads=str(Settings.from_env().threads),  # what the server (same env) uses
        error_samples=tally.error_samples, eval_set=str(eval_set), workers=workers,
        warmup_s=warmup_s,
    )


def _check_loopback(url: str) -> None:
    """A load generator must not be pointed at someone else's server: loopback only."""
    from urllib.parse import urlparse

    host = urlparse(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"--url must be a loopback address (127.0.0.1), not {host!r}")


def run(users: int = 20, seconds: float = 60.0, port: int = 0, url: str = "",
        out: Path | None = DEFAULT_OUT, token: str = "", eval_set: Path = DEFAULT_EVAL_SET,
        app: Path = APP_PY, workers: int = 1, warmup: float = WARMUP_S) -> Report:
    """Start the server (`app`, unless `url` is given), load it with the conversations of
    `eval_set`, stop it; write the report as load.md into the folder `out` (None: don't).
    `workers` is the server's PLANQA_WORKERS (answer processes); the first `warmup`
    seconds of load (at most a quarter of `seconds`) are not counted."""
    if users < 1 or seconds <= 0:
        raise ValueError("--users must be at least 1 and --seconds positive")
    if url:
        _check_loopback(url)
    convs = conversations(eval_set)
    token = token or os.environ.get("PLANQA_API_TOKEN", "")
    with contextlib.ExitStack() as stack:
        if url:
            server = Server(url=url.rstrip("/"), pid=None)
        else:
            server = stack.enter_context(start_server(
                port, app=app, env={"PLANQA_WORKERS": str(workers)}))
        warmup = max(0.0, min(warmup, seconds / 4))
        if warmup:  # the memory figures are then growth under steady load
            asyncio.run(drive(server.url, users, warmup, convs, token))
        before = _rss_kb(server.pid) if server.pid else {}
        cpu0 = _cpu_seconds(server.pid) if server.pid else None
        tally = asyncio.run(drive(server.url, users, seconds, convs, token))
        after = _rss_kb(server.pid) if server.pid else {}
        cpu1 = _cpu_seconds(server.pid) if server.pid else None
    cpu_s = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    report = _report(tally, users, seconds, before, after, cpu_s, eval_set, workers, warmup)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "load.md").write_text(report.markdown(), encoding="utf-8")
    return report


def _worker_counts(text: str) -> list[int]:
    """"1,2" → [1, 2]; "" → 1 and the server's default (one per core), once each."""
    from planqa.config import default_workers

    try:
        counts = [int(x) for x in text.split(",") if x.strip()] or [1, default_workers()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of worker counts: {text!r}") from None
    if any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError("worker counts must be at least 1")
    return list(dict.fromkeys(counts))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.load", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20, help="concurrent users (default 20)")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration (default 60)")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument("--url", default="", help="load a running server instead (loopback only)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for load.md (default {DEFAULT_OUT}; `bench` refreshes "
                        "the committed copy)")
    parser.add_argument("--eval-set", type=Path, default=DEFAULT_EVAL_SET,
                        help=f"JSONL set the conversations come from (default {DEFAULT_EVAL_SET})")
    parser.add_argument("--workers", type=_worker_counts, default=_worker_counts(""),
                        help="the server's answer worker processes (PLANQA_WORKERS), one run "
                        "per count, comma-separated (default: 1 and the server's default, "
                        "one per core)")
    parser.add_argument("--app", type=Path, default=APP_PY,
                        help=f"the server script to start (default {APP_PY})")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`python -m tools.load`: run, print the report; 1 when any request failed, 2 when
    the server did not start or an argument is wrong."""
    args = build_parser().parse_args(argv)
    counts = [1] if args.url else args.workers  # a running server has its own
    reports = []
    try:
        for workers in counts:
            reports.append(run(users=args.users, seconds=args.seconds, port=args.port,
                               url=args.url, out=None, eval_set=args.eval_set, app=args.app,
                               workers=workers))
    except (RuntimeError, ValueError, OSError) as exc:  # the server's last lines say why
        print(f"tools.load: {exc}", file=sys.stderr)
        return 2
    text = "\n".join(r.markdown() for r in reports)
    if len(reports) > 1:
        text += "\n## Worker processes side by side\n\n| PLANQA_WORKERS | answers/s | p95 | " \
                "server RSS peak |\n|---|---|---|---|\n" + "".join(
                    f"| {r.workers} | {r.answers_per_s:.1f} | {r.p95_ms:.0f} ms | "
                    f"{'n/a' if r.rss_peak_mb is None else f'{r.rss_peak_mb:.0f} MB'} |\n"
                    for r in reports)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.md").write_text(text, encoding="utf-8")
    print(text, end="")
    print(f"\n(written to {args.out / 'load.md'})")
    return 1 if any(r.errors for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
