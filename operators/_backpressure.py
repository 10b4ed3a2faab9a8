"""``backpressure``: a bounded queue between a fast producer and a slower downstream."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxbus.errors import BufferOverflowError
from rxbus.metrics import MetricsRegistry
from rxbus.policies import Overflow

from ._common import check_positive_int, drop_reporter, pick_scheduler

__all__ = ["backpressure"]

_T = TypeVar("_T")

# Items one drain run delivers before yielding its scheduler to other work (timers, the loop).
_DRAIN_QUANTUM = 1024


def backpressure(
    capacity: int,
    overflow: Overflow | str = Overflow.BLOCK,
    *,
    on_drop: Callable[[Any], None] | None = None,
    registry: MetricsRegistry | None = None,
    name: str = "backpressure",
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Queue at most ``capacity`` items for downstream; when full, apply ``overflow``.

    The producer only enqueues; one drain loop, run on the scheduler, delivers queued items in
    order. Downstream is never called concurrently, and ``on_completed``/``on_error`` are
    delivered after every item queued before them.

    Overflow policies (:class:`rxbus.Overflow`):

    - ``BLOCK``: the producer waits for room while the drain runs on another thread. When no
      other thread is draining (the drain would run on the producer's own thread, as on an
      asyncio loop or a test clock), the producer delivers queued items itself until there is
      room, so ``BLOCK`` never deadlocks and never drops.
    - ``DROP_OLDEST``: the oldest queued item is dropped to make room.
    - ``DROP_NEWEST``: the new item is dropped.
    - ``LATEST``: every queued item is dropped; the new one is kept.
    - ``ERROR``: the new item is dropped and, after the queued items, the stream ends with
      :class:`rxbus.errors.BufferOverflowError`; the source is unsubscribed.

    Every dropped item is counted and reported: ``on_drop(item)`` is called for it, and the
    measurement ``f"{name}.dropped"`` is ticked in ``registry`` (default: the bus consumer's
    metrics, shown in ``bus.metrics()["measurements"]``). With neither, drops are logged on
    the ``rxbus`` loguru logger.

    The drain runs on the scheduler given to ``subscribe``, else ``scheduler``, else
    :func:`rxbus.scheduling.default_scheduler`; it yields after 1024 items so it cannot starve
    other work there. For a slow downstream give it a thread of its own (a ``mode="thread"``
    bus consumer) rather than the shared timer thread.

    ::

        -abcdef------------|      (a..f in one burst; the drain runs after it)
              backpressure(3, Overflow.DROP_OLDEST)
        --def--------------|      dropped: a, b, c

    Args:
        capacity: the most items queued at once (>= 1).
        overflow: what to do when the queue is full (an ``Overflow`` or its name).
        on_drop: called with each dropped item.
        registry: where the drop count goes (default: the bus consumer's metrics).
        name: prefix of the drop measurement.
        scheduler: runs the drain when ``subscribe`` passes no scheduler.

    Raises:
        ValueError: naming a bad ``capacity`` or ``overflow``.

    Examples:
        >>> import reactivex
        >>> from reactivex.testing import TestScheduler
        >>> from rxbus import Overflow
        >>> from rxbus.operators import backpressure
        >>> clock, out, dropped = TestScheduler(), [], []
        >>> _ = reactivex.from_iterable("abcdef").pipe(
        ...     backpressure(3, Overflow.DROP_OLDEST, on_drop=dropped.append)
        ... ).subscribe(out.append, scheduler=clock)
        >>> clock.start() and None; out, dropped
        (['d', 'e', 'f'], ['a', 'b', 'c'])
    """
    size = check_positive_int("backpressure() capacity", capacity)
    policy = Overflow.parse(overflow)

    def operator(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], at_subscribe: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            queue = _Queue(
                size,
                policy,
                observer,
                pick_scheduler(at_subscribe, scheduler),
                drop_reporter(on_drop, registry, name, f"queue full, overflow={policy.value}"),
                name,
            )
            queue.upstream = source.subscribe(
                queue.on_next, queue.on_error, queue.on_completed, scheduler=at_subscribe
            )
            return Disposable(queue.dispose)

        return Observable(subscribe)

    return operator


