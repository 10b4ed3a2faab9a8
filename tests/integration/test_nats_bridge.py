"""NatsSink and nats_stream against a real ``nats-server -js`` started by each test."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from rxbus import DeadLetter, Event, EventBus
from rxbus.sinks import NatsSink
from rxbus.sources import nats_stream
from rxbus.sources.nats import Delivery, bridge, filter_subject, subject_for
from tests.conftest import wait_until
from tests.integration.nats_server import NatsServer, nats_binary, running_nats

pytestmark = [pytest.mark.timeout(120)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    with running_nats(tmp_path) as srv:
        yield srv


def events(n: int, topic: str = "orders.created") -> list[Event]:
    return [Event(topic=topic, data={"i": i}) for i in range(n)]


class Collector:
    """An observer that records what it got, thread-safe."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()

    def on_next(self, item: Any) -> None:
        with self.lock:
            self.items.append(item)

    def on_error(self, error: BaseException) -> None:
        self.errors.append(error)

    def on_completed(self) -> None:
        pass

    def __len__(self) -> int:
        with self.lock:
            return len(self.items)


def stream_messages(server: NatsServer, stream: str) -> int:
    async def call(js: Any) -> int:
        return int((await js.stream_info(stream)).state.messages)

    return server.js(call)


def read_all(server: NatsServer, stream: str) -> list[Any]:
    """Every message of ``stream`` in order: (subject, headers, data)."""

    async def call(js: Any) -> list[Any]:
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            out.append((msg.subject, msg.headers or {}, msg.data))
        return out

    return server.js(call)


def publish_raw(server: NatsServer, items: list[tuple[str, bytes, dict[str, str] | None]]) -> None:
    """JetStream-publish (subject, payload, headers) triples, each acknowledged."""

    async def call(js: Any) -> None:
        for subject, payload, headers in items:
            await js.publish(subject, payload, headers=headers)

    server.js(call)


def fill(server: NatsServer, stream: str, batch: list[Event]) -> None:
    """Put events into ``stream`` the way the sink does."""
    with NatsSink(server.url, stream, create_stream=True) as sink:
        for e in batch:
            sink.on_next(e)
        assert sink.flush(30)


class TestSubjects:
    def test_topics_and_patterns_map_onto_subjects(self) -> None:
        """``*`` stays ``*``, a lone or trailing ``**`` becomes ``>`` (exact only where NATS
        matches the same topics), ``**`` elsewhere is narrowed on the client."""
        assert subject_for("rxbus", "orders.created") == "rxbus.orders.created"
        assert filter_subject("rxbus", "orders.created") == ("rxbus.orders.created", True)
        assert filter_subject("rxbus", "*.error") == ("rxbus.*.error", True)
        assert filter_subject("rxbus", "**") == ("rxbus.>", True)
        assert filter_subject("app.ev", "a.b.**") == ("app.ev.a.>", False)
        assert filter_subject("rxbus", "a.**.z") == ("rxbus.a.>", False)

    def test_bad_arguments_name_the_value(self) -> None:
        """Each bad argument is one ValueError naming it and its value."""
        with pytest.raises(
            ValueError, match=r"filter must be an rxbus topic pattern, got 'a\.\.b'"
        ):
            nats_stream("nats://127.0.0.1:1", "S", "d", filter="a..b")
        with pytest.raises(ValueError, match=r"durable must be .* got 'a\.b'"):
            nats_stream("nats://127.0.0.1:1", "S", "a.b")
        with pytest.raises(ValueError, match="url must be a nats://"):
            nats_stream("http://x", "S", "d")
        with pytest.raises(ValueError, match="max_deliver must be an int >= 1, got 0"):
            nats_stream("nats://127.0.0.1:1", "S", "d", max_deliver=0)
        with pytest.raises(ValueError, match="under subject_prefix"):
            nats_stream("nats://127.0.0.1:1", "S", "d", dead_letter_subject="rxbus.dead")
        with pytest.raises(ValueError, match=r"subject_prefix must be .* got 'a b'"):
            NatsSink("nats://127.0.0.1:1", "S", subject_prefix="a b")
        with pytest.raises(ValueError, match=r"overflow must be .* got 'block'"):
            NatsSink("nats://127.0.0.1:1", "S", overflow="block")
        with pytest.raises(ValueError, match="manual_ack=True is not accepted"):
            bridge(EventBus(name="x"), "nats://127.0.0.1:1", "S", "d", manual_ack=True)


