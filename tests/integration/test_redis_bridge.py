"""RedisStreamSink and redis_stream against a real redis-server started by each test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from rxbus import DeadLetter, Event, EventBus
from rxbus.sinks import RedisStreamSink
from rxbus.sinks.redis import shard_for, shard_names
from rxbus.sources import redis_stream
from rxbus.sources.redis import Delivery, bridge
from tests.conftest import require_binary, wait_until
from tests.integration.redis_server import RedisServer, running_redis

pytestmark = [pytest.mark.needs_redis, pytest.mark.timeout(120)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as srv:
        yield srv


@pytest.fixture
def client(server: RedisServer) -> Iterator[Any]:
    c = server.client()
    yield c
    c.close()


def events(n: int, topic: str = "orders.created") -> list[Event]:
    return [Event(topic=topic, data={"i": i}) for i in range(n)]


def write_raw(client: Any, stream: str, batch: list[Event]) -> None:
    """Put events into a stream the way the sink does, without the sink."""
    pipe = client.pipeline(transaction=False)
    for e in batch:
        pipe.xadd(stream, {"id": e.id, "topic": e.topic, "event": e.to_json()})
    pipe.execute()


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


def pending_count(client: Any, stream: str, group: str) -> int:
    return int(client.xpending(stream, group)["pending"])


class TestSink:
    def test_writes_every_event_in_order_with_id_topic_and_json(
        self, server: RedisServer, client: Any
    ) -> None:
        """Each event becomes one entry (id, topic, event JSON), in publish order."""
        batch = events(1200)
        with RedisStreamSink(server.url, stream="s", batch_size=500) as sink:
            for e in batch:
                sink.on_next(e)
            assert sink.flush(10)
            stats = sink.stats
        assert stats["written"] == 1200
        assert stats["outbox"] == 0
        assert stats["batches"] >= 3  # 500-event pipelines, not one round trip per event
        entries = client.xrange("s")
        assert [f[b"id"].decode() for _, f in entries] == [e.id for e in batch]
        assert {f[b"topic"] for _, f in entries} == {b"orders.created"}
        assert Event.from_json(entries[7][1][b"event"]) == batch[7]

    def test_small_batches_go_out_after_batch_seconds(
        self, server: RedisServer, client: Any
    ) -> None:
        """Three events (far below batch_size) are written without a flush or close."""
        with RedisStreamSink(server.url, stream="s", batch_size=500, batch_seconds=0.02) as sink:
            for e in events(3):
                sink.on_next(e)
            wait_until(lambda: client.xlen("s") == 3, 10, "the time-triggered batch")
            assert sink.stats["written"] == 3

    def test_maxlen_trims_the_stream(self, server: RedisServer, client: Any) -> None:
        """maxlen with exact trimming keeps only the newest entries."""
        batch = events(300)
        with RedisStreamSink(server.url, stream="s", maxlen=100, approximate=False) as sink:
            for e in batch:
                sink.on_next(e)
            assert sink.flush(10)
        entries = client.xrange("s")
        assert [f[b"id"].decode() for _, f in entries] == [e.id for e in batch[-100:]]

    def test_stream_from_topic_shards_by_hash(self, server: RedisServer, client: Any) -> None:
        """A topic -> stream function routes each topic to one stream, keeping its order."""
        pick = shard_for("orders", 3)
        topics = [f"orders.c{k}" for k in range(12)]
        batch = [Event(topic=topics[i % 12], data={"i": i}) for i in range(600)]
        with RedisStreamSink(server.url, stream=pick) as sink:
            for e in batch:
                sink.on_next(e)
            assert sink.flush(10)
        seen: dict[str, list[str]] = {}
        for name in shard_names("orders", 3):
            for _, f in client.xrange(name):
                topic = f[b"topic"].decode()
                assert pick(topic) == name
                seen.setdefault(topic, []).append(f[b"id"].decode())
        for topic in topics:
            assert seen[topic] == [e.id for e in batch if e.topic == topic]
        assert sum(client.xlen(n) for n in shard_names("orders", 3)) == 600
        assert len({pick(t) for t in topics}) > 1  # the hash really spreads the topics

    def test_holds_and_retries_while_redis_is_down(self, tmp_path: Path) -> None:
        """Events published while Redis is unreachable are held, retried, then all written."""
        srv = RedisServer(require_binary("redis-server"), tmp_path)  # not started yet
        sink = RedisStreamSink(srv.url, stream="s", retry_delay=0.01, max_retry_delay=0.1)
        try:
            batch = events(1000)
            for e in batch:
                sink.on_next(e)
            wait_until(lambda: sink.stats["retried"] >= 2, 10, "failed write attempts")
            assert sink.stats["outbox"] == 1000
            assert sink.stats["written"] == 0
            srv.start()
            assert sink.flush(15)
            assert sink.stats["written"] == 1000
            assert sink.stats["outbox"] == 0
            c = srv.client()
            assert [f[b"id"].decode() for _, f in c.xrange("s")] == [e.id for e in batch]
            c.close()
        finally:
            sink.close(timeout=1)
            srv.stop()

    def test_outbox_overflow_is_counted_and_dead_lettered(self, tmp_path: Path) -> None:
        """A full outbox refuses new events; each is counted and becomes a dead letter."""
        srv = RedisServer(require_binary("redis-server"), tmp_path)  # never started
        letters: list[DeadLetter] = []
        sink = RedisStreamSink(
            srv.url, stream="s", outbox_size=50, batch_size=10, dead_letters=letters.append
        )
        batch = events(80)
        for e in batch:
            sink.on_next(e)  # never blocks, never raises
        stats = sink.stats
        assert stats["overflow"] == 30
        assert stats["outbox"] == 50
        assert [d.event.id for d in letters] == [e.id for e in batch[50:]]
        sink.close(timeout=0.2)
        stats = sink.stats
        assert stats["lost"] == 50  # counted, not hidden
        assert stats["outbox"] == 0
        assert len(letters) == 80

    def test_drop_oldest_keeps_the_newest(self, tmp_path: Path) -> None:
        """With Overflow.DROP_OLDEST the oldest waiting events make room for new ones."""
        srv = RedisServer(require_binary("redis-server"), tmp_path)  # never started
        letters: list[DeadLetter] = []
        sink = RedisStreamSink(
            srv.url,
            stream="s",
            outbox_size=20,
            batch_size=100,  # never full, and batch_seconds never passes: nothing leaves
            batch_seconds=60,
            overflow="drop_oldest",
            dead_letters=letters.append,
        )
        batch = events(25)
        for e in batch:
            sink.on_next(e)
        assert sink.stats["overflow"] == 5
        assert [d.event.id for d in letters] == [e.id for e in batch[:5]]
        sink.close(timeout=0.2)
        assert [d.event.id for d in letters[5:]] == [e.id for e in batch[5:]]
        assert sink.stats["lost"] == 20

    def test_an_item_that_is_not_an_event_is_an_error_not_a_crash(
        self, server: RedisServer, client: Any
    ) -> None:
        """Something other than an Event (e.g. after a transform) is dead-lettered; the rest
        is written."""
        letters: list[DeadLetter] = []
        with RedisStreamSink(server.url, stream="s", dead_letters=letters.append) as sink:
            sink.on_next("not an event")  # type: ignore[arg-type]
            sink.on_next(events(1)[0])
            assert sink.flush(10)
            assert sink.stats["errors"] == 1
            assert sink.stats["written"] == 1
        assert letters[0].event == "not an event"
        assert client.xlen("s") == 1

    def test_completion_flushes(self, server: RedisServer, client: Any) -> None:
        """on_completed writes what is queued before the sink stops."""
        sink = RedisStreamSink(server.url, stream="s", batch_size=10_000, batch_seconds=60)
        for e in events(250):
            sink.on_next(e)
        sink.on_completed()
        assert client.xlen("s") == 250
        assert sink.stats["written"] == 250

    def test_after_close_events_are_counted_not_raised(self, server: RedisServer) -> None:
        """An event after close is an error in stats and a dead letter, never an exception."""
        letters: list[DeadLetter] = []
        sink = RedisStreamSink(server.url, stream="s", dead_letters=letters.append)
        sink.close()
        sink.on_next(events(1)[0])
        assert sink.stats["errors"] == 1
        assert len(letters) == 1

    def test_redis_refusing_a_write_is_an_error_not_a_retry(
        self, server: RedisServer, client: Any
    ) -> None:
        """A key of the wrong type fails those events (dead letters) and the rest go on."""
        client.set("wrong", "a string, not a stream")
        letters: list[DeadLetter] = []

        def route(topic: str) -> str:
            return "wrong" if topic == "bad.one" else "good"

        with RedisStreamSink(server.url, stream=route, dead_letters=letters.append) as sink:
            sink.on_next(Event(topic="ok.one"))
            sink.on_next(Event(topic="bad.one"))
            sink.on_next(Event(topic="ok.two"))
            assert sink.flush(10)
            assert sink.stats["errors"] == 1
            assert sink.stats["written"] == 2
            assert sink.stats["retried"] == 0
        assert client.xlen("good") == 2
        assert "WRONGTYPE" in str(letters[0].error)

    def test_stats_show_in_bus_metrics(self, server: RedisServer) -> None:
        """bus.metrics() carries the sink's written/retried/outbox under the consumer."""
        bus = EventBus(name="m")
        sink = RedisStreamSink(server.url, stream="s")
        bus.subscribe(sink, name="to-redis")
        for i in range(10):
            bus.publish("orders.created", {"i": i})
        assert sink.flush(10)
        shown = bus.metrics()["consumers"]["to-redis"]["sink"]
        assert shown["written"] == 10
        assert shown["outbox"] == 0
        assert shown["retried"] == 0
        bus.close()

    @pytest.mark.parametrize(
        ("kwargs", "needle"),
        [
            ({"stream": ""}, "stream"),
            ({"stream": 3}, "stream"),
            ({"maxlen": 0}, "maxlen"),
            ({"batch_size": 0}, "batch_size"),
            ({"batch_seconds": -1}, "batch_seconds"),
            ({"overflow": "block"}, "overflow"),
        ],
    )
    def test_bad_arguments_name_the_value(self, kwargs: dict[str, Any], needle: str) -> None:
        """A bad argument raises ValueError naming it."""
        with pytest.raises(ValueError, match=needle):
            RedisStreamSink("redis://127.0.0.1:1/0", **kwargs)


