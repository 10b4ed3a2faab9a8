"""``rxbus run -- CMD ARGS...``: run a command and publish what it does, as a build monitor.

    rxbus run --topic build -- make -j4

publishes, to ``rxbus serve`` (``--url``, else ``$RXBUS_URL``, else the default of
``rxbus publish``):

- ``build.start``: ``argv``, ``cwd``, ``pid``, ``started`` (ISO 8601 UTC);
- ``build.output``, in batches: ``stream`` (``stdout`` or ``stderr``: a batch never mixes them),
  ``seq`` (per stream, from 0), ``line`` (number of the batch's first line in its stream, from
  1), ``lines`` (the text, decoded as UTF-8 with replacement characters, without the newline),
  and ``times``: ``[[index, seconds], ...]``, the time since start at which the line at
  ``index`` of ``lines`` and those after it (up to the next mark) were read;
- ``build.done``: ``exit_code`` (the command's; ``128 + n`` when signal ``n`` killed it, as a
  shell reports it), ``signal`` (its name, or null), ``duration_s``, and per stream the
  number of ``lines`` and ``bytes``.

All events of a run share one ``correlation_id`` (the start event's id), and ``rxbus run``
exits with the command's exit code. The command's output is also passed through to this
process's stdout and stderr unless ``--quiet``.

Events take the path of ``rxbus publish``: an HTTP POST to the server, and the local spool when
the server does not answer, delivered later by the next ``rxbus publish`` or by ``rxbus serve``
(which drops repeats by event id). Memory stays bounded whatever the amount of output: the
command's pipes are read in chunks, a batch is sent when it reaches ``--batch-bytes`` or
``--batch-lines`` or is ``--flush`` seconds old, and at most a few batches wait for the network,
after which the command blocks on its own output until they are sent. A line longer than
``--max-line`` characters is cut into pieces of that length.

SIGTERM and SIGHUP sent to ``rxbus run`` are passed on to the command, and SIGINT too unless it
came from the terminal (which already sent it to the command); the command's exit is then
reported as usual. Monitoring never fails the build: an event neither the server nor the spool
takes is counted and reported on stderr at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from rxbus.cli import CliError

if TYPE_CHECKING:  # pragma: no cover
    import queue

    from rxbus.event import Event
    from rxbus.spool import Spool

__all__ = ["register", "run"]

READ_SIZE = 256 * 1024
QUEUE_BATCHES = 4  # batches waiting for the network before the command is made to wait
DEFAULT_BATCH_BYTES = 256 * 1024
DEFAULT_BATCH_LINES = 10_000
DEFAULT_FLUSH = 0.5
DEFAULT_MAX_LINE = 64 * 1024
POST_BYTES = 1024 * 1024  # most JSON bytes per HTTP request
MAX_EVENT_TEXT = 900 * 1024  # JSON bytes of one batch's lines: under serve's 1 MiB per event


def register(subparsers: Any) -> None:
    """Add the ``run`` sub-command to ``rxbus``'s parser."""
    from rxbus.cli.publish import DEFAULT_URL

    p = subparsers.add_parser(
        "run",
        help="run a command and publish its start, output and exit (a build monitor)",
        description=(
            "Run CMD, publishing TOPIC.start, TOPIC.output (batches of lines, stdout and "
            "stderr apart) and TOPIC.done (exit code, signal, duration) to 'rxbus serve', "
            "spooled while it is down. Exits with CMD's exit code."
        ),
        usage="rxbus run [options] -- CMD [ARGS...]",
    )
    p.add_argument("--topic", default="build", help="topic prefix (default: build)")
    p.add_argument("--url", default=None, help=f"server URL (default: $RXBUS_URL or {DEFAULT_URL})")
    p.add_argument("--token", default=None, help="bearer token (default: $RXBUS_TOKEN)")
    p.add_argument(
        "--spool", default=None, help="spool directory (default: $RXBUS_SPOOL or ~/.local/state)"
    )
    p.add_argument("--source", default="rxbus run", help="the events' source")
    p.add_argument("--quiet", action="store_true", help="do not pass the output through")
    p.add_argument(
        "--batch-bytes",
        type=_positive_int,
        default=DEFAULT_BATCH_BYTES,
        help=f"send a batch at this many bytes of text (default {DEFAULT_BATCH_BYTES})",
    )
    p.add_argument(
        "--batch-lines",
        type=_positive_int,
        default=DEFAULT_BATCH_LINES,
        help=f"send a batch at this many lines (default {DEFAULT_BATCH_LINES})",
    )
    p.add_argument(
        "--flush",
        type=_positive_float,
        default=DEFAULT_FLUSH,
        help=f"send a batch at the latest this many seconds after its first line "
        f"(default {DEFAULT_FLUSH})",
    )
    p.add_argument(
        "--max-line",
        type=_positive_int,
        default=DEFAULT_MAX_LINE,
        help=f"cut longer lines into pieces of this many characters (default {DEFAULT_MAX_LINE})",
    )
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    p.set_defaults(func=run)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number > 0, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number > 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds > 0, got {text!r}"
        ) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run the command, publishing its start, output and end; return its exit code.

    Raises:
        CliError: for a missing command (exit 2), a bad topic or URL (exit 2), or a command that
            cannot be started (exit 127 when not found, 126 when not executable).
    """
    import subprocess
    from datetime import UTC, datetime
    from urllib.parse import urlsplit

    from rxbus.cli.publish import DEFAULT_URL
    from rxbus.errors import InvalidTopicError
    from rxbus.spool import Spool, default_spool_dir
    from rxbus.topics import validate_topic

    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise CliError("no command given: rxbus run [options] -- CMD [ARGS...]")
    try:
        validate_topic(f"{args.topic}.output")
    except InvalidTopicError as err:
        raise CliError(f"--topic: {err}") from None
    url = args.url or os.environ.get("RXBUS_URL") or DEFAULT_URL
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = urlsplit("")
    if parts.scheme != "http" or not parts.hostname:
        raise CliError(f"--url must look like http://127.0.0.1:8765, got {url!r}")
    token = args.token if args.token is not None else os.environ.get("RXBUS_TOKEN")
    sender = _Sender(url, token, Spool.for_url(args.spool or default_spool_dir(), url))

    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    except FileNotFoundError:
        raise CliError(f"command not found: {argv[0]!r}", code=127) from None
    except PermissionError:
        raise CliError(f"command not executable: {argv[0]!r}", code=126) from None
    except OSError as err:
        raise CliError(f"cannot run {argv[0]!r}: {err.strerror or err}", code=126) from None

    restore = _forward_signals(proc)
    event = _event(
        args,
        "start",
        {
            "argv": argv,
            "cwd": os.getcwd(),
            "pid": proc.pid,
            "started": datetime.now(UTC).isoformat(),
        },
        None,
    )
    event = event.evolve(correlation_id=event.id)
    correlation = event.id
    sender.start()
    sender.put(event)
    assert proc.stdout is not None and proc.stderr is not None
    streams = [
        _Stream("stdout", proc.stdout.fileno(), None if args.quiet else sys.stdout, args),
        _Stream("stderr", proc.stderr.fileno(), None if args.quiet else sys.stderr, args),
    ]
    try:
        _pump(streams, started, lambda data: sender.put(_event(args, "output", data, correlation)))
        returncode = proc.wait()
    finally:
        restore()
        proc.stdout.close()
        proc.stderr.close()
    duration = time.monotonic() - started
    exit_code, signal_name = _exit_status(returncode)
    done = {
        "exit_code": exit_code,
        "signal": signal_name,
        "duration_s": round(duration, 3),
        **{s.name: {"lines": s.line_count, "bytes": s.byte_count} for s in streams},
    }
    sender.put(_event(args, "done", done, correlation))
    sender.finish()
    return exit_code


def _event(
    args: argparse.Namespace, kind: str, data: dict[str, Any], correlation: str | None
) -> Event:
    from rxbus.event import Event

    return Event(
        topic=f"{args.topic}.{kind}",
        type=kind,
        data=data,
        source=args.source,
        correlation_id=correlation,
    )


def _exit_status(returncode: int) -> tuple[int, str | None]:
    """The shell's exit code for ``returncode`` (``128 + n`` for signal ``n``) and the signal."""
    if returncode >= 0:
        return returncode, None
    import signal

    number = -returncode
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"SIG{number}"
    return 128 + number, name


