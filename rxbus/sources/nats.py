"""NATS JetStream to Rx: a durable pull consumer with acks, nak backoff, dedupe and a dead-letter subject.

``nats_stream(url, stream, durable)`` is a cold Observable: each subscription runs one reader
thread with its own asyncio loop and connection. It

1. creates the stream if it is missing (file storage, subjects ``<subject_prefix>.>``), the
   durable pull consumer (explicit acks), and the dead-letter stream,
2. pulls batches with one outstanding pull request at a time; an empty pull ends with the
   server's "408 Request Timeout" after ``fetch_timeout`` seconds and the next one is sent: an
   idle source makes one request per ``fetch_timeout``, raises nothing and logs nothing (it does
   not use nats-py's ``fetch()``, whose empty result is a ``TimeoutError``, nats.py #418),
3. acknowledges a message once the downstream ``on_next`` returned, after recording its event id
   as processed; a handler that raises makes the message ``nak`` with a growing delay,
4. skips a message whose event id this reader already handled (a copy re-sent after the
   stream's dedupe window), and a redelivered one whose id any process of the same durable
   consumer recorded as processed (kept ``processed_ttl`` seconds in a small JetStream stream),
   counted as ``duplicates``,
5. sends a message whose handler failed ``max_deliver`` times (raised, or crashed the process:
   attempts at redelivered messages are recorded before the handler runs, so messages that
   were only delivered along with a crashing one are not counted) to the dead-letter subject,
   with the error and the delivery count in its headers, then ``term``-s it,
6. recreates the consumer (and the stream) when it disappears (deleted by an operator, a server
   restarted without file storage), with backoff and one warning per incident: never a hot loop.

Delivery is at-least-once on the wire, exactly-once to the handler except for what a killed
process had handled but whose records and acks had not left it yet (at most 10 messages: the
reader lets the client flush every 10; the processed record goes out before each ack).
Handlers should still be idempotent by ``event.id``.

Order: a single consumer with ``max_ack_pending=1`` sees the stream in order, a failed message
blocking the next one until it succeeds or is dead-lettered. With more messages in flight (the
default, and always with several processes) messages are handed out in stream order, but a
``nak``-ed or timed-out message comes back after later ones (nats-server #7106): order per key is
then up to the handler (e.g. by sequence in the event).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import reactivex
from reactivex import abc
from reactivex.disposable import Disposable

from rxbus._extras import require
from rxbus._log import logger
from rxbus.errors import RxbusError
from rxbus.event import Event
from rxbus.metrics import Counter
from rxbus.topics import matches, validate_pattern

if TYPE_CHECKING:  # pragma: no cover
    from nats.aio.client import Client
    from nats.aio.msg import Msg

    from rxbus.bus import EventBus

__all__ = [
    "MSG_ID",
    "Delivery",
    "NatsStream",
    "NatsStreamOptions",
    "bridge",
    "connect",
    "ensure_stream",
    "filter_subject",
    "nats_stream",
    "subject_for",
]

MSG_ID = "Nats-Msg-Id"
# Headers of a dead letter (besides Nats-Msg-Id, the event id, so the dead stream dedupes too).
H_ERROR = "Rxbus-Error"
H_DELIVERIES = "Rxbus-Deliveries"
H_STREAM = "Rxbus-Stream"
H_DURABLE = "Rxbus-Durable"
H_SUBJECT = "Rxbus-Subject"
H_SEQUENCE = "Rxbus-Sequence"

_ACK_EVERY = 10  # handled messages between two chances for the acks to leave the process
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")


def require_nats() -> None:
    """Raise a clear ImportError naming the extra when nats-py is not installed."""
    require("nats", "the NATS bridge")


def check_prefix(prefix: object) -> str:
    """``prefix`` if it is dot-separated subject tokens of ``[A-Za-z0-9_-]``; else ValueError."""
    if not isinstance(prefix, str) or not all(_TOKEN.fullmatch(t) for t in prefix.split(".")):
        raise ValueError(
            f"subject_prefix must be dot-separated tokens of [A-Za-z0-9_-], got {prefix!r}"
        )
    return prefix


def check_name(label: str, value: object) -> str:
    """``value`` if it is a valid stream or consumer name; else ValueError naming ``label``."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(f"{label} must be 1..255 characters of [A-Za-z0-9_-], got {value!r}")
    return value


def check_url(url: object) -> str:
    """``url`` if it is a NATS URL; else ValueError naming it."""
    if not isinstance(url, str) or not url.startswith(("nats://", "tls://", "ws://", "wss://")):
        raise ValueError(f"url must be a nats:// (or tls://, ws://) URL, got {url!r}")
    return url


