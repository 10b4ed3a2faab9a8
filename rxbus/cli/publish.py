"""``rxbus publish TOPIC``: publish one event from a shell hook, never blocking it for long.

The event goes to ``rxbus serve`` over HTTP when the server answers within a short connect
timeout; otherwise it is written, with its id, to the local spool (:mod:`rxbus.spool`) and the
command returns at once. The next ``publish`` that reaches the server delivers the spool, and so
does ``rxbus serve`` at start-up; the server drops repeats by event id, so nothing is delivered
twice to the application.

    echo '{"tool": "Bash"}' | rxbus publish hook.tool --type PreToolUse --source claude

Only the standard library, orjson and :mod:`rxbus.event` are imported, and HTTP is spoken over a
plain socket, so an invocation costs little more than the interpreter's start-up.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Literal

from rxbus.cli import CliError

__all__ = ["HttpResult", "post", "register", "run"]

DEFAULT_URL = "http://127.0.0.1:8765"
CONNECT_TIMEOUT = 0.25  # seconds: a local server answers in well under a millisecond
READ_TIMEOUT = 2.0  # seconds: the server replies once the events are stored
DEFAULT_MAX_BYTES = 1_048_576


def register(subparsers: Any) -> None:
    """Add the ``publish`` sub-command to ``rxbus``'s parser."""
    p = subparsers.add_parser(
        "publish",
        help="publish one event to 'rxbus serve' (spooled locally while it is down)",
        description=(
            "Publish one event to 'rxbus serve'. The event's data is --data, else JSON read "
            "from stdin. When the server is down the event is spooled and sent later."
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
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        help=f"largest event accepted, in bytes of JSON (default {DEFAULT_MAX_BYTES})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the event, send it (or spool it), then deliver any spooled backlog.

    Returns:
        0 when the event was delivered or spooled.

    Raises:
        CliError: for bad input (JSON, topic, size) or a server that rejects the event.
    """

    from rxbus.errors import InvalidTopicError, PayloadError
    from rxbus.event import Event
    from rxbus.spool import Spool, default_spool_dir

    data = _read_data(args.data)
    try:
        event = Event(
            topic=args.topic,
            type=args.type or "",
            data=data,
            source=args.source,
            correlation_id=args.correlation_id,
        )
    except (InvalidTopicError, PayloadError) as err:
        raise CliError(str(err)) from None
    line = event.to_json()
    if len(line) > args.max_bytes:
        raise CliError(
            f"event is {len(line)} bytes of JSON; at most {args.max_bytes} allowed (--max-bytes)"
        )

    url = args.url or os.environ.get("RXBUS_URL") or DEFAULT_URL
    token = args.token if args.token is not None else os.environ.get("RXBUS_TOKEN")
    spool = Spool(args.spool or default_spool_dir())

    result = post(url, [line], token)
    if result.status is None or result.status >= 500:
        # Unreachable or failing server: keep the event for later and return at once.
        spool.append(event.id, line)
        return 0
    if result.status != 200:
        raise CliError(f"server at {url} rejected the event: {result.reason()}")
    if spool.pending():
        spool.drain(lambda lines: outcome(post(url, lines, token)), limit=5000)
    return 0


def outcome(result: HttpResult) -> Literal["ok", "retry", "rejected"]:
    """How the spool should treat a reply: 200 delivered, 400/413 bad input, else retry later."""
    if result.status == 200:
        return "ok"
    return "rejected" if result.status in (400, 413) else "retry"


def _read_data(text: str | None) -> dict[str, Any]:
    import orjson

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
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        shown = raw[:60] if isinstance(raw, str) else raw[:60].decode("utf-8", "replace")
        raise CliError(f"{source} is not valid JSON ({err}): {shown!r}") from None
    if not isinstance(value, dict):
        raise CliError(
            f"{source} must be a JSON object, got {type(value).__name__}: {str(value)[:60]!r}"
        )
    return value


class HttpResult:
    """The outcome of :func:`post`: ``status`` is None when the server could not be reached."""

    __slots__ = ("body", "status")

    def __init__(self, status: int | None, body: bytes = b"") -> None:
        self.status = status
        self.body = body

    def reason(self) -> str:
        """The server's one-line error, or the status code."""
        import orjson

        try:
            message = orjson.loads(self.body).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            message = None
        text = message or self.body.decode("utf-8", "replace").strip()[:200]
        return f"{self.status} {text}".strip()


def post(
    url: str,
    lines: list[bytes],
    token: str | None,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
) -> HttpResult:
    """POST ``lines`` as JSON Lines to ``url``/events over a plain socket (HTTP/1.1).

    A minimal client on purpose: ``http.client`` alone costs more start-up time than the rest
    of the command. Any network failure, including a read timeout, gives ``status=None``: the
    caller spools the events, and the server drops them by id if they did arrive.

    Raises:
        CliError: for a URL that is not ``http://host[:port]``.
    """
    import socket

    host, port, base = _split_url(url)
    body = b"\n".join(lines) + b"\n"
    head = [
        f"POST {base}/events HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/x-ndjson",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if token:
        head.append(f"Authorization: Bearer {token}")
    request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
    try:
        with socket.create_connection((host, port), timeout=connect_timeout) as sock:
            sock.settimeout(read_timeout)
            sock.sendall(request)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError:
        return HttpResult(None)
    response = b"".join(chunks)
    header, _, payload = response.partition(b"\r\n\r\n")
    try:
        status = int(header.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return HttpResult(None)  # cut off mid-reply: treat as not delivered
    return HttpResult(status, payload)


def _split_url(url: str) -> tuple[str, int, str]:
    rest = url.removeprefix("http://")
    if rest == url or not rest:
        raise CliError(f"--url must look like http://127.0.0.1:8765, got {url!r}")
    hostport, _, path = rest.partition("/")
    host, _, port_text = hostport.rpartition(":")
    if not host:
        host, port_text = hostport, "80"
    try:
        port = int(port_text)
    except ValueError:
        raise CliError(f"--url has an invalid port {port_text!r}: {url!r}") from None
    base = ("/" + path).rstrip("/")
    return host.strip("[]"), port, base
