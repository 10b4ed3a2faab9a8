"""``bus.stream``: an async iterator that is a consumer like any other."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from rxbus import EventBus, Overflow
from rxbus.errors import BufferOverflowError


def conserved(stats: dict[str, Any]) -> bool:
    return stats["received"] == (
        stats["delivered"] + stats["failed"] + stats["dropped"] + stats["queued"]
    )


def test_stream_yields_matching_events_in_order_and_is_in_metrics() -> None:
    async def main() -> tuple[list[int], str, dict[str, Any], dict[str, Any]]:
        bus = EventBus()
        async with bus.stream("tick.*") as ticks:
            for n in range(5):
                bus.publish("tick.a", {"n": n})
                bus.publish("other", {"n": n})
            got = [(await anext(ticks)).data["n"] for _ in range(5)]
            listed = bus.metrics()["consumers"][ticks.name]
            await bus.aclose()  # a quiet moment: everything handed over is counted
            return got, ticks.name, listed, ticks.consumer.stats.as_dict()

    got, name, listed, stats = asyncio.run(main())
    assert got == [0, 1, 2, 3, 4]
    assert name == "stream:tick.*" and listed["mode"] == "async" and listed["queue_size"] == 1000
    assert stats["received"] == stats["delivered"] == 5 and conserved(stats)


def test_break_disposes_the_stream_and_counts_what_was_not_read() -> None:
    """Read 3 of 10, break: 3 delivered, the other 7 counted (failed or dropped), none lost."""

    async def main() -> tuple[dict[str, Any], list[str], int]:
        bus = EventBus()
        async with bus.stream("e", queue_size=100) as events:
            for n in range(10):
                bus.publish("e", {"n": n})
            read = 0
            async for _ in events:
                read += 1
                if read == 3:
                    break
        # leaving the block waited for the disposal: the counts are final
        names = list(bus.metrics()["consumers"])
        letters = len(bus.recent_dead_letters())
        await bus.aclose()
        return events.consumer.stats.as_dict(), names, letters

    stats, names, letters = asyncio.run(main())
    assert stats["delivered"] == 3
    assert stats["received"] == 10 and conserved(stats)
    assert stats["failed"] + stats["dropped"] == 7 == letters
    assert names == []  # disposed and retired


def test_overflow_policy_of_the_bus_applies_with_counts() -> None:
    """DROP_OLDEST with a queue of 2: ten events published in one loop turn leave the last 2."""

    async def main() -> tuple[list[int], dict[str, Any]]:
        bus = EventBus()  # on this loop: the stream's consumer runs only when the test awaits
        async with bus.stream("e", queue_size=2, overflow=Overflow.DROP_OLDEST) as events:
            for n in range(10):
                bus.publish("e", {"n": n})
            got = [(await anext(events)).data["n"] for _ in range(2)]
        await bus.aclose()
        return got, events.consumer.stats.as_dict()

    got, stats = asyncio.run(main())
    assert got == [8, 9]
    assert stats["dropped"] == 8 and stats["delivered"] == 2 and conserved(stats)


def test_overflow_error_ends_the_iteration_with_the_error() -> None:
    async def main() -> BaseException | None:
        bus = EventBus()
        async with bus.stream("e", queue_size=1, overflow="error") as events:
            for n in range(5):
                bus.publish("e", {"n": n})
            try:
                async for _ in events:
                    pass
            except BufferOverflowError as err:
                return err
            finally:
                await asyncio.to_thread(bus.close)
        return None

    err = asyncio.run(main())
    assert isinstance(err, BufferOverflowError) and "queue full" in str(err)


def test_bus_close_ends_the_iteration_after_the_queued_events() -> None:
    async def main() -> list[int]:
        bus = EventBus()
        got: list[int] = []
        async with bus.stream("e") as events:

            async def read() -> None:
                async for event in events:
                    got.append(event.data["n"])

            reader = asyncio.create_task(read())
            for n in range(4):
                bus.publish("e", {"n": n})
            undelivered = await bus.aclose()
            await asyncio.wait_for(reader, 5)
            assert undelivered == []
        return got

    assert asyncio.run(main()) == [0, 1, 2, 3]


def test_cancelling_the_reader_closes_the_stream() -> None:
    async def main() -> dict[str, Any]:
        async with EventBus() as bus:

            async def read() -> None:
                async with bus.stream("e") as events:
                    async for _ in events:
                        pass

            reader = asyncio.create_task(read())
            await asyncio.sleep(0)  # the reader subscribes and waits
            assert "stream:e" in bus.metrics()["consumers"]
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader
            return bus.metrics()["consumers"]

    assert asyncio.run(main()) == {}


def test_a_stream_across_loops() -> None:
    """A bus made outside asyncio runs the stream's consumer on its own loop thread."""
    bus = EventBus()

    async def main() -> list[int]:
        async with bus.stream("e") as events:
            for n in range(50):
                bus.publish("e", {"n": n})
            return [(await anext(events)).data["n"] for _ in range(50)]

    assert asyncio.run(main()) == list(range(50))
    assert bus.close() == []
    assert bus.metrics()["delivered"] == 50


def test_stream_needs_a_running_loop() -> None:
    with EventBus() as bus, pytest.raises(RuntimeError, match="running asyncio loop"):
        bus.stream("e")


def test_concurrent_publishers_every_event_counted_and_ordered_per_publisher() -> None:
    """4 threads x 500 events into a queue of 16 that drops the oldest, read until the bus
    closes: every event is delivered to the reader or counted as dropped, and each publisher's
    events arrive in the order it published them."""
    bus = EventBus()
    threads_n, per_thread = 4, 500

    def produce(t: int) -> None:
        for i in range(per_thread):
            bus.publish("e", {"t": t, "i": i})

    async def main() -> tuple[list[Any], dict[str, int]]:
        async with bus.stream("e", queue_size=16, overflow=Overflow.DROP_OLDEST) as events:
            read: list[Any] = []

            async def reader() -> None:
                async for event in events:
                    read.append(event.data)

            task = asyncio.create_task(reader())
            threads = [threading.Thread(target=produce, args=(t,)) for t in range(threads_n)]
            for thread in threads:
                thread.start()
            await asyncio.to_thread(lambda: [thread.join() for thread in threads])
            assert await asyncio.to_thread(bus.close) == []  # drains into the reader
            await asyncio.wait_for(task, 10)
        return read, events.consumer.stats.as_dict()

    read, stats = asyncio.run(main())
    assert stats["received"] == threads_n * per_thread
    assert stats["delivered"] == len(read) and stats["failed"] == 0 and stats["queued"] == 0
    assert stats["delivered"] + stats["dropped"] == threads_n * per_thread
    for t in range(threads_n):
        mine = [d["i"] for d in read if d["t"] == t]
        assert mine == sorted(mine)
