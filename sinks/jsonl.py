"""``JsonlSink``: events as JSON Lines files, rotated and fsynced as configured; ``read_jsonl`` reads
them back.

    >>> import tempfile, pathlib
    >>> from rxbus import Event
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "events.jsonl"
    >>> with JsonlSink(path) as sink:
    ...     sink.on_next(Event(topic="hook.tool", data={"tool": "Bash"}))
    >>> [e.data for e in read_jsonl(path)]
    [{'tool': 'Bash'}]

One line per event (``orjson``), written in batches on the sink's own thread: ``on_next`` only
queues. Rotation renames the active file ``events.jsonl`` to ``events.jsonl.000001``,
``.000002``, ... (never renaming a file twice, so a reader following the files never misses
one) and deletes the oldest beyond ``keep``. A crashed writer can leave a torn last line;
``read_jsonl`` skips it with a warning, and a sink reopening the file cuts it off first so the
next line starts clean.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import stat
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from rxbus.deadletter import DeadLetter
from rxbus.errors import PayloadError
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
from rxbus.topics import compile_pattern, validate_pattern, validate_topic

if TYPE_CHECKING:  # pragma: no cover
    pass

__all__ = [
    "JsonlSink",
    "SinkClosedError",
    "StoreError",
    "TornLineWarning",
    "query_jsonl",
    "read_jsonl",
]

_ROTATED = re.compile(r"^(?P<base>.*)\.(?P<n>\d{6,})$")
_NEWLINE = orjson.OPT_APPEND_NEWLINE


class TornLineWarning(UserWarning):
    """A JSONL file ended in a partial line (a writer was killed mid-write); it was skipped."""


class JsonlSink(ClosingSink, DeadLetterBinding):
    """Write events to a JSON Lines file, one ``orjson`` line per event.

    Args:
        path: the active file; rotated files sit next to it as ``<path>.000001`` and up.
        max_bytes: rotate before the active file would grow past this size; ``None`` never.
        rotate_every: also rotate a file this long after its first event (seconds or a
            ``timedelta``); an empty file is never rotated.
        keep: rotated files to keep (oldest deleted first); ``None`` keeps them all.
        fsync: ``"never"`` (write to the OS only: survives a crash of the process, not of the
            machine), ``"batch"`` (fsync after every batch; ``on_next`` only queues, so a crash
            loses what is still queued) or ``"always"`` (``on_next`` returns once the event is
            written and fsynced; events from many threads share one fsync, group commit).
        dead_letters: called with a :class:`rxbus.DeadLetter` for every event that could not be
            written (disk full, closed sink, unsupported item). Default: the
            dead letters of the bus the sink is subscribed to (``bus.subscribe(sink)`` binds it),
            else the ``rxbus`` loguru logger. Failures are always counted in :attr:`stats` and
            never raised into the bus. A failed dead letter is logged, never dead-lettered again.
        name: the name used in dead letters and the writer thread.
        max_batch: most events per write.
        max_pending: events queued before ``on_next`` waits for room (up to ``put_timeout``
            seconds, then dead-letters the event), so memory stays bounded.
        put_timeout: see ``max_pending``.
        clock: seconds as a float, read for time-based rotation (default
            :func:`time.monotonic`); tests pass a virtual clock.

    Example::

        sink = JsonlSink("logs/events.jsonl", max_bytes=64 << 20, keep=10, fsync="batch")
        bus.subscribe(sink)
        bus.dead_letters.subscribe(sink.on_next)   # dead letters go in the same file
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int | None = None,
        rotate_every: float | timedelta | None = None,
        keep: int | None = 5,
        fsync: Literal["never", "batch", "always"] = "batch",
        dead_letters: Callable[[DeadLetter], None] | None = None,
        name: str | None = None,
        max_batch: int = 10_000,
        max_pending: int = 200_000,
        put_timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fsync not in ("never", "batch", "always"):
            raise ValueError(f"fsync must be 'never', 'batch' or 'always', got {fsync!r}")
        if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 1):
            raise ValueError(f"max_bytes must be a positive int or None, got {max_bytes!r}")
        if isinstance(rotate_every, timedelta):
            rotate_every = rotate_every.total_seconds()
        if rotate_every is not None and not rotate_every > 0:
            raise ValueError(f"rotate_every must be positive seconds, got {rotate_every!r}")
        if keep is not None and (not isinstance(keep, int) or keep < 0):
            raise ValueError(f"keep must be an int >= 0 or None, got {keep!r}")
        self.path = Path(path)
        self.name = name or f"JsonlSink({self.path.name})"
        self._max_bytes = max_bytes
        self._rotate_every = rotate_every
        self._keep = keep
        self._clock = clock
        self._fsync = fsync
        self._durable = fsync == "always"
        self._dead_letters = dead_letters
        self._explicit_dead_letters = dead_letters is not None
        self._closed = False
        self._close_lock = threading.Lock()
        self._written = 0
        self._bytes = 0
        self._batches = 0
        self._rotations = 0
        self._synced = 0
        self._errors = Counter()
        self._dropped = Counter()
        self._lost_at_close = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = -1
        self._open()
        self._writer = BatchWriter(
            self.name,
            self._write,
            self._fail,
            max_batch=max_batch,
            max_pending=max_pending,
            put_timeout=put_timeout,
            tick=self._rotate_if_old if rotate_every else None,
            tick_interval=min(1.0, rotate_every) if rotate_every else None,
        )

    # -- the observer -------------------------------------------------------------------------

    def on_next(self, event: Event | DeadLetter) -> None:
        """Queue ``event`` (or a dead letter) for the writer thread; never raises for I/O."""
        try:
            if type(event) is not Event:
                event = as_event(event)
            if self._durable:
                self._writer.put_durable(event)
            else:
                self._writer.put(event)
        except Exception as err:
            self._dropped.increment()
            report_failure(self._dead_letters, self.name, [event], err)

    def on_error(self, error: Exception) -> None:
        """The upstream failed: write what was queued and close the file."""
        self.close()

    def on_completed(self) -> None:
        """The upstream completed: write what was queued and close the file."""
        self.close()

    # -- control ------------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event handed over before this call is written (and fsynced, unless
        ``fsync="never"``) or dead-lettered; False if ``timeout`` expired first."""
        return self._writer.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (within ``timeout``), then close the file. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._lost_at_close = self._writer.stop(timeout)
        if not self._writer.alive and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def stats(self) -> dict[str, int]:
        """``written``, ``bytes``, ``batches``, ``synced`` (events known to be on disk),
        ``rotations``, ``errors``, ``dropped``, ``pending``: numbers only."""
        return {
            "written": self._written,
            "bytes": self._bytes,
            "batches": self._batches,
            "synced": self._synced,
            "rotations": self._rotations,
            "errors": self._errors.value,
            "dropped": self._dropped.value + self._lost_at_close,
            "pending": self._writer.pending,
        }

    def files(self) -> list[Path]:
        """Rotated files oldest first, then the active file."""
        return _files_of(self.path)

    def query(
        self,
        pattern: str = "**",
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Events written so far, filtered as :meth:`rxbus.sinks.SQLiteStore.query` does, so a
        ``JsonlSink`` also works as ``bus.replay(store=sink)``. Events still queued are not
        included: call :meth:`flush` first (``bus.replay`` does)."""
        return list(query_jsonl(self.path, pattern, since=since, until=until, limit=limit))

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r}{', closed' if self._closed else ''})"

    # -- writer thread ------------------------------------------------------------------------

    def _open(self) -> None:
        """Open the active file for appending, cutting off a torn last line a crash left."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as err:
            raise StoreError(f"cannot open {str(self.path)!r} for writing: {err}") from None
        info = os.fstat(fd)
        size = info.st_size
        if stat.S_ISREG(info.st_mode) and size:
            keep = _complete_prefix(self.path, size)
            if keep < size:
                warnings.warn(
                    f"{self.path}: cut off a torn last line ({size - keep} bytes) left by a "
                    "writer that stopped mid-write",
                    TornLineWarning,
                    stacklevel=3,
                )
                os.ftruncate(fd, keep)
                size = keep
        self._fd = fd
        self._size = size
        self._opened_at = self._clock()

    def _write(self, batch: list[Event]) -> None:
        batch, buf, ends = self._encode(batch)
        if self._rotate_every and self._size and self._age() >= self._rotate_every:
            self._try_rotate()
        if not self._size:
            self._opened_at = self._clock()  # a file's age counts from its first event
        written_before = self._written
        for k, (start, end) in enumerate(self._chunks(ends)):
            if k:
                self._try_rotate()
            error = self._write_chunk(buf, ends, start, end)
            if error is not None:
                self._fail(batch[start:], error)
                break
        written = self._written - written_before
        if written and self._fsync != "never":
            try:
                os.fsync(self._fd)
            except OSError as err:
                # The lines are in the file but may not be on disk: count the error, do not
                # dead-letter them (a reader may still find them; a retry would duplicate them).
                self._errors.increment()
                _log_error(self.name, "fsync", err)
            else:
                self._synced += written
        self._batches += 1

    def _encode(self, batch: list[Event]) -> tuple[list[Event], bytearray, list[int]]:
        """The batch's lines in one buffer, and where each line ends.

        Each line is appended at once and its bytes object freed: keeping thousands of orjson
        results alive until a join costs about 20 times more (each leaves a hole in the heap
        that the next one's initial buffer does not fit). An event whose data no longer
        serialises (dicts are mutable) is dead-lettered alone and left out.
        """
        buf = bytearray()
        ends: list[int] = []
        bad: set[int] = set()
        for event in batch:
            try:
                buf += _line(event)
            except TypeError as err:
                bad.add(id(event))
                self._fail([event], err)
                continue
            ends.append(len(buf))
        if bad:
            batch = [e for e in batch if id(e) not in bad]
        return batch, buf, ends

    def _chunks(self, ends: list[int]) -> list[tuple[int, int]]:
        """Split the lines where the active file would pass ``max_bytes`` (a rotation before each
        chunk but the first); a line larger than ``max_bytes`` gets a file of its own."""
        if self._max_bytes is None:
            return [(0, len(ends))]
        chunks = []
        start, size, previous = 0, self._size, 0
        for i, end in enumerate(ends):
            length = end - previous
            if size and size + length > self._max_bytes:
                chunks.append((start, i))
                start, size = i, 0
            size += length
            previous = end
        chunks.append((start, len(ends)))
        return chunks

    def _write_chunk(self, buf: bytearray, ends: list[int], start: int, end: int) -> OSError | None:
        """Write lines ``start:end``; on failure cut the file back to where it was."""
        if start >= end:
            return None
        low = ends[start - 1] if start else 0
        length = ends[end - 1] - low
        before = self._size
        try:
            with memoryview(buf) as whole:
                view = whole[low : low + length]
                while view:
                    view = view[os.write(self._fd, view) :]
        except OSError as err:
            # Leave no partial line behind: these events are dead-lettered, so a reader must not
            # also find half of one of them.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, before)
            return err
        self._size = before + length
        self._bytes += length
        self._written += end - start
        return None

    def _age(self) -> float:
        return self._clock() - self._opened_at

    def _rotate_if_old(self) -> None:
        if self._rotate_every and self._size and self._age() >= self._rotate_every:
            self._try_rotate()

    def _try_rotate(self) -> None:
        """Rotate; if that fails, count it and keep writing to the active file."""
        try:
            self._rotate()
        except OSError as err:
            self._errors.increment()
            _log_error(self.name, "rotation", err)
            if self._fd < 0:
                with contextlib.suppress(OSError, StoreError):
                    self._open()

    def _rotate(self) -> None:
        if self._fsync != "never":
            os.fsync(self._fd)
        rotated = _files_of(self.path)[:-1]
        number = _rotation_number(rotated[-1]) + 1 if rotated else 1
        target = Path(f"{self.path}.{number:06d}")
        os.rename(self.path, target)
        os.close(self._fd)
        self._fd = -1
        self._open()
        rotated.append(target)
        if self._keep is not None:
            for old in rotated[: max(0, len(rotated) - self._keep)]:
                old.unlink(missing_ok=True)
        if self._fsync != "never":
            _fsync_dir(self.path.parent)
        self._rotations += 1

    def _fail(self, batch: list[Any], error: BaseException) -> None:
        self._errors.increment()
        report_failure(self._dead_letters, self.name, batch, error)


def _line(e: Event) -> bytes:
    """One JSONL line. A plain dict: orjson serialises it (and the datetime, natively) about
    twice as fast as the dataclass itself, in ``Event.to_dict()``'s key order."""
    return orjson.dumps(
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
        option=_NEWLINE,
    )


def _log_error(name: str, what: str, error: BaseException) -> None:
    from loguru import logger

    logger.error("rxbus: {} {} failed: {}", name, what, error)


# -- reading -----------------------------------------------------------------------------------


def read_jsonl(
    path_or_glob: str | Path, *, errors: Literal["raise", "skip"] = "raise"
) -> Iterator[Event]:
    """Read events from JSONL files, rotated ones first, oldest to newest.

    ``path_or_glob`` is a file written by :class:`JsonlSink` (its rotated siblings
    ``<path>.000001``... are read first) or a glob such as ``"logs/*.jsonl*"`` (files sorted by
    name, each rotated file before its active file). A torn last line (a writer killed
    mid-write) is skipped with a :class:`TornLineWarning`; every other line is read.

    Args:
        path_or_glob: a file path or a glob pattern.
        errors: ``"raise"`` (a corrupt line in the middle of a file raises :class:`StoreError`
            naming the file and line) or ``"skip"`` (warn and go on).

    Raises:
        FileNotFoundError: nothing matches ``path_or_glob``.
        StoreError: a corrupt line, with ``errors="raise"``.

    Example::

        for event in read_jsonl("logs/events.jsonl"):
            print(event.topic, event.data)
    """
    for file in _resolve(path_or_glob):
        yield from _read_file(file, errors)


def query_jsonl(
    path_or_glob: str | Path,
    pattern: str = "**",
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    limit: int | None = None,
    after: str | None = None,
    errors: Literal["raise", "skip"] = "raise",
) -> Iterator[Event]:
    """:func:`read_jsonl` filtered like :meth:`rxbus.sinks.SQLiteStore.query`: a topic pattern,
    ``since`` (aware datetime: ``timestamp >= since``; event id: that event and later ones),
    ``until`` (datetime: ``timestamp < until``; event id: up to and including it), ``after``
    (an event id: only later ones) and ``limit``."""
    validate_pattern(pattern)
    match = compile_pattern(pattern) if pattern != "**" else None
    since_time = _aware("since", since) if isinstance(since, datetime) else None
    until_time = _aware("until", until) if isinstance(until, datetime) else None
    for name, value in (("since", since), ("until", until)):
        if value is not None and not isinstance(value, datetime | str):
            raise ValueError(
                f"{name} must be a timezone-aware datetime or an event id (str), got {value!r:.80}"
            )
    waiting_for = since if isinstance(since, str) else after
    inclusive = isinstance(since, str)
    count = 0
    for event in read_jsonl(path_or_glob, errors=errors):
        if waiting_for is not None:
            if event.id != waiting_for:
                continue
            waiting_for = None
            if not inclusive:
                continue
        if match is not None and not match(event.topic):
            continue
        if since_time is not None and event.timestamp < since_time:
            continue
        if until_time is not None and event.timestamp >= until_time:
            continue
        if limit is not None and count >= limit:
            return
        count += 1
        yield event
        if isinstance(until, str) and event.id == until:
            return


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()!r}")
    return value


