"""Counters and latency percentiles for the bus and the ``measure`` operator."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from typing import Any

__all__ = ["Counter", "LatencyRecorder", "MetricsRegistry", "percentiles"]


class Counter:
    """A counter safe to increment from many threads without a lock.

    ``itertools.count.__next__`` is atomic in CPython, so concurrent increments are never lost.
    """

    __slots__ = ("count", "increment")

    def __init__(self) -> None:
        self.count = itertools.count()
        """``next(counter.count)`` adds one and returns the count before it."""
        self.increment = self.count.__next__
        """Add one. Bound once so the hot path pays a single call."""

    @property
    def value(self) -> int:
        # repr(count(n)) == "count(n)": the next value, i.e. how many were taken. (Its
        # __reduce__ would say the same, but itertools pickling is gone in Python 3.14.)
        return int(repr(self.count)[6:-1])


def percentiles(
    samples: list[int] | list[float], qs: tuple[float, ...] = (50, 90, 99, 99.9)
) -> dict[str, float]:
    """Nearest-rank percentiles of ``samples`` as ``{"p50": ..., "p99": ...}`` (empty if none)."""
    if not samples:
        return {}
    ordered = sorted(samples)
    n = len(ordered)
    out: dict[str, float] = {}
    for q in qs:
        rank = min(n - 1, max(0, math.ceil(q / 100 * n) - 1))
        key = f"p{q:g}".replace(".", "_")
        out[key] = ordered[rank]
    return out


class LatencyRecorder:
    """Keeps the last ``size`` latency samples (ns) and a total count.

    ``record`` is a deque append (atomic), so it needs no lock.
    """

    __slots__ = ("_count", "_samples", "name")

    def __init__(self, name: str = "", size: int = 8192) -> None:
        self.name = name
        self._samples: deque[int] = deque(maxlen=size)
        self._count = Counter()

    def record(self, ns: int) -> None:
        self._samples.append(ns)
        self._count.increment()

    @property
    def count(self) -> int:
        return self._count.value

    def snapshot(self) -> dict[str, Any]:
        """``{"count": n, "p50": ns, "p90": ns, "p99": ns, "p99_9": ns, "max": ns}``."""
        samples = list(self._samples)
        out: dict[str, Any] = {"count": self.count}
        out.update(percentiles(samples))
        if samples:
            out["max"] = max(samples)
        return out


class Measurement:
    """What ``rxbus.operators.measure(name)`` records: count, rate and latency percentiles."""

    __slots__ = ("_count", "_first", "_last", "latency", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._count = Counter()
        self.latency = LatencyRecorder(name)
        self._first: float | None = None
        self._last: float | None = None

    def tick(self, now: float | None = None) -> None:
        """Count one item passing at ``now`` (seconds, monotonic)."""
        t = time.monotonic() if now is None else now
        if self._first is None:
            self._first = t
        self._last = t
        self._count.increment()

    @property
    def count(self) -> int:
        return self._count.value

    def snapshot(self) -> dict[str, Any]:
        count = self.count
        span = (self._last or 0.0) - (self._first or 0.0)
        return {
            "count": count,
            "rate_per_s": (count - 1) / span if count > 1 and span > 0 else 0.0,
            "latency_ns": self.latency.snapshot(),
        }


class MetricsRegistry:
    """Named measurements of one bus (no global registry: each bus owns one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._measurements: dict[str, Measurement] = {}

    def measurement(self, name: str) -> Measurement:
        """The measurement called ``name``, created on first use."""
        m = self._measurements.get(name)
        if m is None:
            with self._lock:
                m = self._measurements.setdefault(name, Measurement(name))
        return m

    def snapshot(self) -> dict[str, Any]:
        return {name: m.snapshot() for name, m in sorted(self._measurements.items())}