class _Queue:
    """One subscription: the queue, the drain token and the terminal notification."""

    def __init__(
        self,
        capacity: int,
        policy: Overflow,
        observer: abc.ObserverBase[Any],
        scheduler: abc.SchedulerBase,
        report_drop: Callable[[Any], None],
        name: str,
    ) -> None:
        self.capacity = capacity
        self.policy = policy
        self.observer = observer
        self.scheduler = scheduler
        self.report_drop = report_drop
        self.name = name
        self.cond = threading.Condition(threading.Lock())
        self.items: deque[Any] = deque()
        self.terminal: Callable[[], None] | None = None
        self.ended = False  # the source finished (or overflowed with ERROR): accept no more
        self.disposed = False
        self.drainer: int | None = None  # thread id holding the drain token
        self.scheduled = False  # a drain run is scheduled and has not started yet
        self.dropped = 0
        self.upstream: abc.DisposableBase | None = None

    # -- producer side ------------------------------------------------------------------------

    def on_next(self, item: Any) -> None:
        drops: list[Any] = []
        cut = False
        with self.cond:
            if self.ended or self.disposed:
                return
            items = self.items
            if len(items) >= self.capacity:
                policy = self.policy
                if policy is Overflow.BLOCK:
                    if not self._wait_for_room():
                        return
                elif policy is Overflow.DROP_NEWEST:
                    drops.append(item)
                    item = _NOTHING
                elif policy is Overflow.DROP_OLDEST:
                    drops.append(items.popleft())
                elif policy is Overflow.LATEST:
                    drops.extend(items)
                    items.clear()
                else:  # ERROR
                    drops.append(item)
                    item = _NOTHING
                    self.ended = cut = True
                    error = BufferOverflowError(
                        f"{self.name}: queue full ({self.capacity} items, overflow=ERROR)"
                    )
                    self.terminal = lambda: self.observer.on_error(error)
            if item is not _NOTHING:
                items.append(item)
            start = self._need_drain()
        if drops:
            self._report(drops)
        if cut and self.upstream is not None:
            self.upstream.dispose()
        if start:
            self._schedule()

    def _wait_for_room(self) -> bool:
        """BLOCK: wait (lock held) until the queue has room; False if disposed meanwhile."""
        me = threading.get_ident()
        while len(self.items) >= self.capacity:
            if self.disposed:
                return False
            if self.drainer is not None and self.drainer != me:
                self.cond.wait()
            elif self.drainer == me:
                # Re-entrant: downstream fed this queue from inside its own delivery. Waiting
                # would deadlock; going over capacity by this one item cannot grow without bound
                # (each such item needs a nested delivery on the stack).
                return True
            else:
                # Nobody else is draining: make room ourselves (the drain token keeps
                # deliveries one at a time).
                self.drainer = me
                item = self.items.popleft()
                self.cond.release()
                try:
                    self.observer.on_next(item)
                finally:
                    self.cond.acquire()
                    self.drainer = None
                    self.cond.notify_all()
        return True

    def on_error(self, error: Exception) -> None:
        self._end(lambda: self.observer.on_error(error))

    def on_completed(self) -> None:
        self._end(self.observer.on_completed)

    def _end(self, terminal: Callable[[], None]) -> None:
        with self.cond:
            if self.ended or self.disposed:
                return
            self.ended = True
            self.terminal = terminal
            start = self._need_drain()
        if start:
            self._schedule()

    def _report(self, drops: list[Any]) -> None:
        with self.cond:
            self.dropped += len(drops)
        for item in drops:
            self.report_drop(item)

    # -- drain side ---------------------------------------------------------------------------

    def _need_drain(self) -> bool:
        """(lock held) Whether a drain run must be scheduled now; marks it scheduled."""
        if self.drainer is not None or self.scheduled or self.disposed:
            return False
        self.scheduled = True
        return True

    def _schedule(self) -> None:
        self.scheduler.schedule(self._drain)

    def _drain(self, _: abc.SchedulerBase, __: Any = None) -> None:
        with self.cond:
            self.scheduled = False
            if self.drainer is not None or self.disposed:
                return  # whoever holds the token reschedules if items remain
            self.drainer = threading.get_ident()
        delivered = 0
        try:
            while True:
                with self.cond:
                    if self.disposed:
                        return
                    if self.items:
                        item = self.items.popleft()
                        if self.policy is Overflow.BLOCK:
                            self.cond.notify_all()
                    elif self.terminal is not None:
                        terminal, self.terminal = self.terminal, None
                        item = _END
                    else:
                        return
                if item is _END:
                    terminal()
                    return
                self.observer.on_next(item)
                delivered += 1
                if delivered >= _DRAIN_QUANTUM:
                    return
        finally:
            with self.cond:
                self.drainer = None
                self.cond.notify_all()
                again = (bool(self.items) or self.terminal is not None) and self._need_drain()
            if again:
                self._schedule()

    def dispose(self) -> None:
        with self.cond:
            self.disposed = True
            self.items.clear()
            self.terminal = None
            self.cond.notify_all()
            upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.dispose()


_NOTHING: Any = object()
_END: Any = object()
