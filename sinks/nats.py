"""NatsSink: the bus to NATS JetStream, pipelined, deduplicated by event id, kept across outages.

``on_next`` only appends to a bounded outbox, so the publisher never waits on the network and
never sees an exception. One thread per sink runs an asyncio loop with one NATS connection: it
takes a batch (``batch_size`` events, or what came within ``batch_seconds``), publishes all of it
at once, each message to ``<subject_prefix>.<topic>`` with ``Nats-Msg-Id`` set to the event id,
and then waits for the batch's acks together. What is not acknowledged within ``ack_timeout``
(server down or restarting, stream missing) stays at the head of the outbox and is published
again with backoff: the server drops the copies it already stored, by ``Nats-Msg-Id``, as long as
they come back within the stream's ``duplicate_window`` (2 minutes by default).

Order: the stream holds events in ``on_next`` order, except that an event re-sent after an
outage lands after events of its batch that were stored the first time.

A message the server refuses (too large, wrong stream) is not retried: it is counted in
``errors`` and becomes a dead letter. ``close()`` keeps trying for ``close_timeout``, then counts
what is still unacknowledged as ``lost``, dead-letters it and returns how many there were.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from rxbus._context import dead_letter_target
from rxbus._log import logger
from rxbus.deadletter import DeadLetter
from rxbus.errors import BufferOverflowError, RxbusError
from rxbus.event import Event
from rxbus.policies import Overflow
from rxbus.sinks._base import ClosingSink, DeadLetterBinding
from rxbus.sources.nats import (
    MSG_ID,
    check_count,
    check_name,
    check_number,
    check_prefix,
    check_url,
    connect,
    ensure_stream,
    require_nats,
    subject_for,
)

__all__ = ["NatsSink", "NatsSinkError"]


class NatsSinkError(RxbusError, RuntimeError):
    """Why an event handed to a :class:`NatsSink` was not stored (in its dead letter)."""


class _Refused(Exception):
    """The server answered the publish with an error: retrying will not help."""


class NatsSink(ClosingSink, DeadLetterBinding):
    """An observer that publishes events to a JetStream stream, acknowledged and deduplicated.

    Args:
        url: NATS URL, e.g. ``"nats://127.0.0.1:4222"``.
        stream: the JetStream stream that captures ``<subject_prefix>.>``.
        subject_prefix: the first subject token(s); an event goes to ``<prefix>.<topic>``.
        create_stream: create ``stream`` if it is missing (file storage, subjects
            ``<prefix>.>``), also when it disappears while the sink runs.
        storage: ``"file"`` or ``"memory"``, for a stream created here.
        duplicate_window: seconds the server dedupes by ``Nats-Msg-Id``, for a stream created
            here. A re-sent event older than this is stored twice.
        batch_size: events published before waiting for their acks.
        batch_seconds: longest wait for a batch to fill once an event is waiting.
        ack_timeout: seconds to wait for a batch's acks before re-sending the rest.
        outbox_size: events held (waiting or unacknowledged) before ``overflow`` applies.
        overflow: ``Overflow.DROP_NEWEST`` (refuse the new event) or ``Overflow.DROP_OLDEST``
            (drop the oldest waiting event; the batch in flight is kept whole).
        retry_delay: first pause after a failed batch; doubles (20% jitter) up to
            ``max_retry_delay``.
        max_retry_delay: longest pause between attempts.
        close_timeout: on completion, how long to keep trying to store what is left.
        dead_letters: receives a :class:`rxbus.DeadLetter` for every event dropped or refused;
            default the dead letters of the bus the sink is subscribed to, else the logger.
        name: thread name and the consumer name in dead letters.

    Raises:
        ValueError: naming a bad argument.
        ImportError: nats-py is missing (``pip install 'rxbus-events[nats]'``).

    Example:
        >>> from rxbus.sinks import NatsSink
        >>> sink = NatsSink("nats://127.0.0.1:4299", "ORDERS", create_stream=True)
        >>> sink.stats["written"], sink.stats["outbox"]
        (0, 0)
        >>> sink.close(timeout=0)
        0
        >>> # bus.subscribe(sink, topic="orders.**")
    """

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        stream: str = "RXBUS",
        *,
        subject_prefix: str = "rxbus",
        create_stream: bool = False,
        storage: str = "file",
        duplicate_window: float = 120.0,
        batch_size: int = 500,
        batch_seconds: float = 0.005,
        ack_timeout: float = 5.0,
        outbox_size: int = 100_000,
        overflow: Overflow | str = Overflow.DROP_NEWEST,
        retry_delay: float = 0.05,
        max_retry_delay: float = 2.0,
        close_timeout: float = 5.0,
        dead_letters: Callable[[DeadLetter], None] | None = None,
        name: str = "nats-sink",
    ) -> None:
        require_nats()
        self.url = check_url(url)
        self.stream = check_name("stream", stream)
        self.subject_prefix = check_prefix(subject_prefix)
        if storage not in ("file", "memory"):
            raise ValueError(f"storage must be 'file' or 'memory', got {storage!r}")
        policy = Overflow.parse(overflow)
        if policy not in (Overflow.DROP_NEWEST, Overflow.DROP_OLDEST):
            raise ValueError(
                f"overflow must be Overflow.DROP_NEWEST or Overflow.DROP_OLDEST (the sink never "
                f"blocks the publisher), got {overflow!r}"
            )
        self.name = name
        self._create_stream = bool(create_stream)
        self._storage = storage
        self._duplicate_window = check_number("duplicate_window", duplicate_window)
        self._batch_size = check_count("batch_size", batch_size)
        self._batch_seconds = check_number("batch_seconds", batch_seconds, strict=False)
        self._ack_timeout = check_number("ack_timeout", ack_timeout)
        self._outbox_size = check_count("outbox_size", outbox_size)
        self._drop_oldest = policy is Overflow.DROP_OLDEST
        self._retry_delay = check_number("retry_delay", retry_delay)
        self._max_retry_delay = check_number("max_retry_delay", max_retry_delay)
        self._close_timeout = check_number("close_timeout", close_timeout, strict=False)
        self._dead_letters = dead_letter_target(dead_letters)
        self._explicit_dead_letters = dead_letters is not None

        # Shared with publishers, guarded by _cond.
        self._cond = threading.Condition(threading.Lock())
        self._outbox: deque[Event] = deque()
        self._in_flight = 0
        self._closing = False
        self._deadline = float("inf")
        self._idle = True  # the loop waits for a wake-up; publishers then nudge it
        self._handed = 0
        self._settled = 0  # written + errors + overflow + lost: every handed event ends here
        self._counts = dict.fromkeys(
            (
                "written",
                "duplicates",
                "retried",
                "overflow",
                "errors",
                "lost",
                "batches",
                "reconnects",
            ),
            0,
        )
        self._left_at_close = 0

        # Owned by the loop thread.
        self._nc: Any = None
        self._inbox = ""
        self._acks: dict[str, asyncio.Future[bytes]] = {}
        self._reply_seq = 0
        self._stream_ready = not self._create_stream
        self._loop = asyncio.new_event_loop()
        self._wake: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rxbus-{name}", daemon=True)
        self._thread.start()
        self._ready.wait()

    # -- observer ------------------------------------------------------------------------------

    def on_next(self, event: Event) -> None:
        """Queue ``event`` for publishing; never blocks, never raises."""
        dropped: Event | None = None
        with self._cond:
            self._handed += 1
            if self._closing:
                dropped, reason = event, "the sink is closed"
                self._counts["errors"] += 1
            elif len(self._outbox) + self._in_flight >= self._outbox_size:
                self._counts["overflow"] += 1
                reason = f"outbox full ({self._outbox_size} events)"
                if self._drop_oldest and self._outbox:
                    dropped = self._outbox.popleft()
                    self._outbox.append(event)
                else:
                    dropped = event
            else:
                self._outbox.append(event)
                if not self._idle:
                    return
                self._idle = False
                dropped = None
            if dropped is not None:
                self._settled += 1
                self._cond.notify_all()
        if dropped is None:
            # The loop may have closed since the check above (a close() racing this call):
            # the event is then already counted as lost by it.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._nudge)
            return
        self._report([dropped], BufferOverflowError(f"{self.name}: {reason}; event dropped"))

    def on_error(self, error: Exception) -> None:
        """The upstream failed: store what is queued, then stop."""
        logger.warning("rxbus {}: upstream error {!r}; flushing and closing", self.name, error)
        self.close()

    def on_completed(self) -> None:
        """The bus closed: store what is queued (within ``close_timeout``), then stop."""
        self.close()

    # -- control -------------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event handed so far is acknowledged (or dropped); True if so."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._handed
            while self._settled < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float | None = None) -> int:
        """Stop accepting events, keep trying to store the outbox for ``timeout`` seconds
        (default ``close_timeout``), then count what is left as ``lost`` and dead-letter it.
        Idempotent.

        Returns:
            How many events were never acknowledged by the server.
        """
        wait = self._close_timeout if timeout is None else timeout
        with self._cond:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + wait
        with contextlib.suppress(RuntimeError):  # the loop already stopped
            self._loop.call_soon_threadsafe(self._nudge)
        if threading.current_thread() is not self._thread:
            self._thread.join(wait + 10.0)
        return self._left_at_close

    @property
    def stats(self) -> dict[str, int]:
        """``written`` (acknowledged by the server), ``duplicates`` (of those, ones the server
        already had, by ``Nats-Msg-Id``), ``retried`` (failed batch attempts), ``outbox``
        (waiting or unacknowledged), ``overflow``, ``errors`` (refused by the server, or after
        close), ``lost`` (unacknowledged when close gave up), ``batches``, ``reconnects``."""
        with self._cond:
            stats = dict(self._counts)
            stats["outbox"] = len(self._outbox) + self._in_flight
        return stats

    def __repr__(self) -> str:
        return f"NatsSink({self.url!r}, {self.stream!r}, subject_prefix={self.subject_prefix!r})"

    # -- the loop thread -----------------------------------------------------------------------

    def _count_reconnect(self) -> None:
        with self._cond:
            self._counts["reconnects"] += 1

    def _nudge(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        self._ready.set()
        try:
            while True:
                batch = await self._next_batch()
                if batch is None:
                    return
                await self._deliver(batch)
        finally:
            self._give_up_outbox()
            if self._nc is not None:
                with contextlib.suppress(Exception):
                    await self._nc.close()

    async def _next_batch(self) -> list[Event] | None:
        """Wait for events (or close); take up to ``batch_size`` after at most ``batch_seconds``."""
        assert self._wake is not None
        while True:
            with self._cond:
                if self._closing and (not self._outbox or time.monotonic() >= self._deadline):
                    return None  # what is left is counted as lost by _give_up_outbox
                if self._outbox:
                    break
                self._idle = True
                self._wake.clear()
            await self._wake.wait()
        if self._batch_seconds and len(self._outbox) < self._batch_size and not self._closing:
            await asyncio.sleep(self._batch_seconds)  # let a burst fill the batch
        with self._cond:
            outbox = self._outbox
            batch = [outbox.popleft() for _ in range(min(self._batch_size, len(outbox)))]
            self._in_flight = len(batch)
        return batch

    async def _ensure_connected(self) -> None:
        if self._nc is None:
            self._nc = await connect(self.url, name=self.name, on_reconnect=self._count_reconnect)
            self._inbox = self._nc.new_inbox()
            await self._nc.subscribe(self._inbox + ".*", cb=self._on_ack)
        if not self._stream_ready:
            await ensure_stream(
                self._nc.jetstream(timeout=self._ack_timeout),
                self.stream,
                [f"{self.subject_prefix}.>"],
                storage=self._storage,
                duplicate_window=self._duplicate_window,
            )
            self._stream_ready = True

    async def _on_ack(self, msg: Any) -> None:
        future = self._acks.pop(msg.subject, None)
        if future is None or future.done():
            return
        if msg.headers and not msg.data and msg.headers.get("Status") == "503":
            future.set_exception(ConnectionError("no responders: no stream for this subject"))
        else:
            future.set_result(msg.data)

    async def _deliver(self, batch: list[Event]) -> None:
        """Publish ``batch`` until every event is acknowledged, refused, or close gives up."""
        waiting: list[tuple[Event, bytes]] = []
        refused: list[tuple[Event, BaseException]] = []
        for event in batch:
            try:
                waiting.append((event, event.to_json()))
            except Exception as err:  # not an Event, or not serialisable
                refused.append((event, err))
        attempt = 0
        written = duplicates = 0
        last_error: BaseException | None = None
        while waiting:
            try:
                await self._ensure_connected()
                acked, dup, failed, waiting, problem = await self._publish(waiting)
                written += acked
                duplicates += dup
                refused += failed
                if not waiting:
                    break
                last_error = ConnectionError(problem)
            except Exception as err:  # connection down, stream missing: hold and retry
                last_error = err
            attempt += 1
            if self._create_stream and "no stream" in str(last_error):
                self._stream_ready = False  # deleted, or a server without file storage restarted
            with self._cond:
                self._counts["retried"] += 1
                give_up = self._closing and time.monotonic() >= self._deadline
            if give_up:
                break
            delay = min(self._retry_delay * 2 ** (attempt - 1), self._max_retry_delay)
            delay *= 1 + 0.2 * (2 * random.random() - 1)
            if attempt == 1 or attempt % 20 == 0:
                logger.warning(
                    "rxbus {}: {} events not acknowledged ({}); retry {} in {:.2f}s",
                    self.name,
                    len(waiting),
                    last_error,
                    attempt,
                    delay,
                )
            await self._pause(delay)
        lost = [event for event, _ in waiting]
        with self._cond:
            self._counts["written"] += written
            self._counts["duplicates"] += duplicates
            self._counts["errors"] += len(refused)
            self._counts["lost"] += len(lost)
            self._counts["batches"] += 1
            self._settled += len(batch)
            self._in_flight = 0
            self._cond.notify_all()
        for event, reason in refused:
            self._report([event], NatsSinkError(f"{self.name}: the server refused it: {reason}"))
        if lost:
            self._report(
                lost, NatsSinkError(f"{self.name}: not acknowledged before close: {last_error}")
            )

    async def _publish(
        self, items: list[tuple[Event, bytes]]
    ) -> tuple[int, int, list[tuple[Event, BaseException]], list[tuple[Event, bytes]], str]:
        """Publish ``items`` back to back, then wait for their acks together.

        Returns:
            (acknowledged, of which duplicates, refused, still unacknowledged, why not).
        """
        import nats.errors

        nc = self._nc
        loop = asyncio.get_running_loop()
        prefix = self.subject_prefix
        inbox = self._inbox
        acks = self._acks
        futures: list[asyncio.Future[bytes]] = []
        refused: list[tuple[Event, BaseException]] = []
        sent: list[tuple[Event, bytes]] = []
        try:
            for event, payload in items:
                # A reply subject never reused: a late ack of an earlier attempt finds nothing.
                self._reply_seq += 1
                reply = f"{inbox}.{self._reply_seq}"
                try:
                    await nc.publish(
                        subject_for(prefix, event.topic),
                        payload,
                        reply=reply,
                        headers={MSG_ID: event.id},
                    )
                except nats.errors.MaxPayloadError as err:
                    refused.append((event, err))
                    continue
                future: asyncio.Future[bytes] = loop.create_future()
                acks[reply] = future
                futures.append(future)
                sent.append((event, payload))
            if futures:
                await asyncio.wait(futures, timeout=self._ack_wait_now())
        finally:
            acks.clear()
        acked = dup = 0
        missing: list[tuple[Event, bytes]] = []
        problem = ""
        for (event, payload), future in zip(sent, futures, strict=True):
            if not future.done():
                future.cancel()
                missing.append((event, payload))
                problem = problem or f"no ack within {self._ack_timeout}s"
                continue
            error = future.exception()
            if error is not None:
                missing.append((event, payload))
                problem = str(error)
                continue
            try:
                duplicate = self._parse_ack(future.result())
            except _Refused as err:
                refused.append((event, err))
                continue
            acked += 1
            dup += duplicate
        return acked, dup, refused, missing, problem

    def _ack_wait_now(self) -> float:
        with self._cond:
            if self._closing:
                return max(0.05, min(self._ack_timeout, self._deadline - time.monotonic()))
        return self._ack_timeout

    @staticmethod
    def _parse_ack(data: bytes) -> bool:
        """True for a duplicate; raises :class:`_Refused` for an error reply."""
        try:
            reply = orjson.loads(data)
        except orjson.JSONDecodeError as err:
            raise _Refused(f"unreadable ack {data[:200]!r}") from err
        if "error" in reply:
            error = reply["error"]
            raise _Refused(f"{error.get('description', error)} (code {error.get('err_code')})")
        return bool(reply.get("duplicate"))

    async def _pause(self, seconds: float) -> None:
        """Sleep between retries, waking early once a closing sink has run out of time."""
        assert self._wake is not None
        end = time.monotonic() + seconds
        while True:
            with self._cond:
                now = time.monotonic()
                if now >= end or (self._closing and now >= self._deadline):
                    return
                wait = min(end, self._deadline) - now
                self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _give_up_outbox(self) -> None:
        """At the end of the loop: everything unacknowledged is counted as lost and reported."""
        with self._cond:
            lost = list(self._outbox)
            self._outbox.clear()
            self._counts["lost"] += len(lost)
            self._settled += len(lost)
            self._left_at_close = self._counts["lost"]
            self._cond.notify_all()
        if lost:
            self._report(lost, NatsSinkError(f"{self.name}: not published before close"))
        if self._left_at_close:
            logger.warning(
                "rxbus {}: closed with {} events unacknowledged by {}",
                self.name,
                self._left_at_close,
                self.url,
            )

    def _report(self, events: list[Event], error: BaseException) -> None:
        for event in events:
            try:
                self._dead_letters(DeadLetter.capture(event, self.name, error))
            except Exception:  # a broken dead-letter target must not stop the sink
                logger.opt(exception=True).error("rxbus {}: dead-letter target failed", self.name)
