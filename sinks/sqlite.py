"""``SQLiteStore``: the embedded persistent store, a sink and a replay source in one file.

    >>> import tempfile, pathlib
    >>> from rxbus import Event
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "events.db"
    >>> with SQLiteStore(path) as store:
    ...     store.on_next(Event(topic="build.error", data={"code": 2}))
    ...     _ = store.flush()
    ...     [e.data for e in store.query("build.*")]
    [{'code': 2}]

Writes happen on one writer thread in batched transactions (``executemany`` per batch), so
``on_next`` costs a deque append in the caller's thread. Readers use their own connections; WAL
mode lets them read while the writer writes.

Schema: one ``events`` table keyed by an AUTOINCREMENT ``seq`` (arrival order, never reused, so a
follower can resume after deletions), with ``id`` unique (a second copy of an event is ignored and
counted as a duplicate) and indexes on ``(topic, seq)`` and ``ts``. The file carries
``PRAGMA application_id`` (so a foreign SQLite file is refused, not written into) and
``PRAGMA user_version`` (the schema version; older files are migrated in place, newer ones refused).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from rxbus.deadletter import DeadLetter
from rxbus.event import Event
from rxbus.metrics import Counter
from rxbus.sinks._base import ClosingSink, DeadLetterBinding
from rxbus.sinks._batch import (
    BatchWriter,
    SinkClosedError,
    StoreError,
    as_event,
    report_failure,
)
from rxbus.topics import is_wildcard, matches, validate_pattern

if TYPE_CHECKING:  # pragma: no cover
    pass

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SQLiteStore", "StoreError"]

APPLICATION_ID = 0x52784275  # "RxBu": marks a SQLite file as an rxbus store
"""``PRAGMA application_id`` of every rxbus store."""

# Each step upgrades the schema from the previous version; a file at version N runs steps N+1...
# A new schema change is a new step appended here, never an edit of an old one.
_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                topic TEXT NOT NULL,
                type TEXT NOT NULL,
                ts INTEGER NOT NULL,
                source TEXT NOT NULL,
                data TEXT NOT NULL,
                metadata TEXT NOT NULL,
                correlation_id TEXT
            )""",
            "CREATE INDEX events_topic ON events (topic, seq)",
            "CREATE INDEX events_ts ON events (ts)",
        ),
    ),
    (
        2,
        (
            "CREATE INDEX events_correlation ON events (correlation_id) "
            "WHERE correlation_id IS NOT NULL",
        ),
    ),
)
SCHEMA_VERSION = _MIGRATIONS[-1][0]
"""The schema version this rxbus writes."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_COLUMNS = "seq, id, topic, type, ts, source, data, metadata, correlation_id"
_INSERT = (
    "INSERT OR IGNORE INTO events (id, topic, type, ts, source, data, metadata, correlation_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SYNCHRONOUS = {"never": "NORMAL", "batch": "FULL", "always": "FULL"}

Since = datetime | str | None


class SQLiteStore(ClosingSink, DeadLetterBinding):
    """Persist events in a SQLite file and query or replay them.

    Args:
        path: the database file; created if missing. A file that is not an rxbus store is
            refused with :class:`StoreError`.
        max_events: keep at most this many events (oldest deleted first); ``None`` keeps all.
        max_age: delete events older than this (seconds or a ``timedelta``), checked every second.
        fsync: ``"never"`` (WAL with ``synchronous=NORMAL``: survives a crash of the process, not
            of the machine), ``"batch"`` (``synchronous=FULL``: each batch's commit is fsynced;
            ``on_next`` only queues, so a crash loses what is still queued) or ``"always"``
            (``on_next`` returns once the event's commit is fsynced; events from many threads
            share one commit, group commit).
        dead_letters: called with a :class:`rxbus.DeadLetter` for every event that could not be
            stored (disk full, closed store, unsupported item). Default: the
            dead letters of the bus the sink is subscribed to (``bus.subscribe(sink)`` binds it),
            else the ``rxbus`` loguru logger. Failures are always counted in :attr:`stats` and
            never raised into the bus. A failed dead letter is logged, never dead-lettered again.
        name: the name used in dead letters and the writer thread.
        readonly: open an existing store for reading only (no writer thread); used by
            ``rxbus tail`` and ``rxbus replay``.
        max_batch: most events per insert transaction.
        max_pending: events queued for the writer before ``on_next`` waits (up to ``put_timeout``
            seconds, then dead-letters the event) so memory stays bounded.
        put_timeout: see ``max_pending``.
        clock: the time now as seconds since the epoch, read for ``max_age`` retention (default
            :func:`time.time`); tests pass a virtual clock.

    Raises:
        StoreError: ``path`` is not an rxbus store, has a newer schema, or (``readonly``) is missing.
        ValueError: for a bad ``fsync``, ``max_events`` or ``max_age``.

    Example::

        store = SQLiteStore("events.db", max_events=1_000_000)
        bus.subscribe(store)                         # every event, written in batches
        bus.dead_letters.subscribe(store.on_next)    # and every dead letter
        for event in store.query("build.**", since=datetime(2026, 1, 1, tzinfo=UTC)):
            ...
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_events: int | None = None,
        max_age: float | timedelta | None = None,
        fsync: Literal["never", "batch", "always"] = "batch",
        dead_letters: Callable[[DeadLetter], None] | None = None,
        name: str | None = None,
        readonly: bool = False,
        max_batch: int = 5_000,
        max_pending: int = 200_000,
        put_timeout: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if fsync not in _SYNCHRONOUS:
            raise ValueError(f"fsync must be 'never', 'batch' or 'always', got {fsync!r}")
        if max_events is not None and (not isinstance(max_events, int) or max_events < 1):
            raise ValueError(f"max_events must be a positive int or None, got {max_events!r}")
        if isinstance(max_age, timedelta):
            max_age = max_age.total_seconds()
        if max_age is not None and not max_age > 0:
            raise ValueError(f"max_age must be positive seconds or a timedelta, got {max_age!r}")
        self.path = Path(path)
        self.name = name or f"SQLiteStore({self.path.name})"
        self.readonly = readonly
        self._durable = fsync == "always"
        self._clock = clock
        self._max_events = max_events
        self._max_age_us = None if max_age is None else int(max_age * 1_000_000)
        self._dead_letters = dead_letters
        self._explicit_dead_letters = dead_letters is not None
        self._closed = False
        self._close_lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._written = 0
        self._duplicates = 0
        self._batches = 0
        self._deleted = 0
        self._errors = Counter()
        self._dropped = Counter()
        self._last_age_check = 0.0
        self._lost_at_close = 0

        if readonly:
            if not self.path.is_file():
                raise StoreError(f"no store at {str(self.path)!r}: file not found")
            conn = self._connect()
            try:
                self._check(conn, migrate=False)
            finally:
                conn.close()
            self._writer: BatchWriter | None = None
            return

        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            self._check(conn, migrate=True)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={_SYNCHRONOUS[fsync]}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._writer = BatchWriter(
            self.name,
            self._write,
            self._on_failure,
            max_batch=max_batch,
            max_pending=max_pending,
            put_timeout=put_timeout,
            tick=self._retention_by_age if self._max_age_us else None,
            tick_interval=1.0 if self._max_age_us else None,
        )

    # -- opening ------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        target = f"file:{self.path}?mode=ro" if self.readonly else str(self.path)
        try:
            conn = sqlite3.connect(
                target, uri=self.readonly, timeout=10.0, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
        except sqlite3.Error as err:
            raise StoreError(f"cannot open store {str(self.path)!r}: {err}") from None
        conn.create_function("rxbus_matches", 2, matches, deterministic=True)
        return conn

    def _check(self, conn: sqlite3.Connection, *, migrate: bool) -> None:
        """Refuse a foreign or newer file; bring an older rxbus store up to date."""
        where = str(self.path)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{where!r} is not an rxbus SQLite store ({err})") from None
        if app_id != APPLICATION_ID and (app_id != 0 or tables):
            raise StoreError(
                f"{where!r} is a SQLite database but not an rxbus store "
                f"(application_id={app_id:#x}, tables={tables[:5]}); use a new file"
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{where!r} has schema version {version}, newer than this rxbus reads "
                f"({SCHEMA_VERSION}); upgrade rxbus"
            )
        if version == SCHEMA_VERSION:
            return
        if not migrate:
            raise StoreError(
                f"{where!r} has schema version {version}; open it once with SQLiteStore(path) "
                f"to migrate it to version {SCHEMA_VERSION}"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for step, statements in _MIGRATIONS:
                if step > version:
                    for statement in statements:
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- the observer -------------------------------------------------------------------------

    def on_next(self, event: Event | DeadLetter) -> None:
        """Queue ``event`` (or a dead letter) for the writer thread; never raises for I/O."""
        try:
            if type(event) is not Event:
                event = as_event(event)
            if self._writer is None:
                raise SinkClosedError(f"{self.name} was opened readonly; it stores nothing")
            if self._durable:
                self._writer.put_durable(event)
            else:
                self._writer.put(event)
        except Exception as err:
            self._dropped.increment()
            report_failure(self._dead_letters, self.name, [event], err)

    def on_error(self, error: Exception) -> None:
        """The upstream failed: store what was queued and close."""
        self.close()

    def on_completed(self) -> None:
        """The upstream completed: store what was queued and close."""
        self.close()

    # -- writer thread ------------------------------------------------------------------------

    def _write(self, batch: list[Event]) -> None:
        try:
            rows = [_row(e) for e in batch]
        except TypeError:
            # Events are validated when built, but their dicts are mutable: one that no longer
            # serialises is dead-lettered alone instead of failing its whole batch.
            rows = []
            for event in batch:
                try:
                    rows.append(_row(event))
                except TypeError as err:
                    self._on_failure([event], err)
            if not rows:
                return
        conn = self._conn
        try:
            conn.execute("BEGIN")
            inserted = conn.executemany(_INSERT, rows).rowcount
            if self._max_events is not None:
                deleted = conn.execute(
                    "DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - ?",
                    (self._max_events,),
                ).rowcount
                self._deleted += deleted
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise StoreError(
                f"cannot store {len(rows)} events in {str(self.path)!r}: {err}"
            ) from err
        self._written += inserted
        self._duplicates += len(rows) - inserted
        self._batches += 1

    def _retention_by_age(self) -> None:
        now = self._clock()
        if self._max_age_us is None or 0 <= now - self._last_age_check < 1.0:
            return
        self._last_age_check = now
        cutoff = int(now * 1_000_000) - self._max_age_us
        self._deleted += self._conn.execute("DELETE FROM events WHERE ts < ?", (cutoff,)).rowcount

    def _on_failure(self, batch: list[Any], error: BaseException) -> None:
        self._errors.increment()
        report_failure(self._dead_letters, self.name, batch, error)

    # -- control ------------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event handed to :meth:`on_next` before this call is queryable.

        Returns:
            True once they are (stored, duplicate or dead-lettered), False if ``timeout`` expired.
        """
        return True if self._writer is None else self._writer.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Store what is queued (within ``timeout``), then close every connection. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self._writer is not None:
            # Events still queued after the timeout are lost with the process: count them.
            self._lost_at_close = self._writer.stop(timeout)
            if not self._writer.alive:
                self._conn.close()
        for conn in self._readers:
            conn.close()
        self._readers.clear()

    @property
    def stats(self) -> dict[str, int]:
        """``written``, ``duplicates``, ``batches``, ``errors``, ``dropped``, ``pending``,
        ``deleted`` (by retention): numbers only, shown in ``bus.metrics()``."""
        writer = self._writer
        return {
            "written": self._written,
            "duplicates": self._duplicates,
            "batches": self._batches,
            "errors": self._errors.value,
            "dropped": self._dropped.value + self._lost_at_close,
            "pending": writer.pending if writer is not None else 0,
            "deleted": self._deleted,
        }

    # -- reading ------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise SinkClosedError(f"{self.name} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
            self._readers.append(conn)
        return conn

    def query(
        self,
        pattern: str = "**",
        since: Since = None,
        until: Since = None,
        limit: int | None = None,
        *,
        after: str | None = None,
        correlation_id: str | None = None,
    ) -> list[Event]:
        """Stored events whose topic matches ``pattern``, oldest (first stored) first.

        Events still queued for the writer are not included: call :meth:`flush` first to see
        everything handed over (``bus.replay(store=...)`` does).

        Args:
            pattern: a topic pattern (``"hook.*"``, ``"build.**"``).
            since: a timezone-aware ``datetime`` (events with ``timestamp >= since``) or an event
                id (that event and every one stored after it), as for ``bus.replay(since=...)``.
            until: a ``datetime`` (events with ``timestamp < until``) or an event id (events up to
                and including that one).
            limit: at most this many events (the oldest ones).
            after: an event id: only events stored after that one (resume after the last one
                seen). An id no longer stored (deleted by retention) is compared as a string,
                which for rxbus ids means by creation time.
            correlation_id: only events with this correlation id.

        Raises:
            InvalidTopicError: for a malformed pattern.
            ValueError: for a naive datetime, or a ``since``/``until`` of another type.
        """
        validate_pattern(pattern)
        where: list[str] = []
        params: list[Any] = []
        conn = self._reader()
        if pattern != "**":
            if not is_wildcard(pattern):
                where.append("topic = ?")
                params.append(pattern)
            else:
                prefix = _literal_prefix(pattern)
                if prefix:
                    # Topics are ASCII below 0x7f, so this range holds every topic with the prefix
                    # and lets SQLite use the topic index before the exact match runs.
                    where.append("topic >= ? AND topic < ?")
                    params += [prefix, prefix + "\x7f"]
                where.append("rxbus_matches(?, topic)")
                params.append(pattern)
        for bound, value in (("since", since), ("until", until), ("after", after)):
            if value is not None:
                clause, args = self._bound(conn, bound, value)
                where.append(clause)
                params += args
        if correlation_id is not None:
            where.append("correlation_id = ?")
            params.append(correlation_id)
        sql = f"SELECT {_COLUMNS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._reading():
            return [_event(row) for row in conn.execute(sql, params)]

    def latest(self, pattern: str = "**", n: int = 10, *, until: str | None = None) -> list[Event]:
        """The ``n`` newest events matching ``pattern``, oldest first (what ``tail`` shows).

        Args:
            pattern: a topic pattern.
            n: how many.
            until: an event id: the newest ones up to and including that event.
        """
        validate_pattern(pattern)
        conn = self._reader()
        where: list[str] = []
        params: list[Any] = []
        if pattern != "**":
            where.append("rxbus_matches(?, topic)")
            params.append(pattern)
        if until is not None:
            clause, args = self._bound(conn, "until", until)
            where.append(clause)
            params += args
        sql = f"SELECT {_COLUMNS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._reading():
            rows = conn.execute(sql + " ORDER BY seq DESC LIMIT ?", [*params, n]).fetchall()
            return [_event(row) for row in reversed(rows)]

    def get(self, event_id: str) -> Event | None:
        """The stored event with ``event_id``, or None."""
        with self._reading():
            row = (
                self._reader()
                .execute(f"SELECT {_COLUMNS} FROM events WHERE id = ?", (event_id,))
                .fetchone()
            )
            return None if row is None else _event(row)

    def last_id(self) -> str | None:
        """The id of the newest stored event, or None if the store is empty."""
        with self._reading():
            row = (
                self._reader().execute("SELECT id FROM events ORDER BY seq DESC LIMIT 1").fetchone()
            )
        return None if row is None else str(row[0])

    def count(
        self, pattern: str = "**", *, after: str | None = None, until: str | None = None
    ) -> int:
        """How many stored events match ``pattern``.

        Args:
            pattern: a topic pattern.
            after: an event id: count only events stored after it (as :meth:`query`).
            until: an event id: count only events up to and including it.
        """
        validate_pattern(pattern)
        conn = self._reader()
        with self._reading():
            where: list[str] = []
            params: list[Any] = []
            if pattern != "**":
                where.append("rxbus_matches(?, topic)")
                params.append(pattern)
            for bound, value in (("after", after), ("until", until)):
                if value is not None:
                    clause, args = self._bound(conn, bound, value)
                    where.append(clause)
                    params += args
            sql = "SELECT count(*) FROM events"
            if where:
                sql += " WHERE " + " AND ".join(where)
            return int(conn.execute(sql, params).fetchone()[0])

    def __iter__(self) -> Iterator[Event]:
        """Every stored event, oldest first."""
        return iter(self.query())

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Turn a damaged file's SQLite error (or a row that no longer decodes) into one
        :class:`StoreError` naming the file."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            raise StoreError(f"store {str(self.path)!r} is corrupt or unreadable: {err}") from None
        except (orjson.JSONDecodeError, OverflowError) as err:
            raise StoreError(f"store {str(self.path)!r} holds a corrupt row: {err}") from None

    def _bound(self, conn: sqlite3.Connection, bound: str, value: object) -> tuple[str, list[Any]]:
        lower = bound == "since"
        if bound == "after":
            if not isinstance(value, str):
                raise ValueError(f"after must be an event id (str), got {value!r:.80}")
            with self._reading():
                row = conn.execute("SELECT seq FROM events WHERE id = ?", (value,)).fetchone()
            return ("seq > ?", [row[0]]) if row is not None else ("id > ?", [value])
        if isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(
                    f"{bound} must be timezone-aware, got naive {value.isoformat()!r}; "
                    "e.g. datetime(2026, 1, 1, tzinfo=UTC)"
                )
            micros = (value - _EPOCH) // _ONE_US
            return ("ts >= ?" if lower else "ts < ?"), [micros]
        if isinstance(value, str):
            with self._reading():
                row = conn.execute("SELECT seq FROM events WHERE id = ?", (value,)).fetchone()
            if row is not None:
                return ("seq >= ?" if lower else "seq <= ?"), [row[0]]
            return ("id >= ?" if lower else "id <= ?"), [value]
        raise ValueError(
            f"{bound} must be a timezone-aware datetime or an event id (str), "
            f"got {type(value).__name__}: {value!r:.80}"
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("readonly" if self.readonly else "open")
        return f"SQLiteStore({str(self.path)!r}, {state})"


def _row(e: Event) -> tuple[Any, ...]:
    """The ``events`` row for ``e`` (without ``seq``, which SQLite assigns)."""
    return (
        e.id,
        e.topic,
        e.type,
        (e.timestamp - _EPOCH) // _ONE_US,
        e.source,
        orjson.dumps(e.data).decode(),
        orjson.dumps(e.metadata).decode(),
        e.correlation_id,
    )


def _literal_prefix(pattern: str) -> str:
    """The part of ``pattern`` before its first wildcard segment: ``"a.b.*"`` -> ``"a.b"``."""
    literal: list[str] = []
    for segment in pattern.split("."):
        if "*" in segment:
            break
        literal.append(segment)
    return ".".join(literal)


def _event(row: tuple[Any, ...]) -> Event:
    """An Event from a stored row, without re-validating what was validated before it was stored."""
    event = Event._trusted(
        row[2],
        row[3],
        orjson.loads(row[6]),
        row[5],
        {} if row[7] == "{}" else orjson.loads(row[7]),
        row[8],
        None,
        row[1],
        _EPOCH + timedelta(microseconds=row[4]),
    )
    return event
