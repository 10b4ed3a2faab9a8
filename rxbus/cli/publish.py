"""``rxbus publish TOPIC``: publish one event from a shell hook, never blocking it for long.

The event goes to ``rxbus serve`` over HTTP when the server answers within a short connect
timeout; otherwise it is written, with its id, to the local spool (:mod:`rxbus.spool`) and the
command returns at once. The whole exchange with the server is bounded by ``--timeout`` (0.15 s),
so a hung server costs a hook no more than that. The next ``publish`` that reaches the server delivers the spool, and so
does ``rxbus serve`` at start-up; the server drops repeats by event id, so nothing is delivered
twice to the application.

    echo '{"tool": "Bash"}' | rxbus publish hook.tool --type PreToolUse --source claude

Only the standard library, :mod:`rxbus.topics` and :mod:`rxbus.spool` are imported (not even
:class:`rxbus.Event` or orjson: see :func:`event_line`), and HTTP is spoken over a plain socket,
so an invocation costs little more than the interpreter's start-up.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from rxbus.cli import CliError

TYPE_CHECKING = False  # typing is not imported at run time: see rxbus/__init__.py
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Literal

__all__ = ["HttpResult", "post", "register", "run"]

DEFAULT_URL = "http://127.0.0.1:8765"
DEFAULT_TIMEOUT = 0.15  # seconds for the whole exchange with the server, connect to reply
DEFAULT_MAX_BYTES = 1_048_576
EXIT_NOT_KEPT = 1  # the event was neither delivered nor spooled: the one way an event is lost


def register(subparsers: Any) -> None:
    """Add the ``publish`` sub-command to ``rxbus``'s parser."""
    p = subparsers.add_parser(
        "publish",
        help="publish one event to 'rxbus serve' (spooled locally while it is down)",
        description=(
            "Publish one event to 'rxbus serve'. The event's data is --data, else JSON read "
            "from stdin. When the server is down or slow the event is spooled and sent later. "
            "Silent unless -v; exit 0 when the event was delivered or spooled, 2 for bad input "
            "or an event the server refused (kept in the spool or its rejected/ folder), 1 when "
            "it could be neither delivered nor spooled."
        ),
    )
    p.add_argument("topic", metavar="TOPIC", help="dot-separated topic, e.g. hook.tool")
    p.add_argument("--type", dest="type", default=None, help="event type (default: last segment)")
    p.add_argument("--source", default="", help="who produced the event")
    p.add_argument("--correlation-id", default=None, help="ties related events together")
    p.add_argument("--data", default=None, help="the payload as a JSON object (default: stdin)")
    p.add_argument("--url", default=None, help=f"server URL (default: $RXBUS_URL or {DEFAULT_URL})")
    p.add_argument("--token", default=None, help="bearer token (default: $RXBUS_TOKEN)")
    p.add_argument(
        "--spool", default=None, help="spool directory (default: $RXBUS_SPOOL or ~/.local/state)"
    )
    p.add_argument(
        "--fallback-spool",
        default=None,
        help="second spool directory, used when the first cannot be written "
        "(default: $RXBUS_SPOOL_FALLBACK; none)",
    )
    p.add_argument(
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        help=f"largest event accepted, in bytes of JSON (default {DEFAULT_MAX_BYTES})",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for the server before spooling (default {DEFAULT_TIMEOUT})",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="say on stderr whether the event was delivered or spooled",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the event, send it (or spool it), then deliver spooled backlog in the time left.

    Returns:
        0 when the event was delivered or spooled; :data:`EXIT_NOT_KEPT` when it could be
        neither (one line on stderr says why).

    Raises:
        CliError: for bad input (JSON, topic, size, URL) or a server that refuses the event.
    """
    from rxbus.spool import Spool

    if not 0 < args.timeout <= 60:
        raise CliError(f"--timeout must be 0..60 seconds, got {args.timeout}")
    data = _read_data(args.data)
    event_id, line = event_line(args.topic, args.type, data, args.source, args.correlation_id)
    if len(line) > args.max_bytes:
        raise CliError(
            f"event is {len(line)} bytes of JSON; at most {args.max_bytes} allowed (--max-bytes)"
        )

    url = args.url or os.environ.get("RXBUS_URL") or DEFAULT_URL
    token = args.token if args.token is not None else os.environ.get("RXBUS_TOKEN")
    try:
        spool = Spool.for_url(args.spool, url)
    except ValueError as err:
        raise CliError(str(err)) from None
    deadline = time.monotonic() + args.timeout
    say = _stderr if args.verbose else None

    result = post(url, [line], token, deadline=deadline)
    if result.status is None or result.status >= 500:
        # Unreachable, hung or failing server: keep the event for later and return at once.
        where = _keep(event_id, line, spool, args.fallback_spool, url, result)
        if say:
            say(f"rxbus publish: spooled {event_id} in {where} ({result.why(url)})")
        return 0
    if result.status in (400, 413):
        # Bad input by the server's rules: resending cannot help; keep it for a person.
        try:
            kept = f"set aside in {spool.set_aside(event_id, line)}"
        except OSError as err:
            kept = f"and could not be set aside ({err.strerror or err}): it is lost"
        raise CliError(f"server at {url} rejected event {event_id}: {result.reason()}; {kept}")
    if result.status != 200:
        # 401, 403, 404...: a setting to fix; the event waits in the spool meanwhile.
        where = _keep(event_id, line, spool, args.fallback_spool, url, result)
        raise CliError(
            f"server at {url} refused event {event_id}: {result.reason()}; spooled in {where} "
            "('rxbus spool retry' sends it again)"
        )
    if say:
        say(f"rxbus publish: delivered {event_id} to {url}")
    try:
        if spool.pending() and time.monotonic() < deadline:
            sent = spool.drain(
                lambda lines: outcome(post(url, lines, token, deadline=deadline)),
                limit=5000,
                deadline=deadline,
            )
            if say and sent:
                say(f"rxbus publish: delivered {sent} spooled events to {url}")
    except OSError as err:
        # The event is delivered: a spool that cannot be read must not make it look lost.
        _stderr(
            f"rxbus publish: delivered {event_id}, but the spool {os.fspath(spool)} cannot be "
            f"drained ({err.strerror or err}); its events wait there"
        )
    return 0


def _keep(
    event_id: str, line: bytes, spool: Any, fallback: str | None, url: str, result: HttpResult
) -> str:
    """Spool the event (in the fallback spool if the first cannot be written); where it went.

    Raises:
        CliError: with :data:`EXIT_NOT_KEPT` when no spool could be written.
    """
    from rxbus.spool import Spool

    spools = [spool]
    second = fallback if fallback is not None else os.environ.get("RXBUS_SPOOL_FALLBACK")
    if second:
        spools.append(Spool.for_url(second, url))
    errors = []
    for candidate in spools:
        try:
            candidate.append(event_id, line)
        except OSError as err:
            errors.append(f"{os.fspath(candidate)}: {err.strerror or err}")
            continue
        return os.fspath(candidate)
    raise CliError(
        f"event {event_id} was not delivered ({result.why(url)}) and could not be spooled "
        f"({'; '.join(errors)}): it is lost",
        code=EXIT_NOT_KEPT,
    )


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def outcome(result: HttpResult) -> Literal["ok", "retry", "rejected"]:
    """How the spool should treat a reply: 200 delivered, 400/413 bad input, else retry later."""
    if result.status == 200:
        return "ok"
    return "rejected" if result.status in (400, 413) else "retry"


def _read_data(text: str | None) -> dict[str, Any]:
    import json

    source = "--data"
    if text is None:
        source = "stdin"
        if sys.stdin is None or sys.stdin.isatty():
            return {}
        raw: bytes | str = sys.stdin.buffer.read()
        if not raw.strip():
            return {}
    else:
        raw = text
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as err:
        shown = raw[:60] if isinstance(raw, str) else raw[:60].decode("utf-8", "replace")
        reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        raise CliError(f"{source} is not valid JSON ({reason}): {shown!r}") from None
    if not isinstance(value, dict):
        raise CliError(
            f"{source} must be a JSON object, got {type(value).__name__}: {str(value)[:60]!r}"
        )
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def event_line(
    topic: str, type_: str | None, data: dict[str, Any], source: str, correlation_id: str | None
) -> tuple[str, bytes]:
    """A new event's id and its JSON, as :meth:`rxbus.Event.to_json` would write them.

    Built with the standard library only: importing :mod:`rxbus.event` (dataclasses, orjson)
    would cost a shell hook more than the rest of the command. The id has
    :func:`rxbus.event.new_event_id`'s form (11 hex ms, 7 hex node, 12 hex counter), and a test
    checks that ``Event.from_json`` reads every line back to the same fields.

    Raises:
        CliError: for a bad topic or a payload JSON cannot carry.
    """
    import json

    from rxbus.errors import InvalidTopicError
    from rxbus.topics import validate_topic

    try:
        validate_topic(topic)
    except InvalidTopicError as err:
        raise CliError(str(err)) from None
    now = time.time_ns()
    random = os.urandom(10)
    event_id = "%011x%s%012x" % (
        now // 1_000_000,
        random[:4].hex()[:7],
        int.from_bytes(random[4:], "big"),
    )
    # datetime.isoformat()'s form (microseconds left out when zero), without importing it.
    seconds, nanos = divmod(now, 1_000_000_000)
    micros = nanos // 1000
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    stamp += (f".{micros:06d}" if micros else "") + "+00:00"
    event = {
        "id": event_id,
        "topic": topic,
        "type": type_ or topic.rsplit(".", 1)[-1],
        "timestamp": stamp,
        "source": source,
        "data": data,
        "metadata": {},
        "correlation_id": correlation_id,
    }
    try:
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (ValueError, RecursionError) as err:
        raise CliError(f"the event cannot be sent as JSON: {err}") from None
    return event_id, line.encode("utf-8", "surrogatepass")


class HttpResult:
    """The outcome of :func:`post`: ``status`` is None when the server could not be reached."""

    __slots__ = ("body", "error", "status")

    def __init__(self, status: int | None, body: bytes = b"", error: str = "") -> None:
        self.status = status
        self.body = body
        self.error = error

    def reason(self) -> str:
        """The server's one-line error, or the status code."""
        import json

        try:
            message = json.loads(self.body).get("error")
        except (ValueError, AttributeError):
            message = None
        text = message or self.body.decode("utf-8", "replace").strip()[:200]
        return f"{self.status} {text}".strip()

    def why(self, url: str) -> str:
        """Why the event was not delivered, for a message."""
        if self.status is None:
            return f"server at {url} unreachable: {self.error or 'no reply'}"
        return f"server at {url} answered {self.reason()}"


def post(url: str, lines: list[bytes], token: str | None, *, deadline: float) -> HttpResult:
    """POST ``lines`` as JSON Lines to ``url``/events over a plain socket (HTTP/1.1).

    A minimal client on purpose: ``http.client`` alone costs more start-up time than the rest
    of the command. Everything, connect to last byte, must happen before ``deadline`` (a
    :func:`time.monotonic` time), so a hung server cannot block a hook. Any network failure,
    the deadline included, gives ``status=None``: the caller spools the events, and the server
    drops them by id if they did arrive.

    Raises:
        CliError: for a URL that is not ``http://host[:port]``.
    """
    import socket

    host, port, base = _split_url(url)
    body = b"\n".join(lines) + b"\n"
    head = [
        f"POST {base}/events HTTP/1.1",
        f"Host: {host}:{port}" if ":" not in host else f"Host: [{host}]:{port}",
        "Content-Type: application/x-ndjson",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if token:
        head.append(f"Authorization: Bearer {token}")
    request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
    chunks = []
    try:
        left = deadline - time.monotonic()
        if left <= 0:
            return HttpResult(None, error="no time left")
        # An ASCII host as bytes skips the idna codec (10 ms of imports for a hook).
        target: Any = host.encode("ascii") if host.isascii() else host
        with socket.create_connection((target, port), timeout=left) as sock:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out")
                sock.settimeout(left)
                if request:
                    request = request[sock.send(request) :]
                    continue
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError as err:
        return HttpResult(None, error=str(err.strerror or err) or type(err).__name__)
    response = b"".join(chunks)
    header, _, payload = response.partition(b"\r\n\r\n")
    try:
        status = int(header.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return HttpResult(None, error="cut off mid-reply")  # treat as not delivered
    return HttpResult(status, payload)


def _split_url(url: str) -> tuple[str, int, str]:
    from rxbus.spool import split_url

    try:
        return split_url(url)
    except ValueError as err:
        raise CliError(str(err)) from None
