"""Latency statistics for the tools: one percentile, timed calls, the load average.

`tools.bench` and `tools.load` both report p50/p95/p99 through `percentile` here, so a
"p95" means the same in bench/report.md and bench/load.md.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
        """The q-th percentile (0..100) in seconds, by `percentile`."""
        return percentile(self.cpu if cpu else self.wall, q)

    def ms(self, q: float, cpu: bool = False) -> float:
        return 1000.0 * self.p(q, cpu)

    @property
    def load(self) -> str:
        return f"{self.load_before:.2f} → {self.load_after:.2f}"


def percentile(samples: Iterable[float], q: float) -> float:
    """The q-th percentile (q in 0..100) by nearest rank: the smallest sample that at
    least q% of the samples do not exceed; NaN for no samples.

    Nearest rank, not linear interpolation, because the targets read "p95 ≤ 500 ms",
    i.e. 95% of requests took at most that long: the nearest-rank p95 is a latency some
    request really had and meets exactly that statement for any n, while an
    interpolated p95 can be a value between two samples that no request took, and its
    meaning shifts with n. q=0 gives the minimum, q=100 the maximum; the median of an
    even count is the lower of the two middle samples.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in 0..100, not {q}")
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    # round() first so that float noise (n * 99.9 / 100) cannot push the rank up by one
    rank = max(1, math.ceil(round(len(ordered) * q / 100, 9)))
    return float(ordered[rank - 1])


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


def loadavg_text() -> str:
    try:
        fields = Path("/proc/loadavg").read_text().split()
        return f"{fields[0]} / {fields[1]} / {fields[2]} (1/5/15 min; running/total {fields[3]})"
    except (OSError, IndexError):
        one, five, fifteen = os.getloadavg()
        return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min)"
