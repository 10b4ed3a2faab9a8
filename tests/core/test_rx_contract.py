"""The bus is an Rx Observer and a source of hot streams, as a Subject of Events is."""

from __future__ import annotations

import asyncio

import pytest
import reactivex
import reactivex.operators as rx
from reactivex.abc import ObserverBase
from reactivex.subject import Subject

from rxbus import DeadLetter, Event, EventBus


def test_the_bus_is_an_observer_that_publishes_what_it_is_fed(bus: EventBus) -> None:
    """``observable.subscribe(bus)`` publishes every event; completion leaves the bus open."""
    got: list[Event] = []
    bus.subscribe(got.append, topic="feed.*")
    events = [Event(topic=f"feed.e{i}", data={"i": i}) for i in range(5)]
    assert isinstance(bus, ObserverBase)
    reactivex.from_iterable(events).subscribe(bus)
    assert got == events
    assert not bus.closed
    bus.publish("feed.after")
    assert [e.topic for e in got][-1] == "feed.after"


def test_on_error_of_a_source_is_a_dead_letter_and_the_bus_stays_open(bus: EventBus) -> None:
    letters: list[DeadLetter] = []
    bus.dead_letters.subscribe(letters.append)
    boom = RuntimeError("source broke")
    reactivex.throw(boom).subscribe(bus)
    assert [d.error for d in letters] == [boom]
    assert letters[0].consumer == "test:source"
    assert bus.publish("still.open").topic == "still.open"


def test_on_next_refuses_what_is_not_an_event_naming_it(bus: EventBus) -> None:
    with pytest.raises(TypeError, match=r"rxbus\.Event; got dict"):
        bus.on_next({"topic": "a"})  # type: ignore[arg-type]


def test_bus_pipe_is_events_pipe(bus: EventBus) -> None:
    got: list[str] = []
    bus.pipe(rx.map(lambda e: e.topic)).subscribe(got.append)
    bus.publish("a.b")
    assert got == ["a.b"]


def test_share_gives_each_subscriber_every_event(bus: EventBus) -> None:
    shared = bus.topic("x.*").pipe(rx.map(lambda e: e.data["i"]), rx.share())
    a: list[int] = []
    b: list[int] = []
    shared.subscribe(a.append)
    shared.subscribe(b.append)
    for i in range(3):
        bus.publish("x.y", {"i": i})
    assert a == b == [0, 1, 2]


def test_publish_and_connect_as_over_a_subject(bus: EventBus) -> None:
    """``publish()`` returns a ConnectableObservable: nothing flows before ``connect()``."""
    connectable = bus.topic("x.*").pipe(rx.publish())
    got: list[str] = []
    connectable.subscribe(lambda e: got.append(e.topic))
    bus.publish("x.before")
    connection = connectable.connect()
    bus.publish("x.after")
    connection.dispose()
    bus.publish("x.disposed")
    assert got == ["x.after"]


def test_ref_count_subscribes_once_and_unsubscribes_with_the_last(bus: EventBus) -> None:
    stream = bus.topic("x.*").pipe(rx.publish(), rx.ref_count())
    a: list[str] = []
    first = stream.subscribe(lambda e: a.append(e.topic))
    assert len(bus.consumers) == 1
    second = stream.subscribe(lambda e: a.append(e.topic))
    assert len(bus.consumers) == 1
    bus.publish("x.one")
    first.dispose()
    second.dispose()
    assert bus.consumers == ()
    assert a == ["x.one", "x.one"]


def test_await_a_stream_gives_its_last_item() -> None:
    """``await bus.topic(p).pipe(take(1))`` resolves with the next matching event."""

    async def main() -> Event:
        async with EventBus() as bus:
            waiting = asyncio.ensure_future(_first(bus))
            await asyncio.sleep(0)  # let it subscribe
            bus.publish("other.topic")
            sent = bus.publish("x.hit", {"n": 1})
            got = await asyncio.wait_for(waiting, 10)
            assert got == sent
            return got

    async def _first(bus: EventBus) -> Event:
        return await bus.topic("x.*").pipe(rx.take(1))

    assert asyncio.run(main()).topic == "x.hit"


def test_a_stream_behaves_like_a_filtered_subject(bus: EventBus) -> None:
    """The same operators over ``bus.topic(p)`` and over a Subject fed the matching events."""
    subject: Subject[Event] = Subject()
    chain = (rx.map(lambda e: e.data["i"]), rx.scan(lambda a, x: a + x, 0), rx.take(4))
    from_bus: list[int] = []
    from_subject: list[int] = []
    bus.topic("n.*").pipe(*chain).subscribe(from_bus.append)
    subject.pipe(*chain).subscribe(from_subject.append)
    for i in range(6):
        for topic in ("n.a", "m.a"):
            event = bus.publish(topic, {"i": i})
            if topic.startswith("n."):
                subject.on_next(event)
    assert from_bus == from_subject == [0, 1, 3, 6]
