"""``thread`` consumers on the bounded worker pool (issue 11, point 4)."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import defaultdict

import pytest

from rxbus import Event, EventBus, Overflow
from rxbus.consumer import BATCH, WorkerPool, worker_pool
from tests.conftest import wait_until


def _conserved(bus: EventBus) -> None:
    for c in bus.consumers:
        s = c.stats
        assert s.received == s.delivered + s.failed + s.dropped + s.queued, c.name


class TestOrderAndSerialisation:
    def test_many_producers_keep_each_consumers_order_and_never_overlap(self) -> None:
        """8 producers x 300 events into 20 pooled consumers: every consumer gets every event,
        each producer's in order, and its on_next never runs on two workers at once."""
        producers, per_producer, consumers = 8, 300, 20
        seen: dict[str, list[tuple[int, int]]] = defaultdict(list)
        inside: dict[str, threading.Lock] = {}
        overlaps: list[str] = []

        def make_sink(name: str):
            guard = inside[name] = threading.Lock()

            def sink(e: Event) -> None:
                if not guard.acquire(blocking=False):
                    overlaps.append(name)
                    return
                try:
                    seen[name].append((e.data["p"], e.data["i"]))
                finally:
                    guard.release()

            return sink

        with EventBus(name="pool-order") as bus:
            for k in range(consumers):
                bus.subscribe(make_sink(f"c{k}"), mode="thread", name=f"c{k}")
            start = threading.Barrier(producers)

            def produce(p: int) -> None:
                start.wait()
                for i in range(per_producer):
                    bus.publish("load.x", {"p": p, "i": i})

            threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            total = producers * per_producer
            wait_until(
                lambda: all(c.stats.delivered == total for c in bus.consumers),
                what="every consumer to deliver every event",
            )
            _conserved(bus)
        assert overlaps == []
        for name, got in seen.items():
            for p in range(producers):
                assert [i for q, i in got if q == p] == list(range(per_producer)), name

    def test_a_busy_consumer_does_not_starve_another(self) -> None:
        """With one worker, a consumer with hundreds queued yields after a batch: another
        consumer's event is delivered long before the busy one is done."""
        log: list[str] = []
        with EventBus(name="pool-fair") as bus:
            bus._host.executor = WorkerPool(1, name="rxbus-fair")
            bus.subscribe(lambda e: log.append("busy"), topic="busy", mode="thread", name="busy")
            bus.subscribe(lambda e: log.append("other"), topic="other", mode="thread")
            for _ in range(10 * BATCH):
                bus.publish("busy")
            before = len(log)
            bus.publish("other")
            wait_until(lambda: len(log) == 10 * BATCH + 1, what="every event")
        # at most the batch running when "other" came, and one started just before it came
        assert log.index("other") <= before + 2 * BATCH


class TestBounded:
    def test_a_thousand_thread_consumers_need_a_bounded_number_of_threads(self) -> None:
        """1,000 thread consumers and a few publishes start at most the pool's bound of
        threads, not one per consumer."""
        before = {t.ident for t in threading.enumerate()}
        with EventBus(name="pool-threads") as bus:
            counts = [0] * 1000

            def make_sink(k: int):
                def sink(_: Event) -> None:
                    counts[k] += 1

                return sink

            for k in range(1000):
                bus.subscribe(make_sink(k), mode="thread", name=f"t{k}")
            for _ in range(3):
                bus.publish("fan.out")
            wait_until(lambda: sum(counts) == 3000, what="3,000 deliveries")
            new = [t for t in threading.enumerate() if t.ident not in before]
            assert len(new) <= worker_pool().max_workers
            assert all(t.name.startswith("rxbus-worker-") for t in new)
            assert worker_pool().max_workers <= 32
            _conserved(bus)


class TestBlockOnThePool:
    def test_pool_workers_never_wait_on_full_block_queues(self) -> None:
        """More producing consumers than workers, all publishing into one BLOCK consumer with
        room for one event: if a worker waited for room, every worker could wait on a queue
        only a worker can drain. A worker queues past the bound instead; nothing is lost."""
        pool = worker_pool()
        fan_in = 3 * pool.max_workers
        with EventBus(name="pool-block") as bus:
            got: list[int] = []
            sink = bus.subscribe(
                lambda e: got.append(e.data["n"]),
                topic="sink",
                mode="thread",
                queue_size=1,
                overflow=Overflow.BLOCK,
            )
            release = threading.Event()

            def forward(e: Event) -> None:
                release.wait(10)  # every producing consumer holds a worker at the same time
                for n in range(5):
                    bus.publish("sink", {"n": n})

            for k in range(fan_in):
                bus.subscribe(forward, topic="go", mode="thread", name=f"fwd{k}", dedicated=k == 0)
            bus.publish("go")
            release.set()
            wait_until(lambda: len(got) == 5 * fan_in, what="every forwarded event")
            assert sink.stats.dropped == 0
            _conserved(bus)

    def test_a_thread_outside_the_pool_still_waits_for_room(self) -> None:
        """BLOCK still blocks an ordinary producer: it waits until the worker makes room."""
        gate = threading.Event()
        with EventBus(name="pool-producer") as bus:
            c = bus.subscribe(
                lambda e: gate.wait(10), mode="thread", queue_size=1, overflow=Overflow.BLOCK
            )
            bus.publish("a")  # taken by the worker, which waits on the gate
            wait_until(lambda: c.stats.queued == 0, what="the worker to take the first event")
            bus.publish("a")  # fills the queue
            producer = threading.Thread(target=bus.publish, args=("a",))
            producer.start()
            wait_until(lambda: c.blocked == 1, what="the producer to wait for room")
            assert c.stats.queued == 1
            gate.set()
            producer.join(10)
            assert not producer.is_alive()
            wait_until(lambda: c.stats.delivered == 3, what="three deliveries")


@pytest.mark.parametrize("n", [1, 3])
def test_close_from_a_pooled_sink_drains_the_others(n: int) -> None:
    """close() from a pooled sink does not wait on itself and the other consumers still drain
    (with a one-worker pool, the closing worker runs them while it waits)."""
    bus = EventBus(name="pool-close")
    bus._host.executor = WorkerPool(n, name="rxbus-close")
    got: list[str] = []
    results: list[object] = []

    def closer(e: Event) -> None:
        got.append("closer")
        results.append(bus.close(timeout=5))

    bus.subscribe(lambda e: got.append("other"), topic="other", mode="thread")
    for _ in range(3):
        bus.publish("other")
    bus.subscribe(closer, topic="close", mode="thread")
    bus.publish("close")
    wait_until(lambda: results, what="close() to return")
    assert results == [[]] and got.count("other") == 3


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_a_pool_of_its_own() -> None:
    """The parent's workers do not exist in a forked child: its thread consumers still run."""
    with EventBus(name="pool-parent") as bus:
        got: list[str] = []
        bus.subscribe(got.append, mode="thread")
        bus.publish("a")
        wait_until(lambda: got, what="the parent's delivery")
    # the parent's workers exist and sleep: a child that inherited that belief would wake none
    wait_until(lambda: worker_pool()._sleeping > 0, what="an idle worker in the parent")
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_child_publishes)
    child.start()
    child.join(60)
    assert child.exitcode == 0


def _child_publishes() -> None:
    with EventBus(name="pool-child") as bus:
        got: list[str] = []
        bus.subscribe(lambda e: got.append(e.topic), mode="thread")
        bus.publish("child")
        assert bus.close(timeout=10) == []
    os._exit(0 if got == ["child"] else 1)