def _read_file(file: Path, errors: str) -> Iterator[Event]:
    with open(file, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield _from_line(orjson.loads(line))
            except (orjson.JSONDecodeError, PayloadError, ValueError, TypeError) as err:
                if not line.endswith(b"\n"):
                    warnings.warn(
                        f"{file}: skipped a torn last line ({len(line)} bytes, line {number}) "
                        "left by a writer that stopped mid-write",
                        TornLineWarning,
                        stacklevel=3,
                    )
                    return
                message = f"{file}:{number}: corrupt JSONL line ({err}): {line[:80]!r}"
                if errors == "raise":
                    raise StoreError(message) from None
                warnings.warn(message, RuntimeWarning, stacklevel=3)


_KEYS = frozenset(
    ("id", "topic", "type", "timestamp", "source", "data", "metadata", "correlation_id")
)


def _from_line(d: Any) -> Event:
    """An Event from a parsed line, checked like :meth:`Event.from_dict`.

    The common shape (every field present, as ``JsonlSink`` writes it) skips one step of
    ``from_dict``: re-serialising ``data`` and ``metadata`` to prove they are JSON, which values
    that were just parsed from JSON always are. Anything else goes through ``from_dict``.
    """
    if (
        d.__class__ is dict
        and d.keys() == _KEYS
        and (data := d["data"]).__class__ is dict
        and (metadata := d["metadata"]).__class__ is dict
        and (event_id := d["id"]).__class__ is str
        and event_id
        and (type_ := d["type"]).__class__ is str
        and type_
        and (source := d["source"]).__class__ is str
        and (stamp := d["timestamp"]).__class__ is str
        and ((correlation := d["correlation_id"]) is None or correlation.__class__ is str)
    ):
        timestamp = datetime.fromisoformat(stamp)
        if timestamp.utcoffset() is not None:
            event = Event._trusted(
                validate_topic(d["topic"]),
                type_,
                data,
                source,
                metadata,
                correlation,
                None,
                event_id,
                timestamp if timestamp.tzinfo is UTC else timestamp.astimezone(UTC),
            )
            return event
    return Event.from_dict(d)


def _resolve(path_or_glob: str | Path) -> list[Path]:
    text = str(path_or_glob)
    if glob.has_magic(text):
        found = [Path(p) for p in glob.glob(text) if os.path.isfile(p)]
        files = sorted(found, key=_order)
    else:
        files = _files_of(Path(text))
    if not files:
        raise FileNotFoundError(f"no JSONL file matches {text!r}")
    return files


def _order(path: Path) -> tuple[str, int]:
    """Sort key: rotated files by number, the active file after its rotated ones."""
    m = _ROTATED.match(str(path))
    if m:
        return m["base"], int(m["n"])
    return str(path), 1 << 62


def _rotation_number(path: Path) -> int:
    m = _ROTATED.match(str(path))
    return int(m["n"]) if m else 0


def _files_of(path: Path) -> list[Path]:
    """``path``'s rotated files (numeric suffix) oldest first, then ``path`` if it exists."""
    rotated = []
    for name in glob.glob(glob.escape(str(path)) + ".[0-9][0-9][0-9][0-9][0-9][0-9]*"):
        m = _ROTATED.match(name)
        if m and m["base"] == str(path) and os.path.isfile(name):
            rotated.append(Path(name))
    rotated.sort(key=_rotation_number)
    return [*rotated, path] if path.is_file() else rotated


def _complete_prefix(path: Path, size: int) -> int:
    """Length of ``path``'s content up to and including its last newline."""
    with open(path, "rb") as f:
        end = size
        while end > 0:
            start = max(0, end - 65536)
            f.seek(start)
            chunk = f.read(end - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                return start + newline + 1
            end = start
    return 0


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
