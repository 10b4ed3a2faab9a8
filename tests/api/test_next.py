"""``bus.next`` and ``bus.wait_for``: await (or block for) one event."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from rxbus import EventBus
from tests.api.support import join_releases


def test_next_returns_the_first_matching_event_published_after_the_call() -> None:
    """The subscription starts at the call, so a publish before the await is not missed."""

    async def main() -> list[object]:
        async with EventBus() as bus:
            bus.publish("build.start")  # before the call: not awaited
            waiter = bus.next("build.*")
            bus.publish("hook.tool")
            bus.publish("build.done", {"ok": True})
            bus.publish("build.done", {"ok": False})
            event = await waiter
            return [event.topic, event.data]

    assert asyncio.run(main()) == ["build.done", {"ok": True}]


def test_next_filters_with_where_and_works_with_create_task() -> None:
    async def main() -> int:
        async with EventBus() as bus:
            task = asyncio.create_task(bus.next("n", where=lambda e: e.data["i"] == 3))
            for i in range(5):
                bus.publish("n", {"i": i})
            return (await task).data["i"]

    assert asyncio.run(main()) == 3


def test_next_times_out_naming_the_pattern_and_leaves_no_consumer() -> None:
    async def main() -> EventBus:
        bus = EventBus(name="t")
        with pytest.raises(TimeoutError, match=r"'orders\.\*'.*0\.01s"):
            await bus.next("orders.*", timeout=0.01)
        return bus

    bus = asyncio.run(main())
    assert bus.metrics()["consumers"] == {}
    bus.close()


def test_next_consumer_is_gone_once_it_returns() -> None:
    async def main() -> dict[str, object]:
        async with EventBus() as bus:
            waiter = bus.next("x")
            assert list(bus.metrics()["consumers"]) == ["next:x"]
            bus.publish("x")
            await waiter
            return bus.metrics()

    metrics = asyncio.run(main())
    assert metrics["consumers"] == {}
    assert metrics["delivered"] == 1 and metrics["published"] == 1


def test_next_from_another_thread_publisher() -> None:
    """A publisher on another thread resolves the awaiting task."""

    async def main() -> int:
        async with EventBus() as bus:
            waiter = bus.next("t")
            thread = threading.Thread(target=lambda: bus.publish("t", {"v": 7}))
            thread.start()
            event = await asyncio.wait_for(waiter, 5)
            thread.join()
            return event.data["v"]

    assert asyncio.run(main()) == 7


def test_a_failing_where_is_a_dead_letter_and_waiting_goes_on() -> None:
    async def main() -> tuple[int, int]:
        async with EventBus() as bus:
            waiter = bus.next("x", where=lambda e: 1 / e.data["d"] > 0)
            bus.publish("x", {"d": 0})
            bus.publish("x", {"d": 1})
            got = await waiter
            letters = bus.recent_dead_letters()
            assert [type(d.error) for d in letters] == [ZeroDivisionError]
            return got.data["d"], letters[0].event.data["d"]

    assert asyncio.run(main()) == (1, 0)


def test_cancelling_next_disposes_its_consumer() -> None:
    async def main() -> dict[str, object]:
        async with EventBus() as bus:
            task = asyncio.create_task(bus.next("x"))
            await asyncio.sleep(0)  # let the task start awaiting
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return bus.metrics()["consumers"]

    assert asyncio.run(main()) == {}


def test_a_waiter_never_awaited_leaves_no_consumer_once_collected() -> None:
    async def main() -> tuple[list[str], dict[str, object]]:
        async with EventBus() as bus:
            with pytest.warns(RuntimeWarning, match="never awaited"):
                waiter = bus.next("x")
                before = list(bus.metrics()["consumers"])
                del waiter
                gc.collect()
            await asyncio.to_thread(join_releases)
            return before, bus.metrics()["consumers"]

    assert asyncio.run(main()) == (["next:x"], {})


def test_next_needs_a_running_loop() -> None:
    bus = EventBus()
    with pytest.raises(RuntimeError, match="wait_for"):
        bus.next("x")
    bus.close()


@pytest.mark.parametrize("bad", [-1, "5", True])
def test_bad_timeout_is_refused_naming_it(bad: object) -> None:
    bus = EventBus()
    with pytest.raises(ValueError, match=repr(bad).replace("'", ".")):
        bus.wait_for("x", timeout=bad)  # type: ignore[arg-type]
    bus.close()


def test_wait_for_blocks_a_thread_until_the_event() -> None:
    """A producer thread publishes until told to stop; the blocked caller gets the first event
    matching ``where`` published after it subscribed."""
    bus = EventBus()
    stop = threading.Event()
    published: list[int] = []

    def produce() -> None:
        level = 0
        while not stop.is_set():
            bus.publish("sensor.level", {"level": level})
            published.append(level)
            level += 1

    producer = threading.Thread(target=produce)
    producer.start()
    event = bus.wait_for("sensor.level", where=lambda e: e.data["level"] % 7 == 6, timeout=5)
    stop.set()
    producer.join(5)
    assert event.data["level"] % 7 == 6 and event.data["level"] in published
    assert bus.metrics()["consumers"] == {}
    assert bus.close() == []


def test_wait_for_times_out() -> None:
    with EventBus() as bus, pytest.raises(TimeoutError, match="'never'"):
        bus.wait_for("never", timeout=0.01)


def test_wait_for_refuses_to_block_a_running_loop() -> None:
    async def main() -> None:
        async with EventBus() as bus:
            with pytest.raises(RuntimeError, match=r"await bus\.next"):
                bus.wait_for("x", timeout=1)

    asyncio.run(main())