def check_number(label: str, value: object, *, minimum: float = 0.0, strict: bool = True) -> float:
    """``value`` as a float if it is a number above (``strict``) or at ``minimum``; else ValueError."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or value < minimum or (strict and value == minimum):  # type: ignore[operator]
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ValueError(f"{label} must be a number {bound}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_count(label: str, value: object, minimum: int = 1) -> int:
    """``value`` if it is an int >= ``minimum``; else ValueError naming ``label``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{label} must be an int >= {minimum}, got {value!r}")
    return value


def subject_for(prefix: str, topic: str) -> str:
    """The subject an event of ``topic`` is published to: ``<prefix>.<topic>``.

    Example:
        >>> subject_for("rxbus", "orders.created")
        'rxbus.orders.created'
    """
    return f"{prefix}.{topic}"


def filter_subject(prefix: str, pattern: str) -> tuple[str, bool]:
    """The consumer filter subject for an rxbus topic pattern, and whether it is exact.

    ``*`` is NATS ``*``; a trailing ``**`` is ``>``. As ``hook.**`` also matches ``hook`` itself
    (which ``hook.>`` does not), and ``**`` may stand anywhere in a pattern, such patterns get the
    narrowest single subject covering them and ``False``: the source then checks each event
    against the pattern and acknowledges the others without handing them out.

    Example:
        >>> filter_subject("rxbus", "orders.*")
        ('rxbus.orders.*', True)
        >>> filter_subject("rxbus", "orders.**")
        ('rxbus.>', False)
        >>> filter_subject("rxbus", "**")
        ('rxbus.>', True)
    """
    validate_pattern(pattern)
    parts = pattern.split(".")
    if "**" not in parts:
        return subject_for(prefix, pattern), True
    if parts == ["**"]:
        return f"{prefix}.>", True
    before = parts[: parts.index("**")]
    # "a.b.**" matches "a.b": the filter must end at "a.>", one literal segment earlier.
    head = before[:-1] if parts[-1] == "**" and parts.count("**") == 1 else before
    return ".".join([prefix, *head, ">"]), False


def _stream_config(
    stream: str,
    subjects: list[str],
    *,
    storage: str = "file",
    duplicate_window: float = 120.0,
    max_age: float | None = None,
    max_msgs_per_subject: int = -1,
) -> Any:
    from nats.js import api

    return api.StreamConfig(
        name=stream,
        subjects=subjects,
        storage=api.StorageType(storage),
        duplicate_window=duplicate_window,
        max_age=max_age,
        max_msgs_per_subject=max_msgs_per_subject,
    )


async def ensure_stream(
    js: Any,
    stream: str,
    subjects: list[str],
    *,
    storage: str = "file",
    duplicate_window: float = 120.0,
    max_age: float | None = None,
    max_msgs_per_subject: int = -1,
) -> bool:
    """Create ``stream`` if it does not exist; an existing stream is left as it is.

    Returns:
        True if the stream was created.
    """
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(stream)
        return False
    except NotFoundError:
        pass
    config = _stream_config(
        stream,
        subjects,
        storage=storage,
        duplicate_window=duplicate_window,
        max_age=max_age,
        max_msgs_per_subject=max_msgs_per_subject,
    )
    await js.add_stream(config)
    return True


async def connect(
    url: str,
    *,
    name: str,
    reconnect_wait: float = 0.1,
    on_reconnect: Callable[[], None] | None = None,
) -> Client:
    """A nats-py connection that reconnects forever and reports through the ``rxbus`` logger.

    nats-py's default callbacks print every connection error; here a lost connection is one
    warning, and the reconnection attempts are quiet. ``on_reconnect`` is called after each
    reconnection (to count them).
    """
    state = {"down": False}

    async def on_error(err: Exception) -> None:
        if not state["down"]:
            logger.debug("rxbus {}: NATS connection error: {}", name, err)

    async def on_disconnected() -> None:
        if not state["down"] and not nc.is_closed:
            state["down"] = True
            logger.warning("rxbus {}: disconnected from {}; reconnecting", name, url)

    async def on_reconnected() -> None:
        state["down"] = False
        logger.info("rxbus {}: reconnected to {}", name, url)
        if on_reconnect is not None:
            on_reconnect()

    from nats.aio.client import Client

    nc = Client()
    try:
        # Reconnecting off for the first connect (nats-py would retry it for a long time), on once
        # connected: a server that is down is then an error the caller retries with backoff.
        await asyncio.wait_for(
            nc.connect(
                url,
                name=name,
                connect_timeout=2,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=reconnect_wait,  # type: ignore[arg-type]
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
            ),
            timeout=5,
        )
    except BaseException:
        with contextlib.suppress(Exception):
            await nc.close()
        raise
    nc.options["allow_reconnect"] = True
    nc.options["max_reconnect_attempts"] = -1
    return nc


