"""Latency statistics for the tools: one percentile, timed calls, the load average.

`tools.bench` and `tools.load` both report p50/p95/p99 through `percentile` here, so a
"p95" means the same in bench/report.md and bench/load.md.
"""

from __future__ import annotations

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


def loadavg_text() -> str:
    try:
        fields = Path("/proc/loadavg").read_text().split()
        return f"{fields[0]} / {fields[1]} / {fields[2]} (1/5/15 min; running/total {fields[3]})"
    except (OSError, IndexError):
        one, five, fifteen = os.getloadavg()
        return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min)"
