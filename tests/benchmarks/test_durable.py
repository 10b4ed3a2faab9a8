"""``fsync="always"`` throughput with 1 and 8 publishing threads, next to ``fsync="never"``.

With ``"always"`` each ``on_next`` returns only after an fsync that covers its event; group
commit lets the events of many threads share one fsync, so 8 threads should get far more than
8 times the single-thread figure's share. The floor is the same sink with ``fsync="never"``
(``on_next`` queues, one ``flush`` at the end), measured in the same run. One round: ``EVENTS``
events split over the threads, then ``flush()``; each round checks that all were written.
Run measured: ``pytest tests/benchmarks/test_durable.py --benchmark-only``.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import pytest

from rxbus import Event
from rxbus.sinks import JsonlSink, SQLiteStore
from tests.benchmarks.conftest import Recorder

EVENTS = 1600

pytestmark = pytest.mark.timeout(600)


def make_sink(kind: str, path: Path, policy: str) -> Any:
    if kind == "jsonl":
        return JsonlSink(path.with_suffix(".jsonl"), fsync=policy)  # type: ignore[arg-type]
    return SQLiteStore(path.with_suffix(".db"), fsync=policy)  # type: ignore[arg-type]


@pytest.mark.parametrize("threads", [1, 8])
@pytest.mark.parametrize("policy", ["never", "always"])
@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_publish_throughput(
    bench: Recorder, tmp_path: Path, kind: str, policy: str, threads: int
) -> None:
    """ns per event for ``threads`` publishers into one sink, durable or not."""
    events = [Event(topic="durable.bench", data={"n": n, "pad": "x" * 100}) for n in range(EVENTS)]
    share = EVENTS // threads
    count = itertools.count()
    opened: list[Any] = []

    def setup() -> tuple[tuple[Any], dict[str, Any]]:
        sink = make_sink(kind, tmp_path / f"round{next(count)}", policy)
        opened.append(sink)
        return (sink,), {}

    def run(sink: Any) -> None:
        def publisher(k: int) -> None:
            for event in events[k * share : (k + 1) * share]:
                sink.on_next(event)

        workers = [threading.Thread(target=publisher, args=(k,)) for k in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert sink.flush(timeout=120)
        assert sink.stats["written"] == share * threads

    bench.benchmark.group = f"durable-{kind}"
    try:
        bench.benchmark.pedantic(run, setup=setup, rounds=3, warmup_rounds=0)
    finally:
        for sink in opened:
            sink.close()
    stats = getattr(bench.benchmark, "stats", None)
    key = f"durable_{kind}.{policy}_{threads}t"
    if bench.enabled and stats is not None and stats.stats:
        ops = share * threads
        bench.report.record(key, stats.stats.median * 1e9 / ops, stats.stats.min * 1e9 / ops)
    if policy == "always":
        bench.compare(
            f"{kind} fsync=always, {threads} thread(s) / fsync=never",
            subject=key,
            floor=f"durable_{kind}.never_{threads}t",
            note="durable on return vs queued",
        )
        if threads == 8:
            bench.compare(
                f"{kind} fsync=always, 8 threads / 1 thread (per event; < 1: group commit)",
                subject=key,
                floor=f"durable_{kind}.always_1t",
            )
