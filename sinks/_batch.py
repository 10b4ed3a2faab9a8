"""The hand-off shared by the file and SQLite sinks: cheap ``put`` in the caller, batched writes
on one writer thread.

A bus consumer in ``mode="sync"`` calls ``on_next`` in the publisher's thread, so a sink that did
its I/O there would slow every ``publish``. Instead ``put`` appends to a deque (atomic under the
GIL) and wakes the writer only when it is idle; the writer drains whatever has piled up and
writes it as one batch, so batches grow by themselves when the disk is slower than the producer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rxbus.deadletter import DeadLetter
from rxbus.errors import BufferOverflowError, SinkClosedError, StoreError
from rxbus.event import Event

__all__ = [
    "DEAD_LETTER_TOPIC",
    "BatchWriter",
    "SinkClosedError",
    "StoreError",
    "as_event",
    "original_event",
    "report_failure",
]


DeadLetterTarget = Callable[[DeadLetter], None]


def report_failure(
    target: DeadLetterTarget | None, consumer: str, items: list[Any], error: BaseException
) -> None:
    """Send one dead letter per item to ``target`` (or the ``rxbus`` logger), never raising.

    An item that is itself a stored dead letter is logged, not dead-lettered again: with
    ``bus.dead_letters.subscribe(store.on_next)`` on a full disk, the new dead letter would come
    straight back to the same store, fail again, and so on for ever.
    """
    from loguru import logger

    from rxbus._context import dead_letter_target

    send = dead_letter_target(target)
    for item in items:
        if isinstance(item, DeadLetter) or (
            isinstance(item, Event) and item.topic == DEAD_LETTER_TOPIC
        ):
            logger.error(
                "rxbus: {} could not store a dead letter ({}): {!r}", consumer, error, item
            )
            continue
        try:
            send(DeadLetter.capture(item, consumer, error))
        except Exception:  # a broken dead-letter target must not kill the writer thread
            logger.opt(exception=True).error("rxbus: dead-letter target of {} failed", consumer)


class BatchWriter:
    """One writer thread fed through a deque.

    Args:
        name: thread name, also the consumer name in dead letters.
        write: called on the writer thread with a non-empty list; it may raise.
        on_failure: called on the writer thread with the batch and the exception ``write`` raised.
        max_batch: largest list handed to ``write``.
        max_pending: items queued before ``put`` waits for room (backpressure).
        put_timeout: how long ``put`` waits for room before it refuses the item.
        tick: called on the writer thread after each drain, before a flush returns, and every
            ``tick_interval`` seconds (time-based rotation, retention); ``None`` for none.
        tick_interval: seconds between ticks when idle.
    """

    def __init__(
        self,
        name: str,
        write: Callable[[list[Any]], None],
        on_failure: Callable[[list[Any], BaseException], None],
        *,
        max_batch: int = 10_000,
        max_pending: int = 200_000,
        put_timeout: float = 1.0,
        tick: Callable[[], None] | None = None,
        tick_interval: float | None = None,
    ) -> None:
        self.name = name
        self._write = write
        self._on_failure = on_failure
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._put_timeout = put_timeout
        self._tick = tick
        self._tick_interval = tick_interval
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._done = 0  # items written or failed; only the writer changes it, under _progress
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"rxbus-{name}", daemon=True)
        self._thread.start()

    # -- caller side --------------------------------------------------------------------------

    def put(self, item: Any) -> None:
        """Queue ``item`` for the writer.

        Raises:
            SinkClosedError: after :meth:`stop`.
            BufferOverflowError: the writer stayed ``max_pending`` behind for ``put_timeout``.
        """
        if self._stopping:
            raise SinkClosedError(f"{self.name} is closed; event not written")
        queue = self._queue
        if len(queue) >= self._max_pending:
            self._wait_for_room()
        queue.append(item)
        # Order matters: append, then check. The writer clears the flag before it drains, so an
        # item appended while the flag is still set is picked up by that drain.
        if not self._wake.is_set():
            self._wake.set()

    def put_durable(self, item: Any) -> None:
        """Queue ``item`` and return once the writer has written it (group commit).

        The writer takes every item waiting when it wakes, writes them in one ``write`` call
        (which syncs them, for a durable sink) and only then releases their callers, so many
        publishing threads share one fsync instead of queueing behind one each.

        Raises:
            SinkClosedError, BufferOverflowError: as :meth:`put`.
        """
        self.put(item)
        if threading.current_thread() is self._thread:
            return  # e.g. a dead letter of this sink fed back to it: waiting would deadlock
        marker = _Marker()
        self._queue.append(marker)
        if not self._wake.is_set():
            self._wake.set()
        # Bounded waits only to notice a writer that died; a live writer sets the marker.
        while not marker.wait(1.0):
            if not self._thread.is_alive():
                return

    def _wait_for_room(self) -> None:
        deadline = time.monotonic() + self._put_timeout
        self._wake.set()
        with self._progress:
            while len(self._queue) >= self._max_pending:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    raise BufferOverflowError(
                        f"{self.name}: {len(self._queue)} events waiting for the writer "
                        f"(max_pending={self._max_pending}) for {self._put_timeout}s"
                    )
                self._progress.wait(left)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every item ``put`` before this call has been written (or failed).

        A marker goes into the queue behind those items; the writer, which takes the queue in
        order, signals it once everything ahead of it is written. (Counting items instead would
        race: two threads can append in one order and count in the other.)

        Returns:
            True if that happened within ``timeout`` seconds, False otherwise.
        """
        if not self._thread.is_alive():
            return not self._queue
        marker = _Marker()
        self._queue.append(marker)
        self._wake.set()
        return marker.wait(timeout)

    def stop(self, timeout: float = 5.0) -> int:
        """Write what is queued, then end the thread; returns how many items were left unwritten."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        return sum(1 for item in self._queue if item.__class__ is not _Marker)

    @property
    def pending(self) -> int:
        """Items handed over but not yet written (and flush markers, which are rare)."""
        return len(self._queue)

    @property
    def alive(self) -> bool:
        """True while the writer thread runs."""
        return self._thread.is_alive()

    # -- writer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        queue, wake = self._queue, self._wake
        while True:
            wake.wait(self._tick_interval)
            wake.clear()
            ticked = False
            while queue:
                batch: list[Any] = []
                markers: list[_Marker] = []
                # Markers (flush and durable-put requests) ride along: each is set once the
                # batch holding everything ahead of it is written, so one write serves them all.
                while queue and len(batch) < self._max_batch:
                    item = queue.popleft()
                    if item.__class__ is _Marker:
                        markers.append(item)
                    else:
                        batch.append(item)
                if batch:
                    try:
                        self._write(batch)
                    except Exception as err:
                        self._on_failure(batch, err)
                    with self._progress:
                        self._done += len(batch)
                        self._progress.notify_all()
                if markers:
                    # Time-based work due by now is done before a flush returns, so a test on
                    # a virtual clock sees it at once.
                    self._run_tick()
                    ticked = True
                for marker in markers:
                    marker.set()
            if not ticked:
                self._run_tick()
            if self._stopping and not queue:
                return

    def _run_tick(self) -> None:
        if self._tick is not None:
            try:
                self._tick()
            except Exception as err:
                self._on_failure([], err)


class _Marker(threading.Event):
    """A flush request travelling through the queue behind the items it waits for."""


# -- what a persistent sink accepts -------------------------------------------------------------

DEAD_LETTER_TOPIC = "rxbus.dead_letter"
"""Topic under which persistent sinks store a :class:`DeadLetter` handed to ``on_next``."""


def as_event(item: Any) -> Event:
    """``item`` itself if it is an :class:`Event`; a :class:`DeadLetter` as a dead-letter event.

    A dead letter becomes ``Event(topic="rxbus.dead_letter", type="DeadLetter",
    data=letter.to_dict(), source=letter.consumer, correlation_id=<the failed event's id>)``, so
    ``bus.dead_letters.subscribe(store.on_next)`` persists dead letters in the same file or table
    as events, and :func:`original_event` gets the failed event back for a replay.

    Raises:
        TypeError: for anything else, naming its type.
    """
    if isinstance(item, Event):
        return item
    if isinstance(item, DeadLetter):
        failed = item.event
        return Event(
            topic=DEAD_LETTER_TOPIC,
            type="DeadLetter",
            data=item.to_dict(),
            source=item.consumer,
            timestamp=item.timestamp,
            correlation_id=failed.id if isinstance(failed, Event) else None,
        )
    raise TypeError(
        f"a persistent sink stores rxbus.Event or rxbus.DeadLetter, got {type(item).__name__}: "
        f"{item!r:.80}"
    )


def original_event(stored: Event) -> Event | None:
    """The failed event inside a stored dead-letter event, or None if it was not an Event."""
    if stored.topic != DEAD_LETTER_TOPIC:
        return None
    failed = stored.data.get("event")
    if not isinstance(failed, dict):
        return None
    return Event.from_dict(failed)
