"""Shared helpers for benchmark modules: measure a subject next to its floor, report ratios.

Every benchmark measures a batch of operations per round (the same batch for the subject and
its floor) and records nanoseconds per operation. A module declares which measurements to
compare; the ratios (subject / floor) are printed at the end of the session. Nothing here asserts
a timing: under ``--benchmark-disable`` each function runs once, nothing is recorded and no table
is printed.

    def test_floor(bench):
        calls = bench.measure("fanout.floor", lambda: [cb(e) for cb in callbacks], ops=1)
        assert seen == calls * len(callbacks)     # delivery verified, fast or not

    def test_subject(bench):
        calls = bench.measure("fanout.bus", publish_once, ops=1)
        bench.compare("fan-out to 10", subject="fanout.bus", floor="fanout.floor", target=3.0)

Set ``RXBUS_BENCH_JSON=/path/out.json`` to also write the measurements and ratios as JSON (the
``scripts/bench_core.py`` report reads it).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import untraced

__all__ = ["BenchReport", "Comparison", "Recorder"]


@dataclass(frozen=True)
class Comparison:
    """One reported ratio: ``subject / floor``, and the ratio the issue asks for (if any)."""

    label: str
    subject: str
    floor: str
    target: float | None = None
    note: str = ""


@dataclass
class BenchReport:
    """What one session measured: ``{key: {"median": ns, "min": ns}}`` and the comparisons."""

    values: dict[str, dict[str, float]] = field(default_factory=dict)
    comparisons: dict[str, Comparison] = field(default_factory=dict)

    def record(self, key: str, median_ns: float, min_ns: float | None = None) -> None:
        """Store a measurement (per operation, in nanoseconds)."""
        self.values[key] = {"median": median_ns, "min": median_ns if min_ns is None else min_ns}

    def compare(self, comparison: Comparison) -> None:
        """Declare a ratio to report; declaring the same label again replaces it."""
        self.comparisons[comparison.label] = comparison

    def rows(self) -> list[dict[str, Any]]:
        """One row per comparison whose subject and floor were both measured."""
        out: list[dict[str, Any]] = []
        for c in self.comparisons.values():
            subject, floor = self.values.get(c.subject), self.values.get(c.floor)
            if subject is None or floor is None or floor["median"] <= 0 or floor["min"] <= 0:
                continue
            ratio = subject["median"] / floor["median"]
            out.append(
                {
                    "label": c.label,
                    "subject": c.subject,
                    "floor": c.floor,
                    "subject_ns": subject["median"],
                    "floor_ns": floor["median"],
                    "ratio": ratio,
                    "ratio_min": subject["min"] / floor["min"],
                    "target": c.target,
                    "met": None if c.target is None else ratio <= c.target,
                    "note": c.note,
                }
            )
        return out

    def markdown(self) -> str:
        """The ratios as a markdown table."""
        lines = [
            "| benchmark | rxbus (ns/op) | floor (ns/op) | ratio (median) | ratio (min) | target |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for r in self.rows():
            if r["target"] is None:
                target = r["note"] or "-"
            else:
                target = f"<= {r['target']:g}x {'met' if r['met'] else '**missed**'}"
                if r["note"]:
                    target += f" ({r['note']})"
            lines.append(
                f"| {r['label']} | {r['subject_ns']:,.0f} | {r['floor_ns']:,.0f} | "
                f"{r['ratio']:.2f}x | {r['ratio_min']:.2f}x | {target} |"
            )
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "values": self.values,
            "ratios": self.rows(),
        }


_REPORT = pytest.StashKey[BenchReport]()


def _report(config: pytest.Config) -> BenchReport:
    report = config.stash.get(_REPORT, None)
    if report is None:
        report = config.stash[_REPORT] = BenchReport()
    return report


class Recorder:
    """The ``bench`` fixture: runs one pytest-benchmark measurement and records it per op."""

    def __init__(self, benchmark: Any, report: BenchReport) -> None:
        self.benchmark = benchmark
        self.report = report

    @property
    def enabled(self) -> bool:
        """False under ``--benchmark-disable`` (each function then runs once, unmeasured)."""
        return bool(self.benchmark.enabled)

    def measure(
        self, key: str, fn: Callable[[], object], *, ops: int, group: str | None = None
    ) -> int:
        """Benchmark ``fn`` (one round = ``ops`` operations) and record its ns per operation.

        Args:
            key: the measurement's name in the report, e.g. ``"fanout.floor"``.
            fn: one round.
            ops: operations per round (the per-op figure is the round's time / ``ops``).
            group: pytest-benchmark table group; default the part of ``key`` before the dot.

        Returns:
            How many times ``fn`` ran (calibration, warm-up and measured rounds included), so
            the caller can check that every operation was delivered.
        """
        calls = 0

        def counted() -> None:
            nonlocal calls
            calls += 1
            fn()

        self.benchmark.group = group or key.split(".")[0]
        self.benchmark.extra_info["ops_per_round"] = ops
        self.benchmark(counted)
        stats = getattr(self.benchmark, "stats", None)
        if self.enabled and stats is not None and stats.stats:
            s = stats.stats
            self.report.record(key, s.median * 1e9 / ops, s.min * 1e9 / ops)
        return calls

    def record(self, key: str, ns: float) -> None:
        """Record a value measured by the test itself (e.g. a latency percentile), if enabled."""
        if self.enabled:
            self.report.record(key, ns)
            self.benchmark.extra_info[key] = ns

    def compare(
        self,
        label: str,
        *,
        subject: str,
        floor: str,
        target: float | None = None,
        note: str = "",
    ) -> None:
        """Report ``subject / floor`` at the end of the session (never asserted)."""
        self.report.compare(Comparison(label, subject, floor, target, note))


@pytest.fixture(autouse=True)
def _untraced_benchmark() -> Iterator[None]:
    """Coverage's line tracer off in the test's own thread (threads it starts keep theirs).

    ``make test`` runs each benchmark once, so that none rots; the tests elsewhere measure the
    same code. Under ``--cov`` the tracer took about 20 of this directory's 55 CPU-seconds.
    """
    with untraced():
        yield


@pytest.fixture
def bench(benchmark: Any, request: pytest.FixtureRequest) -> Recorder:
    """A :class:`Recorder` over this test's ``benchmark`` fixture and the session's report."""
    return Recorder(benchmark, _report(request.config))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    report = config.stash.get(_REPORT, None)
    if report is None or not report.values:
        return
    terminalreporter.section("rxbus benchmark ratios (subject / floor, same run)")
    for line in report.markdown().splitlines():
        terminalreporter.write_line(line)
    out = os.environ.get("RXBUS_BENCH_JSON")
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(report.as_json(), fh, indent=2)
        terminalreporter.write_line(f"ratios written to {out}")