def _status(msg: Msg) -> str | None:
    headers = msg.headers
    if not headers or msg.data:
        return None
    return headers.get("Status")


def _deliveries(reply: str) -> int:
    """The delivery count from a JetStream ack subject (``$JS.ACK.<stream>.<consumer>.<n>...``,
    or the 12-token form with domain and account hash)."""
    tokens = reply.split(".")
    return int(tokens[4] if len(tokens) < 12 else tokens[6])


def _stream_sequence(reply: str) -> int:
    tokens = reply.split(".")
    return int(tokens[5] if len(tokens) < 12 else tokens[7])


class _Gone(RxbusError):
    """The consumer or its stream no longer exists on the server."""


class Delivery:
    """One JetStream message handed to a ``manual_ack=True`` subscriber.

    Attributes:
        event: the event carried by the message.
        subject: the subject it was stored under.
        sequence: its stream sequence number.
        deliveries: how many times it has been delivered, this time included.

    Example:
        >>> # nats_stream(url, "ORDERS", "billing", manual_ack=True)
        >>> #     .subscribe(lambda d: (handle(d.event), d.ack()))
    """

    __slots__ = ("_reader", "_reply", "acked", "deliveries", "event", "sequence", "subject")

    def __init__(
        self, event: Event, subject: str, reply: str, deliveries: int, reader: _Reader
    ) -> None:
        self.event = event
        self.subject = subject
        self.sequence = _stream_sequence(reply)
        self.deliveries = deliveries
        self.acked = False
        self._reply = reply
        self._reader = reader

    def ack(self) -> None:
        """Mark the message handled: its event id is recorded, then it is acknowledged.

        Idempotent and safe from any thread.
        """
        if self.acked:
            return
        self.acked = True
        self._reader.settle_later(self._reply, self.event.id, b"+ACK")

    def nak(self, delay: float | None = None) -> None:
        """Ask for redelivery, after ``delay`` seconds (default: the source's backoff)."""
        if self.acked:
            return
        self.acked = True
        wait = self._reader.nak_delay(self.deliveries) if delay is None else delay
        body = b"-NAK " + orjson.dumps({"delay": int(wait * 1e9)})
        self._reader.settle_later(self._reply, None, body)

    def __repr__(self) -> str:
        return (
            f"Delivery({self.event.topic!r}, id={self.event.id!r}, sequence={self.sequence}, "
            f"deliveries={self.deliveries}, acked={self.acked})"
        )


_STAT_NAMES = (
    "delivered",
    "acked",
    "duplicates",
    "filtered",
    "failed",
    "nacked",
    "dead_lettered",
    "pulls",
    "recreated",
    "reconnects",
    "retries",
)


@dataclass(frozen=True, slots=True)
class NatsStreamOptions:
    """Validated settings of one :func:`nats_stream` (see its arguments)."""

    url: str
    stream: str
    durable: str
    pattern: str
    subject_prefix: str
    filter_subject: str
    exact_filter: bool
    manual_ack: bool
    batch_size: int
    fetch_timeout: float
    ack_wait: float
    max_deliver: int
    max_ack_pending: int
    nak_delay: float
    max_nak_delay: float
    dead_letter_subject: str
    dead_letter_stream: str
    create_stream: bool
    storage: str
    duplicate_window: float
    processed_ttl: float | None
    processed_memory: int
    retry_delay: float
    max_retry_delay: float

    @property
    def processed_stream(self) -> str:
        return f"{self.stream}_{self.durable}_DONE"

    @property
    def processed_prefix(self) -> str:
        return f"_rxbus.done.{self.stream}.{self.durable}"

    @property
    def attempts_prefix(self) -> str:
        return f"_rxbus.try.{self.stream}.{self.durable}"


