"""Many producers at once: exactly-once delivery, per-producer order, no concurrent on_next."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from typing import Any

import pytest

from rxbus import Event, EventBus
from tests.conftest import wait_until

PER_PRODUCER = 5_000
THREADS = 8


class OverlapDetector:
    """A sink that records every event and notices if on_next is ever entered concurrently."""

    def __init__(self) -> None:
        self.inside = 0
        self.max_inside = 0
        self.guard = threading.Lock()
        self.by_producer: dict[str, list[int]] = defaultdict(list)
        self.count = 0

    def on_next(self, e: Event) -> None:
        with self.guard:
            self.inside += 1
            self.max_inside = max(self.max_inside, self.inside)
        # widen the window in which a second caller would be caught
        for _ in range(20):
            pass
        self.by_producer[e.source].append(e.data["seq"])
        self.count += 1
        with self.guard:
            self.inside -= 1


def run_producers(bus: EventBus, topics: tuple[str, ...]) -> None:
    barrier = threading.Barrier(THREADS + 1)

    def produce(k: int) -> None:
        barrier.wait()
        for seq in range(PER_PRODUCER):
            bus.publish(topics[seq % len(topics)], {"seq": seq}, source=f"t{k}")

    async def async_producer() -> None:
        for seq in range(PER_PRODUCER):
            bus.publish(topics[seq % len(topics)], {"seq": seq}, source="asyncio")
            if seq % 100 == 0:
                await asyncio.sleep(0)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    barrier.wait()
    asyncio.run(async_producer())
    for t in threads:
        t.join()


@pytest.mark.parametrize("mode", ["sync", "thread", "async"])
def test_eight_threads_and_a_loop_deliver_exactly_once_in_order(mode: str) -> None:
    bus = EventBus(history=0)
    everything = OverlapDetector()
    hooks_only = OverlapDetector()
    bus.subscribe(everything, topic="**", mode=mode, queue_size=1_000)  # type: ignore[arg-type]
    bus.subscribe(hooks_only, topic="hook.*", mode=mode, queue_size=1_000)  # type: ignore[arg-type]
    run_producers(bus, ("hook.tool", "cli.exit"))
    assert bus.close(timeout=30) == []

    producers = [f"t{k}" for k in range(THREADS)] + ["asyncio"]
    assert everything.count == PER_PRODUCER * len(producers)
    for p in producers:
        assert everything.by_producer[p] == list(range(PER_PRODUCER)), p
        assert hooks_only.by_producer[p] == list(range(0, PER_PRODUCER, 2)), p
    assert everything.max_inside == 1 and hooks_only.max_inside == 1
    m = bus.metrics()
    assert m["published"] == PER_PRODUCER * len(producers)
    assert m["dropped"] == m["failed"] == m["dead_lettered"] == 0


def test_subscribe_and_dispose_while_publishing_keep_routes_correct() -> None:
    """Consumers come and go under concurrent publishing; each sees only its own lifetime's
    events, and none published after its dispose returns."""
    bus = EventBus(history=0)
    stop = threading.Event()
    published = [0]

    def produce() -> None:
        n = 0
        while not stop.is_set():
            bus.publish("load.x", {"n": n})
            n += 1
        published[0] = n

    producers = [threading.Thread(target=produce) for _ in range(2)]
    for t in producers:
        t.start()
    late: list[Any] = []
    for round_ in range(200):
        got: list[Event] = []
        c = bus.subscribe(got.append, topic="load.*" if round_ % 2 else "load.x")
        wait_until(lambda got=got: got, 10, "the new consumer's first event", interval=0.001)
        c.dispose()
        seen = len(got)
        # after dispose returned, at most the publishes already past routing may land
        marker = bus.publish("load.x", {"n": -1})
        late.extend(e for e in got[seen:] if e is marker)
    stop.set()
    for t in producers:
        t.join()
    assert late == []
    bus.close()


def test_publishing_from_a_thread_into_an_async_consumer_runs_on_its_loop() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen_loops: list[Any] = []
        done = asyncio.Event()
        bus = EventBus()

        async def sink(e: Event) -> None:
            seen_loops.append(asyncio.get_running_loop())
            if e.data["i"] == 999:
                done.set()

        bus.subscribe(sink)
        t = threading.Thread(target=lambda: [bus.publish("a", {"i": i}) for i in range(1000)])
        t.start()
        await asyncio.wait_for(done.wait(), timeout=30)
        t.join()
        assert len(seen_loops) == 1000 and set(seen_loops) == {loop}
        assert await bus.aclose() == []

    asyncio.run(main())