def _forward_signals(proc: Any) -> Any:
    """Pass SIGINT, SIGTERM and SIGHUP on to ``proc``; returns a function undoing it.

    A Ctrl-C at the terminal already reached the command (it runs in our process group), so a
    SIGINT is passed on only when this process is not in the terminal's foreground group (sent
    with ``kill``): the command gets it once either way, and ``rxbus run`` keeps going to report
    how the command ended.
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def forward(signum: int, _frame: Any) -> None:
        if signum == signal.SIGINT and _in_foreground():
            return
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, forward)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def _in_foreground() -> bool:
    """Whether this process is in the foreground process group of its terminal."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


class _Stream:
    """One of the command's output pipes: decoding, splitting into lines, batching, counts."""

    def __init__(self, name: str, fd: int, echo: Any, args: argparse.Namespace) -> None:
        import codecs

        self.name = name
        self.fd = fd
        self.echo = getattr(echo, "buffer", None)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.max_line = args.max_line
        self.batch_bytes = args.batch_bytes
        self.batch_lines = args.batch_lines
        self.flush_after = args.flush
        self.partial = ""
        self.lines: list[str] = []
        self.times: list[list[float]] = []
        self.size = 0
        self.first_at: float | None = None  # monotonic time of the batch's first line
        self.seq = 0
        self.line_count = 0  # lines published so far
        self.byte_count = 0  # bytes read from the pipe
        self.open = True

    def feed(self, chunk: bytes, now: float, since_start: float, emit: Any) -> None:
        """Take a chunk read from the pipe (b"" at end of file)."""
        if self.echo is not None and chunk:
            try:
                self.echo.write(chunk)
                self.echo.flush()
            except (OSError, ValueError):
                self.echo = None  # our own stdout went away: keep monitoring
        self.byte_count += len(chunk)
        text = self.partial + self.decoder.decode(chunk, final=not chunk)
        pieces = text.split("\n")
        self.partial = pieces.pop()
        if not chunk and self.partial:
            pieces.append(self.partial)  # a last line without a newline
            self.partial = ""
        if len(self.partial) > self.max_line:
            # keep 1..max_line characters back: the line may end right after them
            whole = (len(self.partial) - 1) // self.max_line * self.max_line
            pieces.append(self.partial[:whole])
            self.partial = self.partial[whole:]
        if pieces:
            self._add(pieces, now, since_start, emit)

    def _add(self, pieces: list[str], now: float, since_start: float, emit: Any) -> None:
        cut = self.max_line
        if max(map(len, pieces)) > cut:
            pieces = [p[i : i + cut] for p in pieces for i in range(0, len(p) or 1, cut)]
        start = 0
        while start < len(pieces):
            room = self.batch_lines - len(self.lines)
            take = pieces[start : start + room]
            if self.first_at is None:
                self.first_at = now
            self.times.append([len(self.lines), round(since_start, 3)])
            self.lines.extend(take)
            self.size += sum(map(len, take)) + len(take)
            start += len(take)
            if len(self.lines) >= self.batch_lines or self.size >= self.batch_bytes:
                self.flush(emit)

    def due(self) -> float | None:
        """When the open batch must be sent (monotonic), or None when there is none."""
        return None if self.first_at is None else self.first_at + self.flush_after

    def flush(self, emit: Any) -> None:
        """Send the open batch, if any."""
        if self.lines:
            self._emit(self.lines, self.times, emit)
        self.lines, self.times, self.size, self.first_at = [], [], 0, None

    def _emit(self, lines: list[str], times: list[list[float]], emit: Any) -> None:
        import orjson

        if len(lines) > 1 and len(orjson.dumps(lines)) > MAX_EVENT_TEXT:
            # escaped control characters can make the JSON several times the text: halve
            half = len(lines) // 2
            head = [t for t in times if t[0] < half] or [[0, times[0][1]]]
            tail = [[i - half, at] for i, at in times if i >= half]
            if not tail or tail[0][0] != 0:
                tail.insert(0, [0, head[-1][1]])
            self._emit(lines[:half], head, emit)
            self._emit(lines[half:], tail, emit)
            return
        emit(
            {
                "stream": self.name,
                "seq": self.seq,
                "line": self.line_count + 1,
                "lines": lines,
                "times": times,
            }
        )
        self.seq += 1
        self.line_count += len(lines)