class TestSink:
    def test_publishes_every_event_in_order_with_its_id_as_msg_id(self, server: NatsServer) -> None:
        """One message per event at ``<prefix>.<topic>``, ``Nats-Msg-Id`` = event id, payload =
        the event's JSON, in publish order; the created stream uses file storage and the
        configured dedupe window."""
        batch = [Event(topic=f"orders.c{i % 3}", data={"i": i}) for i in range(1200)]
        with NatsSink(
            server.url,
            "ORDERS",
            subject_prefix="shop",
            create_stream=True,
            duplicate_window=30,
            batch_size=500,
        ) as sink:
            for e in batch:
                sink.on_next(e)
            assert sink.flush(30)
            stats = sink.stats
        assert stats["written"] == 1200 and stats["outbox"] == 0 and stats["duplicates"] == 0
        assert stats["batches"] >= 3  # 500 publishes per wait for acks, not one at a time
        stored = read_all(server, "ORDERS")
        assert [h["Nats-Msg-Id"] for _, h, _ in stored] == [e.id for e in batch]
        assert [s for s, _, _ in stored] == [f"shop.{e.topic}" for e in batch]
        assert Event.from_json(stored[7][2]) == batch[7]

        async def config(js: Any) -> Any:
            return (await js.stream_info("ORDERS")).config

        cfg = server.js(config)
        assert cfg.storage == "file"
        assert cfg.duplicate_window == 30
        assert cfg.subjects == ["shop.>"]

    def test_the_server_drops_re_sent_events_by_id(self, server: NatsServer) -> None:
        """The same events published again (a replay) are acknowledged as duplicates and not
        stored twice."""
        batch = events(300)
        with NatsSink(server.url, "ORDERS", create_stream=True) as sink:
            for e in batch + batch[:120]:
                sink.on_next(e)
            assert sink.flush(30)
            assert sink.stats["written"] == 420
            assert sink.stats["duplicates"] == 120
        assert stream_messages(server, "ORDERS") == 300

    def test_holds_and_retries_while_the_server_is_down(self, tmp_path: Path) -> None:
        """Events published before the server exists are held, retried, then all stored in
        order once it starts."""
        srv = NatsServer(nats_binary(), tmp_path)  # not started yet
        sink = NatsSink(
            srv.url, "ORDERS", create_stream=True, retry_delay=0.01, max_retry_delay=0.1
        )
        try:
            batch = events(1000)
            for e in batch:
                sink.on_next(e)
            wait_until(lambda: sink.stats["retried"] >= 2, 10, "failed attempts")
            assert sink.stats["outbox"] == 1000 and sink.stats["written"] == 0
            srv.start()
            assert sink.flush(30), sink.stats
            assert sink.stats["written"] == 1000
            ids = [h["Nats-Msg-Id"] for _, h, _ in read_all(srv, "ORDERS")]
            assert ids == [e.id for e in batch]
        finally:
            sink.close(timeout=1)
            srv.stop()

    def test_outbox_overflow_and_close_report_every_unacknowledged_event(
        self, tmp_path: Path
    ) -> None:
        """With the server unreachable: a full outbox refuses new events (counted, dead
        letters); close() returns how many were never acknowledged and dead-letters them."""
        srv = NatsServer(nats_binary(), tmp_path)  # never started
        letters: list[DeadLetter] = []
        sink = NatsSink(
            srv.url, "ORDERS", outbox_size=50, batch_size=10, dead_letters=letters.append
        )
        batch = events(80)
        for e in batch:
            sink.on_next(e)  # never blocks, never raises
        assert sink.stats["overflow"] == 30
        assert [d.event.id for d in letters] == [e.id for e in batch[50:]]
        assert sink.close(timeout=0.3) == 50
        stats = sink.stats
        assert stats["lost"] == 50 and stats["outbox"] == 0 and stats["written"] == 0
        assert sorted(d.event.id for d in letters) == sorted(e.id for e in batch)
        sink.on_next(batch[0])  # after close: counted and dead-lettered, not raised
        assert sink.stats["errors"] == 1 and len(letters) == 81

    def test_a_message_the_server_refuses_is_dead_lettered_and_the_rest_flows(
        self, server: NatsServer
    ) -> None:
        """An event larger than the server's max_payload, and an item that is not an Event,
        become dead letters (errors); the events around them are stored."""
        letters: list[DeadLetter] = []
        big = Event(topic="orders.big", data={"blob": "x" * 1_100_000})
        with NatsSink(
            server.url, "ORDERS", create_stream=True, dead_letters=letters.append
        ) as sink:
            sink.on_next(Event(topic="orders.a"))
            sink.on_next(big)
            sink.on_next("not an event")  # type: ignore[arg-type]
            sink.on_next(Event(topic="orders.b"))
            assert sink.flush(30)
            assert sink.stats["errors"] == 2 and sink.stats["written"] == 2
            assert sink.stats["retried"] == 0
        assert {repr(d.event)[:40] for d in letters} == {repr(big)[:40], repr("not an event")}
        assert stream_messages(server, "ORDERS") == 2

    def test_a_deleted_stream_is_recreated(self, server: NatsServer) -> None:
        """An operator deletes the stream while the sink runs: with create_stream the sink
        recreates it and stores the next events."""
        with NatsSink(
            server.url, "ORDERS", create_stream=True, ack_timeout=1, retry_delay=0.02
        ) as sink:
            for e in events(10):
                sink.on_next(e)
            assert sink.flush(30)

            async def delete(js: Any) -> None:
                await js.delete_stream("ORDERS")

            server.js(delete)
            later = events(25)
            for e in later:
                sink.on_next(e)
            assert sink.flush(30), sink.stats
            assert sink.stats["retried"] >= 1
        ids = [h["Nats-Msg-Id"] for _, h, _ in read_all(server, "ORDERS")]
        assert ids == [e.id for e in later]

    def test_on_a_bus_undeliverable_events_are_bus_dead_letters(self, tmp_path: Path) -> None:
        """Subscribed to a bus without dead_letters=, what the sink drops is counted in the
        bus's dead letters."""
        srv = NatsServer(nats_binary(), tmp_path)  # never started
        with EventBus(name="t") as bus:
            sink = NatsSink(srv.url, "ORDERS", outbox_size=5)
            bus.subscribe(sink, name="to-nats")
            for i in range(8):
                bus.publish("orders.created", {"i": i})
            assert sink.stats["overflow"] == 3
            assert bus.metrics()["dead_lettered"] == 3
            sink.close(timeout=0.2)
            assert bus.metrics()["dead_lettered"] == 8


