"""``@bus.on``, ``once=True``, ``bus.unsubscribe(name)`` and ``weak=True``."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from rxbus import Event, EventBus
from tests.api.support import join_releases


def test_on_registers_and_returns_the_function_unchanged() -> None:
    with EventBus() as bus:
        seen: list[str] = []

        def handler(event: Event) -> None:
            seen.append(event.topic)

        decorated = bus.on("build.*")(handler)
        bus.publish("build.done")
        bus.publish("hook.tool")
        assert decorated is handler and seen == ["build.done"]
        assert (
            bus.metrics()["consumers"][
                "test_on_registers_and_returns_the_function_unchanged.<locals>.handler"
            ]["delivered"]
            == 1
        )


def test_on_with_async_def_runs_on_the_loop() -> None:
    async def main() -> list[int]:
        async with EventBus() as bus:
            got: list[int] = []
            done = asyncio.Event()

            @bus.on("n", name="collector")
            async def collect(event: Event) -> None:
                got.append(event.data["i"])
                if len(got) == 3:
                    done.set()

            for i in range(3):
                bus.publish("n", {"i": i})
            await asyncio.wait_for(done.wait(), 5)
            assert bus.metrics()["consumers"]["collector"]["mode"] == "async"
            return got

    assert asyncio.run(main()) == [0, 1, 2]


def test_unsubscribe_by_name_stops_delivery() -> None:
    with EventBus() as bus:
        seen: list[Event] = []
        bus.on("x", name="mine")(seen.append)
        bus.publish("x")
        bus.unsubscribe("mine")
        bus.publish("x")
        assert len(seen) == 1 and "mine" not in bus.metrics()["consumers"]


def test_unsubscribe_an_unknown_name_names_it() -> None:
    with EventBus() as bus:
        bus.subscribe(print, topic="x", name="printer")
        with pytest.raises(KeyError, match=r"'nope'.*\['printer'\]"):
            bus.unsubscribe("nope")


def test_once_delivers_one_event_then_disposes() -> None:
    with EventBus() as bus:
        seen: list[Any] = []
        consumer = bus.subscribe(lambda e: seen.append(e.data), topic="x", once=True, name="o")
        for i in range(3):
            bus.publish("x", {"i": i})
        assert seen == [{"i": 0}]
        assert "o" not in bus.metrics()["consumers"]
        assert consumer.stats.delivered == 1


def test_once_skips_events_that_fail_validation_and_waits_for_a_valid_one() -> None:
    from dataclasses import dataclass

    @dataclass
    class Ping:
        n: int

    with EventBus() as bus:
        seen: list[Ping] = []
        bus.subscribe(seen.append, topic="p", once=True, model=Ping, name="ping")
        bus.publish("p", {"n": "bad"})
        bus.publish("p", {"n": 1})
        bus.publish("p", {"n": 2})
        assert seen == [Ping(1)]
        assert [d.error.fields for d in bus.recent_dead_letters()] == [("n",)]  # type: ignore[attr-defined]


def test_once_with_an_async_handler_in_a_burst_counts_every_event() -> None:
    """Three events queue before the handler runs: one handled, two counted as not wanted."""

    async def main() -> tuple[list[int], dict[str, int], list[str], int]:
        bus = EventBus()
        got: list[int] = []

        @bus.on("x", once=True, name="first")
        async def first(event: Event) -> None:
            got.append(event.data["i"])

        assert bus.metrics()["consumers"]["first"]["mode"] == "async"
        for i in range(3):
            bus.publish("x", {"i": i})
        undelivered = await bus.aclose()
        return (
            got,
            bus.metrics(),
            [str(u.error) for u in undelivered],
            len(bus.recent_dead_letters()),
        )

    got, metrics, undelivered, letters = asyncio.run(main())
    assert got == [0] and undelivered == [] and letters == 0
    assert (metrics["delivered"], metrics["dropped"], metrics["failed"]) == (1, 2, 0)


class Listener:
    def __init__(self) -> None:
        self.seen: list[Event] = []

    def handle(self, event: Event) -> None:
        self.seen.append(event)


def test_weak_subscriber_is_disposed_once_collected() -> None:
    with EventBus() as bus:
        listener = Listener()
        seen = listener.seen
        bus.subscribe(listener.handle, topic="x", weak=True, name="weak")
        bus.publish("x")
        assert len(seen) == 1
        del listener
        gc.collect()
        join_releases()
        assert "weak" not in bus.metrics()["consumers"]
        bus.publish("x")
        assert len(seen) == 1
        assert bus.recent_dead_letters() == []


def test_a_strong_subscriber_keeps_its_object_alive() -> None:
    """The default (blinker's complaint): the bound method keeps being called."""
    with EventBus() as bus:
        listener = Listener()
        seen = listener.seen
        bus.subscribe(listener.handle, topic="x", name="strong")
        del listener
        gc.collect()
        bus.publish("x")
        assert len(seen) == 1 and "strong" in bus.metrics()["consumers"]


def test_weak_async_method() -> None:
    class AsyncListener:
        def __init__(self) -> None:
            self.seen: list[Event] = []
            self.handled = asyncio.Event()

        async def handle(self, event: Event) -> None:
            self.seen.append(event)
            self.handled.set()

    async def main() -> tuple[int, bool]:
        async with EventBus() as bus:
            listener = AsyncListener()
            seen, handled = listener.seen, listener.handled
            bus.subscribe(listener.handle, topic="x", weak=True, name="weak-async")
            assert bus.metrics()["consumers"]["weak-async"]["mode"] == "async"
            bus.publish("x")
            await asyncio.wait_for(handled.wait(), 5)
            del listener
            gc.collect()
            await asyncio.to_thread(join_releases)
            return len(seen), "weak-async" not in bus.metrics()["consumers"]

    assert asyncio.run(main()) == (1, True)


def test_an_event_reaching_a_collected_weak_sink_is_a_dead_letter() -> None:
    """Between the collection and the disposal an event is not silently swallowed."""
    from rxbus.api import prepare_subscription

    listener = Listener()
    sink, _, _ = prepare_subscription(listener.handle, (), weak=True)
    del listener
    gc.collect()
    with pytest.raises(Exception, match="garbage-collected"):
        sink.on_next(Event(topic="x"))


def test_once_and_weak_must_be_booleans() -> None:
    with EventBus() as bus, pytest.raises(TypeError, match="once must be True or False, got 1"):
        bus.subscribe(print, once=1)  # type: ignore[arg-type]


def test_weak_refuses_a_sink_that_cannot_be_weakly_referenced() -> None:
    seen: list[Event] = []
    with EventBus() as bus, pytest.raises(TypeError, match=r"weak=True needs a sink.*append"):
        bus.subscribe(seen.append, weak=True)


def test_weak_builtin_bound_method_follows_its_object() -> None:
    """``log.append`` of a list subclass is referenced through ``log``, not the bound method
    (made afresh at each access, it would die at once)."""

    class Log(list):  # type: ignore[type-arg]
        pass

    with EventBus() as bus:
        log = Log()
        bus.subscribe(log.append, topic="x", weak=True, name="log")
        bus.publish("x")
        assert len(log) == 1 and "log" in bus.metrics()["consumers"]
        del log
        gc.collect()
        join_releases()
        assert "log" not in bus.metrics()["consumers"]
