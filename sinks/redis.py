"""RedisStreamSink: the bus to Redis Streams, batched and pipelined, kept across outages.

``on_next`` only appends to a bounded outbox, so the publisher never waits on the network and
never sees an exception. A writer thread takes batches (``batch_size`` events, or whatever came
within ``batch_seconds`` of the first), writes each as one pipelined round of ``XADD``, and while
Redis is unreachable holds the batch at the head of the outbox and retries it with exponential
backoff, so order is kept. A full outbox drops (``overflow``, counted and dead-lettered).

One stream entry per event, with fields ``id``, ``topic`` and ``event`` (the event's JSON):
exactly what :func:`rxbus.sources.redis_stream` reads.

A batch that failed half-way through a connection loss is written again in full: some events
may then be in the stream twice (with different entry ids). Consumers skip them by event id.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loguru import logger

from rxbus._context import dead_letter_target
from rxbus.deadletter import DeadLetter
from rxbus.errors import BufferOverflowError, RxbusError
from rxbus.event import Event
from rxbus.policies import Overflow
from rxbus.sources.redis import (
    FIELD_EVENT,
    FIELD_ID,
    FIELD_TOPIC,
    connect,
    shard_for,
    shard_names,
)

if TYPE_CHECKING:  # pragma: no cover
    import redis

__all__ = ["RedisSinkError", "RedisStreamSink", "shard_for", "shard_names"]


class RedisSinkError(RxbusError, RuntimeError):
    """Why an event handed to a :class:`RedisStreamSink` was not written (in its dead letter)."""


class RedisStreamSink:
    """An observer that appends events to Redis streams with pipelined, batched ``XADD``.

    Args:
        url: Redis URL, e.g. ``"redis://127.0.0.1:6379/0"``.
        stream: the stream name, or a function ``topic -> stream name`` (see :func:`shard_for`).
        maxlen: trim each stream to about this many entries (``XADD MAXLEN ~``); ``None`` keeps
            everything.
        approximate: trim with ``~`` (cheap, may keep a few more) rather than exactly.
        batch_size: most events per pipelined round trip.
        batch_seconds: longest wait for a batch to fill once an event is waiting.
        outbox_size: events held (waiting or being retried) before ``overflow`` applies.
        overflow: ``Overflow.DROP_NEWEST`` (refuse the new event) or ``Overflow.DROP_OLDEST``
            (drop the oldest event still waiting; the batch being written is kept whole).
        retry_delay: first pause after a failed write; doubles (with 20% jitter) up to
            ``max_retry_delay``.
        max_retry_delay: longest pause between attempts while Redis is unreachable.
        close_timeout: on completion, how long to keep trying to write what is left.
        dead_letters: receives a :class:`rxbus.DeadLetter` for every event dropped or refused
            by Redis; default the ``rxbus`` logger.
        name: thread name and the consumer name in dead letters.

    Raises:
        ValueError: naming a bad argument.

    Examples:
        >>> from rxbus import EventBus
        >>> from rxbus.sinks import RedisStreamSink
        >>> sink = RedisStreamSink("redis://127.0.0.1:6399/0", stream="events", batch_size=500)
        >>> sink.stats["written"], sink.stats["outbox"]
        (0, 0)
        >>> sink.close(timeout=0)
        >>> # bus.subscribe(sink)   # bus.metrics()["consumers"][name]["sink"] shows sink.stats
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        stream: str | Callable[[str], str] = "rxbus",
        maxlen: int | None = None,
        approximate: bool = True,
        batch_size: int = 500,
        batch_seconds: float = 0.05,
        outbox_size: int = 100_000,
        overflow: Overflow | str = Overflow.DROP_NEWEST,
        retry_delay: float = 0.05,
        max_retry_delay: float = 2.0,
        close_timeout: float = 5.0,
        dead_letters: Callable[[DeadLetter], None] | None = None,
        name: str = "redis-sink",
    ) -> None:
        if isinstance(stream, str):
            if not stream:
                raise ValueError("stream must be a non-empty str or a function topic -> str")
        elif not callable(stream):
            raise ValueError(f"stream must be a str or a function topic -> str, got {stream!r}")
        if maxlen is not None and (
            not isinstance(maxlen, int) or isinstance(maxlen, bool) or maxlen < 1
        ):
            raise ValueError(f"maxlen must be None or an int >= 1, got {maxlen!r}")
        for label, value in (("batch_size", batch_size), ("outbox_size", outbox_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{label} must be an int >= 1, got {value!r}")
        for label, number in (
            ("batch_seconds", batch_seconds),
            ("retry_delay", retry_delay),
            ("max_retry_delay", max_retry_delay),
            ("close_timeout", close_timeout),
        ):
            if not isinstance(number, int | float) or isinstance(number, bool) or number < 0:
                raise ValueError(f"{label} must be a number >= 0, got {number!r}")
        policy = Overflow.parse(overflow)
        if policy not in (Overflow.DROP_NEWEST, Overflow.DROP_OLDEST):
            raise ValueError(
                f"overflow must be Overflow.DROP_NEWEST or Overflow.DROP_OLDEST (the sink never "
                f"blocks the publisher), got {overflow!r}"
            )
        self.url = url
        self.name = name
        self._client: redis.Redis = connect(url)
        self._stream = stream
        self._maxlen = maxlen
        self._approximate = approximate
        self._batch_size = batch_size
        self._batch_seconds = float(batch_seconds)
        self._outbox_size = outbox_size
        self._drop_oldest = policy is Overflow.DROP_OLDEST
        self._retry_delay = float(retry_delay)
        self._max_retry_delay = float(max_retry_delay)
        self._close_timeout = float(close_timeout)
        self._dead_letters = dead_letter_target(dead_letters)

        self._cond = threading.Condition(threading.Lock())
        self._outbox: deque[Event] = deque()
        self._first_waiting = 0.0  # monotonic time the oldest waiting event arrived
        self._in_flight = 0
        self._flushing = 0  # flush() calls waiting
        self._closing = False
        self._deadline = float("inf")
        self._handed = 0
        self._settled = 0  # written + dropped + failed + lost: every handed event ends here
        self._written = 0
        self._retried = 0
        self._overflow = 0
        self._errors = 0
        self._lost = 0
        self._batches = 0
        self._thread = threading.Thread(target=self._run, name=f"rxbus-{name}", daemon=True)
        self._thread.start()

    # -- observer ------------------------------------------------------------------------------

    def on_next(self, event: Event) -> None:
        """Queue ``event`` for writing; never blocks, never raises."""
        dropped: Event | None = None
        with self._cond:
            self._handed += 1
            if self._closing:
                dropped, reason = event, "the sink is closed"
            elif len(self._outbox) + self._in_flight >= self._outbox_size:
                self._overflow += 1
                reason = f"outbox full ({self._outbox_size} events)"
                # The batch being written stays whole; the oldest event still waiting makes room.
                if self._drop_oldest and self._outbox:
                    dropped = self._outbox.popleft()
                    self._outbox.append(event)
                else:
                    dropped = event
            else:
                # Wake the writer only when it may be idle or a batch is full; notify_all, as
                # flush() callers wait on the same condition.
                if not self._outbox:
                    self._first_waiting = time.monotonic()
                    self._cond.notify_all()
                self._outbox.append(event)
                if len(self._outbox) == self._batch_size:
                    self._cond.notify_all()
                return
            self._settled += 1
            self._cond.notify_all()
            if reason == "the sink is closed":
                self._errors += 1
        self._report([dropped], BufferOverflowError(f"{self.name}: {reason}; event dropped"))

    def on_error(self, error: Exception) -> None:
        """The upstream failed: write what is queued, then stop."""
        logger.warning("rxbus {}: upstream error {!r}; flushing and closing", self.name, error)
        self.close()

    def on_completed(self) -> None:
        """The bus closed: write what is queued (within ``close_timeout``), then stop."""
        self.close()

    # -- control -------------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event handed so far is written (or dropped); True if it was."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._handed
            self._flushing += 1  # the writer sends partial batches at once while this waits
            self._cond.notify_all()
            try:
                while self._settled < target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            finally:
                self._flushing -= 1
        return True

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting events, keep trying to write the outbox for ``timeout`` seconds
        (default ``close_timeout``), then count what is left as ``lost`` and dead-letter it.
        Idempotent."""
        wait = self._close_timeout if timeout is None else timeout
        with self._cond:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + wait
                self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(wait + 10.0)

    def __enter__(self) -> RedisStreamSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> dict[str, int]:
        """``written``, ``retried`` (failed write attempts), ``outbox`` (waiting or being
        retried), ``overflow``, ``errors`` (refused by Redis, or after close), ``lost`` (still
        unwritten when close gave up), ``batches``."""
        with self._cond:
            return {
                "written": self._written,
                "retried": self._retried,
                "outbox": len(self._outbox) + self._in_flight,
                "overflow": self._overflow,
                "errors": self._errors,
                "lost": self._lost,
                "batches": self._batches,
            }

    # -- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                self._write(batch)
        finally:
            self._client.close()

    def _next_batch(self) -> list[Event] | None:
        """Wait for a full batch, ``batch_seconds``, a flush or close; take up to batch_size."""
        cond = self._cond
        with cond:
            while not self._outbox:
                if self._closing:
                    return None
                cond.wait()
            due = self._first_waiting + self._batch_seconds
            while len(self._outbox) < self._batch_size and not self._closing:
                remaining = due - time.monotonic()
                if remaining <= 0 or self._flushing:
                    break
                cond.wait(remaining)
            outbox = self._outbox
            batch = [outbox.popleft() for _ in range(min(self._batch_size, len(outbox)))]
            self._in_flight = len(batch)
            # The rest has waited at least as long as this batch: send it as soon as we return.
            self._first_waiting = time.monotonic() - self._batch_seconds
            return batch

    def _write(self, batch: list[Event]) -> None:
        """Write ``batch`` with one pipeline, retrying while Redis is unreachable."""
        import redis.exceptions as rex

        prepared: list[tuple[str, dict[Any, Any], Event]] = []
        failed: list[tuple[Event, BaseException]] = []
        for event in batch:
            try:
                stream = (
                    self._stream if isinstance(self._stream, str) else self._stream(event.topic)
                )
                fields: dict[Any, Any] = {
                    FIELD_ID: event.id,
                    FIELD_TOPIC: event.topic,
                    FIELD_EVENT: event.to_json(),
                }
            except Exception as err:
                failed.append((event, err))
                continue
            prepared.append((stream, fields, event))
        attempt = 0
        lost: list[Event] = []
        last_error: BaseException | None = None
        while prepared:
            try:
                pipe = self._client.pipeline(transaction=False)
                for name, entry, _ in prepared:
                    pipe.xadd(name, entry, maxlen=self._maxlen, approximate=self._approximate)
                results = pipe.execute(raise_on_error=False)
            except (rex.ConnectionError, rex.TimeoutError, OSError) as error:
                attempt += 1
                last_error = error
                with self._cond:
                    self._retried += 1
                    give_up = self._closing and time.monotonic() >= self._deadline
                if give_up:
                    with self._cond:
                        lost = [e for _, _, e in prepared] + list(self._outbox)
                        self._outbox.clear()
                    break
                delay = min(self._retry_delay * 2 ** (attempt - 1), self._max_retry_delay)
                delay *= 1 + 0.2 * (2 * random.random() - 1)
                if attempt == 1 or attempt % 20 == 0:
                    logger.warning(
                        "rxbus {}: Redis unreachable ({}); holding {} events, retry {} in {:.2f}s",
                        self.name,
                        error,
                        len(prepared),
                        attempt,
                        delay,
                    )
                self._pause(delay)
                continue
            written = 0
            for (_, _, event), result in zip(prepared, results, strict=True):
                if isinstance(result, Exception):
                    failed.append((event, result))
                else:
                    written += 1
            with self._cond:
                self._written += written
                self._batches += 1
            break
        with self._cond:
            self._errors += len(failed)
            self._lost += len(lost)
            # Every event of the batch (and, on giving up, of the outbox) is now accounted for.
            self._settled += len(batch) + max(0, len(lost) - len(prepared))
            self._in_flight = 0
            self._cond.notify_all()
        for event, reason in failed:
            self._report([event], RedisSinkError(f"{self.name}: Redis refused the event: {reason}"))
        if lost:
            logger.error(
                "rxbus {}: gave up on {} unwritten events at close ({})",
                self.name,
                len(lost),
                last_error,
            )
            self._report(
                lost, RedisSinkError(f"{self.name}: not written before close: {last_error}")
            )

    def _pause(self, seconds: float) -> None:
        """Sleep between retries, waking early once a closing sink has run out of time."""
        end = time.monotonic() + seconds
        with self._cond:
            while True:
                now = time.monotonic()
                if now >= end or (self._closing and now >= self._deadline):
                    return
                self._cond.wait(min(end, self._deadline) - now)

    def _report(self, events: list[Event], error: BaseException) -> None:
        for event in events:
            try:
                self._dead_letters(DeadLetter.capture(event, self.name, error))
            except Exception:  # a broken dead-letter target must not stop the writer
                logger.opt(exception=True).error("rxbus {}: dead-letter target failed", self.name)
