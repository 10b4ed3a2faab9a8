"""``rxbus tail`` and ``rxbus replay``: read a store (SQLite or JSONL) from the shell.

A store path is a SQLite file written by ``SQLiteStore`` (recognised by its header) or a JSONL
file written by ``JsonlSink`` (its rotated files are read too), or a glob of JSONL files.
Times are ISO 8601; a time without a UTC offset is read as UTC.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rxbus.cli import CliError

if TYPE_CHECKING:  # pragma: no cover
    from rxbus.event import Event

__all__ = ["register", "run_replay", "run_tail"]

_SQLITE_HEADER = b"SQLite format 3\x00"
_EVENT_ID = re.compile(r"[0-9a-f]{30}")
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".log")


def register(sub: Any) -> None:
    """Add the ``tail`` and ``replay`` sub-commands to ``sub``."""
    tail = sub.add_parser(
        "tail",
        help="print a store's newest events, then follow it like tail -f",
        description=(
            "Print the newest events of a store (SQLite or JSONL) matching PATTERN, one "
            "colourised line each, then keep printing new ones as they arrive (Ctrl-C stops)."
        ),
    )
    tail.add_argument("pattern", nargs="?", default="**", help="topic pattern (default **)")
    tail.add_argument("--store", required=True, help="SQLite or JSONL store to read")
    tail.add_argument(
        "-n", "--lines", type=int, default=10, help="newest events to print first (default 10)"
    )
    tail.add_argument("--since", help="print events from this ISO time (or event id) instead")
    tail.add_argument(
        "--no-follow", dest="follow", action="store_false", help="print and exit; do not follow"
    )
    tail.add_argument(
        "--interval", type=float, default=0.2, help="seconds between polls (default 0.2)"
    )
    tail.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    tail.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colourise output (default: auto, on a terminal)",
    )
    tail.set_defaults(func=run_tail)

    replay = sub.add_parser(
        "replay",
        help="re-publish stored events to a server or another store, or print them",
        description=(
            "Read events matching PATTERN from a store, oldest first, and send them to an "
            "'rxbus serve' HTTP ingest URL (deduplicated there by id), write them to another "
            "store, or print them as JSON lines. With --dead-letters, read the dead letters "
            "stored there instead and re-publish the events that failed, under new ids."
        ),
    )
    replay.add_argument("pattern", nargs="?", default="**", help="topic pattern (default **)")
    replay.add_argument("--store", required=True, help="SQLite or JSONL store to read")
    replay.add_argument("--since", help="from this ISO time (or event id), inclusive")
    replay.add_argument("--until", help="up to this ISO time (exclusive) or event id (inclusive)")
    replay.add_argument(
        "--to",
        help="http(s)://host:port of 'rxbus serve', or a store path (.jsonl or SQLite); "
        "default: print JSON lines on stdout",
    )
    replay.add_argument(
        "--dead-letters",
        action="store_true",
        help="re-publish the events of stored dead letters (after fixing what failed)",
    )
    replay.add_argument("--limit", type=int, help="at most this many events")
    replay.add_argument(
        "--batch", type=int, default=500, help="events per HTTP request (default 500)"
    )
    replay.add_argument(
        "--max-body",
        type=int,
        default=4 * 1024 * 1024,
        help="most bytes per HTTP request, as the server's --max-body (default 4194304)",
    )
    replay.add_argument(
        "--token",
        default=os.environ.get("RXBUS_TOKEN"),
        help="bearer token for the server (default $RXBUS_TOKEN)",
    )
    replay.set_defaults(func=run_replay)


# -- shared --------------------------------------------------------------------------------------


def parse_time(option: str, value: str | None) -> datetime | str | None:
    """An aware datetime (naive read as UTC) or an event id from ``value``.

    Raises:
        CliError: naming the option and the value.
    """
    if value is None:
        return None
    if _EVENT_ID.fullmatch(value):
        return value
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(
            f"{option} {value!r} is not an ISO 8601 time (e.g. 2026-11-28T06:00:00Z) "
            "nor an event id"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def check_pattern(pattern: str) -> str:
    from rxbus.errors import InvalidTopicError
    from rxbus.topics import validate_pattern

    try:
        return validate_pattern(pattern)
    except InvalidTopicError as err:
        raise CliError(str(err)) from None


def is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == _SQLITE_HEADER
    except OSError:
        return False


def open_source(location: str) -> Any:
    """A readable store for ``location``: ``SQLiteStore`` (readonly) or a :class:`JsonlSource`.

    Raises:
        CliError: nothing there, or a file that is neither an rxbus store nor JSONL.
    """
    from rxbus.sinks.jsonl import StoreError, _resolve

    path = Path(location)
    if path.is_file() and is_sqlite(path):
        from rxbus.sinks import SQLiteStore

        try:
            return SQLiteStore(path, readonly=True)
        except StoreError as err:
            raise CliError(str(err)) from None
    try:
        files = _resolve(location)
    except FileNotFoundError:
        raise CliError(f"no store at {location!r}: file not found") from None
    _check_jsonl(files[-1])
    return JsonlSource(location)


def _check_jsonl(file: Path) -> None:
    """Refuse a file whose first line is not an event: it is not a store at all.

    Raises:
        CliError: naming the file and what its first line is.
    """
    import orjson

    from rxbus.event import Event

    try:
        with open(file, "rb") as f:
            first = f.readline(1 << 22)
            while first and not first.strip():
                first = f.readline(1 << 22)
    except OSError as err:
        raise CliError(f"cannot read store {str(file)!r}: {err.strerror or err}") from None
    if not first.strip() or not first.endswith(b"\n"):
        return  # empty, or one line still being written
    try:
        Event.from_dict(orjson.loads(first))
    except (ValueError, TypeError) as err:
        raise CliError(
            f"{str(file)!r} is not an rxbus store: neither SQLite nor JSON Lines of events "
            f"(line 1: {err})"
        ) from None


class JsonlSource:
    """JSONL files read like a store: ``query`` as ``SQLiteStore.query``."""

    def __init__(self, location: str) -> None:
        self.location = location

    def query(
        self,
        pattern: str = "**",
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int | None = None,
    ) -> Iterator[Event]:
        from rxbus.sinks.jsonl import query_jsonl

        return query_jsonl(self.location, pattern, since=since, until=until, limit=limit)

    def close(self) -> None:
        """Nothing stays open between queries."""


# -- tail ----------------------------------------------------------------------------------------


def run_tail(args: argparse.Namespace) -> int:
    """``rxbus tail``: print the newest events, then follow."""
    pattern = check_pattern(args.pattern)
    since = parse_time("--since", args.since)
    if args.lines < 0:
        raise CliError(f"--lines must be >= 0, got {args.lines}")
    if args.interval <= 0:
        raise CliError(f"--interval must be > 0, got {args.interval}")
    from rxbus.errors import StoreError

    source = open_source(args.store)
    show = _printer(args)
    try:
        if isinstance(source, JsonlSource):
            return _tail_jsonl(source.location, pattern, since, args, show)
        return _tail_sqlite(source, pattern, since, args, show)
    except StoreError as err:
        raise CliError(str(err)) from None
    finally:
        source.close()


def _printer(args: argparse.Namespace) -> Any:
    if args.json:

        def show(event: Any) -> None:
            sys.stdout.write(event.to_json().decode() + "\n")

        return show
    from rxbus.sinks import ConsoleSink

    color = {"auto": None, "always": True, "never": False}[args.color]
    return ConsoleSink(color=color).on_next


def _tail_sqlite(store: Any, pattern: str, since: Any, args: argparse.Namespace, show: Any) -> int:
    from rxbus.sinks.jsonl import StoreError

    # Everything up to the newest event now is printed first; following starts after it, so
    # an event stored meanwhile is printed once.
    last_id = store.last_id()
    if last_id is None:
        first = []
    elif since is not None:
        try:
            first = store.query(pattern, since=since, until=last_id)
        except ValueError as err:
            raise CliError(str(err)) from None
    else:
        first = store.latest(pattern, args.lines, until=last_id)
    for event in first:
        show(event)
    sys.stdout.flush()
    while args.follow:
        time.sleep(args.interval)
        try:
            new = store.query(pattern, after=last_id) if last_id else store.query(pattern)
            newest = store.last_id()
        except StoreError as err:
            raise CliError(str(err)) from None
        for event in new:
            show(event)
        if new:
            sys.stdout.flush()
        # Follow by the newest id of any topic, so non-matching events are not read again.
        last_id = newest or last_id
    return 0


def _tail_jsonl(
    location: str, pattern: str, since: Any, args: argparse.Namespace, show: Any
) -> int:
    from rxbus.topics import compile_pattern

    match = compile_pattern(pattern)
    follower = JsonlFollower(Path(location))
    first: Iterable[Any] = [e for e in follower.read_all() if match(e.topic)]
    if since is not None:
        first = _since(first, since)
    else:
        first = deque(first, maxlen=args.lines) if args.lines else []
    for event in first:
        show(event)
    sys.stdout.flush()
    while args.follow:
        time.sleep(args.interval)
        new = [e for e in follower.poll() if match(e.topic)]
        for event in new:
            show(event)
        if new:
            sys.stdout.flush()
    return 0


def _since(events: Iterable[Any], since: datetime | str) -> list[Any]:
    if isinstance(since, datetime):
        return [e for e in events if e.timestamp >= since]
    out: list[Any] = []
    for event in events:
        if out or event.id == since:
            out.append(event)
    return out


class JsonlFollower:
    """Reads a JSONL file written by ``JsonlSink`` as it grows, across rotations.

    The rotated files are read whole, the active file by offset; when the active file is
    rotated away (its inode changes), the rest of the old file is read through the still-open
    handle, then any rotated file written since, then the new active file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None
        self._ino = -1
        self._buffer = b""
        self._line = 0

    def read_all(self) -> list[Any]:
        """Every event so far: rotated files, then the active file (which is then followed)."""
        from rxbus.sinks.jsonl import _files_of, read_jsonl

        events: list[Any] = []
        files = _files_of(self.path)
        rotated = files[:-1] if files and files[-1] == self.path else files
        for file in rotated:
            events.extend(read_jsonl(file))
        self._open()
        events.extend(self.poll())
        return events

    def _open(self) -> None:
        try:
            self._fh = open(self.path, "rb")  # noqa: SIM115 - kept open while following
        except FileNotFoundError:
            self._fh, self._ino = None, -1
            return
        self._ino = os.fstat(self._fh.fileno()).st_ino
        self._buffer = b""
        self._line = 0

    def poll(self) -> list[Any]:
        """Events appended since the last call."""
        from rxbus.sinks.jsonl import _files_of, read_jsonl

        events = self._read_new()
        try:
            current = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = -1
        if current != self._ino:
            # Rotated: finish the old file, read files rotated after it, then the new one.
            events.extend(self._read_new())
            old_ino = self._ino
            if self._fh is not None:
                self._fh.close()
            newer = False
            for file in _files_of(self.path)[:-1] if current != -1 else _files_of(self.path):
                if newer:
                    events.extend(read_jsonl(file))
                elif old_ino == -1 or os.stat(file).st_ino == old_ino:
                    newer = True
            self._open()
            events.extend(self._read_new())
        return events

    def _read_new(self) -> list[Any]:
        import orjson

        from rxbus.errors import StoreError
        from rxbus.event import Event

        if self._fh is None:
            return []
        chunk = self._fh.read()
        if not chunk:
            return []
        data = self._buffer + chunk
        lines = data.split(b"\n")
        self._buffer = lines.pop()  # an incomplete last line waits for the rest
        events = []
        for line in lines:
            self._line += 1
            if not line.strip():
                continue
            try:
                events.append(Event.from_dict(orjson.loads(line)))
            except (ValueError, TypeError) as err:
                raise StoreError(
                    f"{self.path}:{self._line}: corrupt JSONL line ({err}): {line[:80]!r}"
                ) from None
        return events


