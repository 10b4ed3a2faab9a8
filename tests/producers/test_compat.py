"""rxbus.compat: pyee's documented behaviour, checked against pyee itself, plus what the bus adds."""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import Iterator
from typing import Any

import pyee
import pyee.asyncio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxbus import EventBus
from rxbus.compat import AsyncIOEventEmitter, EventEmitter, PyeeError
from rxbus.errors import BusClosedError, InvalidTopicError


@pytest.fixture
def bus() -> Iterator[EventBus]:
    b = EventBus(name="compat")
    yield b
    b.close()


class Boom(Exception):
    pass


class TestPyeeBehaviour:
    def test_on_as_method_and_decorator_returns_the_function(self) -> None:
        """on(event, f) and @on(event) both register f and return it unchanged."""
        ee, calls = EventEmitter(), []

        def first(x: int) -> None:
            calls.append(("first", x))

        assert ee.on("data", first) is first

        @ee.on("data")
        def second(x: int) -> None:
            calls.append(("second", x))

        assert second.__name__ == "second"
        assert ee.emit("data", 1) is True
        assert calls == [("first", 1), ("second", 1)]
        assert ee.listeners("data") == [first, second]

    def test_emit_without_listeners_returns_false(self) -> None:
        """emit returns whether the event had listeners."""
        ee = EventEmitter()
        assert ee.emit("nobody") is False

    def test_once(self) -> None:
        """A once listener runs for the first emit only, and can be removed before it runs."""
        ee, calls = EventEmitter(), []
        ee.once("tick", calls.append)
        assert ee.emit("tick", 1) and not ee.emit("tick", 2)
        assert calls == [1]
        handle = ee.once("tick", calls.append)
        ee.remove_listener("tick", handle)
        assert ee.emit("tick", 3) is False and calls == [1]

    def test_error_event(self) -> None:
        """An unhandled 'error' raises its exception (PyeeError for a non-exception)."""
        ee = EventEmitter()
        with pytest.raises(Boom):
            ee.emit("error", Boom("x"))
        with pytest.raises(PyeeError, match="Uncaught, unspecified 'error' event: oops"):
            ee.emit("error", "oops")
        seen: list[Exception] = []
        ee.on("error", seen.append)
        err = Boom("handled")
        assert ee.emit("error", err) is True and seen == [err]

    def test_new_listener_fires_before_adding(self) -> None:
        """new_listener gets (event, f) before f is added, and never for itself."""
        ee, seen = EventEmitter(), []
        ee.on("new_listener", lambda event, f: seen.append((event, f, list(ee.listeners(event)))))

        def handler() -> None:
            pass

        ee.on("data", handler)
        assert seen == [("data", handler, [])]

    def test_remove_listener_and_remove_all(self) -> None:
        """remove_listener removes one; remove_all_listeners one event's or everything."""
        ee = EventEmitter()
        a, b = (lambda: None), (lambda: None)
        ee.on("x", a)
        ee.on("x", b)
        ee.on("y", a)
        ee.remove_listener("x", a)
        assert ee.listeners("x") == [b]
        with pytest.raises(KeyError):
            ee.remove_listener("x", a)
        ee.remove_all_listeners("x")
        assert ee.listeners("x") == [] and ee.emit("x") is False
        assert ee.event_names() == {"x", "y"}  # pyee keeps the emptied event's name
        ee.remove_all_listeners()
        assert ee.event_names() == set()

    def test_listener_exception_propagates_and_stops_the_rest(self, bus: EventBus) -> None:
        """As pyee: the listener's exception leaves emit and later listeners are not called;
        the bus also records it as a dead letter."""
        ee, calls = EventEmitter(bus), []

        def bad(x: int) -> None:
            raise Boom(f"bad {x}")

        ee.on("job", bad)
        ee.on("job", calls.append)
        with pytest.raises(Boom, match="bad 7"):
            ee.emit("job", 7)
        assert calls == []
        [letter] = bus.recent_dead_letters()
        assert (letter.event.topic, letter.consumer, str(letter.error)) == (
            "ee.job",
            "pyee-ee",
            "bad 7",
        )
        with pytest.raises(Boom, match="bad 8"):  # the emitter keeps working
            ee.emit("job", 8)
        assert len(bus.recent_dead_letters()) == 2
        ee.remove_listener("job", bad)
        assert ee.emit("job", 9) and calls == [9]

    def test_listener_removed_during_emit_still_runs_this_time(self) -> None:
        """The listeners of one emit are fixed when it starts, as in pyee."""
        ee, calls = EventEmitter(), []
        ee.on("e", lambda: second in ee.listeners("e") and ee.remove_listener("e", second))

        def second() -> None:
            calls.append("second")

        ee.on("e", second)
        ee.emit("e")
        ee.emit("e")
        assert calls == ["second"]

    def test_nested_emit_from_a_listener(self) -> None:
        """A listener may emit another event; it is handled before emit returns."""
        ee, calls = EventEmitter(), []
        ee.on("outer", lambda: (calls.append("outer"), ee.emit("inner")))
        ee.on("inner", lambda: calls.append("inner"))
        assert ee.emit("outer") and calls == ["outer", "inner"]

    def test_enum_event_names(self) -> None:
        """Any hashable event name works; the topic uses its str."""

        class Ev(enum.Enum):
            DONE = "done"

        ee, calls = EventEmitter(), []
        ee.on(Ev.DONE, calls.append)
        assert ee.emit(Ev.DONE, 1) and calls == [1]
        assert ee.bus.history()[-1].topic == "ee.Ev.DONE"


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("on"), st.sampled_from("abc"), st.integers(0, 3)),
        st.tuples(st.just("once"), st.sampled_from("abc"), st.integers(0, 3)),
        st.tuples(st.just("remove"), st.sampled_from("abc"), st.integers(0, 3)),
        st.tuples(st.just("remove_all"), st.sampled_from(["a", "b", "c", None]), st.just(0)),
        st.tuples(st.just("emit"), st.sampled_from("abc"), st.integers(0, 3)),
        st.tuples(st.just("emit_error"), st.just("error"), st.integers(0, 3)),
    ),
    max_size=30,
)


