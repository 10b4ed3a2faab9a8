"""``thread`` consumers on the bounded worker pool (issue 11, point 4)."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import defaultdict
from collections.abc import Callable

import pytest

from rxbus import Event, EventBus, Overflow
from rxbus.consumer import BATCH, ManualExecutor, WorkerPool, worker_pool
from rxbus.consumer import _pool as pool_module
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


class _Interrupt(BaseException):
    """Stands for KeyboardInterrupt without disturbing pytest."""


class _Task:
    """A scheduled consumer as the pool sees it: runs ``batches`` in turn, one per call
    (each a callable returning whether work remains), and records the thread of each run."""

    def __init__(self, *batches: Callable[[], object]) -> None:
        self.batches = list(batches)
        self.runs: list[str] = []

    def run_batch(self, limit: int) -> bool:
        self.runs.append(threading.current_thread().name)
        return bool(self.batches.pop(0)())


def _done() -> bool:
    return False


def _more() -> bool:
    return True


class TestWorkerPool:
    def test_a_pool_without_workers_is_refused_naming_the_value(self) -> None:
        """WorkerPool(0) raises ValueError naming 0 and the rule."""
        with pytest.raises(ValueError, match=r"max_workers must be >= 1, got 0"):
            WorkerPool(0)

    def test_threads_start_only_when_work_finds_no_idle_worker_up_to_the_bound(self) -> None:
        """No thread before work; three tasks that block at once start two threads, the bound;
        the third task runs when a worker is free."""
        pool = WorkerPool(2, name="rxbus-bound")
        assert pool.threads == 0
        gate = threading.Event()
        tasks = [_Task(lambda: gate.wait(10) and False) for _ in range(3)]
        for task in tasks:
            pool.submit(task)
        wait_until(lambda: sum(len(t.runs) for t in tasks) == 2, what="two tasks running")
        assert pool.threads == 2
        gate.set()
        wait_until(lambda: all(t.runs for t in tasks), what="the third task to run")
        assert pool.threads == 2
        assert {name for t in tasks for name in t.runs} <= {"rxbus-bound-1", "rxbus-bound-2"}

    def test_a_task_raising_a_base_exception_is_run_again_on_a_live_worker(self) -> None:
        """A BaseException out of a batch (a sink's KeyboardInterrupt) does not kill the worker:
        the task is scheduled again, and the same worker runs it and the next task."""

        def interrupt() -> bool:
            raise _Interrupt

        flaky, later = _Task(interrupt, _done), _Task(_done)
        pool = WorkerPool(1, name="rxbus-interrupt")
        pool.submit(flaky)
        wait_until(lambda: len(flaky.runs) == 2, what="the interrupted task to run again")
        pool.submit(later)
        wait_until(lambda: later.runs, what="the next task")
        assert flaky.runs == ["rxbus-interrupt-1"] * 2 and later.runs == ["rxbus-interrupt-1"]
        assert pool.threads == 1

    def test_a_thread_that_cannot_start_fails_the_first_submit_only(self) -> None:
        """When no thread can start (interpreter shutdown), the first submit raises; once a
        worker runs, a failed start is ignored and the running worker takes the task later."""

        class NoStart(threading.Thread):
            def start(self) -> None:
                raise RuntimeError("can't create new thread at interpreter shutdown")

        empty = WorkerPool(2, name="rxbus-nostart")
        empty._thread_class = NoStart
        with pytest.raises(RuntimeError, match="interpreter shutdown"):
            empty.submit(_Task(_done))
        assert empty.threads == 0

        pool = WorkerPool(2, name="rxbus-onestart")
        gate = threading.Event()
        first = _Task(lambda: gate.wait(10) and False)
        pool.submit(first)
        wait_until(lambda: first.runs, what="the first worker to take its task")
        pool._thread_class = NoStart
        second = _Task(_done)
        pool.submit(second)  # no idle worker, and no new one can start: queued, no error
        assert pool.threads == 1 and second.runs == []
        gate.set()
        wait_until(lambda: second.runs, what="the running worker to take the queued task")
        assert second.runs == ["rxbus-onestart-1"]

    def test_close_from_a_worker_gives_up_on_a_consumer_stuck_past_its_timeout(self) -> None:
        """close() from a pooled sink, with a dedicated consumer stuck in its sink: the worker
        waits (running nothing, as nothing is scheduled) until the timeout, then the stuck
        consumer's queued event is a dead letter, counted as dropped; the one in its sink is
        delivered when it returns."""
        bus = EventBus(name="pool-stuck")
        bus._host.executor = WorkerPool(1, name="rxbus-stuck")
        gate, entered = threading.Event(), threading.Event()
        results: list[list[object]] = []

        def stuck(e: Event) -> None:
            entered.set()
            gate.wait(10)

        slow = bus.subscribe(stuck, topic="slow", mode="thread", dedicated=True)
        bus.publish("slow", {"n": 1})
        bus.publish("slow", {"n": 2})
        entered.wait(10)
        bus.subscribe(
            lambda e: results.append(bus.close(timeout=0.2)), topic="close", mode="thread"
        )
        bus.publish("close")
        wait_until(lambda: results, what="close() to return")
        gate.set()
        [letters] = results
        assert [(d.event.data, type(d.error)) for d in letters] == [({"n": 2}, TimeoutError)]
        wait_until(lambda: slow.done, what="the stuck consumer to finish")
        s = slow.stats
        assert (s.received, s.delivered, s.dropped, s.queued) == (2, 1, 1, 0)


class TestManualExecutor:
    def test_each_pending_task_gets_one_batch_and_those_with_work_left_wait(self) -> None:
        """run_pending gives each scheduled task one batch in turn; one with work left is kept
        for the next call, one done is not; a producer may never wait for room."""
        executor = ManualExecutor()
        busy, quick = _Task(_more, _done), _Task(_done)
        executor.submit(busy)
        executor.submit(quick)
        assert len(executor) == 2 and not executor.may_wait()
        assert executor.run_pending()
        assert (len(busy.runs), len(quick.runs), len(executor)) == (1, 1, 1)
        assert executor.run_pending()
        assert (len(busy.runs), len(executor)) == (2, 0)
        assert not executor.run_pending()

    def test_wait_without_a_driver_runs_what_is_pending_then_answers(self) -> None:
        """wait() with no driver runs the pending batches, then reports whether done is set,
        without blocking for the timeout."""
        executor = ManualExecutor()
        done = threading.Event()
        executor.submit(_Task(lambda: done.set() or False))
        assert executor.wait(done, timeout=60)
        assert not executor.wait(threading.Event(), timeout=60)


class _RacingLock:
    """A lock that lets "another thread" make the pool just before it is acquired."""

    def __init__(self, race: Callable[[], object]) -> None:
        self._lock = threading.Lock()
        self._race = race

    def __enter__(self) -> None:
        self._race()
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class TestTheProcessPool:
    def test_two_threads_asking_for_the_pool_get_the_same_one(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The pool made by another thread while this one waited for the lock is the one
        returned; no second pool is made."""
        pools: list[WorkerPool] = []
        theirs = WorkerPool(1, name="rxbus-theirs")
        monkeypatch.setattr(pool_module, "_pool", pools)
        monkeypatch.setattr(pool_module, "_pool_lock", _RacingLock(lambda: pools.append(theirs)))
        assert worker_pool() is theirs
        assert pools == [theirs]

    def test_a_forked_child_forgets_the_parents_pool(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The fork hook empties the pool list and gives the child a fresh lock (the parent's
        may be held by a thread that does not exist in the child): the next worker_pool() is a
        new pool. (test_a_forked_child_gets_a_pool_of_its_own runs it in a real child.)"""
        parents = WorkerPool(1, name="rxbus-parent")
        held = threading.Lock()
        held.acquire()  # held by a thread the child does not have
        monkeypatch.setattr(pool_module, "_pool", [parents])
        monkeypatch.setattr(pool_module, "_pool_lock", held)
        pool_module._forget_in_child()
        assert pool_module._pool == [] and pool_module._pool_lock is not held
        fresh = worker_pool()
        assert fresh is not parents and pool_module._pool == [fresh]