# -- replay --------------------------------------------------------------------------------------


def run_replay(args: argparse.Namespace) -> int:
    """``rxbus replay``: read, then send to a server, a store, or stdout."""
    from rxbus.sinks.jsonl import StoreError

    pattern = check_pattern(args.pattern)
    since = parse_time("--since", args.since)
    until = parse_time("--until", args.until)
    if args.batch < 1:
        raise CliError(f"--batch must be >= 1, got {args.batch}")
    if args.max_body < 1024:
        raise CliError(f"--max-body must be >= 1024, got {args.max_body}")
    source = open_source(args.store)
    try:
        try:
            if args.dead_letters:
                events: Iterable[Any] = _dead_letter_events(source, pattern, since, until)
            else:
                events = source.query(pattern, since=since, until=until)
            if args.limit is not None:
                events = _limited(events, args.limit)
            sent, accepted, duplicates = _deliver(events, args)
        except (StoreError, ValueError) as err:
            raise CliError(str(err)) from None
    finally:
        source.close()
    target = args.to or "stdout"
    verb = "accepted" if target.startswith(("http://", "https://")) else "written"
    detail = f" ({verb} {accepted}, duplicates {duplicates})" if accepted is not None else ""
    print(f"rxbus replay: {sent} events to {target}{detail}", file=sys.stderr)
    return 0


