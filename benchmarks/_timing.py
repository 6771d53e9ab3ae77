"""Shared by every benchmark: time several methods round robin and report per-round ratios.

Methods run one step each per round, in turn (after warm-up), so a change in machine load during the run
lands on every method of a round alike; a method's cost is then the median over rounds of its time
divided by the reference's time in the same round, with the spread (interquartile range, min-max).
Each call's process CPU time (all threads) is kept too: on a machine shared with other processes, wall
time also counts the time this process waited for a core, CPU time does not (it still counts cache
misses caused by neighbours, and OpenMP threads spinning).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Ratio:
    """Summary of per-round ratios (method time / reference time in the same round)."""

    median: float
    q1: float
    q3: float
    lo: float
    hi: float

    def __str__(self) -> str:
        return f"{self.median:.3f} (IQR {self.q1:.3f}-{self.q3:.3f}, min-max {self.lo:.3f}-{self.hi:.3f})"


def summarise(ratios: list[float]) -> Ratio:
    if len(ratios) < 2:
        r = ratios[0]
        return Ratio(r, r, r, r, r)
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return Ratio(statistics.median(ratios), q1, q3, min(ratios), max(ratios))


def round_robin(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 2,
                sync: Callable[[], None] | None = None, cpu: dict[str, list[float]] | None = None
                ) -> dict[str, list[float]]:
    """Call every `fns[name]()` `warmup` times, then `rounds` rounds of one call each, in turn; the order
    rotates by one every round (no method always runs right after the same other one).
    -> name -> wall seconds per round; `cpu`, when given, is filled with the process CPU seconds likewise.
    `sync` (e.g. `torch.cuda.synchronize`) runs before and after each call."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if sync is not None:
                sync()
            start, start_cpu = time.perf_counter(), time.process_time()
            fns[name]()
            if sync is not None:
                sync()
            times[name].append(time.perf_counter() - start)
            if cpu is not None:
                cpu.setdefault(name, []).append(time.process_time() - start_cpu)
    return times


def ratios(times: dict[str, list[float]], reference: str) -> dict[str, Ratio]:
    """name -> summary of `times[name][r] / times[reference][r]` over rounds r."""
    ref = times[reference]
    return {name: summarise([t / b for t, b in zip(ts, ref)]) for name, ts in times.items()}


def median_ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times)


def report(times: dict[str, list[float]], reference: str, extra: dict[str, str] | None = None,
           label: str = "method", cpu: dict[str, list[float]] | None = None) -> dict[str, Ratio]:
    """Print one row per method: median ms and the median per-round ratio over `reference` with its
    spread, for wall time and (given `cpu`) process CPU time. -> the wall-time ratios."""
    extra = extra or {}
    rs = ratios(times, reference)
    width = max(len(label), *(len(n) for n in times)) + 2
    for kind, data in (("wall", times), ("cpu", cpu)):
        if data is None:
            continue
        r = ratios(data, reference)
        print(f"{label:<{width}}{kind + ' ms':>10}  x {reference} per round: median (IQR, min-max)"
              + ("   " + extra["__header__"] if "__header__" in extra else ""))
        for name in sorted(times, key=lambda n: rs[n].median):
            print(f"{name:<{width}}{median_ms(data[name]):>10.2f}  {r[name]}   {extra.get(name, '')}".rstrip())
    return rs