class TestSource:
    def test_reads_in_order_and_acks_after_the_handler(self, server: NatsServer) -> None:
        """Every event arrives once, in stream order; all are acknowledged."""
        batch = events(1500)
        fill(server, "ORDERS", batch)
        got = Collector()
        source = nats_stream(server.url, "ORDERS", "billing", batch_size=200)
        sub = source.subscribe(got)
        wait_until(lambda: len(got) == 1500, 30, "every event")
        sub.dispose()
        assert [e.id for e in got.items] == [e.id for e in batch]
        assert source.stats["acked"] == 1500
        assert consumer_pending(server, "ORDERS", "billing") == (0, 0)

    def test_the_filter_pattern_selects_topics(self, server: NatsServer) -> None:
        """``orders.*`` is a server filter; ``orders.**`` also matches ``orders`` itself, so the
        source narrows ``rxbus.>`` on the client and acknowledges the rest unseen."""
        topics = ["orders", "orders.created", "orders.eu.created", "billing.paid"]
        batch = [Event(topic=t, data={"i": i}) for i, t in enumerate(topics * 5)]
        fill(server, "ORDERS", batch)
        one, many = Collector(), Collector()
        s1 = nats_stream(server.url, "ORDERS", "one", filter="orders.*")
        s2 = nats_stream(server.url, "ORDERS", "many", filter="orders.**")
        subs = [s1.subscribe(one), s2.subscribe(many)]
        wait_until(lambda: len(one) == 5 and len(many) == 15, 30, "the filtered events")
        wait_until(lambda: s2.stats["filtered"] == 5, 10, "the billing events acked unseen")
        for s in subs:
            s.dispose()
        assert {e.topic for e in one.items} == {"orders.created"}
        assert {e.topic for e in many.items} == {"orders", "orders.created", "orders.eu.created"}
        assert s1.stats["filtered"] == 0

    def test_a_failing_handler_is_retried_with_backoff_then_dead_lettered(
        self, server: NatsServer
    ) -> None:
        """An event whose handler always raises is nak-ed with growing delays, and after
        max_deliver attempts published to the dead-letter subject (error and delivery count in
        its headers) and terminated; the other events are handled."""
        batch = events(10)
        poison = batch[4] = Event(topic="orders.created", data={"i": 4, "poison": True})
        fill(server, "ORDERS", batch)
        attempts: list[float] = []
        handled: list[str] = []

        def handle(event: Event) -> None:
            if event.data.get("poison"):
                attempts.append(time.monotonic())
                raise ValueError("cannot parse this order")
            handled.append(event.id)

        source = nats_stream(
            server.url, "ORDERS", "billing", max_deliver=3, nak_delay=0.1, fetch_timeout=0.2
        )
        sub = source.subscribe(handle)
        wait_until(lambda: source.stats["dead_lettered"] == 1, 30, "the dead letter")
        wait_until(lambda: consumer_pending(server, "ORDERS", "billing") == (0, 0), 10, "acks")
        sub.dispose()
        assert len(attempts) == 3  # max_deliver attempts, never a 4th
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        assert gaps[0] >= 0.1 and gaps[1] >= 0.2  # nak delay 0.1 s, then 0.2 s
        assert sorted(handled) == sorted(e.id for e in batch if e is not poison)
        ((subject, headers, data),) = read_all(server, "ORDERS_DEAD")
        assert subject == "rxbus_dead.ORDERS"
        assert Event.from_json(data) == poison
        assert headers["Nats-Msg-Id"] == poison.id
        assert headers["Rxbus-Deliveries"] == "3"
        assert headers["Rxbus-Error"] == "ValueError: cannot parse this order"
        assert headers["Rxbus-Durable"] == "billing"
        assert headers["Rxbus-Subject"] == "rxbus.orders.created"
        assert source.stats["failed"] == 3 and source.stats["nacked"] == 2

    def test_a_malformed_message_is_dead_lettered_at_once(self, server: NatsServer) -> None:
        """A message that is not an rxbus event goes to the dead-letter subject on its first
        delivery, with the parse error; the events around it are handled."""
        fill(server, "ORDERS", events(2))
        publish_raw(server, [("rxbus.orders.created", b"{not json", None)])
        fill(server, "ORDERS", events(2))
        got = Collector()
        source = nats_stream(server.url, "ORDERS", "billing")
        sub = source.subscribe(got)
        wait_until(lambda: len(got) == 4 and source.stats["dead_lettered"] == 1, 30, "all four")
        sub.dispose()
        ((_, headers, data),) = read_all(server, "ORDERS_DEAD")
        assert data == b"{not json"
        assert headers["Rxbus-Error"].startswith("malformed event")
        assert headers["Rxbus-Deliveries"] == "1"

    def test_manual_ack_waits_for_the_subscriber(self, server: NatsServer) -> None:
        """With manual_ack, Delivery objects arrive; unacknowledged ones come back after
        ack_wait, acknowledged ones never do."""
        batch = events(6)
        fill(server, "ORDERS", batch)
        got = Collector()
        source = nats_stream(server.url, "ORDERS", "w", manual_ack=True, ack_wait=1.0)
        sub = source.subscribe(got)
        wait_until(lambda: len(got) == 6, 30, "six deliveries")
        first: list[Delivery] = list(got.items)
        assert all(isinstance(d, Delivery) and d.deliveries == 1 for d in first)
        for d in first[:4]:
            threading.Thread(target=d.ack).start()  # from any thread
        wait_until(lambda: len(got) == 8, 30, "the two unacknowledged ones again")
        again = got.items[6:]
        assert [d.event.id for d in again] == [e.id for e in batch[4:]]
        assert all(d.deliveries == 2 for d in again)
        for d in again:
            d.ack()
        wait_until(lambda: consumer_pending(server, "ORDERS", "w") == (0, 0), 10, "acks")
        sub.dispose()
        assert len(got) == 8

    def test_two_subscribers_on_one_durable_share_the_work(self, server: NatsServer) -> None:
        """Two readers of one durable consumer split the stream: each event reaches exactly
        one of them."""
        batch = events(4000)
        fill(server, "ORDERS", batch)
        a, b = Collector(), Collector()
        source = nats_stream(server.url, "ORDERS", "shared", batch_size=50)
        subs = [source.subscribe(a), source.subscribe(b)]
        wait_until(lambda: len(a) + len(b) == 4000, 60, "every event")
        for s in subs:
            s.dispose()
        ids_a, ids_b = {e.id for e in a.items}, {e.id for e in b.items}
        assert ids_a | ids_b == {e.id for e in batch}
        assert not ids_a & ids_b
        assert len(a) > 0 and len(b) > 0

    def test_redelivered_events_already_processed_are_skipped(self, server: NatsServer) -> None:
        """A redelivery of an event some process recorded as processed (it died between the
        record and the ack) is acknowledged without reaching the handler."""
        batch = events(6)
        fill(server, "ORDERS", batch)
        first = Collector()
        source = nats_stream(server.url, "ORDERS", "w", manual_ack=True, ack_wait=1.0)
        sub = source.subscribe(first)
        wait_until(lambda: len(first) == 6, 30, "six deliveries")
        sub.dispose()  # never acked: all six come back after ack_wait
        # What a process that handled the first three and died before acking leaves behind.
        publish_raw(server, [(f"_rxbus.done.ORDERS.w.{e.id}", b"", None) for e in batch[:3]])
        got = Collector()
        again = nats_stream(server.url, "ORDERS", "w", ack_wait=1.0)
        sub = again.subscribe(got)
        wait_until(lambda: again.stats["duplicates"] == 3 and len(got) == 3, 30, "redeliveries")
        wait_until(lambda: consumer_pending(server, "ORDERS", "w") == (0, 0), 10, "acks")
        sub.dispose()
        assert [e.id for e in got.items] == [e.id for e in batch[3:]]

    def test_an_empty_stream_waits_without_spinning_or_noise(self, server: NatsServer) -> None:
        """Idle, the source sends one pull request per fetch_timeout, raises nothing and logs
        nothing; an event published later arrives."""
        records: list[str] = []
        handler = logger.add(records.append, level="INFO", filter="rxbus")
        logger.enable("rxbus")
        got = Collector()
        source = nats_stream(server.url, "ORDERS", "idle", fetch_timeout=0.2)
        try:
            sub = source.subscribe(got)
            wait_until(lambda: source.stats["pulls"] >= 2, 10, "the first pull to expire")
            start, pulls = time.monotonic(), source.stats["pulls"]
            wait_until(lambda: source.stats["pulls"] >= pulls + 5, 10, "five more empty pulls")
            elapsed = time.monotonic() - start
            fill(server, "ORDERS", events(1))
            wait_until(lambda: len(got) == 1, 10, "the late event")
            sub.dispose()
        finally:
            logger.remove(handler)
            logger.disable("rxbus")
        assert elapsed >= 4 * 0.2  # each empty pull lasted its fetch_timeout: no hot loop
        assert got.errors == []
        (created,) = records  # the only record: creating the stream on the first subscribe
        assert "created stream ORDERS" in created
        stats = source.stats
        assert stats["reconnects"] == stats["retries"] == stats["recreated"] == 0

    def test_a_deleted_consumer_is_recreated_with_one_warning(self, server: NatsServer) -> None:
        """An operator deletes the durable consumer while the source waits: it is noticed
        within a pull, recreated, reported once, and the next events flow."""
        fill(server, "ORDERS", events(3))
        records: list[str] = []
        handler = logger.add(records.append, level="WARNING", filter="rxbus")
        logger.enable("rxbus")
        got = Collector()
        source = nats_stream(server.url, "ORDERS", "billing", fetch_timeout=0.2)
        try:
            sub = source.subscribe(got)
            wait_until(lambda: len(got) == 3, 30, "the first events")

            async def delete(js: Any) -> None:
                await js.delete_consumer("ORDERS", "billing")

            server.js(delete)
            wait_until(lambda: source.stats["recreated"] >= 1, 30, "the consumer to be recreated")
            later = events(4)
            fill(server, "ORDERS", later)
            # The recreated consumer starts from the stream's start: the first three come back
            # as redeliveries it never saw, so they are handed out again (at-least-once).
            wait_until(lambda: {e.id for e in later} <= {e.id for e in got.items}, 30, "later")
            sub.dispose()
        finally:
            logger.remove(handler)
            logger.disable("rxbus")
        recreated = [r for r in records if "recreating" in r]
        assert len(recreated) == source.stats["recreated"] <= 2
        assert source.stats["pulls"] < 200  # bounded: never a hot loop

    def test_a_stream_lost_with_a_memory_server_restart_is_recreated(
        self, server: NatsServer
    ) -> None:
        """A memory-storage stream vanishes when nats-server restarts: the sink and the source
        recreate stream and consumer, and events published after the restart all arrive."""
        sink = NatsSink(
            server.url, "MEM", create_stream=True, storage="memory", ack_timeout=1,
            retry_delay=0.02, max_retry_delay=0.2,
        )  # fmt: skip
        got = Collector()
        source = nats_stream(
            server.url, "MEM", "d", storage="memory", fetch_timeout=0.2, max_retry_delay=0.2
        )
        sub = source.subscribe(got)
        try:
            for e in events(5):
                sink.on_next(e)
            wait_until(lambda: len(got) == 5, 30, "events before the restart")
            server.kill()
            server.start()
            after = events(20)
            for e in after:
                sink.on_next(e)
            assert sink.flush(30), sink.stats
            wait_until(lambda: {e.id for e in after} <= {e.id for e in got.items}, 30, "after")
        finally:
            sub.dispose()
            sink.close(timeout=1)
        assert sink.stats["written"] == 25
        assert sink.stats["reconnects"] >= 1 and source.stats["reconnects"] >= 1
        # The stream was gone after the restart: the sink found no stream for its subjects and
        # recreated it, or the source recreated it (and its consumer) first.
        assert sink.stats["retried"] + source.stats["recreated"] + source.stats["retries"] >= 1

    def test_a_configuration_the_server_refuses_ends_the_stream_with_its_error(
        self, server: NatsServer
    ) -> None:
        """A filter outside the stream's subjects is refused by the server: the subscriber
        gets that error once (on_error), instead of the source retrying forever."""
        fill(server, "ORDERS", events(1))  # subjects rxbus.>
        got = Collector()
        source = nats_stream(
            server.url, "ORDERS", "d", subject_prefix="elsewhere", create_stream=False
        )
        sub = source.subscribe(got)
        wait_until(lambda: len(got.errors) == 1, 30, "the refusal")
        sub.dispose()
        assert "filter subject" in str(got.errors[0]).lower()
        assert len(got) == 0 and source.stats["retries"] == 0

    def test_bridge_publishes_into_a_bus_keeping_ids(self, server: NatsServer) -> None:
        """bridge() publishes each event into the bus with its id, acking after publish."""
        batch = events(50)
        fill(server, "ORDERS", batch)
        seen: list[str] = []
        with EventBus(name="far") as bus:
            bus.subscribe(lambda e: seen.append(e.id), topic="orders.**")
            link = bridge(bus, server.url, "ORDERS", "far", filter="orders.**")
            wait_until(lambda: len(seen) == 50, 30, "the bridged events")
            link.dispose()
        assert seen == [e.id for e in batch]


