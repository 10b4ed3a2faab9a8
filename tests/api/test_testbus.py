"""``rxbus.testing.TestBus``: thread and async consumers, timers and time-based operators on
virtual time, run in the test's own thread (issue 13, point 7).

Every test here runs under ``no_real_waiting``: starting an OS thread or calling
``time.sleep`` fails the test, so what passes was driven by ``drain()``/``advance()`` alone.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from reactivex import operators as rx

import rxbus.operators as ops
from rxbus import Event, RetryPolicy
from rxbus.testing import TestBus


@pytest.fixture(autouse=True)
def no_real_waiting(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record every thread started and every real sleep; the test fails if there is one."""
    started: list[str] = []

    def start(self: threading.Thread) -> None:
        started.append(self.name)
        raise AssertionError(f"a TestBus test started an OS thread: {self.name}")

    def sleep(seconds: float) -> None:
        started.append(f"time.sleep({seconds})")
        raise AssertionError(f"a TestBus test slept for real: time.sleep({seconds})")

    monkeypatch.setattr(threading.Thread, "start", start)
    monkeypatch.setattr(time, "sleep", sleep)
    yield started
    assert started == []


@pytest.fixture
def bus() -> Iterator[TestBus]:
    b = TestBus()
    yield b
    b.close()


def conserved(bus: TestBus) -> bool:
    return all(
        (s := c.stats).received == s.delivered + s.failed + s.dropped + s.queued
        for c in bus.consumers
    )


class TestThreadConsumers:
    def test_run_only_in_drain_in_order_in_the_tests_thread(self, bus: TestBus) -> None:
        seen: list[tuple[int, str]] = []
        c = bus.subscribe(
            lambda e: seen.append((e.data["i"], threading.current_thread().name)),
            mode="thread",
        )
        for i in range(200):
            bus.publish("job.step", {"i": i})
        assert seen == [] and c.stats.queued == 200
        bus.drain()
        me = threading.current_thread().name
        assert seen == [(i, me) for i in range(200)]
        assert c.stats.delivered == 200 and conserved(bus)

    def test_runs_here_is_true_inside_the_sink(self, bus: TestBus) -> None:
        inside: list[bool] = []
        c = bus.subscribe(lambda e: inside.append(c.runs_here()), mode="thread")
        bus.publish("a")
        bus.drain()
        assert inside == [True] and not c.runs_here()

    def test_a_full_block_queue_grows_instead_of_waiting_for_a_drain(self, bus: TestBus) -> None:
        """Nothing drains until the test does, so BLOCK does not wait: nothing is lost."""
        got: list[int] = []
        c = bus.subscribe(lambda e: got.append(e.data["i"]), mode="thread", queue_size=2)
        for i in range(5):
            bus.publish("a", {"i": i})
        bus.drain()
        assert got == [0, 1, 2, 3, 4] and c.stats.dropped == 0

    def test_close_drains_what_is_queued(self, bus: TestBus) -> None:
        got: list[str] = []
        bus.subscribe(lambda e: got.append(e.topic), mode="thread")
        bus.publish("a")
        assert bus.close() == []
        assert got == ["a"]


class TestAsyncConsumers:
    def test_an_async_sink_sleeps_in_virtual_time(self, bus: TestBus) -> None:
        log: list[tuple[str, int, float]] = []

        async def sink(e: Event) -> None:
            log.append(("start", e.data["i"], bus.now))
            await asyncio.sleep(5)
            log.append(("end", e.data["i"], bus.now))

        c = bus.subscribe(sink)
        assert c.mode == "async"
        bus.publish("a", {"i": 1})
        bus.publish("a", {"i": 2})
        bus.drain()
        assert log == [("start", 1, 0.0)]
        bus.advance(4.9)
        assert log == [("start", 1, 0.0)]
        bus.advance(0.1)
        assert log == [("start", 1, 0.0), ("end", 1, 5.0), ("start", 2, 5.0)]
        bus.advance(60)
        assert log[-1] == ("end", 2, 10.0) and bus.now == 65.0
        assert c.stats.delivered == 2 and conserved(bus)

    def test_close_reports_what_only_a_later_advance_could_deliver(self, bus: TestBus) -> None:
        """A sink still asleep in virtual time at close: counted, not waited for."""

        async def sink(e: Event) -> None:
            await asyncio.sleep(3600)

        bus.subscribe(sink, name="sleeper")
        bus.publish("a")
        bus.drain()
        letters = bus.close(timeout=30)
        assert [d.consumer for d in letters] == ["sleeper"]

    def test_a_plain_sink_in_async_mode_runs_on_the_private_loop(self, bus: TestBus) -> None:
        loops: list[object] = []
        bus.subscribe(lambda e: loops.append(asyncio.get_running_loop()), mode="async")
        bus.publish("a")
        bus.drain()
        assert loops == [bus.loop]


class TestTimeBasedOperators:
    @pytest.mark.parametrize("mode", ["sync", "thread", "async"])
    def test_batch_closes_on_its_timer(self, bus: TestBus, mode: str) -> None:
        batches: list[list[int]] = []

        def sink(items: list[Event]) -> None:
            batches.append([e.data["i"] for e in items])

        bus.subscribe(sink, ops.batch(seconds=2, max_size=100), mode=mode)  # type: ignore[arg-type]
        for i in range(3):
            bus.publish("a", {"i": i})
        bus.advance(1.9)
        assert batches == []
        bus.advance(0.1)
        assert batches == [[0, 1, 2]]
        bus.publish("a", {"i": 3})
        bus.advance(10)
        assert batches == [[0, 1, 2], [3]] and conserved(bus)

    def test_debounce_emits_after_the_quiet_period(self, bus: TestBus) -> None:
        got: list[tuple[int, float]] = []
        bus.subscribe(lambda e: got.append((e.data["i"], bus.now)), rx.debounce(1.0), mode="thread")
        bus.publish("a", {"i": 1})
        bus.advance(0.5)
        bus.publish("a", {"i": 2})
        bus.advance(0.9)
        assert got == []
        bus.advance(0.1)
        assert got == [(2, 1.5)]

    def test_retry_delays_run_on_the_virtual_clock(self, bus: TestBus) -> None:
        """RetryPolicy(max_attempts=4, initial_delay=1, multiplier=2): tries at 0, 1, 3, 7."""
        tries: list[float] = []

        def always_fails(e: Event) -> None:
            tries.append(bus.now)
            raise RuntimeError("down")

        policy = RetryPolicy(max_attempts=4, initial_delay=1, multiplier=2, jitter=0)
        bus.subscribe(lambda _: None, ops.retry(always_fails, policy), mode="thread")
        bus.publish("a")
        bus.advance(100)
        assert tries == [0.0, 1.0, 3.0, 7.0]
        assert [d.attempts for d in bus.recent_dead_letters()] == [4]


class TestPublished:
    def test_published_and_assert_published(self, bus: TestBus) -> None:
        bus.publish("orders.placed", {"id": 1})
        bus.publish("hook.tool")
        assert [e.topic for e in bus.published] == ["orders.placed", "hook.tool"]
        bus.assert_published("orders.*", data={"id": 1}, count=1)
        with pytest.raises(AssertionError, match="expected at least 1 matching"):
            bus.assert_published("build.*")

    def test_advance_refuses_negative_time(self, bus: TestBus) -> None:
        with pytest.raises(ValueError, match="seconds must be a number >= 0"):
            bus.advance(-1)
