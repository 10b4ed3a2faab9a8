"""Redis Streams to Rx: a consumer-group reader with acks, claims, dedupe and a dead-letter stream.

``redis_stream(url, stream, group, consumer)`` is a cold Observable: each subscription runs one
reader thread with its own connection. It

1. creates the consumer group if it is missing (``XGROUP CREATE ... MKSTREAM``),
2. re-reads this consumer's own pending entries first (what it had read but not acknowledged
   when it last stopped or crashed),
3. then reads new entries with ``XREADGROUP ... >``,
4. every ``claim_interval`` seconds claims entries idle longer than ``claim_idle`` from any
   consumer of the group (``XAUTOCLAIM``): the work of a consumer that died,
5. skips entries whose event id was already processed (a bounded in-memory set, plus a set in
   Redis bucketed by time so each id lives ``processed_ttl`` to twice that),
6. moves an entry delivered more than ``max_deliveries`` times to the dead-letter stream (with
   its delivery count) and acknowledges the original.

How a consumer signals "done":

- default (``manual_ack=False``): the source emits :class:`rxbus.Event` and acknowledges an entry
  once the downstream ``on_next`` has returned without raising. With
  ``redis_stream(...).subscribe(bus.publish)`` (or :func:`bridge`) that is when ``bus.publish``
  returned, i.e. every ``mode="sync"`` bus consumer has finished with the event (thread and async
  consumers have only queued it by then; use ``manual_ack`` for those). An ``on_next`` that
  raises leaves the entry pending: it is redelivered after ``claim_idle`` and dead-lettered after
  ``max_deliveries``. An entry whose ``on_next`` ended the subscription (an operator error
  downstream, or the last item of ``take(n)``) is not acknowledged either: it stays pending and
  is delivered again later, to whichever consumer claims it.
- ``manual_ack=True``: the source emits :class:`Delivery` objects; call ``delivery.ack()`` when
  the work is done, from any thread. Acks are sent in batches by the reader thread (within
  ``block`` seconds). An entry not acknowledged within ``claim_idle`` is redelivered.

Delivery is at-least-once: a crash between handling and acknowledging redelivers an entry, and a
sink that retried a half-applied batch can write an event twice. The processed-id sets turn
most of those into skips (counted as ``duplicates``); what remains is at most ``ack_batch``
handled-but-unacknowledged entries per crashed consumer, so handlers should be idempotent by
``event.id``.

Order: entries of one stream reach one consumer in stream order, except redeliveries (claims and
restarts), which arrive when they are claimed. To scale out and keep per-key order, shard by key
into several streams (:func:`shard_for` in the sink, :func:`shard_names` here) and run one
consumer per shard stream.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import reactivex
from loguru import logger
from reactivex import abc
from reactivex.disposable import Disposable

from rxbus.errors import RxbusError
from rxbus.event import Event
from rxbus.metrics import Counter

if TYPE_CHECKING:  # pragma: no cover
    import redis

    from rxbus.bus import EventBus

__all__ = [
    "Delivery",
    "RedisStream",
    "StreamOptions",
    "bridge",
    "connect",
    "redis_stream",
    "shard_for",
    "shard_names",
]

# Wire format of one stream entry, shared with rxbus.sinks.redis.RedisStreamSink.
FIELD_ID = b"id"
FIELD_TOPIC = b"topic"
FIELD_EVENT = b"event"


def _network_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions as rex

    return (rex.ConnectionError, rex.TimeoutError, OSError)


def connect(url: str, *, socket_timeout: float | None = 10.0) -> redis.Redis:
    """A redis-py client for ``url`` whose own retries are off: rxbus retries with its backoff.

    Args:
        url: ``redis://host:port/db`` (or ``rediss://``, ``unix://``).
        socket_timeout: seconds a command may take before it fails and is retried.

    Raises:
        ValueError: for a URL redis-py cannot parse.
        ImportError: redis-py is missing (``pip install 'rxbus-events[redis]'``).
    """
    from rxbus._extras import require

    require("redis", "Redis streams")
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    if not isinstance(url, str) or not url:
        raise ValueError(f"url must be a redis:// URL, got {url!r}")
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=min(socket_timeout or 5.0, 5.0),
        retry=Retry(NoBackoff(), 0),
    )


def shard_for(prefix: str, shards: int) -> Callable[[str], str]:
    """A ``topic -> stream name`` function spreading topics over ``shards`` streams by hash.

    Every event of one topic goes to the same stream, so one consumer per shard stream sees each
    topic in order while the shards are read in parallel. Put the key you need ordered by (a
    customer, a session) in the topic, e.g. ``orders.c42``.

    Examples:
        >>> pick = shard_for("orders", 4)
        >>> pick("orders.c42") == pick("orders.c42"), pick("orders.c42") in shard_names("orders", 4)
        (True, True)
    """
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"prefix must be a non-empty str, got {prefix!r}")
    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise ValueError(f"shards must be an int >= 1, got {shards!r}")
    names = shard_names(prefix, shards)

    def stream_for(topic: str) -> str:
        return names[zlib.crc32(topic.encode()) % shards]

    return stream_for


def shard_names(prefix: str, shards: int) -> list[str]:
    """The stream names :func:`shard_for` writes to: ``prefix:0`` .. ``prefix:{shards-1}``."""
    return [f"{prefix}:{i}" for i in range(shards)]


class Delivery:
    """One stream entry handed to a ``manual_ack=True`` subscriber.

    Attributes:
        event: the event carried by the entry.
        entry_id: the Redis stream entry id (``"1700000000000-0"``).
        stream: the stream it was read from.
        deliveries: how many times it has been delivered, this time included.

    Examples:
        >>> # redis_stream(url, "orders", "billing", "worker-1", manual_ack=True)
        >>> #     .subscribe(lambda d: (handle(d.event), d.ack()))
    """

    __slots__ = ("_reader", "acked", "deliveries", "entry_id", "event", "stream")

    def __init__(
        self, event: Event, entry_id: str, stream: str, deliveries: int, reader: _Reader
    ) -> None:
        self.event = event
        self.entry_id = entry_id
        self.stream = stream
        self.deliveries = deliveries
        self.acked = False
        self._reader = reader

    def ack(self) -> None:
        """Mark the entry handled: it is acknowledged in Redis and its event id recorded.

        Idempotent and safe from any thread.
        """
        if self.acked:
            return
        self.acked = True
        self._reader.ack(self.entry_id.encode(), self.event.id)

    def __repr__(self) -> str:
        return (
            f"Delivery({self.event.topic!r}, id={self.event.id!r}, entry={self.entry_id!r}, "
            f"deliveries={self.deliveries}, acked={self.acked})"
        )


class _Stats:
    """Counters shared by every subscription of one :class:`RedisStream` (lock-free)."""

    NAMES = (
        "delivered",
        "acked",
        "duplicates",
        "failed",
        "claimed",
        "recovered",
        "dead_lettered",
        "reconnects",
    )

    def __init__(self) -> None:
        self.counters = {name: Counter() for name in self.NAMES}

    def add(self, name: str, n: int = 1) -> None:
        increment = self.counters[name].increment
        for _ in range(n):
            increment()

    def as_dict(self) -> dict[str, int]:
        return {name: counter.value for name, counter in self.counters.items()}


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """Validated settings of one :func:`redis_stream` (see its arguments)."""

    url: str
    stream: str
    group: str
    consumer: str
    manual_ack: bool
    batch_size: int
    ack_batch: int
    block_ms: int
    claim_idle_ms: int
    claim_interval: float
    max_deliveries: int
    dead_letter_stream: str
    start: str
    processed_ttl: float | None
    processed_key: str
    processed_memory: int
    retry_delay: float
    max_retry_delay: float


def _positive(name: str, value: object, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or value < 0 or (value == 0 and not allow_zero):  # type: ignore[operator]
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")


def _name(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty str, got {value!r}")
    return value


def _raw_reply(response: Any, **_: Any) -> Any:
    return response


class _Reader:
    """One subscription: a thread reading the group and emitting to one observer."""

    def __init__(self, opts: StreamOptions, stats: _Stats, observer: abc.ObserverBase[Any]) -> None:
        self.opts = opts
        self.stats = stats
        self.observer = observer
        self.stop = threading.Event()
        self.client: redis.Redis = connect(opts.url)
        # redis-py drops the cursor of XAUTOCLAIM ... JUSTID; keep the raw reply.
        self.client.set_response_callback("XAUTOCLAIM", _raw_reply)
        # (entry id, event id) pairs handled and waiting for the next XACK round trip.
        self.acks: deque[tuple[bytes, str]] = deque()
        self.ack_lock = threading.Lock()
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.errors = _network_errors()
        self.thread = threading.Thread(
            target=self.run, name=f"rxbus-redis-{opts.stream}-{opts.consumer}", daemon=True
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def dispose(self) -> None:
        self.stop.set()
        if threading.current_thread() is not self.thread and self.thread.is_alive():
            self.thread.join(self.opts.block_ms / 1000 + 5.0)

    def run(self) -> None:
        opts = self.opts
        group_ready = False
        recovering = True
        recover_from = b"-"
        claim_cursor = b"0-0"
        next_claim = time.monotonic() + opts.claim_interval
        failures = 0
        try:
            while not self.stop.is_set():
                try:
                    if not group_ready:
                        self.create_group()
                        group_ready = True
                    if recovering:
                        recover_from, recovering = self.recover(recover_from)
                    elif time.monotonic() >= next_claim:
                        claim_cursor = self.claim(claim_cursor)
                        if claim_cursor == b"0-0":
                            next_claim = time.monotonic() + opts.claim_interval
                    else:
                        # The acks of this batch go out with the next read, in one round trip.
                        self.read_new()
                    failures = 0
                except self.errors as err:
                    failures += 1
                    self.stats.add("reconnects")
                    if not opts.manual_ack:
                        # Entries read before the connection broke may not have been handed
                        # out: take our own pending entries again rather than wait claim_idle.
                        # (Handled ones are skipped as duplicates; with manual acks they may
                        # still be in the subscriber's hands, so there claim_idle decides.)
                        recovering, recover_from = True, b"-"
                    delay = min(opts.retry_delay * 2 ** (failures - 1), opts.max_retry_delay)
                    logger.warning(
                        "rxbus redis_stream {}/{}: {} (retry in {:.2f}s)",
                        opts.stream,
                        opts.consumer,
                        err,
                        delay,
                    )
                    self.stop.wait(delay)
                except Exception as err:
                    if "NOGROUP" in str(err):
                        # The stream or group vanished (deleted, or a Redis without persistence
                        # restarted): recreate it and read on.
                        group_ready = False
                        continue
                    logger.opt(exception=err).error(
                        "rxbus redis_stream {}/{} stopped", opts.stream, opts.consumer
                    )
                    try:
                        self.observer.on_error(err)
                    except Exception:  # a subscriber without on_error re-raises: logged above
                        pass
                    return
            self.flush_acks_quietly()
        finally:
            self.client.close()

    # -- reading -------------------------------------------------------------------------------

    def create_group(self) -> None:
        import redis.exceptions as rex

        try:
            self.client.xgroup_create(
                self.opts.stream, self.opts.group, id=self.opts.start, mkstream=True
            )
        except rex.ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    def recover(self, start: bytes) -> tuple[bytes, bool]:
        """Re-deliver one page of this consumer's own pending entries; returns (next, more?)."""
        opts = self.opts
        pending: list[dict[str, Any]] = self.client.xpending_range(
            opts.stream, opts.group, min=start, max="+", count=opts.batch_size,
            consumername=opts.consumer,
        )  # fmt: skip
        if not pending:
            return b"-", False
        self.stats.add("recovered", len(pending))
        self.redeliver([(p["message_id"], int(p["times_delivered"])) for p in pending])
        return b"(" + pending[-1]["message_id"], len(pending) == opts.batch_size

    def claim(self, cursor: bytes) -> bytes:
        """Claim one page of entries idle longer than ``claim_idle``; returns the next cursor.

        ``JUSTID`` takes ownership without counting a delivery; :meth:`redeliver` then counts
        each entry only when it is really handed out.
        """
        opts = self.opts
        reply: Any = self.client.execute_command(
            "XAUTOCLAIM", opts.stream, opts.group, opts.consumer, opts.claim_idle_ms, cursor,
            "COUNT", opts.batch_size, "JUSTID",
        )  # fmt: skip
        next_cursor, ids = reply[0], reply[1]
        if ids:
            pending: list[dict[str, Any]] = self.client.xpending_range(
                opts.stream, opts.group, min=ids[0], max=ids[-1], count=len(ids) + 16,
                consumername=opts.consumer,
            )  # fmt: skip
            counts = {p["message_id"]: int(p["times_delivered"]) for p in pending}
            self.stats.add("claimed", len(ids))
            self.redeliver([(i, counts.get(i, 1)) for i in ids])
        return bytes(next_cursor)

    def redeliver(self, pending: list[tuple[bytes, int]]) -> None:
        """Hand out entries that were delivered before, one at a time, acking each at once.

        Each entry's delivery count goes up (``XCLAIM``) only as it is handed out, so when a
        poison entry crashes the process, the entries behind it are not charged for it.
        """
        opts = self.opts
        for entry_id, delivered in pending:
            if self.stop.is_set():
                return
            entries = self.client.xclaim(
                opts.stream, opts.group, opts.consumer, min_idle_time=0, message_ids=[entry_id]
            )
            if not entries or entries[0][0] is None:
                # Trimmed from the stream: nothing to deliver, only a pending slot to release.
                self.client.xack(opts.stream, opts.group, entry_id)
                continue
            self.handle(entries, {entry_id: delivered + 1})
            self.flush_acks()

    def read_new(self) -> None:
        """Send the queued acks and read the next batch in the same round trip."""
        opts = self.opts
        with self.ack_lock:
            pipe = self.client.pipeline(transaction=False)
            sent = self.queue_acks(pipe)
            pipe.xreadgroup(
                opts.group, opts.consumer, {opts.stream: ">"}, count=opts.batch_size,
                block=opts.block_ms,
            )  # fmt: skip
            results = pipe.execute()
            self.acks_sent(sent)
        reply: Any = results[-1]
        if reply:
            entries = reply[0][1]
            self.handle(entries, None)

    # -- handling ------------------------------------------------------------------------------

    def handle(self, entries: list[Any], counts: Mapping[bytes, int] | None) -> None:
        """Dedupe, dead-letter or emit each entry, in stream order."""
        opts = self.opts
        parsed: list[tuple[bytes, Event | None, Mapping[bytes, bytes], int, str]] = []
        for entry_id, fields in entries:
            if entry_id is None:
                continue
            deliveries = 1 if counts is None else counts.get(entry_id, 1)
            event: Event | None = None
            problem = ""
            try:
                event = Event.from_json(fields[FIELD_EVENT])
            except KeyError:
                problem = f"entry has no {FIELD_EVENT.decode()!r} field"
            except (ValueError, RxbusError) as err:
                problem = f"malformed event: {err}"
            parsed.append((entry_id, event, fields, deliveries, problem))
        stored = self.processed_in_redis([p[1].id for p in parsed if p[1] is not None])
        for entry_id, event, fields, deliveries, problem in parsed:
            if self.stop.is_set():
                return  # disposal stops here; the rest stays pending for another consumer
            if event is None:
                self.dead_letter(entry_id, fields, deliveries, problem)
                continue
            if event.id in self.seen or event.id in stored:
                self.stats.add("duplicates")
                self.acks.append((entry_id, event.id))
                continue
            if deliveries > opts.max_deliveries:
                self.dead_letter(
                    entry_id,
                    fields,
                    deliveries,
                    f"delivered {deliveries} times (max_deliveries={opts.max_deliveries})",
                )
                continue
            self.emit(entry_id, event, deliveries)
            if len(self.acks) >= opts.ack_batch:
                # Ack as we go: a crash then redelivers at most ack_batch handled entries.
                self.flush_acks()

    def emit(self, entry_id: bytes, event: Event, deliveries: int) -> None:
        self.stats.add("delivered")
        if self.opts.manual_ack:
            delivery = Delivery(event, entry_id.decode(), self.opts.stream, deliveries, self)
            try:
                self.observer.on_next(delivery)
            except Exception as err:
                self.stats.add("failed")
                logger.opt(exception=err).warning(
                    "rxbus redis_stream: subscriber raised on {}; it stays pending", delivery
                )
            return
        try:
            self.observer.on_next(event)
        except Exception as err:
            self.stats.add("failed")
            logger.opt(exception=err).warning(
                "rxbus redis_stream {}: handling event {} (entry {}, delivery {}) raised; it "
                "stays pending and is redelivered after claim_idle",
                self.opts.stream,
                event.id,
                entry_id.decode(),
                deliveries,
            )
            return
        if self.stop.is_set():
            return  # the handler ended the subscription: leave the entry pending
        self.remember(event.id)
        self.acks.append((entry_id, event.id))

    def remember(self, event_id: str) -> None:
        seen = self.seen
        seen[event_id] = None
        if len(seen) > self.opts.processed_memory:
            seen.popitem(last=False)

    def ack(self, entry_id: bytes, event_id: str) -> None:
        """Queue an acknowledgement (manual mode); sent at once if the reader has stopped."""
        self.acks.append((entry_id, event_id))
        if not self.thread.is_alive():
            self.flush_acks_quietly()

    # -- Redis bookkeeping ---------------------------------------------------------------------

    def buckets(self) -> tuple[str, str] | None:
        ttl = self.opts.processed_ttl
        if ttl is None:
            return None
        n = int(time.time() // ttl)
        key = self.opts.processed_key
        return f"{key}:{n}", f"{key}:{n - 1}"

    def processed_in_redis(self, ids: list[str]) -> set[str]:
        """The ids among ``ids`` recorded as processed in Redis (by any consumer of the group)."""
        buckets = self.buckets()
        unknown = [i for i in ids if i not in self.seen]
        if buckets is None or not unknown:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for key in buckets:
            pipe.smismember(key, unknown)
        current, previous = pipe.execute()
        return {i for i, a, b in zip(unknown, current, previous, strict=True) if a or b}

    def flush_acks(self) -> None:
        """Record the handled event ids as processed, then XACK their entries.

        In that order, so a connection lost in between can only leave a processed entry
        pending (redelivered, then skipped as a duplicate), never an acked one unrecorded. The
        queue is only cleared once Redis replied: after a connection error the same acks are
        sent again (SADD and XACK are idempotent).
        """
        with self.ack_lock:
            pipe = self.client.pipeline(transaction=False)
            sent = self.queue_acks(pipe)
            if sent:
                pipe.execute()
                self.acks_sent(sent)

    def queue_acks(self, pipe: Any) -> list[tuple[bytes, str]]:
        """Add the SADD/EXPIRE/XACK of every queued ack to ``pipe``; returns what was queued."""
        acks = self.acks
        batch = [acks[i] for i in range(len(acks))]
        if not batch:
            return batch
        opts = self.opts
        buckets = self.buckets()
        if buckets is not None and opts.processed_ttl is not None:
            pipe.sadd(buckets[0], *{event_id for _, event_id in batch})
            pipe.expire(buckets[0], int(2 * opts.processed_ttl) + 1)
        pipe.xack(opts.stream, opts.group, *[entry_id for entry_id, _ in batch])
        return batch

    def acks_sent(self, batch: list[tuple[bytes, str]]) -> None:
        for _ in range(len(batch)):
            self.acks.popleft()
        if self.opts.manual_ack:
            for _, event_id in batch:
                self.remember(event_id)
        self.stats.add("acked", len(batch))

    def flush_acks_quietly(self) -> None:
        try:
            self.flush_acks()
        except Exception as err:
            logger.warning(
                "rxbus redis_stream {}: {} acks not sent ({}); those entries stay pending",
                self.opts.stream,
                len(self.acks),
                err,
            )

    def dead_letter(
        self, entry_id: bytes, fields: Mapping[bytes, bytes], deliveries: int, reason: str
    ) -> None:
        """Copy the entry to the dead-letter stream with why and how often, and ack it."""
        opts = self.opts
        letter: dict[Any, Any] = dict(fields)
        letter.update(
            {
                b"entry_id": entry_id,
                b"stream": opts.stream,
                b"group": opts.group,
                b"consumer": opts.consumer,
                b"deliveries": deliveries,
                b"reason": reason,
            }
        )
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(opts.dead_letter_stream, letter)
        pipe.xack(opts.stream, opts.group, entry_id)
        pipe.execute()
        self.stats.add("dead_lettered")
        logger.warning(
            "rxbus redis_stream {}: entry {} moved to {} ({})",
            opts.stream,
            entry_id.decode(),
            opts.dead_letter_stream,
            reason,
        )


class RedisStream(reactivex.Observable[Any]):
    """The Observable :func:`redis_stream` returns; ``stats`` sums all its subscriptions.

    Each subscription is one reader thread with its own connection; disposing it stops reading
    and leaves unacknowledged entries pending for another consumer.
    """

    def __init__(self, opts: StreamOptions) -> None:
        self.options = opts
        self._stats = _Stats()
        super().__init__(self._subscribe_reader)

    @property
    def stats(self) -> dict[str, int]:
        """``delivered``, ``acked``, ``duplicates`` (skipped as already processed), ``failed``
        (on_next raised), ``claimed``, ``recovered``, ``dead_lettered``, ``reconnects``."""
        return self._stats.as_dict()

    def _subscribe_reader(
        self, observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        reader = _Reader(self.options, self._stats, observer)
        reader.start()
        return Disposable(reader.dispose)


def redis_stream(
    url: str,
    stream: str,
    group: str,
    consumer: str,
    *,
    manual_ack: bool = False,
    batch_size: int = 500,
    ack_batch: int = 100,
    block: float = 0.2,
    claim_idle: float = 30.0,
    claim_interval: float = 5.0,
    max_deliveries: int = 5,
    dead_letter_stream: str | None = None,
    start: str = "0",
    processed_ttl: float | None = 86_400.0,
    processed_key: str | None = None,
    processed_memory: int = 100_000,
    retry_delay: float = 0.05,
    max_retry_delay: float = 2.0,
) -> RedisStream:
    """Read a Redis stream as one consumer of a consumer group, as an Rx Observable.

    Emits :class:`rxbus.Event` (acknowledged when ``on_next`` returns without raising), or
    :class:`Delivery` with ``manual_ack=True`` (acknowledged by ``delivery.ack()``). Emissions
    come from the subscription's reader thread, one at a time. See the module docstring for
    the guarantees.

    Args:
        url: Redis URL, e.g. ``"redis://127.0.0.1:6379/0"``.
        stream: the stream to read (what :class:`rxbus.sinks.RedisStreamSink` writes).
        group: the consumer group; consumers of one group share the work.
        consumer: this consumer's name, unique within the group and stable across restarts (so
            a restarted consumer re-reads its own pending entries first).
        manual_ack: emit :class:`Delivery` objects and wait for ``.ack()``.
        batch_size: entries per ``XREADGROUP``/``XAUTOCLAIM`` call. Keep ``batch_size`` times
            your handling time below ``claim_idle``, or peers claim the tail of a slow batch.
        ack_batch: handled entries acknowledged per round trip (also sent at the end of each
            batch): a crash redelivers at most this many handled-but-unacknowledged entries.
        block: seconds one ``XREADGROUP`` waits for new entries (also bounds how long disposal
            and manual acks wait).
        claim_idle: seconds an entry must sit unacknowledged before any consumer may claim it;
            keep it above your longest handling time.
        claim_interval: seconds between claim rounds.
        max_deliveries: an entry delivered more often than this goes to the dead-letter stream.
        dead_letter_stream: where such entries go; default ``"<stream>:dead"``.
        start: where a newly created group starts: ``"0"`` (the whole stream) or ``"$"`` (new
            entries only).
        processed_ttl: seconds processed event ids are remembered in Redis (shared by the
            group); ``None`` keeps only the in-memory set.
        processed_key: key prefix of those sets; default ``"<stream>:<group>:processed"``.
        processed_memory: event ids remembered in memory.
        retry_delay: first pause after a connection error; doubles up to ``max_retry_delay``.
        max_retry_delay: longest pause between reconnection attempts.

    Returns:
        A cold :class:`RedisStream` Observable with a ``stats`` property.

    Raises:
        ValueError: naming a bad argument.

    Examples:
        >>> source = redis_stream("redis://127.0.0.1:6399/0", "orders", "billing", "worker-1")
        >>> # subscription = source.subscribe(bus.publish)   # ack once publish returned
        >>> source.options.dead_letter_stream
        'orders:dead'
    """
    from rxbus._extras import require

    require("redis", "redis_stream")
    _name("url", url)
    _name("stream", stream)
    _name("group", group)
    _name("consumer", consumer)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not isinstance(ack_batch, int) or isinstance(ack_batch, bool) or ack_batch < 1:
        raise ValueError(f"ack_batch must be an int >= 1, got {ack_batch!r}")
    if not isinstance(max_deliveries, int) or isinstance(max_deliveries, bool):
        raise ValueError(f"max_deliveries must be an int >= 1, got {max_deliveries!r}")
    if max_deliveries < 1:
        raise ValueError(f"max_deliveries must be an int >= 1, got {max_deliveries!r}")
    if not isinstance(processed_memory, int) or processed_memory < 1:
        raise ValueError(f"processed_memory must be an int >= 1, got {processed_memory!r}")
    _positive("block", block)
    _positive("claim_idle", claim_idle, allow_zero=True)
    _positive("claim_interval", claim_interval)
    _positive("retry_delay", retry_delay)
    _positive("max_retry_delay", max_retry_delay)
    if processed_ttl is not None:
        _positive("processed_ttl", processed_ttl)
    if start not in ("0", "$") and not (isinstance(start, str) and start[:1].isdigit()):
        raise ValueError(f"start must be '0', '$' or a stream id, got {start!r}")
    opts = StreamOptions(
        url=url,
        stream=stream,
        group=group,
        consumer=consumer,
        manual_ack=bool(manual_ack),
        batch_size=batch_size,
        ack_batch=ack_batch,
        block_ms=max(1, int(block * 1000)),
        claim_idle_ms=int(claim_idle * 1000),
        claim_interval=float(claim_interval),
        max_deliveries=max_deliveries,
        dead_letter_stream=_name("dead_letter_stream", dead_letter_stream)
        if dead_letter_stream is not None
        else f"{stream}:dead",
        start=start,
        processed_ttl=processed_ttl,
        processed_key=_name("processed_key", processed_key)
        if processed_key is not None
        else f"{stream}:{group}:processed",
        processed_memory=processed_memory,
        retry_delay=float(retry_delay),
        max_retry_delay=float(max_retry_delay),
    )
    return RedisStream(opts)


def bridge(
    bus: EventBus, url: str, stream: str, group: str, consumer: str, **options: Any
) -> abc.DisposableBase:
    """Publish every event of a Redis stream into ``bus``, acknowledging after ``bus.publish``.

    ``bus.publish`` returns once every ``mode="sync"`` consumer of the bus has handled the event
    (a failing consumer's event becomes a bus dead letter; it does not stop the ack). For work on
    ``mode="thread"``/``"async"`` consumers that must finish before the ack, subscribe to
    ``redis_stream(..., manual_ack=True)`` yourself and ack when done.

    Args:
        bus: the :class:`rxbus.EventBus` to publish into (the event keeps its id).
        url, stream, group, consumer: as for :func:`redis_stream`.
        **options: any keyword option of :func:`redis_stream` except ``manual_ack``.

    Returns:
        The subscription; ``dispose()`` stops reading.

    Examples:
        >>> # link = bridge(bus, "redis://127.0.0.1:6379/0", "orders", "billing", "worker-1")
        >>> # ... later: link.dispose()
    """
    if options.get("manual_ack"):
        raise ValueError("bridge acknowledges by itself; manual_ack=True is not accepted")
    source = redis_stream(url, stream, group, consumer, **options)
    publish: Callable[[Event], Any] = bus.publish
    return source.subscribe(on_next=publish)