def _pump(streams: list[_Stream], started: float, emit: Any) -> None:
    """Read both pipes until end of file, sending batches when full or due."""
    import selectors

    selector = selectors.DefaultSelector()
    for stream in streams:
        os.set_blocking(stream.fd, False)
        selector.register(stream.fd, selectors.EVENT_READ, stream)
    while any(s.open for s in streams):
        dues = [d for d in (s.due() for s in streams) if d is not None]
        timeout = max(0.0, min(dues) - time.monotonic()) if dues else None
        for key, _ in selector.select(timeout):
            stream = key.data
            try:
                chunk = os.read(stream.fd, READ_SIZE)
            except BlockingIOError:
                continue
            now = time.monotonic()
            stream.feed(chunk, now, now - started, emit)
            if not chunk:
                stream.open = False
                selector.unregister(stream.fd)
                stream.flush(emit)
        now = time.monotonic()
        for stream in streams:
            due = stream.due()
            if due is not None and due <= now:
                stream.flush(emit)
    selector.close()


class _Sender:
    """Sends events in order on a thread of its own; spools what the server does not take.

    The queue holds at most :data:`QUEUE_BATCHES` events, so a slow or absent server makes the
    reader, and then the command, wait rather than memory grow.
    """

    def __init__(self, url: str, token: str | None, spool: Spool) -> None:
        import queue

        self.url = url
        self.token = token
        self.spool = spool
        self.queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=QUEUE_BATCHES)
        self.thread = threading.Thread(target=self._run, name="rxbus-run-sender", daemon=True)
        self.reached = False  # the server accepted something
        self.spooled = 0
        self.lost = 0
        self.error: Exception | None = None
        self.rejected: list[str] = []

    def start(self) -> None:
        self.thread.start()

    def put(self, event: Event) -> None:
        self.queue.put((event.id, event.to_json()))

    def finish(self) -> None:
        """Send what is queued, then deliver any spooled backlog if the server answers."""
        self.queue.put(None)
        self.thread.join()
        from rxbus.cli.publish import outcome, post

        if self.reached and self.spooled == 0 and self.spool.pending():
            self.spool.drain(
                lambda lines: outcome(post(self.url, lines, self.token, deadline=_deadline())),
                limit=5000,
            )
        if self.spooled:
            print(
                f"rxbus run: server at {self.url} unreachable; {self.spooled} event(s) spooled "
                f"in {self.spool.directory}",
                file=sys.stderr,
            )
        for reason in self.rejected[:3]:
            print(f"rxbus run: server rejected an event: {reason}", file=sys.stderr)
        if self.lost:
            print(
                f"rxbus run: {self.lost} event(s) neither delivered nor spooled: {self.error}",
                file=sys.stderr,
            )

    def _run(self) -> None:
        import queue

        while True:
            event = self.queue.get()
            if event is None:
                return
            batch = [event]
            size = len(event[1])
            # whatever else is already waiting goes in the same request
            while size < POST_BYTES:
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._send_safely(batch)
                    return
                batch.append(more)
                size += len(more[1])
            self._send_safely(batch)

    def _send_safely(self, events: list[tuple[str, bytes]]) -> None:
        """:meth:`_send`, never raising: a sender thread that died would block the build."""
        try:
            self._send(events)
        except Exception as err:  # e.g. the spool's disk is full
            self.lost += len(events)
            self.error = err

    def _send(self, events: list[tuple[str, bytes]]) -> None:
        """POST ``(id, JSON)`` pairs; spool them when the server does not take them."""
        from rxbus.cli.publish import post

        lines = [line for _, line in events]
        result = post(self.url, lines, self.token, deadline=_deadline())
        if result.status == 200:
            self.reached = True
            return
        if result.status in (400, 413) and len(events) > 1:
            for event in events:  # find the one the server refuses, send the rest
                self._send([event])
            return
        if result.status in (400, 413):
            self.rejected.append(result.reason())
            return
        for event_id, line in events:
            try:
                self.spool.append(event_id, line)
            except OSError as err:  # e.g. the disk is full: count it, keep the build going
                self.lost += 1
                self.error = err
            else:
                self.spooled += 1


POST_SECONDS = 5.0
"""Longest one POST of build events may take, connect to last byte; then they are spooled."""


def _deadline() -> float:
    return time.monotonic() + POST_SECONDS
