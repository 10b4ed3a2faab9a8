"""The persistent sinks on a real bus: subscribe, close, metrics, replay seam, dead letters."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from rxbus import DeadLetter, Event, EventBus
from rxbus.sinks import JsonlSink, SQLiteStore, read_jsonl
from rxbus.sinks._batch import DEAD_LETTER_TOPIC, original_event
from tests.conftest import wait_until


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_subscribed_sink_stores_every_event_and_closes_with_the_bus(
    tmp_path: Path, kind: str
) -> None:
    """bus.subscribe(sink) in sync mode; bus.close() completes it, which flushes and closes."""
    path = tmp_path / ("e.jsonl" if kind == "jsonl" else "e.db")
    sink: Any = JsonlSink(path) if kind == "jsonl" else SQLiteStore(path)
    bus = EventBus()
    bus.subscribe(sink, name="store")
    sent = [bus.publish("order.created", {"i": i}) for i in range(5_000)]
    metrics = bus.metrics()["consumers"]["store"]
    assert metrics["delivered"] == 5_000 and metrics["failed"] == 0
    assert set(metrics["sink"]) >= {"written", "errors", "dropped", "pending"}
    assert bus.close() == []
    if kind == "jsonl":
        assert list(read_jsonl(path)) == sent
    else:
        with SQLiteStore(path, readonly=True) as reader:
            assert reader.query() == sent
    assert sink.stats["written"] == 5_000 and sink.stats["errors"] == 0


def test_replay_from_store_then_live_has_no_gap_and_no_duplicate(tmp_path: Path) -> None:
    """While 3 threads publish, replay(store=..., live=True) starts; each thread's sequence
    arrives complete, in order, exactly once, across the seam between stored and live."""
    with EventBus() as bus, SQLiteStore(tmp_path / "seam.db") as store:
        bus.subscribe(store, name="store")
        stop = threading.Event()
        published = [0, 0, 0]

        def publish(k: int) -> None:
            while not stop.is_set():
                bus.publish(f"load.p{k}", {"i": published[k]})
                published[k] += 1

        threads = [threading.Thread(target=publish, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        wait_until(lambda: min(published) >= 1_000, 30)
        got: list[Event] = []
        subscription = bus.replay("load.*", store=store, live=True).subscribe(got.append)
        at_seam = list(published)
        # Keep publishing well past the seam before stopping.
        wait_until(lambda: all(p >= s + 1_000 for p, s in zip(published, at_seam, strict=True)), 30)
        stop.set()
        for t in threads:
            t.join()
        subscription.dispose()
    for k in range(3):
        seq = [e.data["i"] for e in got if e.topic == f"load.p{k}"]
        assert set(seq) == set(range(published[k])), f"producer {k}: a gap at the seam"
        assert seq == list(range(published[k])), f"producer {k}: a duplicate at the seam"
    assert len({e.id for e in got}) == len(got) == sum(published)


def test_replay_since_reads_from_the_store(tmp_path: Path) -> None:
    """since= (a time or an event id) selects the stored past; live=False then completes."""
    with EventBus() as bus, SQLiteStore(tmp_path / "s.db") as store:
        bus.subscribe(store)
        sent = [bus.publish("t.a", {"i": i}) for i in range(10)]
        got: list[Event] = []
        done = threading.Event()
        bus.replay(store=store, since=sent[6].id).subscribe(got.append, on_completed=done.set)
        assert done.is_set()
        assert got == sent[6:]
        by_time: list[Event] = []
        bus.replay(store=store, since=sent[8].timestamp).subscribe(by_time.append)
        assert [e.data["i"] for e in by_time] == [
            e.data["i"] for e in sent if e.timestamp >= sent[8].timestamp
        ]


def test_jsonl_sink_is_a_replay_store(tmp_path: Path) -> None:
    with EventBus() as bus, JsonlSink(tmp_path / "e.jsonl") as sink:
        bus.subscribe(sink)
        sent = [bus.publish("t.a", {"i": i}) for i in range(5)]
        got: list[Event] = []
        bus.replay(store=sink).subscribe(got.append)
        assert got == sent


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_dead_letters_persisted_with_one_line(tmp_path: Path, kind: str) -> None:
    """bus.dead_letters.subscribe(store.on_next) keeps every dead letter with its event."""
    path = tmp_path / ("dl.jsonl" if kind == "jsonl" else "dl.db")
    store: Any = JsonlSink(path) if kind == "jsonl" else SQLiteStore(path)
    with EventBus() as bus, store:
        bus.dead_letters.subscribe(store.on_next)

        def mailer(event: Event) -> None:
            if event.data["to"].endswith("@bad"):
                raise ConnectionError("smtp refused")

        bus.subscribe(mailer, name="mailer")
        sent = [
            bus.publish("mail.send", {"to": f"u{i}@{'bad' if i % 3 else 'ok'}"}) for i in range(9)
        ]
        store.flush()
        stored = store.query(DEAD_LETTER_TOPIC)
    assert [original_event(s) for s in stored] == [e for i, e in enumerate(sent) if i % 3]
    assert {s.data["consumer"] for s in stored} == {"mailer"}
    assert {s.data["error"] for s in stored} == {"ConnectionError: smtp refused"}


def test_a_full_disk_sink_counts_and_dead_letters_while_others_lose_nothing(
    tmp_path: Path,
) -> None:
    """A JsonlSink on /dev/full (every write fails with ENOSPC) next to a healthy JSONL sink and
    a SQLite store: the bus keeps publishing, the healthy sinks get every event, and every
    failed event is a dead letter counted by the failing sink."""
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is not available on this system")
    letters: list[DeadLetter] = []
    full = JsonlSink("/dev/full", dead_letters=letters.append, fsync="never")
    good = JsonlSink(tmp_path / "good.jsonl")
    store = SQLiteStore(tmp_path / "good.db")
    bus = EventBus()
    bus.subscribe(full, name="full")
    bus.subscribe(good, name="good")
    bus.subscribe(store, name="store")
    sent = [bus.publish("t.a", {"i": i}) for i in range(2_000)]
    assert full.flush() and good.flush() and store.flush()
    metrics = bus.metrics()
    assert metrics["consumers"]["full"]["failed"] == 0  # nothing raised into the bus
    assert metrics["consumers"]["full"]["sink"]["written"] == 0
    assert metrics["consumers"]["full"]["sink"]["errors"] >= 1
    assert sorted(e.data["i"] for e in (dl.event for dl in letters)) == list(range(2_000))
    assert all("No space left" in str(dl.error) for dl in letters)
    assert bus.close() == []
    assert list(read_jsonl(tmp_path / "good.jsonl")) == sent
    with SQLiteStore(tmp_path / "good.db", readonly=True) as reader:
        assert reader.count() == 2_000


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_an_event_mutated_into_garbage_is_dead_lettered_alone(tmp_path: Path, kind: str) -> None:
    """Event dicts are mutable: one that no longer serialises costs only itself, not its batch."""
    letters: list[DeadLetter] = []
    path = tmp_path / ("m.jsonl" if kind == "jsonl" else "m.db")
    sink: Any = (
        JsonlSink(path, dead_letters=letters.append)
        if kind == "jsonl"
        else SQLiteStore(path, dead_letters=letters.append)
    )
    sent = [Event(topic="t.a", data={"i": i}) for i in range(100)]
    sent[40].data["bad"] = {1, 2}  # a set: not JSON
    with sink:
        for e in sent:
            sink.on_next(e)
        sink.flush()
        stored = sink.query()
        stats = sink.stats
    assert [e.data["i"] for e in stored] == [i for i in range(100) if i != 40]
    assert [dl.event for dl in letters] == [sent[40]]
    assert isinstance(letters[0].error, TypeError)
    assert stats["written"] == 99 and stats["errors"] == 1


def test_failures_become_dead_letters_of_the_bus_the_sink_is_subscribed_to(bus: EventBus) -> None:
    """Without dead_letters=, bus.subscribe(sink) binds the sink: events it cannot write are the
    bus's dead letters, counted for its consumer."""
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is not available on this system")
    full = JsonlSink("/dev/full", fsync="never")
    bus.subscribe(full, name="full")
    sent = [bus.publish("t.a", {"i": i}) for i in range(50)]
    assert full.flush()
    letters = bus.recent_dead_letters(limit=1_000)
    metrics = bus.metrics()
    assert [dl.event for dl in letters] == sent
    assert {dl.consumer for dl in letters} == {full.name}
    assert metrics["dead_lettered"] == 50
    assert metrics["consumers"]["full"]["dead_lettered"] == 50


def test_a_store_keeping_dead_letters_on_a_full_disk_does_not_feed_itself(bus: EventBus) -> None:
    """bus.dead_letters.subscribe(store.on_next) on a store that cannot write: each failed event
    is one dead letter; the dead letter the store then fails to keep is logged, not sent round
    again (which would loop for as long as the disk stays full)."""
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is not available on this system")
    full = JsonlSink("/dev/full", fsync="never")
    bus.subscribe(full, name="full")
    bus.dead_letters.subscribe(full.on_next)
    for i in range(20):
        bus.publish("t.a", {"i": i})
    assert full.flush()
    assert full.flush()  # the dead letters it was handed meanwhile are settled too
    dead = bus.metrics()["dead_lettered"]
    stats = full.stats
    assert dead == 20
    assert stats["written"] == 0