def consumer_pending(server: NatsServer, stream: str, durable: str) -> tuple[int, int]:
    """(unacknowledged, not yet delivered) of a consumer."""

    async def call(js: Any) -> tuple[int, int]:
        info = await js.consumer_info(stream, durable)
        return int(info.num_ack_pending), int(info.num_pending)

    return server.js(call)


def test_docstring_examples_pass() -> None:
    """The examples in the bridge's docstrings run as doctests (no server needed)."""
    import doctest

    import rxbus.sinks.nats
    import rxbus.sources.nats

    for module in (rxbus.sources.nats, rxbus.sinks.nats):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted >= 3, module.__name__


def test_a_re_send_after_the_dedupe_window_is_stored_again_and_skipped_by_id(
    server: NatsServer,
) -> None:
    """The server dedupes only within duplicate_window: an event re-sent later is stored a
    second time, and the source skips the copy by event id."""
    batch = events(20)
    got = Collector()
    source = nats_stream(server.url, "SHORT", "d", duplicate_window=0.5, fetch_timeout=0.2)
    sub = source.subscribe(got)
    with NatsSink(server.url, "SHORT", create_stream=True, duplicate_window=0.5) as sink:
        for e in batch:
            sink.on_next(e)
        assert sink.flush(30)
        wait_until(lambda: len(got) == 20, 30, "the first copies")
        # Wait (on the server's own answer) until the window has passed for a probe event.
        probe = Event(topic="orders.probe")
        sink.on_next(probe)
        assert sink.flush(30)

        def window_passed() -> bool:
            before = sink.stats["duplicates"]
            sink.on_next(probe)
            assert sink.flush(30)
            return sink.stats["duplicates"] == before

        wait_until(window_passed, 20, "the dedupe window to pass", interval=0.1)
        for e in batch:  # a producer replaying its log, too late for the server's dedupe
            sink.on_next(e)
        assert sink.flush(30)
        assert sink.stats["duplicates"] >= 1  # the probe, while the window was open
    wait_until(lambda: source.stats["duplicates"] >= 21, 30, "the copies to be skipped")
    sub.dispose()
    assert stream_messages(server, "SHORT") == 20 + 2 + 20  # batch, probe twice, batch again
    assert sorted(e.id for e in got.items) == sorted([e.id for e in batch] + [probe.id])