class TestSource:
    def test_creates_the_group_on_a_missing_stream(self, server: RedisServer, client: Any) -> None:
        """Subscribing to a stream that does not exist creates it and the group (MKSTREAM)."""
        got = Collector()
        sub = redis_stream(server.url, "fresh", "g", "c1", block=0.05).subscribe(got)
        wait_until(lambda: client.exists("fresh"), 10, "the stream to be created")
        groups = client.xinfo_groups("fresh")
        assert [g["name"] for g in groups] == [b"g"]
        batch = events(5)
        write_raw(client, "fresh", batch)
        wait_until(lambda: len(got) == 5, 10, "five events")
        sub.dispose()
        assert [e.id for e in got.items] == [e.id for e in batch]

    def test_reads_in_order_and_acks_after_on_next(self, server: RedisServer, client: Any) -> None:
        """One consumer gets a stream's events in order; each is acked after on_next returned."""
        batch = events(1500)
        write_raw(client, "s", batch)
        got = Collector()
        source = redis_stream(server.url, "s", "g", "c1", batch_size=200, block=0.05)
        sub = source.subscribe(got)
        wait_until(lambda: source.stats["acked"] == 1500, 15, "1500 acks")
        sub.dispose()
        assert [e.id for e in got.items] == [e.id for e in batch]
        assert got.items[3] == batch[3]
        assert pending_count(client, "s", "g") == 0

    def test_a_raising_handler_leaves_the_entry_pending(
        self, server: RedisServer, client: Any
    ) -> None:
        """on_next raising means not handled: no ack, the entry stays pending, reading goes on."""
        batch = events(3)
        write_raw(client, "s", batch)
        handled: list[str] = []

        def handle(e: Event) -> None:
            if e.id == batch[1].id:
                raise RuntimeError("cannot handle this one")
            handled.append(e.id)

        source = redis_stream(server.url, "s", "g", "c1", block=0.05, claim_idle=3600)
        sub = source.subscribe(handle)
        wait_until(lambda: source.stats["acked"] == 2, 10, "two acks")
        sub.dispose()
        assert handled == [batch[0].id, batch[2].id]
        assert source.stats["failed"] == 1
        pending = client.xpending_range("s", "g", "-", "+", 10)
        assert len(pending) == 1
        entry = client.xrange("s", pending[0]["message_id"], pending[0]["message_id"])
        assert entry[0][1][b"id"].decode() == batch[1].id

    def test_skips_an_event_written_twice(self, server: RedisServer, client: Any) -> None:
        """The same event id in two entries (a retried batch) is handled once, both acked."""
        batch = events(4)
        write_raw(client, "s", [*batch, batch[1], batch[2]])
        got = Collector()
        source = redis_stream(server.url, "s", "g", "c1", block=0.05)
        sub = source.subscribe(got)
        wait_until(lambda: source.stats["acked"] == 6, 10, "six acks")
        sub.dispose()
        assert [e.id for e in got.items] == [e.id for e in batch]
        assert source.stats["duplicates"] == 2
        assert pending_count(client, "s", "g") == 0

    def test_dedupe_is_shared_through_redis(self, server: RedisServer, client: Any) -> None:
        """A second consumer of the group skips ids the first one already processed."""
        batch = events(10)
        write_raw(client, "s", batch)
        first = redis_stream(server.url, "s", "g", "c1", block=0.05)
        sub = first.subscribe(Collector())
        wait_until(lambda: first.stats["acked"] == 10, 10, "ten acks")
        sub.dispose()
        write_raw(client, "s", batch[:4])  # redelivered copies, e.g. from a producer retry
        got = Collector()
        second = redis_stream(server.url, "s", "g", "c2", block=0.05)
        sub = second.subscribe(got)
        wait_until(lambda: second.stats["acked"] == 4, 10, "four acks")
        sub.dispose()
        assert got.items == []
        assert second.stats["duplicates"] == 4

    def test_manual_ack_waits_for_ack(self, server: RedisServer, client: Any) -> None:
        """With manual_ack, entries stay pending until Delivery.ack() is called."""
        batch = events(3)
        write_raw(client, "s", batch)
        got = Collector()
        source = redis_stream(server.url, "s", "g", "c1", manual_ack=True, block=0.05)
        sub = source.subscribe(got)
        wait_until(lambda: len(got) == 3, 10, "three deliveries")
        deliveries: list[Delivery] = got.items
        assert [d.event.id for d in deliveries] == [e.id for e in batch]
        assert all(d.deliveries == 1 and d.stream == "s" for d in deliveries)
        assert pending_count(client, "s", "g") == 3
        deliveries[0].ack()
        deliveries[2].ack()
        deliveries[2].ack()  # idempotent
        wait_until(lambda: pending_count(client, "s", "g") == 1, 10, "two acks to reach Redis")
        sub.dispose()
        deliveries[1].ack()  # after disposal: sent at once
        assert pending_count(client, "s", "g") == 0
        assert source.stats["acked"] == 3

    def test_disposal_leaves_unacked_entries_for_another_consumer(
        self, server: RedisServer, client: Any
    ) -> None:
        """After dispose nothing more is read; what was not acked is claimed by a live consumer."""
        batch = events(6)
        write_raw(client, "s", batch)
        got = Collector()
        first = redis_stream(server.url, "s", "g", "c1", manual_ack=True, block=0.05)
        sub = first.subscribe(got)
        wait_until(lambda: len(got) == 6, 10, "six deliveries")
        for d in got.items[:2]:
            d.ack()
        sub.dispose()
        newer = events(2, topic="later.event")
        write_raw(client, "s", newer)
        assert first.stats["delivered"] == 6  # disposal stopped the reading
        assert pending_count(client, "s", "g") == 4
        taken = Collector()
        second = redis_stream(
            server.url, "s", "g", "c2", block=0.05, claim_idle=0, claim_interval=0.05
        )
        sub2 = second.subscribe(taken)
        wait_until(lambda: second.stats["acked"] == 6, 10, "the claimed four plus two new")
        sub2.dispose()
        assert sorted(e.id for e in taken.items) == sorted(e.id for e in [*batch[2:], *newer])
        assert second.stats["claimed"] == 4
        assert pending_count(client, "s", "g") == 0

    def test_a_restarted_consumer_rereads_its_own_pending_first(
        self, server: RedisServer, client: Any
    ) -> None:
        """A consumer that stopped without acking gets those entries back first on restart."""
        batch = events(5)
        write_raw(client, "s", batch)
        got = Collector()
        first = redis_stream(server.url, "s", "g", "worker", manual_ack=True, block=0.05)
        sub = first.subscribe(got)
        wait_until(lambda: len(got) == 5, 10, "five deliveries")
        got.items[0].ack()
        sub.dispose()
        newer = events(2, topic="later.event")
        write_raw(client, "s", newer)
        again = Collector()
        second = redis_stream(server.url, "s", "g", "worker", manual_ack=True, block=0.05)
        sub = second.subscribe(again)
        wait_until(lambda: len(again) == 6, 10, "four recovered plus two new")
        sub.dispose()
        ids = [d.event.id for d in again.items]
        assert ids == [e.id for e in batch[1:]] + [e.id for e in newer]
        assert [d.deliveries for d in again.items] == [2, 2, 2, 2, 1, 1]
        assert second.stats["recovered"] == 4

    def test_a_pending_entry_trimmed_away_is_released(
        self, server: RedisServer, client: Any
    ) -> None:
        """A pending entry deleted from the stream (maxlen) is dropped from the pending list."""
        batch = events(3)
        write_raw(client, "s", batch)
        got = Collector()
        first = redis_stream(server.url, "s", "g", "worker", manual_ack=True, block=0.05)
        sub = first.subscribe(got)
        wait_until(lambda: len(got) == 3, 10, "three deliveries")
        sub.dispose()
        client.xdel("s", got.items[1].entry_id)
        again = Collector()
        second = redis_stream(server.url, "s", "g", "worker", block=0.05)
        sub = second.subscribe(again)
        wait_until(lambda: pending_count(client, "s", "g") == 0, 10, "nothing pending")
        sub.dispose()
        assert [e.id for e in again.items] == [batch[0].id, batch[2].id]

    def test_malformed_entry_goes_to_the_dead_letter_stream(
        self, server: RedisServer, client: Any
    ) -> None:
        """An entry that is not an rxbus event is dead-lettered at once and acked."""
        client.xadd("s", {"event": b"{not json"})
        client.xadd("s", {"something": "else"})
        good = events(1)
        write_raw(client, "s", good)
        got = Collector()
        source = redis_stream(server.url, "s", "g", "c1", block=0.05)
        sub = source.subscribe(got)
        wait_until(lambda: client.exists("s:dead") and client.xlen("s:dead") == 2, 10, "2 letters")
        wait_until(lambda: source.stats["acked"] == 1, 10, "the good one")
        sub.dispose()
        assert [e.id for e in got.items] == [good[0].id]
        reasons = [f[b"reason"].decode() for _, f in client.xrange("s:dead")]
        assert "malformed event" in reasons[0]
        assert "no 'event' field" in reasons[1]
        assert pending_count(client, "s", "g") == 0

    def test_start_dollar_skips_what_was_there_before(
        self, server: RedisServer, client: Any
    ) -> None:
        """A new group with start="$" reads only entries added after it was created."""
        write_raw(client, "s", events(3))
        got = Collector()
        source = redis_stream(server.url, "s", "fresh", "c1", start="$", block=0.05)
        sub = source.subscribe(got)
        wait_until(lambda: b"fresh" in [g["name"] for g in client.xinfo_groups("s")], 10, "group")
        later = events(2, topic="later.event")
        write_raw(client, "s", later)
        wait_until(lambda: source.stats["acked"] == 2, 10, "two acks")
        sub.dispose()
        assert [e.id for e in got.items] == [e.id for e in later]

    def test_a_destroyed_group_is_recreated_and_nothing_is_handled_twice(
        self, server: RedisServer, client: Any
    ) -> None:
        """If the group vanishes (NOGROUP), the reader recreates it; re-read history is skipped
        by the processed-id record."""
        first = events(5)
        write_raw(client, "s", first)
        got = Collector()
        source = redis_stream(server.url, "s", "g", "c1", block=0.05)
        sub = source.subscribe(got)
        wait_until(lambda: source.stats["acked"] == 5, 10, "five acks")
        client.xgroup_destroy("s", "g")
        second = events(3, topic="later.event")
        write_raw(client, "s", second)
        wait_until(lambda: len(got) == 8, 10, "the three new events")
        wait_until(lambda: source.stats["duplicates"] == 5, 10, "history skipped")
        sub.dispose()
        assert [e.id for e in got.items] == [e.id for e in first + second]
        assert got.errors == []

    def test_a_key_of_the_wrong_type_ends_the_stream_with_an_error(
        self, server: RedisServer, client: Any
    ) -> None:
        """A stream name that holds a string is not retried forever: on_error names it."""
        client.set("s", "a string")
        got = Collector()
        redis_stream(server.url, "s", "g", "c1", block=0.05).subscribe(got)
        wait_until(lambda: got.errors != [], 10, "on_error")
        assert "WRONGTYPE" in str(got.errors[0])

    def test_bridge_publishes_into_a_bus_and_acks(self, server: RedisServer, client: Any) -> None:
        """bridge(bus, ...) republishes each event (same id) and acks after publish returned."""
        batch = events(20)
        write_raw(client, "s", batch)
        bus = EventBus(name="bridged")
        seen: list[Event] = []
        bus.subscribe(seen.append, topic="orders.*")
        link = bridge(bus, server.url, "s", "g", "c1", block=0.05)
        wait_until(lambda: len(seen) == 20, 10, "twenty events on the bus")
        wait_until(lambda: pending_count(client, "s", "g") == 0, 10, "all acked")
        link.dispose()
        bus.close()
        assert [e.id for e in seen] == [e.id for e in batch]
        assert seen[0] == batch[0]

    def test_sink_to_source_end_to_end_through_two_buses(self, server: RedisServer) -> None:
        """bus A -> RedisStreamSink -> Redis -> redis_stream -> bus B, same events, same order."""
        a = EventBus(name="a")
        b = EventBus(name="b")
        received: list[Event] = []
        b.subscribe(received.append)
        sink = RedisStreamSink(server.url, stream="orders")
        a.subscribe(sink, mode="thread", name="to-redis")
        link = bridge(b, server.url, "orders", "g", "c1", block=0.05)
        sent = [a.publish("orders.created", {"i": i}) for i in range(300)]
        wait_until(lambda: len(received) == 300, 15, "300 events on bus B")
        link.dispose()
        a.close()
        b.close()
        assert received == sent

    @pytest.mark.parametrize(
        ("kwargs", "needle"),
        [
            ({"stream": ""}, "stream"),
            ({"group": None}, "group"),
            ({"batch_size": 0}, "batch_size"),
            ({"max_deliveries": 0}, "max_deliveries"),
            ({"claim_idle": -1}, "claim_idle"),
            ({"block": 0}, "block"),
            ({"start": "latest"}, "start"),
        ],
    )
    def test_bad_arguments_name_the_value(self, kwargs: dict[str, Any], needle: str) -> None:
        """A bad argument raises ValueError naming it, before anything connects."""
        args: dict[str, Any] = {"stream": "s", "group": "g", "consumer": "c"}
        args.update({k: v for k, v in kwargs.items() if k in args})
        options = {k: v for k, v in kwargs.items() if k not in args}
        with pytest.raises(ValueError, match=needle):
            redis_stream("redis://127.0.0.1:1/0", **args, **options)


def test_stream_json_is_the_event_json(server: RedisServer, client: Any) -> None:
    """The event field is Event.to_json(), so any language can read the stream."""
    e = Event(topic="orders.created", data={"total": 12.5}, metadata={"k": "v"})
    with RedisStreamSink(server.url, stream="s") as sink:
        sink.on_next(e)
        assert sink.flush(10)
    ((_, fields),) = client.xrange("s")
    assert orjson.loads(fields[b"event"]) == e.to_dict()
