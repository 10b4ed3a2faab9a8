"""Consumers at scale (issue 11, points 4 and 5), each measured next to a floor in the same run.

- (p) how long one ``bus.publish(event)`` takes to *return* when it reaches 1,000 ``thread``
  consumers on the worker pool, next to the same with 1,000 ``dedicated=True`` consumers (a
  thread each: what every ``thread`` consumer was before the pool) and to a floor that puts
  the event into 1,000 ``queue.SimpleQueue``. Every round waits until all 1,000 consumers have
  the event (not timed), so a round that lost one cannot post a number.
- (m) memory per consumer: 10,000 consumers of each mode on one bus, measured with
  ``tracemalloc`` (Python allocations) and RSS (which also sees thread stacks). Printed, and
  bounded by a generous limit (50 KB per consumer) and by the number of threads, so a
  regression such as a thread per consumer fails.

Run measured: ``python -m pytest tests/benchmarks/test_consumers.py --benchmark-only -s``.
No timing is asserted.
"""

from __future__ import annotations

import gc
import queue
import resource
import threading
import tracemalloc
from collections.abc import Callable
from time import perf_counter_ns

import pytest

from rxbus import Event, EventBus
from rxbus.consumer import worker_pool
from rxbus.metrics import percentiles
from tests.benchmarks.conftest import Recorder
from tests.conftest import untraced, wait_until

FAN_OUT = 1_000
WARM_UP = 5  # first publishes left out of the percentiles
TOPIC = "bench.fan"