def _limited(events: Iterable[Any], limit: int) -> Iterator[Any]:
    for n, event in enumerate(events):
        if n >= limit:
            return
        yield event


def _dead_letter_events(source: Any, pattern: str, since: Any, until: Any) -> Iterator[Any]:
    """The failed events of stored dead letters, as new events pointing at the original."""
    from rxbus.event import new_event_id
    from rxbus.sinks._batch import DEAD_LETTER_TOPIC, original_event
    from rxbus.topics import compile_pattern

    match = compile_pattern(pattern)
    skipped = 0
    for stored in source.query(DEAD_LETTER_TOPIC, since=since, until=until):
        failed = original_event(stored)
        if failed is None:
            skipped += 1
            continue
        if match(failed.topic):
            # A new id: the server already saw (and deduplicates) the original one.
            yield failed.evolve(
                id=new_event_id(), metadata={**failed.metadata, "replayed_from": failed.id}
            )
    if skipped:
        print(
            f"rxbus replay: skipped {skipped} dead letters whose item was not an event",
            file=sys.stderr,
        )


def _deliver(events: Iterable[Any], args: argparse.Namespace) -> tuple[int, int | None, int]:
    target = args.to
    if target is None:
        sent = 0
        out = sys.stdout
        for event in events:
            out.write(event.to_json().decode() + "\n")
            sent += 1
        out.flush()
        return sent, None, 0
    if re.match(r"https?://", target):
        return _post_all(events, target, args.batch, args.token, args.max_body)
    return _store_all(events, Path(target))


