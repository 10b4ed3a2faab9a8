"""SQLiteStore against real SQLite files: storage, queries, retention, schema, bad files."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rxbus import DeadLetter, Event
from rxbus.errors import InvalidTopicError
from rxbus.sinks import SQLiteStore
from rxbus.sinks._batch import DEAD_LETTER_TOPIC, StoreError, original_event
from rxbus.sinks.sqlite import _MIGRATIONS, APPLICATION_ID, SCHEMA_VERSION
from tests.sinks.virtual_clock import VirtualClock


def events(n: int, topic: str = "t.a", start: int = 0) -> list[Event]:
    return [Event(topic=topic, data={"i": i}) for i in range(start, start + n)]


@pytest.fixture
def store(tmp_path: Path):
    with SQLiteStore(tmp_path / "events.db") as s:
        yield s


class TestStoring:
    def test_round_trip_is_exact(self, store: SQLiteStore) -> None:
        """Every field comes back equal, including timestamp, metadata and correlation id."""
        sent = [
            Event(
                topic="hook.tool",
                type="PreToolUse",
                data={"tool": "Bash", "nested": {"a": [1, 2.5, None, "é"]}},
                source="claude",
                metadata={"host": "x"},
                correlation_id="c-1",
            ),
            *events(3),
        ]
        for e in sent:
            store.on_next(e)
        assert store.flush()
        assert store.query() == sent

    def test_flush_makes_everything_handed_over_queryable(self, store: SQLiteStore) -> None:
        """After flush() returns True, every event passed to on_next is in query()."""
        sent = events(20_000)
        for e in sent:
            store.on_next(e)
        assert store.flush(timeout=30)
        assert store.count() == 20_000
        assert store.stats["written"] == 20_000
        assert store.stats["pending"] == 0

    def test_writes_are_batched(self, store: SQLiteStore) -> None:
        """Many events are committed in far fewer transactions than events."""
        for e in events(20_000):
            store.on_next(e)
        store.flush(timeout=30)
        assert 1 <= store.stats["batches"] < 20_000 // 10

    def test_duplicate_ids_are_stored_once_and_counted(self, store: SQLiteStore) -> None:
        """The id is unique: a second copy is ignored and counted as a duplicate."""
        e = Event(topic="t.a")
        store.on_next(e)
        store.on_next(e)
        store.flush()
        assert store.count() == 1
        assert store.stats["duplicates"] == 1

    def test_on_next_from_many_threads_loses_nothing(self, store: SQLiteStore) -> None:
        """Four threads hand over 5,000 events each; all 20,000 are stored."""
        batches = [events(5_000, topic=f"t.w{k}") for k in range(4)]
        threads = [
            threading.Thread(target=lambda b=b: [store.on_next(e) for e in b]) for b in batches
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.flush(timeout=30)
        for k in range(4):
            assert [e.data["i"] for e in store.query(f"t.w{k}")] == list(range(5_000))

    def test_wal_mode(self, store: SQLiteStore, tmp_path: Path) -> None:
        """The database is in WAL mode so readers never block the writer."""
        conn = sqlite3.connect(tmp_path / "events.db")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()

    def test_indexes_for_topic_time_and_id(self, store: SQLiteStore, tmp_path: Path) -> None:
        """Queries by topic, time and id use an index, not a scan of the table."""
        conn = sqlite3.connect(tmp_path / "events.db")
        plans = {
            sql: " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
            for sql, args in [
                ("SELECT * FROM events WHERE topic = ?", ("a",)),
                ("SELECT * FROM events WHERE ts >= ?", (1,)),
                ("SELECT * FROM events WHERE id = ?", ("x",)),
            ]
        }
        conn.close()
        for sql, plan in plans.items():
            assert "USING" in plan and "INDEX" in plan, (sql, plan)

    def test_stats_are_numbers(self, store: SQLiteStore) -> None:
        """stats is a mapping of ints (what bus.metrics() shows)."""
        store.on_next(Event(topic="t.a"))
        store.flush()
        stats = store.stats
        assert set(stats) >= {"written", "batches", "errors", "dropped", "pending"}
        assert all(isinstance(v, int) for v in stats.values())


class TestQuery:
    @pytest.fixture
    def filled(self, store: SQLiteStore) -> tuple[SQLiteStore, list[Event]]:
        base = datetime(2026, 1, 1, tzinfo=UTC)
        sent = [
            Event(topic=topic, data={"i": i}, timestamp=base + timedelta(seconds=i))
            for i, topic in enumerate(
                ["hook.tool", "hook.tool.pre", "hook", "build.error", "hooks.x", "a.b.error"]
            )
        ]
        for e in sent:
            store.on_next(e)
        store.flush()
        return store, sent

    @pytest.mark.parametrize(
        ("pattern", "expected"),
        [
            ("**", [0, 1, 2, 3, 4, 5]),
            ("hook.*", [0]),
            ("hook.**", [0, 1, 2]),
            ("hook", [2]),
            ("*.error", [3]),
            ("**.error", [3, 5]),
            ("hook.*.pre", [1]),
            ("nothing.*", []),
        ],
    )
    def test_pattern(self, filled, pattern: str, expected: list[int]) -> None:
        """Patterns select exactly what rxbus.topics.matches selects, oldest first."""
        store, _ = filled
        assert [e.data["i"] for e in store.query(pattern)] == expected

    def test_since_and_until_times(self, filled) -> None:
        """since is inclusive, until exclusive, by event timestamp."""
        store, sent = filled
        got = store.query(since=sent[1].timestamp, until=sent[4].timestamp)
        assert [e.data["i"] for e in got] == [1, 2, 3]

    def test_since_and_until_ids(self, filled) -> None:
        """An event id as since includes that event (like bus.replay); as until, too."""
        store, sent = filled
        got = store.query(since=sent[2].id, until=sent[4].id)
        assert [e.data["i"] for e in got] == [2, 3, 4]

    def test_after_id_resumes(self, filled) -> None:
        """after= returns only events stored after the given one."""
        store, sent = filled
        assert [e.data["i"] for e in store.query(after=sent[3].id)] == [4, 5]

    def test_limit_takes_the_oldest(self, filled) -> None:
        store, _ = filled
        assert [e.data["i"] for e in store.query("**", limit=2)] == [0, 1]

    def test_latest_takes_the_newest_oldest_first(self, filled) -> None:
        store, sent = filled
        assert store.latest("hook.**", 2) == [sent[1], sent[2]]
        assert store.latest("**", 2, until=sent[3].id) == [sent[2], sent[3]]

    def test_get_count_last_id(self, filled) -> None:
        store, sent = filled
        assert store.get(sent[3].id) == sent[3]
        assert store.get("missing") is None
        assert store.count("hook.**") == 3
        assert store.last_id() == sent[-1].id

    def test_correlation_id(self, store: SQLiteStore) -> None:
        a = Event(topic="t.a", correlation_id="run-1")
        b = Event(topic="t.b", correlation_id="run-2")
        store.on_next(a)
        store.on_next(b)
        store.flush()
        assert store.query(correlation_id="run-1") == [a]

    def test_bad_pattern_raises(self, store: SQLiteStore) -> None:
        with pytest.raises(InvalidTopicError, match=r"a\.\.b"):
            store.query("a..b")

    def test_naive_datetime_raises_naming_it(self, store: SQLiteStore) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            store.query(since=datetime(2026, 1, 1))

    def test_other_since_type_raises(self, store: SQLiteStore) -> None:
        with pytest.raises(ValueError, match="since must be"):
            store.query(since=12345)  # type: ignore[arg-type]

    def test_readonly_store_reads_while_the_writer_writes(self, tmp_path: Path) -> None:
        """A second, readonly store on the same file sees what the writer flushed."""
        path = tmp_path / "shared.db"
        with SQLiteStore(path) as writer:
            for e in events(100):
                writer.on_next(e)
            writer.flush()
            with SQLiteStore(path, readonly=True) as reader:
                assert reader.count() == 100
                reader.on_next(Event(topic="t.x"))  # refused, counted, never raised
                assert reader.stats["dropped"] == 1


class TestRetention:
    def test_by_count_keeps_the_newest(self, tmp_path: Path) -> None:
        with SQLiteStore(tmp_path / "r.db", max_events=100, max_batch=30) as store:
            for e in events(1_000):
                store.on_next(e)
            store.flush()
            kept = [e.data["i"] for e in store.query()]
            assert kept == list(range(900, 1_000))
            assert store.stats["deleted"] == 900

    def test_by_age_deletes_old_events(self, tmp_path: Path) -> None:
        """Events older than max_age are deleted once the clock passes them (virtual time)."""
        start = datetime(2026, 1, 1, tzinfo=UTC)
        clock = VirtualClock(start.timestamp())
        at = [start - timedelta(minutes=m) for m in (50, 30, 10, 0)]
        with SQLiteStore(tmp_path / "a.db", max_age=timedelta(hours=1), clock=clock) as store:
            for i, when in enumerate(at):
                store.on_next(Event(topic="t.age", data={"i": i}, timestamp=when))
            assert store.flush() and store.count() == 4
            clock.advance(20 * 60 + 1)  # 10:01 past the first event's hour
            assert store.flush()
            assert [e.data["i"] for e in store.query()] == [1, 2, 3]
            clock.advance(30 * 60)  # 9:59 short of the newest event's hour
            assert store.flush()
            assert [e.data["i"] for e in store.query()] == [3]
            assert store.stats["deleted"] == 3

    @pytest.mark.parametrize("kwargs", [{"max_events": 0}, {"max_age": -1}, {"fsync": "sometimes"}])
    def test_bad_settings_raise(self, tmp_path: Path, kwargs) -> None:
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            SQLiteStore(tmp_path / "x.db", **kwargs)


class TestSchema:
    def test_new_file_is_marked_and_versioned(self, store: SQLiteStore, tmp_path: Path) -> None:
        conn = sqlite3.connect(tmp_path / "events.db")
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()

    def test_version_1_file_is_migrated_with_its_data(self, tmp_path: Path) -> None:
        """A store written with schema 1 opens, is upgraded to the current version, loses nothing."""
        path = tmp_path / "v1.db"
        conn = sqlite3.connect(path)
        for statement in _MIGRATIONS[0][1]:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO events (id, topic, type, ts, source, data, metadata, correlation_id) "
            "VALUES ('old-1', 'legacy.event', 'event', 1700000000000000, '', '{\"k\": 1}', "
            "'{}', 'c')"
        )
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute("PRAGMA user_version=1")
        conn.commit()
        conn.close()
        with SQLiteStore(path) as store:
            [old] = store.query()
            assert (old.id, old.topic, old.data, old.correlation_id) == (
                "old-1",
                "legacy.event",
                {"k": 1},
                "c",
            )
            assert old.timestamp == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
            store.on_next(Event(topic="new.event"))
            store.flush()
            assert store.count() == 2
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "events_correlation" in indexes
        conn.close()

    def test_old_file_opened_readonly_asks_for_migration(self, tmp_path: Path) -> None:
        path = tmp_path / "v1.db"
        conn = sqlite3.connect(path)
        for statement in _MIGRATIONS[0][1]:
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute("PRAGMA user_version=1")
        conn.commit()
        conn.close()
        with pytest.raises(StoreError, match="schema version 1; open it once"):
            SQLiteStore(path, readonly=True)

    def test_newer_schema_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "future.db"
        SQLiteStore(path).close()
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
        conn.commit()
        conn.close()
        with pytest.raises(StoreError, match="newer than this rxbus reads"):
            SQLiteStore(path)

    def test_foreign_sqlite_file_is_refused_and_untouched(self, tmp_path: Path) -> None:
        """A SQLite database that is not ours raises StoreError naming it; nothing is written."""
        path = tmp_path / "app.db"
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.commit()
        conn.close()
        before = path.read_bytes()
        with pytest.raises(StoreError, match=r"app\.db.*not an rxbus store.*users"):
            SQLiteStore(path)
        assert path.read_bytes() == before

    def test_non_sqlite_file_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "notes.db"
        path.write_text("just some text, not a database\n" * 10)
        with pytest.raises(StoreError, match=r"notes\.db.*not an rxbus SQLite store"):
            SQLiteStore(path)

    def test_missing_file_readonly_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(StoreError, match="file not found"):
            SQLiteStore(tmp_path / "none.db", readonly=True)


class TestLifecycle:
    def test_on_completed_stores_the_queue_and_closes(self, tmp_path: Path) -> None:
        path = tmp_path / "c.db"
        store = SQLiteStore(path)
        for e in events(1_000):
            store.on_next(e)
        store.on_completed()
        with SQLiteStore(path, readonly=True) as reader:
            assert reader.count() == 1_000

    def test_close_is_idempotent_and_later_events_are_dead_letters(self, tmp_path: Path) -> None:
        letters: list[DeadLetter] = []
        store = SQLiteStore(tmp_path / "c.db", dead_letters=letters.append)
        store.close()
        store.close()
        e = Event(topic="t.late")
        store.on_next(e)
        assert store.stats["dropped"] == 1
        assert [dl.event for dl in letters] == [e]
        assert "closed" in str(letters[0].error)

    def test_unsupported_item_is_a_dead_letter(self, tmp_path: Path) -> None:
        letters: list[DeadLetter] = []
        with SQLiteStore(tmp_path / "u.db", dead_letters=letters.append) as store:
            store.on_next({"not": "an event"})  # type: ignore[arg-type]
            assert store.stats["dropped"] == 1
        assert isinstance(letters[0].error, TypeError)
        assert "got dict" in str(letters[0].error)

    def test_dead_letters_are_stored_and_give_back_the_event(self, store: SQLiteStore) -> None:
        """A DeadLetter passed to on_next is stored as a dead-letter event with the original."""
        failed = Event(topic="mail.send", data={"to": "a@b"})
        store.on_next(DeadLetter.capture(failed, "mailer", RuntimeError("smtp down"), attempts=3))
        store.flush()
        [stored] = store.query(DEAD_LETTER_TOPIC)
        assert stored.correlation_id == failed.id
        assert stored.data["consumer"] == "mailer"
        assert stored.data["error"] == "RuntimeError: smtp down"
        assert stored.data["attempts"] == 3
        assert original_event(stored) == failed
