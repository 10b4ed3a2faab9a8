"""Routing that does not grow with patterns or topics (issue 11, point 3).

- (h) publishing to a topic never seen before (a route-cache miss, resolved through the pattern
  trie) with 1,000 patterns subscribed, next to the same with 10 patterns; 5 of them match in
  both. Target: within 2x.
- (i) publishing to ever-new topics, every one a miss, next to publishing to one cached topic;
  target: within 3x.
- Memory: publishing to ever more distinct topics keeps every cache bounded. This one is a test,
  not a benchmark: it asserts that the objects held stop growing once the caches are full
  (``ROUTE_CACHE_LIMIT``, ``TOPIC_METRICS_LIMIT``, the topic-validation cache).

Every round checks what the consumers received. Nothing here asserts a timing.
"""

from __future__ import annotations

import gc
import itertools
import sys
from collections.abc import Iterator

import pytest

from rxbus import EventBus
from rxbus.bus._routing import ROUTE_CACHE_LIMIT, TOPIC_METRICS_LIMIT
from tests.benchmarks.conftest import Recorder
from tests.benchmarks.test_core import Tally
from tests.conftest import untraced

BATCH = 1_000
MATCHING = ["app.*.done", "app.**", "**", "*.*.done", "**.done"]  # match every app.<x>.done


@pytest.fixture
def bus() -> Iterator[EventBus]:
    bus = EventBus(history=0)
    yield bus
    bus.close()


def _subscribe(bus: EventBus, patterns: int) -> Tally:
    """``patterns`` subscriptions: the 5 matching ones, the rest on topics never published."""
    tally = Tally()
    for p in MATCHING:
        bus.subscribe(tally.hit, topic=p)
    for i in range(patterns - len(MATCHING)):
        bus.subscribe(tally.hit, topic=f"other{i % 50}.p{i}.*")
    return tally


_fresh = itertools.count()


def _new_topics() -> list[str]:
    """``BATCH`` topics no earlier round published (a cache miss each)."""
    return [f"app.t{next(_fresh)}.done" for _ in range(BATCH)]


@pytest.mark.parametrize("patterns", [10, 1_000])
def test_h_new_topic(bench: Recorder, bus: EventBus, patterns: int) -> None:
    """A topic seen for the first time, ``patterns`` patterns subscribed, 5 of which match."""
    tally = _subscribe(bus, patterns)
    event_data = {"n": 1}
    rounds: list[list[str]] = []

    def run() -> None:
        topics = _new_topics()
        rounds.append(topics)
        for topic in topics:
            bus.publish(topic, event_data)

    calls = bench.measure(f"h{patterns}.bus", run, ops=BATCH)
    assert calls == len(rounds)
    assert tally.n == calls * BATCH * len(MATCHING)
    if patterns == 1_000:
        bench.compare(
            "(h) new topic, 1,000 patterns vs 10 (5 match)",
            subject="h1000.bus",
            floor="h10.bus",
            target=2.0,
        )


def test_i_cached_topic(bench: Recorder, bus: EventBus) -> None:
    """Floor for (i): the same publish to one topic, cached after the first."""
    tally = _subscribe(bus, 10)
    data = {"n": 1}

    def run() -> None:
        for _ in range(BATCH):
            bus.publish("app.cached.done", data)

    calls = bench.measure("i.cached", run, ops=BATCH)
    assert tally.n == calls * BATCH * len(MATCHING)


def test_i_every_topic_new(bench: Recorder, bus: EventBus) -> None:
    """Each publish to a topic never seen before: validated, resolved and cached anew."""
    tally = _subscribe(bus, 10)
    data = {"n": 1}

    def run() -> None:
        for topic in _new_topics():
            bus.publish(topic, data)

    calls = bench.measure("i.new", run, ops=BATCH)
    assert tally.n == calls * BATCH * len(MATCHING)
    bench.compare(
        "(i) every publish to a new topic vs one cached topic", subject="i.new", floor="i.cached",
        target=3.0,
    )  # fmt: skip


def test_distinct_topics_hold_bounded_memory(bus: EventBus) -> None:
    """Once the caches are full, 65,536 more distinct topics leave the memory where it was,
    and every event is still delivered and counted.

    The caches restart when full: the route cache every ``ROUTE_CACHE_LIMIT`` (16,384) new
    topics, the topic-validation cache every 65,536, the per-topic counters stop growing at
    ``TOPIC_METRICS_LIMIT``. So after 65,536 more topics every cache is at the same point of
    its cycle as before them, and the objects Python holds should be the same in number: a
    leak of one object per topic would add 65,536.
    """
    tally = _subscribe(bus, 10)
    data = {"n": 1}
    cycle = 65_536
    assert cycle % ROUTE_CACHE_LIMIT == 0 and cycle > TOPIC_METRICS_LIMIT

    def publish(n: int) -> None:
        for topic in [f"app.t{next(_fresh)}.done" for _ in range(n)]:
            bus.publish(topic, data)

    publish(cycle + 1_000)  # every cache full or restarted at least once
    gc.collect()
    blocks_before = sys.getallocatedblocks()
    with untraced():  # under --cov: the same lines as the cycle above, at a third of the time
        publish(cycle)
    gc.collect()
    blocks_after = sys.getallocatedblocks()
    assert tally.n == (2 * cycle + 1_000) * len(MATCHING)
    assert blocks_after - blocks_before < 2_000, (blocks_before, blocks_after)
    metrics = bus.metrics()
    assert metrics["published"] == 2 * cycle + 1_000
    assert len(metrics["topics"]) <= TOPIC_METRICS_LIMIT + 1