def _drive(ee: Any, ops: list[tuple[str, Any, int]]) -> list[Any]:
    """Apply ``ops`` to an emitter; the log of every call, return value and exception."""
    log: list[Any] = []
    handlers = [lambda *a, n=n, **k: log.append(("call", n, a, k)) for n in range(4)]
    for op, event, n in ops:
        try:
            if op == "on":
                ee.on(event, handlers[n])
            elif op == "once":
                ee.once(event, handlers[n])
            elif op == "remove":
                ee.remove_listener(event, handlers[n])
            elif op == "remove_all":
                ee.remove_all_listeners(event)
            elif op == "emit":
                log.append(("emit", ee.emit(event, n, k=n)))
            else:
                log.append(("emit", ee.emit("error", Boom(str(n)))))
        except Exception as err:
            message = "" if isinstance(err, KeyError) else str(err)  # KeyError names a function
            log.append(("raised", type(err).__name__, message))
        log.append(
            ("state", sorted(map(str, ee.event_names())), {e: len(ee.listeners(e)) for e in "abc"})
        )
    return log


@settings(max_examples=150, deadline=None)
@given(ops=OPS)
def test_same_behaviour_as_pyee(ops: list[tuple[str, Any, int]]) -> None:
    """Any sequence of on/once/remove/remove_all/emit gives pyee's calls, results and state."""
    expected = _drive(pyee.EventEmitter(), ops)
    with EventBus() as bus:
        assert _drive(EventEmitter(bus), ops) == expected


