"""EventBus: publishing, subscribing in every mode, stats, dead letters, metrics, history."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import orjson
import pytest
from reactivex import operators as rx_ops

from rxbus import (
    BusClosedError,
    DeadLetter,
    Event,
    EventBus,
    InvalidTopicError,
    Overflow,
    PayloadError,
)
from rxbus.testing import TestBus
from tests.conftest import wait_until


def conserved(bus: EventBus) -> None:
    for name, c in bus.metrics()["consumers"].items():
        assert c["received"] == c["delivered"] + c["failed"] + c["dropped"] + c["queued"], name


class TestPublish:
    def test_returns_the_event_with_defaults(self, bus: EventBus) -> None:
        """publish(topic, data) builds the event: type from the topic, empty source/metadata."""
        e = bus.publish("hook.tool", {"tool": "Bash"})
        assert (e.topic, e.type, e.data, e.source, e.metadata) == (
            "hook.tool",
            "tool",
            {"tool": "Bash"},
            "",
            {},
        )
        e2 = bus.publish("a", type="T", source="cli", metadata={"m": 1}, correlation_id="c")
        assert (e2.type, e2.source, e2.metadata, e2.correlation_id) == ("T", "cli", {"m": 1}, "c")

    def test_publishes_a_prebuilt_event_unchanged(self, bus: EventBus) -> None:
        got: list[Event] = []
        bus.subscribe(got.append)
        e = Event(topic="x.y", data={"a": 1})
        assert bus.publish(e) is e and got == [e]
        with pytest.raises(TypeError, match="no other arguments"):
            bus.publish(e, {"a": 2})

    @pytest.mark.parametrize(
        ("args", "kwargs", "error", "needle"),
        [
            (("bad topic",), {}, InvalidTopicError, "invalid segment 'bad topic'"),
            (("a", [1]), {}, PayloadError, "data must be a dict"),
            (("a", {"x": {1, 2}}), {}, PayloadError, "data is not JSON-serialisable"),
            (("a",), {"metadata": 3}, PayloadError, "metadata must be a dict"),
            (("a",), {"type": 3}, PayloadError, "type must be a str"),
            (("a",), {"source": b"x"}, PayloadError, "source must be a str"),
            (("a",), {"correlation_id": 1}, PayloadError, "correlation_id must be a str"),
        ],
    )
    def test_bad_input_raises_one_clear_error_and_publishes_nothing(
        self,
        bus: EventBus,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        error: type,
        needle: str,
    ) -> None:
        got: list[Event] = []
        bus.subscribe(got.append)
        with pytest.raises(error, match=needle):
            bus.publish(*args, **kwargs)
        assert got == [] and bus.metrics()["published"] == 0

    def test_payload_over_max_event_bytes_is_refused(self) -> None:
        with EventBus(max_event_bytes=100) as bus:
            bus.publish("a", {"x": "y" * 50})
            with pytest.raises(PayloadError, match=r"max_event_bytes .* is 100"):
                bus.publish("a", {"x": "y" * 200})
            with pytest.raises(PayloadError, match="max_event_bytes"):
                bus.publish(Event(topic="a", data={"x": "y" * 200}))
            assert bus.metrics()["published"] == 1

    def test_publish_after_close_raises(self, bus: EventBus) -> None:
        bus.close()
        with pytest.raises(BusClosedError, match="closed"):
            bus.publish("a")
        with pytest.raises(BusClosedError):
            bus.subscribe(print)


class TestRouting:
    def test_patterns_route_only_matching_topics(self, bus: EventBus) -> None:
        seen: dict[str, list[str]] = {}
        for pattern in ("hook.*", "hook.**", "*.error", "**", "build.error"):
            seen[pattern] = []
            bus.subscribe(lambda e, p=pattern: seen[p].append(e.topic), topic=pattern)
        for topic in ("hook", "hook.tool", "hook.tool.pre", "build.error", "cli.exit"):
            bus.publish(topic)
        assert seen == {
            "hook.*": ["hook.tool"],
            "hook.**": ["hook", "hook.tool", "hook.tool.pre"],
            "*.error": ["build.error"],
            "**": ["hook", "hook.tool", "hook.tool.pre", "build.error", "cli.exit"],
            "build.error": ["build.error"],
        }

    def test_subscribe_and_dispose_take_effect_for_cached_topics(self, bus: EventBus) -> None:
        a: list[int] = []
        b: list[int] = []
        ca = bus.subscribe(lambda e: a.append(e.data["i"]), topic="t.*")
        bus.publish("t.x", {"i": 1})  # the route for t.x is now cached
        cb = bus.subscribe(lambda e: b.append(e.data["i"]), topic="t.x")
        bus.publish("t.x", {"i": 2})
        ca.dispose()
        bus.publish("t.x", {"i": 3})
        cb.dispose()
        bus.publish("t.x", {"i": 4})
        assert (a, b) == ([1, 2], [2, 3])

    def test_invalid_pattern_is_refused_at_subscribe(self, bus: EventBus) -> None:
        with pytest.raises(InvalidTopicError, match=re.escape("'a..b'")):
            bus.subscribe(print, topic="a..b")
        with pytest.raises(InvalidTopicError):
            bus.topic("x.***")

    def test_events_and_topic_are_hot_observables(self, bus: EventBus) -> None:
        bus.publish("early.one")
        all_: list[str] = []
        hooks: list[str] = []
        d1 = bus.events.subscribe(lambda e: all_.append(e.topic))
        d2 = bus.topic("hook.*").pipe(rx_ops.map(lambda e: e.type)).subscribe(hooks.append)
        bus.publish("hook.tool")
        bus.publish("cli.exit")
        d1.dispose()
        d2.dispose()
        bus.publish("hook.late")
        assert all_ == ["hook.tool", "cli.exit"] and hooks == ["tool"]


class TestSinks:
    def test_observer_sink_gets_completion_on_close(self) -> None:
        calls: list[str] = []

        class Sink:
            def on_next(self, e: Event) -> None:
                calls.append(e.topic)

            def on_error(self, err: Exception) -> None:
                calls.append("error")

            def on_completed(self) -> None:
                calls.append("done")

        bus = EventBus()
        for mode in ("sync", "thread", "async"):
            bus.subscribe(Sink(), mode=mode)  # type: ignore[arg-type]
        bus.publish("a")
        assert bus.close() == []
        assert sorted(calls) == ["a", "a", "a", "done", "done", "done"]

    def test_async_def_sink_runs_on_the_bus_loop(self) -> None:
        threads: list[str] = []

        async def sink(e: Event) -> None:
            await asyncio.sleep(0)
            threads.append(threading.current_thread().name)

        with EventBus(name="loopy") as bus:
            c = bus.subscribe(sink)
            assert c.mode == "async"
            for _ in range(10):
                bus.publish("a")
            wait_until(lambda: len(threads) == 10)
        assert set(threads) == {"rxbus-loop-loopy"}

    def test_thread_sink_runs_on_a_pool_worker(self, bus: EventBus) -> None:
        names: list[str] = []
        bus.subscribe(
            lambda e: names.append(threading.current_thread().name), mode="thread", name="w"
        )
        bus.publish("a")
        wait_until(lambda: len(names) == 1)
        assert names[0].startswith("rxbus-worker-")

    def test_a_dedicated_thread_sink_runs_on_its_own_thread(self, bus: EventBus) -> None:
        names: list[str] = []
        bus.subscribe(
            lambda e: names.append(threading.current_thread().name),
            mode="thread",
            name="w",
            dedicated=True,
        )
        bus.publish("a")
        wait_until(lambda: names == ["rxbus-w"])

    @pytest.mark.parametrize("mode", ["sync", "async"])
    def test_dedicated_is_refused_outside_thread_mode(self, bus: EventBus, mode: str) -> None:
        with pytest.raises(ValueError, match=f"dedicated=True .* nothing for mode='{mode}'"):
            bus.subscribe(print, mode=mode, dedicated=True)  # type: ignore[arg-type]
        assert bus.consumers == ()

    def test_async_def_sink_refuses_thread_mode(self, bus: EventBus) -> None:
        async def sink(e: Event) -> None: ...

        with pytest.raises(ValueError, match="use mode='async'"):
            bus.subscribe(sink, mode="thread")

    @pytest.mark.parametrize(
        ("kwargs", "needle"),
        [
            ({"mode": "fast"}, "mode must be one of"),
            ({"mode": "thread", "queue_size": 0}, "queue_size must be an int >= 1"),
            ({"overflow": "sometimes"}, "overflow must be one of"),
        ],
    )
    def test_bad_subscribe_arguments(
        self, bus: EventBus, kwargs: dict[str, Any], needle: str
    ) -> None:
        with pytest.raises(ValueError, match=needle):
            bus.subscribe(print, **kwargs)

    def test_sink_must_be_callable_or_observer(self, bus: EventBus) -> None:
        with pytest.raises(TypeError, match="sink must be an observer"):
            bus.subscribe(42)

    def test_names_are_unique_and_default_to_the_sink(self, bus: EventBus) -> None:
        def audit(e: Event) -> None: ...

        names = [
            bus.subscribe(audit).name,
            bus.subscribe(audit).name,
            bus.subscribe(print, name="p").name,
        ]
        assert names == [audit.__qualname__, audit.__qualname__ + "#2", "p"]


class TestDeadLettersAndMetrics:
    def test_failures_become_dead_letters_with_context(self, bus: EventBus) -> None:
        letters: list[DeadLetter] = []
        bus.dead_letters.subscribe(letters.append)

        def picky(e: Event) -> None:
            if e.data["i"] == 2:
                raise KeyError("two")

        bus.subscribe(picky, name="picky")
        events = [bus.publish("a", {"i": i}) for i in range(4)]
        assert len(letters) == 1
        letter = letters[0]
        assert letter.event is events[2] and letter.consumer == "picky"
        assert isinstance(letter.error, KeyError) and "picky" in letter.traceback
        assert letter.attempts == 1 and bus.recent_dead_letters() == letters
        assert orjson.dumps(letter.to_dict())

    def test_metrics_are_json_and_add_up(self, bus: EventBus) -> None:
        class Sink:
            stats = {"written": 3}

            def on_next(self, e: Event) -> None:
                if e.topic == "b":
                    raise ValueError("b")

        bus.subscribe(Sink(), name="s")
        for topic in ("a", "a", "b"):
            bus.publish(topic)
        m = orjson.loads(orjson.dumps(bus.metrics()))
        assert (m["published"], m["delivered"], m["failed"], m["dead_lettered"]) == (3, 2, 1, 1)
        assert m["topics"] == {"a": {"published": 2}, "b": {"published": 1}}
        assert m["consumers"]["s"]["sink"] == {"written": 3}
        assert m["consumers"]["s"]["received"] == 3
        assert set(m["publish_latency_ns"]) >= {"count"}

    def test_publish_latency_is_sampled_into_percentiles(self, bus: EventBus) -> None:
        bus.subscribe(lambda e: None)
        for _ in range(1000):
            bus.publish("a")
        lat = bus.metrics()["publish_latency_ns"]
        assert lat["count"] == 16 and 0 < lat["p50"] <= lat["p99"] <= lat["max"]


class TestHistory:
    def test_ring_keeps_the_most_recent_events_oldest_first(self) -> None:
        with EventBus(history=3) as bus:
            for i in range(5):
                bus.publish("hook.tool" if i % 2 else "cli.exit", {"i": i})
            assert [e.data["i"] for e in bus.history()] == [2, 3, 4]
            assert [e.data["i"] for e in bus.history("hook.*")] == [3]
            assert [e.data["i"] for e in bus.history(limit=2)] == [3, 4]

    def test_history_zero_keeps_nothing(self) -> None:
        with EventBus(history=0) as bus:
            bus.publish("a")
            assert bus.history() == []


class TestContextManagers:
    def test_with_closes(self) -> None:
        with EventBus() as bus:
            pass
        assert bus.closed

    def test_async_with_drains_async_consumers_on_the_running_loop(self) -> None:
        got: list[int] = []

        async def main() -> EventBus:
            async with EventBus() as bus:

                async def sink(e: Event) -> None:
                    await asyncio.sleep(0)
                    got.append(e.data["i"])

                bus.subscribe(sink)
                for i in range(100):
                    bus.publish("a", {"i": i})
                with pytest.raises(RuntimeError, match="aclose"):
                    bus.close()
            return bus

        bus = asyncio.run(main())
        assert got == list(range(100)) and bus.closed
        conserved(bus)


def test_overflow_parse_accepts_names() -> None:
    assert Overflow.parse("DROP_OLDEST") is Overflow.DROP_OLDEST
    assert Overflow.parse(Overflow.LATEST) is Overflow.LATEST


def test_per_topic_metrics_stay_bounded_under_unique_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Topics beyond the limit share one '(other topics)' count; the total stays exact."""
    import rxbus.bus._routing as bus_module

    monkeypatch.setattr(bus_module, "TOPIC_METRICS_LIMIT", 5)
    with EventBus() as bus:
        for i in range(20):
            bus.publish(f"agent.a{i}.step")
        m = bus.metrics()
        assert len(m["topics"]) == 6 and m["published"] == 20
        assert m["topics"][bus_module.OTHER_TOPICS] == {"published": 15}


@pytest.mark.parametrize("mode", ["sync", "thread", "async"])
def test_a_consumer_disposed_from_its_own_sink_counts_that_event_in_the_totals(mode: str) -> None:
    bus = TestBus(record=False)  # virtual time: the thread and async sinks run in drain()
    holder: list[Any] = []
    done = threading.Event()

    def once(e: Event) -> None:
        holder[0].dispose()
        done.set()

    holder.append(bus.subscribe(once, mode=mode, name="once"))  # type: ignore[arg-type]
    bus.publish("a.b")
    bus.drain()
    assert done.is_set()
    m = bus.metrics()
    assert m["consumers"] == {} and m["delivered"] == 1 and m["dropped"] == 0
    bus.close()