def _post_all(
    events: Iterable[Any], url: str, batch: int, token: str | None, max_body: int
) -> tuple[int, int, int]:
    """POST the events in requests of at most ``batch`` events and ``max_body`` bytes."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.path in ("", "/"):
        url = url.rstrip("/") + "/events"
    sent = accepted = duplicates = 0
    chunk: list[bytes] = []
    size = 0
    for event in events:
        line = event.to_json()
        if chunk and (len(chunk) >= batch or size + len(line) + 1 > max_body):
            a, d = _post(url, chunk, token)
            sent, accepted, duplicates = sent + len(chunk), accepted + a, duplicates + d
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        a, d = _post(url, chunk, token)
        sent, accepted, duplicates = sent + len(chunk), accepted + a, duplicates + d
    return sent, accepted, duplicates


def _post(url: str, lines: list[bytes], token: str | None) -> tuple[int, int]:
    import urllib.error
    import urllib.request

    import orjson

    headers = {"Content-Type": "application/x-ndjson"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=b"\n".join(lines), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            reply = orjson.loads(response.read())
    except urllib.error.HTTPError as err:
        try:
            message = orjson.loads(err.read()).get("error", "")
        except (orjson.JSONDecodeError, AttributeError):
            message = ""
        raise CliError(f"{url} refused the events: HTTP {err.code} {message}".rstrip()) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise CliError(f"cannot reach {url}: {reason}") from None
    except orjson.JSONDecodeError:
        raise CliError(f"{url} answered with something other than JSON") from None
    return int(reply.get("accepted", 0)), int(reply.get("duplicates", 0))


def _store_all(events: Iterable[Any], path: Path) -> tuple[int, int, int]:
    from rxbus.sinks import JsonlSink, SQLiteStore
    from rxbus.sinks.jsonl import StoreError

    use_jsonl = (path.exists() and not is_sqlite(path) and path.stat().st_size > 0) or (
        not path.exists() and path.suffix in _JSONL_SUFFIXES
    )
    failures: list[Any] = []
    try:
        sink: Any = (
            JsonlSink(path, dead_letters=failures.append)
            if use_jsonl
            else SQLiteStore(path, dead_letters=failures.append)
        )
    except StoreError as err:
        raise CliError(str(err)) from None
    sent = 0
    with sink:
        for event in events:
            sink.on_next(event)
            sent += 1
        sink.flush(timeout=60.0)
        stats = sink.stats
    if failures:
        raise CliError(
            f"{len(failures)} events could not be written to {path}: {failures[0].error}"
        )
    written = int(stats["written"])
    return sent, written, int(stats.get("duplicates", 0))