class TestWhatTheBusAdds:
    def test_emits_are_bus_events(self, bus: EventBus) -> None:
        """Each emit is an event on <prefix>.<name>; JSON-less values travel as their repr."""
        ee = EventEmitter(bus, prefix="app.ee")
        lock = threading.Lock()
        got: list[Any] = []
        ee.on("user:login", lambda user, lk, **kw: got.append((user, lk, kw)))
        topics = []
        bus.subscribe(lambda e: topics.append((e.topic, e.type, e.data)), topic="app.ee.user_login")
        ee.emit("user:login", {"id": 1}, lock, remember=True)
        assert got == [({"id": 1}, lock, {"remember": True})]  # the original objects
        [(topic, type_, data)] = topics
        assert (topic, type_) == ("app.ee.user_login", "user:login")
        assert data["args"][0] == {"id": 1} and data["args"][1].startswith("<unlocked _thread.lock")
        assert data["kwargs"] == {"remember": True}
        assert bus.metrics()["topics"]["app.ee.user_login"]["published"] == 1

    def test_events_from_elsewhere_reach_listeners(self, bus: EventBus) -> None:
        """An event published on the emitter's topic calls the listeners: args/kwargs, or the data."""
        ee, calls = EventEmitter(bus), []
        ee.on("order", lambda *a, **k: calls.append((a, k)))
        bus.publish("ee.order", {"args": [1, 2], "kwargs": {"rush": True}})
        bus.publish("ee.order", {"sku": "A"})
        assert calls == [((1, 2), {"rush": True}), (({"sku": "A"},), {})]

    def test_replay_and_history(self, bus: EventBus) -> None:
        """Emitted events are in the bus history and can be replayed."""
        ee = EventEmitter(bus)
        ee.on("step", lambda n: None)
        for n in range(3):
            ee.emit("step", n)
        replayed: list[int] = []
        bus.replay("ee.step").subscribe(lambda e: replayed.append(e.data["args"][0]))
        assert replayed == [0, 1, 2]

    def test_too_large_still_reaches_listeners(self) -> None:
        """Arguments too large for the bus reach the listeners; the event says they were omitted."""
        with EventBus(max_event_bytes=100) as small:
            ee, got = EventEmitter(small), []
            ee.on("blob", got.append)
            assert ee.emit("blob", "x" * 1000)
            assert got == ["x" * 1000]
            assert small.history()[-1].data == {
                "omitted_bytes": len(b'{"args":[""],"kwargs":{}}') + 1000
            }

    def test_closed_bus_refuses(self, bus: EventBus) -> None:
        """After the bus closes, emit raises BusClosedError (nothing is silently dropped)."""
        ee = EventEmitter(bus)
        ee.on("x", lambda: None)
        bus.close()
        with pytest.raises(BusClosedError):
            ee.emit("x")

    def test_two_prefixes_on_one_bus_are_apart(self, bus: EventBus) -> None:
        """Emitters with different prefixes on one bus do not see each other's events."""
        a, b = EventEmitter(bus, prefix="a"), EventEmitter(bus, prefix="b")
        got: list[str] = []
        a.on("x", lambda: got.append("a"))
        b.on("x", lambda: got.append("b"))
        a.emit("x")
        assert got == ["a"]

    def test_same_prefix_on_one_bus_is_one_channel(self, bus: EventBus) -> None:
        """Emitters sharing a bus and a prefix hear each other, with the event's data: the
        arguments JSON can carry, and the repr of the others."""
        a, b = EventEmitter(bus, prefix="chan"), EventEmitter(bus, prefix="chan")
        got: list[tuple[str, Any]] = []
        a.on("x", lambda v: got.append(("a", v)))
        b.on("x", lambda v: got.append(("b", v)))
        lock = threading.Lock()
        assert a.emit("x", {"n": 1}) and a.emit("x", lock)
        assert got[:2] == [("a", {"n": 1}), ("b", {"n": 1})]
        assert got[2] == ("a", lock) and got[3][0] == "b"
        assert isinstance(got[3][1], str) and got[3][1].startswith("<unlocked _thread.lock")

    def test_bad_prefix(self) -> None:
        """A prefix that is not a topic is refused, naming it."""
        with pytest.raises(InvalidTopicError, match="bad prefix"):
            EventEmitter(prefix="bad prefix")

    def test_pickle_round_trip(self) -> None:
        """An emitter pickles (as pyee's does) onto a new bus of its own."""
        import pickle

        ee = EventEmitter(prefix="p")
        ee.on("x", print)
        copy = pickle.loads(pickle.dumps(ee))
        assert copy.listeners("x") == [print] and copy.bus is not ee.bus and copy.prefix == "p"


class TestAsyncIO:
    def test_coroutine_listener_and_errors_like_pyee(self) -> None:
        """Coroutines run as tasks; sync and async failures become 'error' events, as in pyee."""

        async def scenario(ee: Any) -> list[Any]:
            log: list[Any] = []

            @ee.on("work")
            async def work(n: int) -> None:
                await asyncio.sleep(0)
                if n < 0:
                    raise Boom(f"async {n}")
                log.append(("work", n))

            @ee.on("sync")
            def sync(n: int) -> None:
                raise Boom(f"sync {n}")

            ee.on("error", lambda err: log.append(("error", str(err))))
            log.append(("emit", ee.emit("work", 1)))
            log.append(("complete", ee.complete))
            await ee.wait_for_complete()
            ee.emit("work", -1)
            await ee.wait_for_complete()
            ee.emit("sync", 2)
            log.append(("complete", ee.complete))
            return log

        async def both() -> tuple[list[Any], list[Any]]:
            theirs = await scenario(pyee.asyncio.AsyncIOEventEmitter())
            ours = await scenario(AsyncIOEventEmitter())
            return theirs, ours

        theirs, ours = asyncio.run(both())
        assert ours == theirs
        assert ("error", "async -1") in ours and ("error", "sync 2") in ours

    def test_cancel(self) -> None:
        """cancel() cancels the pending listener tasks."""

        async def main() -> bool:
            ee = AsyncIOEventEmitter()
            started = asyncio.Event()

            @ee.on("slow")
            async def slow() -> None:
                started.set()
                await asyncio.Event().wait()

            ee.emit("slow")
            await asyncio.wait_for(started.wait(), 5)
            assert not ee.complete
            ee.cancel()
            return ee.complete

        assert asyncio.run(main()) is True

    def test_unhandled_sync_error_raises_from_emit(self) -> None:
        """With no 'error' listener a failing listener's exception leaves emit, as in pyee."""

        async def main() -> None:
            ee = AsyncIOEventEmitter()
            ee.on("x", lambda: 1 / 0)
            with pytest.raises(ZeroDivisionError):
                ee.emit("x")

        asyncio.run(main())