class _Reader:
    """One subscription: a thread with an asyncio loop pulling from the durable consumer."""

    def __init__(
        self, opts: NatsStreamOptions, stats: dict[str, Counter], observer: abc.ObserverBase[Any]
    ) -> None:
        self.opts = opts
        self.stats = stats
        self.observer = observer
        self.stopped = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.nc: Client | None = None
        self.inbox = ""
        self.inbox_sub: Any = None
        self.ready = False
        self.arrived: deque[Msg] = deque()
        self.settle: deque[tuple[str, str | None, bytes]] = deque()
        self.wake: asyncio.Event | None = None
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.thread = threading.Thread(
            target=self.run, name=f"rxbus-nats-{opts.stream}-{opts.durable}", daemon=True
        )

    def add(self, name: str) -> None:
        self.stats[name].increment()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def dispose(self) -> None:
        self.stopped.set()
        with contextlib.suppress(RuntimeError):  # the loop already closed
            self.loop.call_soon_threadsafe(self.nudge)
        if threading.current_thread() is not self.thread and self.thread.is_alive():
            self.thread.join(self.opts.fetch_timeout + 10.0)

    def nudge(self) -> None:
        if self.wake is not None:
            self.wake.set()

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.main())
        finally:
            self.loop.close()

    async def main(self) -> None:
        opts = self.opts
        self.wake = asyncio.Event()
        failures = 0
        try:
            while not self.stopped.is_set():
                try:
                    if self.nc is None:
                        self.nc = await connect(
                            opts.url,
                            name=f"nats_stream {opts.durable}",
                            on_reconnect=lambda: self.add("reconnects"),
                        )
                    if not self.ready:
                        await self.setup()
                    await self.pull()
                    failures = 0
                except _Gone as err:
                    failures += 1
                    self.ready = False
                    self.add("recreated")
                    logger.warning(
                        "rxbus nats_stream {}/{}: {}; recreating it", opts.stream, opts.durable, err
                    )
                    await self.pause(failures)
                except Exception as err:
                    if not self.recoverable(err):
                        self.fail(err)
                        return
                    failures += 1
                    self.ready = False
                    self.add("retries")
                    if failures == 1 or failures % 20 == 0:
                        logger.warning(
                            "rxbus nats_stream {}/{}: {!r} (attempt {}, retrying with backoff)",
                            opts.stream,
                            opts.durable,
                            err,
                            failures,
                        )
                    await self.pause(failures)
            await self.flush_settled()
        finally:
            if self.nc is not None:
                with contextlib.suppress(Exception):
                    await self.nc.flush(timeout=2)
                with contextlib.suppress(Exception):
                    await self.nc.close()

    def recoverable(self, err: Exception) -> bool:
        import nats.errors
        import nats.js.errors

        if isinstance(err, nats.js.errors.BadRequestError):
            return False  # a configuration the server refuses (e.g. a filter outside the stream)
        return isinstance(err, OSError | asyncio.TimeoutError | nats.errors.Error)

    def fail(self, err: Exception) -> None:
        opts = self.opts
        logger.opt(exception=err).error(
            "rxbus nats_stream {}/{} stopped", opts.stream, opts.durable
        )
        with contextlib.suppress(Exception):  # a subscriber without on_error re-raises
            self.observer.on_error(err)

    async def pause(self, failures: int) -> None:
        opts = self.opts
        delay = min(opts.retry_delay * 2 ** (failures - 1), opts.max_retry_delay)
        assert self.wake is not None
        self.wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.wake.wait(), delay)

    # -- setup ---------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Create what is missing (stream, consumer, dead-letter and processed-id streams)."""
        from nats.js import api
        from nats.js.errors import NotFoundError

        opts = self.opts
        assert self.nc is not None
        js = self.nc.jetstream(timeout=5)
        if opts.create_stream:
            created = await ensure_stream(
                js,
                opts.stream,
                [f"{opts.subject_prefix}.>"],
                storage=opts.storage,
                duplicate_window=opts.duplicate_window,
            )
            if created:
                logger.info("rxbus nats_stream: created stream {}", opts.stream)
        try:
            await js.consumer_info(opts.stream, opts.durable)
        except NotFoundError:
            config = api.ConsumerConfig(
                durable_name=opts.durable,
                ack_policy=api.AckPolicy.EXPLICIT,
                deliver_policy=api.DeliverPolicy.ALL,
                ack_wait=opts.ack_wait,
                # With the attempt records, the source counts attempts itself (the server
                # also counts deliveries nobody attempted: the rest of a batch whose handler
                # crashed the process). Without them, one more than ours: a message whose
                # handler kills the process still comes back to be dead-lettered.
                max_deliver=-1 if opts.processed_ttl is not None else opts.max_deliver + 1,
                max_ack_pending=opts.max_ack_pending,
                filter_subject=opts.filter_subject,
            )
            await js.add_consumer(opts.stream, config)
        try:
            await js.find_stream_name_by_subject(opts.dead_letter_subject)
        except NotFoundError:
            await ensure_stream(js, opts.dead_letter_stream, [opts.dead_letter_subject])
        if opts.processed_ttl is not None:
            await ensure_stream(
                js,
                opts.processed_stream,
                [f"{opts.processed_prefix}.*", f"{opts.attempts_prefix}.*"],
                max_age=opts.processed_ttl,
                max_msgs_per_subject=1,
            )
        if self.inbox_sub is None:
            self.inbox = self.nc.new_inbox()
            self.inbox_sub = await self.nc.subscribe(self.inbox, cb=self.on_message)
        self.ready = True

    async def on_message(self, msg: Msg) -> None:
        self.arrived.append(msg)
        assert self.wake is not None
        self.wake.set()

    # -- pulling -------------------------------------------------------------------------------

    async def pull(self) -> None:
        """One pull request: handle what it brings until it is full, expires or ends."""
        opts = self.opts
        nc = self.nc
        assert nc is not None and self.wake is not None
        request = orjson.dumps({"batch": opts.batch_size, "expires": int(opts.fetch_timeout * 1e9)})
        await nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{opts.stream}.{opts.durable}", request, reply=self.inbox
        )
        self.add("pulls")
        received = 0
        # The server answers within fetch_timeout (messages, or 408 when it expires); silence
        # past that means the request was lost: the connection dropped or the consumer is gone.
        deadline = time.monotonic() + opts.fetch_timeout + 2.0
        while not self.stopped.is_set():
            if self.settle:
                await self.flush_settled()
            if not self.arrived:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    await self.check_consumer()
                    return
                self.wake.clear()
                if not self.arrived and not self.settle:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), remaining)
                continue
            msg = self.arrived.popleft()
            status = _status(msg)
            if status is None:
                received += 1
                await self.handle(msg)
                if received >= opts.batch_size:
                    return
                if received % _ACK_EVERY == 0:
                    # Let nats-py's flusher send the records and acks so far: a crash then
                    # redelivers at most this many handled messages.
                    await asyncio.sleep(0)
                continue
            if status == "100":  # idle heartbeat
                continue
            if status in ("404", "408"):  # no messages / the request expired
                return
            description = (msg.headers or {}).get("Description", "")
            if status == "409" and "deleted" in description.lower():
                raise _Gone(f"consumer deleted ({description})")
            if status == "409":  # leadership change, too many waiting pulls: ask again
                return
            if status == "503":
                raise _Gone("no responders: JetStream is not serving this stream")

    async def check_consumer(self) -> None:
        from nats.js.errors import NotFoundError

        assert self.nc is not None
        try:
            await self.nc.jetstream(timeout=5).consumer_info(self.opts.stream, self.opts.durable)
        except NotFoundError as err:
            raise _Gone(f"consumer not found ({err.description})") from err

    async def handle(self, msg: Msg) -> None:
        opts = self.opts
        reply = msg.reply
        deliveries = _deliveries(reply)
        try:
            event = Event.from_json(msg.data)
        except (ValueError, RxbusError) as err:
            await self.dead_letter(msg, None, deliveries, f"malformed event: {err}")
            return
        if not opts.exact_filter and not matches(opts.pattern, event.topic):
            self.add("filtered")
            await self.nc.publish(reply, b"+ACK")  # type: ignore[union-attr]
            return
        attempts = deliveries
        if event.id in self.seen:
            # A copy the server stored again (re-sent after the dedupe window), or a
            # redelivery of what this reader handled: in memory, so checked for every message.
            self.add("duplicates")
            await self.nc.publish(reply, b"+ACK")  # type: ignore[union-attr]
            return
        if deliveries > 1:
            if await self.processed(event.id):
                self.add("duplicates")
                await self.nc.publish(reply, b"+ACK")  # type: ignore[union-attr]
                return
            attempts = await self.count_attempt(event.id, reply)
        if attempts > opts.max_deliver:
            reason = f"attempted {attempts - 1} times (max_deliver={opts.max_deliver})"
            await self.dead_letter(msg, event, deliveries, reason)
            return
        self.add("delivered")
        if opts.manual_ack:
            delivery = Delivery(event, msg.subject, reply, deliveries, self)
            try:
                self.observer.on_next(delivery)
            except Exception as err:
                self.add("failed")
                logger.opt(exception=err).warning(
                    "rxbus nats_stream: subscriber raised on {}; redelivered after ack_wait",
                    delivery,
                )
            return
        try:
            self.observer.on_next(event)
        except Exception as err:
            self.add("failed")
            if attempts >= opts.max_deliver:
                await self.dead_letter(msg, event, deliveries, f"{type(err).__name__}: {err}")
                return
            delay = self.nak_delay(deliveries)
            logger.opt(exception=err).warning(
                "rxbus nats_stream {}: handling event {} (delivery {}) raised; nak, retry in {:.2f}s",
                opts.stream,
                event.id,
                deliveries,
                delay,
            )
            await self.send(reply, None, b"-NAK " + orjson.dumps({"delay": int(delay * 1e9)}))
            return
        if self.stopped.is_set():
            return  # the handler ended the subscription: leave the message unacknowledged
        await self.send(reply, event.id, b"+ACK")

    def nak_delay(self, deliveries: int) -> float:
        opts = self.opts
        return min(opts.nak_delay * 2 ** (deliveries - 1), opts.max_nak_delay)

    async def processed(self, event_id: str) -> bool:
        """Whether ``event_id`` was handled already, here or by a process of the same durable."""
        if event_id in self.seen:
            return True
        opts = self.opts
        if opts.processed_ttl is None or not _TOKEN.fullmatch(event_id):
            return False
        from nats.js.errors import NotFoundError

        assert self.nc is not None
        try:
            await self.nc.jetstream(timeout=5).get_last_msg(
                opts.processed_stream, f"{opts.processed_prefix}.{event_id}"
            )
        except NotFoundError:
            return False
        return True

    async def count_attempt(self, event_id: str, reply: str) -> int:
        """Record one more attempt at a redelivered message; returns this attempt's number.

        Only redeliveries pay for this (two round trips, the record stored before the handler
        runs): the first delivery counts as attempt 1 unrecorded. A message delivered again
        because an earlier one in its batch crashed the process was never attempted, so its
        count does not grow with the server's delivery count.
        """
        if self.opts.processed_ttl is None:
            return _deliveries(reply)
        from nats.js.errors import NotFoundError

        assert self.nc is not None
        js = self.nc.jetstream(timeout=5)
        key = event_id if _TOKEN.fullmatch(event_id) else f"seq{_stream_sequence(reply)}"
        subject = f"{self.opts.attempts_prefix}.{key}"
        try:
            recorded = int((await js.get_last_msg(self.opts.processed_stream, subject)).data or 1)
        except NotFoundError:
            recorded = 1
        await js.publish(subject, str(recorded + 1).encode())
        return recorded + 1

    async def send(self, reply: str, event_id: str | None, body: bytes) -> None:
        """Record ``event_id`` as processed (when given), then send ``body`` to the ack subject.

        Both go out on one connection, in that order: the server never sees the ack without
        the record before it.
        """
        nc = self.nc
        assert nc is not None
        if event_id is not None:
            self.remember(event_id)
            if self.opts.processed_ttl is not None and _TOKEN.fullmatch(event_id):
                await nc.publish(f"{self.opts.processed_prefix}.{event_id}", b"")
            self.add("acked")
        else:
            self.add("nacked")
        await nc.publish(reply, body)

    def remember(self, event_id: str) -> None:
        seen = self.seen
        seen[event_id] = None
        if len(seen) > self.opts.processed_memory:
            seen.popitem(last=False)

    def settle_later(self, reply: str, event_id: str | None, body: bytes) -> None:
        """Queue an ack or nak from any thread; the reader's loop sends it."""
        self.settle.append((reply, event_id, body))
        try:
            self.loop.call_soon_threadsafe(self.nudge)
        except RuntimeError:  # the reader has stopped: nobody can send it any more
            logger.warning("rxbus nats_stream: {!r} after the source stopped; not sent", body)

    async def flush_settled(self) -> None:
        if self.nc is None:
            return
        while self.settle:
            reply, event_id, body = self.settle.popleft()
            await self.send(reply, event_id, body)

    async def dead_letter(
        self, msg: Msg, event: Event | None, deliveries: int, reason: str
    ) -> None:
        """Publish the message to the dead-letter subject (acknowledged), then ``term`` it."""
        opts = self.opts
        nc = self.nc
        assert nc is not None
        sequence = _stream_sequence(msg.reply)
        headers = {
            MSG_ID: event.id if event is not None else f"{opts.stream}-{sequence}",
            H_ERROR: " ".join(reason.split())[:1000],
            H_DELIVERIES: str(deliveries),
            H_STREAM: opts.stream,
            H_DURABLE: opts.durable,
            H_SUBJECT: msg.subject,
            H_SEQUENCE: str(sequence),
        }
        await nc.jetstream(timeout=5).publish(opts.dead_letter_subject, msg.data, headers=headers)
        await nc.publish(msg.reply, b"+TERM")
        self.add("dead_lettered")
        logger.warning(
            "rxbus nats_stream {}: message {} moved to {} ({})",
            opts.stream,
            sequence,
            opts.dead_letter_subject,
            reason,
        )