class Countdown:
    """A sink shared by many consumers: sets ``done`` once it has seen ``target`` events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.n = 0
        self.target = 0
        self.done = threading.Event()

    def arm(self, more: int) -> None:
        with self._lock:
            self.target = self.n + more
            self.done.clear()

    def hit(self, _event: object) -> None:
        with self._lock:
            self.n += 1
            if self.n == self.target:
                self.done.set()


def _measure(
    bench: Recorder, key: str, publish_one: Callable[[], object], sink: Countdown
) -> list[int]:
    """Rounds of one publish each, its return timed; each round then waits (also inside the
    pytest-benchmark round, not in the sample) until all 1,000 consumers have the event."""
    samples: list[int] = []

    def one_round() -> None:
        sink.arm(FAN_OUT)
        t0 = perf_counter_ns()
        publish_one()
        samples.append(perf_counter_ns() - t0)
        assert sink.done.wait(30), f"{sink.n - sink.target + FAN_OUT} of {FAN_OUT} delivered"

    calls = bench.measure(f"{key}.round", one_round, ops=1)
    assert sink.n == calls * FAN_OUT
    return samples[WARM_UP:] if len(samples) > 2 * WARM_UP else samples


def _report(bench: Recorder, key: str, samples: list[int]) -> None:
    p = percentiles(samples, (50, 99))
    bench.record(f"{key}.p50", p["p50"])
    bench.record(f"{key}.p99", p["p99"])
    if bench.enabled:
        print(
            f"\n{key}: publish returns in p50 {p['p50'] / 1e6:.3f} ms, "
            f"p99 {p['p99'] / 1e6:.3f} ms ({len(samples)} publishes)"
        )


def test_p_floor_simple_queues(bench: Recorder) -> None:
    """Floor: ``put`` into 1,000 ``SimpleQueue``, drained by 4 threads."""
    sink = Countdown()
    queues: list[queue.SimpleQueue[object]] = [queue.SimpleQueue() for _ in range(FAN_OUT)]
    stop = object()

    def drain(mine: list[queue.SimpleQueue[object]]) -> None:
        while True:
            for q in mine:
                try:
                    item = q.get(timeout=0.001)
                except queue.Empty:
                    continue
                if item is stop:
                    return
                sink.hit(item)

    threads = [threading.Thread(target=drain, args=(queues[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    event = Event(topic=TOPIC)
    puts = [q.put for q in queues]

    def publish_one() -> None:
        for put in puts:
            put(event)

    try:
        samples = _measure(bench, "p.floor", publish_one, sink)
    finally:
        for k in range(4):
            queues[k].put(stop)
        for t in threads:
            t.join(10)
    _report(bench, "p.floor", samples)


@pytest.mark.parametrize("dedicated", [False, True], ids=["pool", "dedicated"])
def test_p_publish_to_1000_thread_consumers(bench: Recorder, dedicated: bool) -> None:
    """``bus.publish(event)`` reaching 1,000 ``thread`` consumers: time until it returns."""
    sink = Countdown()
    key = "p.dedicated" if dedicated else "p.pool"
    with EventBus(name=f"bench-{key}") as bus:
        for k in range(FAN_OUT):
            bus.subscribe(sink.hit, topic=TOPIC, mode="thread", name=f"t{k}", dedicated=dedicated)
        event = Event(topic=TOPIC)
        samples = _measure(bench, key, lambda: bus.publish(event), sink)
        threads = threading.active_count()
    if bench.enabled:
        print(f"\n{key}: {threads} threads alive with {FAN_OUT} thread consumers")
    _report(bench, key, samples)
    for q in ("p50", "p99"):
        bench.compare(
            f"(p) publish to 1,000 thread consumers, {'dedicated threads' if dedicated else 'pool'} {q}",
            subject=f"{key}.{q}",
            floor=f"p.floor.{q}",
            note="target: returns within 1 ms",
        )


# -- (m) memory per consumer ---------------------------------------------------------------------

MEMORY_CONSUMERS = 10_000
MAX_BYTES_PER_CONSUMER = 50_000  # generous: a thread per consumer (8 MB of stack) fails it


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def _noop(_: Event) -> None:
    return None


async def _anoop(_: Event) -> None:
    return None


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", ["sync", "thread", "async"])
def test_m_memory_per_consumer(mode: str) -> None:
    """10,000 consumers of one mode on one bus: bytes per consumer, printed and bounded."""
    sink = _anoop if mode == "async" else _noop
    bus = EventBus(name=f"bench-memory-{mode}")
    try:
        if mode == "async":
            bus.loop  # noqa: B018 - start the bus's loop thread before measuring
        gc.collect()
        threads_before = threading.active_count()
        rss0 = _rss_bytes()
        tracemalloc.start()
        try:
            t0, _ = tracemalloc.get_traced_memory()
            # under --cov: 10,000 subscribes, each line traced, took most of a minute
            with untraced():
                for k in range(MEMORY_CONSUMERS):
                    bus.subscribe(sink, topic=TOPIC, mode=mode, name=f"m{k}")  # type: ignore[arg-type]
            gc.collect()
            t1, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        rss1 = _rss_bytes()
        threads_after = threading.active_count()
        # every consumer works: one event reaches all of them
        bus.publish(TOPIC)
        wait_until(
            lambda: sum(c.stats.delivered for c in bus.consumers) == MEMORY_CONSUMERS,
            timeout=120,
            what="one delivery per consumer",
        )
        threads_after = max(threads_after, threading.active_count())
    finally:
        assert bus.close(timeout=60) == []
    traced = (t1 - t0) / MEMORY_CONSUMERS
    rss = (rss1 - rss0) / MEMORY_CONSUMERS
    print(
        f"\n(m) {mode}: {traced:,.0f} bytes per consumer (tracemalloc), "
        f"{rss:,.0f} bytes per consumer (RSS), {MEMORY_CONSUMERS:,} consumers, "
        f"{threading.active_count()} threads"
    )
    assert traced < MAX_BYTES_PER_CONSUMER
    assert rss < MAX_BYTES_PER_CONSUMER
    # A thread's stack is mostly untouched, so RSS alone barely sees a thread per consumer
    # (~29 KB each measured with dedicated=True): count the threads too.
    assert threads_after - threads_before <= worker_pool().max_workers + 1  # + the bus loop
