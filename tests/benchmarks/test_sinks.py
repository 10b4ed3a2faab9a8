"""JsonlSink and SQLiteStore throughput and replay read speed, each next to its floor (issue 4,
point 9). Targets on this VM: JSONL >= 300,000 events/s, SQLite >= 100,000 events/s batched.

One timed round hands ``BATCH`` events to a sink opened (untimed) on a new file and waits for
``flush()``, so the figure is what a publisher can sustain (``on_next`` in the caller,
serialising and writing on the writer thread); opening and closing are outside the timing.
The floors do the same unavoidable work in one thread with nothing around it: orjson lines and
one ``write`` (plus one ``fsync`` for the batch policy) for JSONL; one ``executemany`` in one
transaction of the same rows for SQLite; for reads, ``orjson.loads`` of each line / a bare
``SELECT`` without building events. Each round checks the count, so a sink that drops events
cannot post a fast number. No timing is asserted; events/s = 1e9 / (ns per event) in the table.
Run measured: ``pytest tests/benchmarks/test_sinks.py --benchmark-only``.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from rxbus import Event
from rxbus.sinks import JsonlSink, SQLiteStore, read_jsonl
from rxbus.sinks.sqlite import _INSERT, _MIGRATIONS
from tests.benchmarks.conftest import Recorder

BATCH = 20_000

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return [
        Event(
            topic=f"hook.{('tool', 'session', 'response')[i % 3]}",
            data={"i": i, "tool": "Bash", "command": "ls -la /tmp", "ok": True},
            source="bench",
        )
        for i in range(BATCH)
    ]


class Fresh:
    """Untimed setup and teardown around each timed round (``benchmark.pedantic``): every round
    starts with a new, empty file, and closing it (SQLite's checkpoint included) is not timed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = itertools.count()
        self.opened: list[Any] = []

    def path(self, suffix: str) -> Path:
        return self.directory / f"round{next(self.count)}{suffix}"

    def measure(
        self,
        bench: Recorder,
        key: str,
        setup: Callable[[], Any],
        run: Callable[[Any], None],
        *,
        group: str,
        rounds: int = 7,
    ) -> None:
        def make() -> tuple[tuple[Any], dict[str, Any]]:
            subject = setup()
            self.opened.append(subject)
            return (subject,), {}

        bench.benchmark.group = group
        bench.benchmark.extra_info["ops_per_round"] = BATCH
        try:
            bench.benchmark.pedantic(
                run, setup=make, teardown=self.close, rounds=rounds, warmup_rounds=1
            )
        finally:
            while self.opened:  # pedantic skips teardown under --benchmark-disable
                self.close(self.opened[-1])
        stats = getattr(bench.benchmark, "stats", None)
        if bench.enabled and stats is not None and stats.stats:
            bench.report.record(
                key, stats.stats.median * 1e9 / BATCH, stats.stats.min * 1e9 / BATCH
            )

    def close(self, subject: Any) -> None:
        """Close a sink, connection or fd from a round (once) and delete its files."""
        if not any(subject is o for o in self.opened):
            return  # an fd number must never be closed twice: it may belong to someone else now
        self.opened = [o for o in self.opened if o is not subject]
        if isinstance(subject, int):
            os.close(subject)
        else:
            subject.close()
        for leftover in self.directory.iterdir():
            leftover.unlink()


@pytest.fixture
def fresh(tmp_path: Path) -> Fresh:
    return Fresh(tmp_path)


# -- JSONL ---------------------------------------------------------------------------------------


def encode_floor(events: list[Event]) -> bytearray:
    """Each event as an orjson line appended to one buffer (the cheapest way we know: see
    ``JsonlSink._encode``)."""
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    buf = bytearray()
    for e in events:
        buf += dumps(
            {
                "id": e.id,
                "topic": e.topic,
                "type": e.type,
                "timestamp": e.timestamp,
                "source": e.source,
                "data": e.data,
                "metadata": e.metadata,
                "correlation_id": e.correlation_id,
            },
            option=newline,
        )
    return buf


@pytest.mark.parametrize("policy", ["never", "batch"])
def test_jsonl_floor(bench: Recorder, events: list[Event], fresh: Fresh, policy: str) -> None:
    """Floor: serialise the batch in the caller's thread, one write (and one fsync)."""

    def open_file() -> int:
        return os.open(fresh.path(".jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def run(fd: int) -> None:
        buf = encode_floor(events)
        assert os.write(fd, buf) == len(buf)
        if policy == "batch":
            os.fsync(fd)

    fresh.measure(bench, f"jsonl_{policy}.floor", open_file, run, group="jsonl")


@pytest.mark.parametrize("policy", ["never", "batch"])
def test_jsonl_sink(bench: Recorder, events: list[Event], fresh: Fresh, policy: str) -> None:
    """JsonlSink: on_next for each event, then flush() (written, and fsynced for "batch")."""

    def run(sink: JsonlSink) -> None:
        for e in events:
            sink.on_next(e)
        assert sink.flush(timeout=60)
        assert sink.stats["written"] == BATCH

    fresh.measure(
        bench,
        f"jsonl_{policy}.sink",
        lambda: JsonlSink(fresh.path(".jsonl"), fsync=policy),  # type: ignore[arg-type]
        run,
        group="jsonl",
    )
    bench.compare(
        f"JsonlSink fsync={policy} (target >= 300k events/s)",
        subject=f"jsonl_{policy}.sink",
        floor=f"jsonl_{policy}.floor",
    )


# -- SQLite --------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


@pytest.mark.parametrize(("policy", "synchronous"), [("never", "NORMAL"), ("batch", "FULL")])
def test_sqlite_floor(
    bench: Recorder, events: list[Event], fresh: Fresh, policy: str, synchronous: str
) -> None:
    """Floor: the same rows built and inserted with one executemany in one transaction, in the
    caller's thread, on a connection set up like the store's."""

    def open_db() -> sqlite3.Connection:
        conn = sqlite3.connect(fresh.path(".db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        for _, statements in _MIGRATIONS:
            for statement in statements:
                conn.execute(statement)
        return conn

    def run(conn: sqlite3.Connection) -> None:
        dumps = orjson.dumps
        rows = [
            (
                e.id,
                e.topic,
                e.type,
                (e.timestamp - _EPOCH) // _US,
                e.source,
                dumps(e.data).decode(),
                dumps(e.metadata).decode(),
                e.correlation_id,
            )
            for e in events
        ]
        conn.execute("BEGIN")
        assert conn.executemany(_INSERT, rows).rowcount == BATCH
        conn.execute("COMMIT")

    fresh.measure(bench, f"sqlite_{policy}.floor", open_db, run, group="sqlite")


@pytest.mark.parametrize("policy", ["never", "batch"])
def test_sqlite_store(bench: Recorder, events: list[Event], fresh: Fresh, policy: str) -> None:
    """SQLiteStore: on_next for each event, then flush() (committed, fsynced for "batch")."""

    def run(store: SQLiteStore) -> None:
        for e in events:
            store.on_next(e)
        assert store.flush(timeout=60)
        assert store.stats["written"] == BATCH

    fresh.measure(
        bench,
        f"sqlite_{policy}.store",
        lambda: SQLiteStore(fresh.path(".db"), fsync=policy),  # type: ignore[arg-type]
        run,
        group="sqlite",
    )
    bench.compare(
        f"SQLiteStore fsync={policy} (target >= 100k events/s)",
        subject=f"sqlite_{policy}.store",
        floor=f"sqlite_{policy}.floor",
    )


# -- replay reads --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(events: list[Event], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("replay")
    paths = {"jsonl": directory / "r.jsonl", "sqlite": directory / "r.db"}
    with JsonlSink(paths["jsonl"], fsync="never") as sink, SQLiteStore(paths["sqlite"]) as store:
        for e in events:
            sink.on_next(e)
            store.on_next(e)
    return paths


def test_replay_jsonl_floor(bench: Recorder, written: dict[str, Path]) -> None:
    """Floor: orjson.loads of every line, no Event built."""

    def round_() -> None:
        with open(written["jsonl"], "rb") as f:
            assert sum(1 for line in f if orjson.loads(line)) == BATCH

    bench.measure("replay_jsonl.floor", round_, ops=BATCH, group="replay")


def test_replay_jsonl(bench: Recorder, written: dict[str, Path], events: list[Event]) -> None:
    """read_jsonl: every line validated into an Event."""

    def round_() -> None:
        got = list(read_jsonl(written["jsonl"]))
        assert len(got) == BATCH and got[-1] == events[-1]

    bench.measure("replay_jsonl.read", round_, ops=BATCH, group="replay")
    bench.compare("read_jsonl replay", subject="replay_jsonl.read", floor="replay_jsonl.floor")


def test_replay_sqlite_floor(bench: Recorder, written: dict[str, Path]) -> None:
    """Floor: a bare SELECT of every row, no Event built."""
    conn = sqlite3.connect(written["sqlite"])
    try:

        def round_() -> None:
            rows = conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
            assert len(rows) == BATCH

        bench.measure("replay_sqlite.floor", round_, ops=BATCH, group="replay")
    finally:
        conn.close()


def test_replay_sqlite(bench: Recorder, written: dict[str, Path], events: list[Event]) -> None:
    """SQLiteStore.query(): every row back as an Event, oldest first."""
    with SQLiteStore(written["sqlite"], readonly=True) as store:

        def round_() -> None:
            got = store.query("hook.**")
            assert len(got) == BATCH and got[-1] == events[-1]

        bench.measure("replay_sqlite.query", round_, ops=BATCH, group="replay")
    bench.compare(
        "SQLiteStore.query replay", subject="replay_sqlite.query", floor="replay_sqlite.floor"
    )


# -- publisher-side cost -------------------------------------------------------------------------


def test_on_next_cost_floor(bench: Recorder, events: list[Event]) -> None:
    """Floor: list.append, the least a hand-off to another thread can cost."""
    seen: list[Event] = []
    append = seen.append

    def round_() -> None:
        for e in events:
            append(e)

    calls = bench.measure("on_next.floor", round_, ops=BATCH, group="on_next")
    assert len(seen) == calls * BATCH


def test_on_next_cost(bench: Recorder, events: list[Event], tmp_path: Path) -> None:
    """What JsonlSink.on_next costs the publisher's thread (bus.subscribe(sink) runs it there)."""
    with JsonlSink(tmp_path / "cost.jsonl", fsync="never", max_pending=10_000_000) as sink:
        on_next = sink.on_next

        def round_() -> None:
            for e in events:
                on_next(e)

        calls = bench.measure("on_next.jsonl", round_, ops=BATCH, group="on_next")
        assert sink.flush(timeout=120)
        assert sink.stats["written"] == calls * BATCH
    bench.compare(
        "JsonlSink.on_next in the publisher", subject="on_next.jsonl", floor="on_next.floor"
    )