class NatsStream(reactivex.Observable[Any]):
    """The Observable :func:`nats_stream` returns; ``stats`` sums all its subscriptions.

    Each subscription is one reader thread with its own connection; disposing it stops pulling
    and leaves unacknowledged messages to be redelivered (after ``ack_wait``) to any process of
    the durable consumer.
    """

    def __init__(self, opts: NatsStreamOptions) -> None:
        self.options = opts
        self._stats = {name: Counter() for name in _STAT_NAMES}
        super().__init__(self._subscribe_reader)

    @property
    def stats(self) -> dict[str, int]:
        """``delivered``, ``acked``, ``duplicates`` (redeliveries skipped as already processed),
        ``filtered`` (outside the pattern), ``failed`` (on_next raised), ``nacked``,
        ``dead_lettered``, ``pulls`` (pull requests sent), ``recreated`` (consumer or stream
        found missing), ``reconnects`` (connection re-established), ``retries`` (errors
        retried with backoff)."""
        return {name: counter.value for name, counter in self._stats.items()}

    def _subscribe_reader(
        self, observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        reader = _Reader(self.options, self._stats, observer)
        reader.start()
        return Disposable(reader.dispose)


def nats_stream(
    url: str,
    stream: str,
    durable: str,
    *,
    filter: str = "**",
    subject_prefix: str = "rxbus",
    manual_ack: bool = False,
    batch_size: int = 500,
    fetch_timeout: float = 1.0,
    ack_wait: float = 30.0,
    max_deliver: int = 5,
    max_ack_pending: int = 10_000,
    nak_delay: float = 0.5,
    max_nak_delay: float = 30.0,
    dead_letter_subject: str | None = None,
    dead_letter_stream: str | None = None,
    create_stream: bool = True,
    storage: str = "file",
    duplicate_window: float = 120.0,
    processed_ttl: float | None = 86_400.0,
    processed_memory: int = 100_000,
    retry_delay: float = 0.05,
    max_retry_delay: float = 2.0,
) -> NatsStream:
    """Read a JetStream stream through a durable pull consumer, as an Rx Observable.

    Emits :class:`rxbus.Event` (acknowledged when ``on_next`` returns, ``nak``-ed with backoff
    when it raises), or :class:`Delivery` with ``manual_ack=True`` (acknowledged by
    ``delivery.ack()``). Emissions come from the subscription's reader thread, one at a time.
    Processes subscribing with the same ``durable`` share the work. See the module docstring
    for the guarantees.

    Args:
        url: NATS URL, e.g. ``"nats://127.0.0.1:4222"``.
        stream: the JetStream stream (what :class:`rxbus.sinks.NatsSink` writes).
        durable: the durable consumer's name; every process using it shares its messages.
        filter: an rxbus topic pattern (see :func:`filter_subject` for how it maps to NATS).
        subject_prefix: the prefix the sink publishes under.
        manual_ack: emit :class:`Delivery` objects and wait for ``.ack()`` / ``.nak()``.
        batch_size: messages per pull request.
        fetch_timeout: seconds one pull request waits on an empty stream.
        ack_wait: seconds the server waits for an ack before redelivering (a new consumer only).
        max_deliver: attempts before a message goes to the dead-letter subject.
        max_ack_pending: unacknowledged messages the consumer hands out (all processes); 1
            keeps strict order (a new consumer only).
        nak_delay: delay of the first redelivery after a failure; doubles per delivery.
        max_nak_delay: the longest such delay.
        dead_letter_subject: where dead letters go; default ``"<prefix>_dead.<stream>"``.
        dead_letter_stream: the stream created for them when no stream captures that subject;
            default ``"<stream>_DEAD"``.
        create_stream: create ``stream`` (file storage, subjects ``<prefix>.>``) if missing.
        storage: ``"file"`` or ``"memory"``, for a stream created here.
        duplicate_window: seconds the server dedupes by ``Nats-Msg-Id``, for a stream created
            here (JetStream's default is 2 minutes).
        processed_ttl: seconds processed event ids are kept in the stream
            ``<stream>_<durable>_DONE`` (shared by the durable); ``None`` keeps them only in
            memory.
        processed_memory: event ids remembered in memory.
        retry_delay: first pause after an error; doubles up to ``max_retry_delay``.
        max_retry_delay: the longest pause between attempts.

    Returns:
        A cold :class:`NatsStream` Observable with a ``stats`` property.

    Raises:
        ValueError: naming a bad argument.
        ImportError: nats-py is missing (``pip install 'rxbus-events[nats]'``).

    Example:
        >>> source = nats_stream("nats://127.0.0.1:4222", "ORDERS", "billing", filter="orders.*")
        >>> source.options.filter_subject, source.options.dead_letter_subject
        ('rxbus.orders.*', 'rxbus_dead.ORDERS')
    """
    require_nats()
    check_url(url)
    check_name("stream", stream)
    check_name("durable", durable)
    check_prefix(subject_prefix)
    try:
        server_filter, exact = filter_subject(subject_prefix, filter)
    except ValueError as err:
        raise ValueError(f"filter must be an rxbus topic pattern, got {filter!r}: {err}") from err
    if storage not in ("file", "memory"):
        raise ValueError(f"storage must be 'file' or 'memory', got {storage!r}")
    if dead_letter_subject is None:
        dead_letter_subject = f"{subject_prefix}_dead.{stream}"
    elif not isinstance(dead_letter_subject, str) or not all(
        _TOKEN.fullmatch(t) for t in dead_letter_subject.split(".")
    ):
        raise ValueError(
            f"dead_letter_subject must be a literal NATS subject, got {dead_letter_subject!r}"
        )
    if dead_letter_subject.startswith(subject_prefix + "."):
        raise ValueError(
            f"dead_letter_subject {dead_letter_subject!r} is under subject_prefix "
            f"{subject_prefix!r}: dead letters would be read again as events"
        )
    opts = NatsStreamOptions(
        url=url,
        stream=stream,
        durable=durable,
        pattern=filter,
        subject_prefix=subject_prefix,
        filter_subject=server_filter,
        exact_filter=exact,
        manual_ack=bool(manual_ack),
        batch_size=check_count("batch_size", batch_size),
        fetch_timeout=check_number("fetch_timeout", fetch_timeout),
        ack_wait=check_number("ack_wait", ack_wait),
        max_deliver=check_count("max_deliver", max_deliver),
        max_ack_pending=check_count("max_ack_pending", max_ack_pending),
        nak_delay=check_number("nak_delay", nak_delay, strict=False),
        max_nak_delay=check_number("max_nak_delay", max_nak_delay, strict=False),
        dead_letter_subject=dead_letter_subject,
        dead_letter_stream=check_name("dead_letter_stream", dead_letter_stream or f"{stream}_DEAD"),
        create_stream=bool(create_stream),
        storage=storage,
        duplicate_window=check_number("duplicate_window", duplicate_window),
        processed_ttl=None
        if processed_ttl is None
        else check_number("processed_ttl", processed_ttl),
        processed_memory=check_count("processed_memory", processed_memory),
        retry_delay=check_number("retry_delay", retry_delay),
        max_retry_delay=check_number("max_retry_delay", max_retry_delay),
    )
    return NatsStream(opts)


def bridge(
    bus: EventBus, url: str, stream: str, durable: str, **options: Any
) -> abc.DisposableBase:
    """Publish every event of a JetStream stream into ``bus``, acknowledging after ``bus.publish``.

    As :func:`rxbus.sources.redis.bridge`: the ack follows ``bus.publish``, i.e. every
    ``mode="sync"`` consumer has handled the event; for thread or async consumers subscribe to
    ``nats_stream(..., manual_ack=True)`` and ack when done.

    Args:
        bus: the :class:`rxbus.EventBus` to publish into (the event keeps its id).
        url, stream, durable: as for :func:`nats_stream`.
        **options: any keyword option of :func:`nats_stream` except ``manual_ack``.

    Returns:
        The subscription; ``dispose()`` stops reading.

    Example:
        >>> # link = bridge(bus, "nats://127.0.0.1:4222", "ORDERS", "billing")
        >>> # ... later: link.dispose()
    """
    if options.get("manual_ack"):
        raise ValueError("bridge acknowledges by itself; manual_ack=True is not accepted")
    source = nats_stream(url, stream, durable, **options)
    publish: Callable[[Event], Any] = bus.publish
    return source.subscribe(on_next=publish)
