"""``rate_limit``: let at most ``per_second`` items through, dropping or delaying the rest."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxbus.metrics import MetricsRegistry

from ._common import (
    check_positive,
    check_positive_int,
    drop_reporter,
    pick_scheduler,
    seconds_of,
)

__all__ = ["rate_limit"]

_T = TypeVar("_T")


def rate_limit(
    per_second: float,
    *,
    mode: Literal["drop", "delay"] = "drop",
    burst: int = 1,
    max_pending: int = 10_000,
    on_drop: Callable[[Any], None] | None = None,
    registry: MetricsRegistry | None = None,
    name: str = "rate_limit",
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Let items through at no more than ``per_second`` on average (a token bucket).

    The bucket holds up to ``burst`` tokens and refills at ``per_second``; each item takes one.
    So over any span of ``T`` seconds at most ``burst + per_second * T`` items pass; with the
    default ``burst=1`` items are spaced at least ``1 / per_second`` apart.

    - ``mode="drop"``: an item that finds no token is dropped.
    - ``mode="delay"``: it waits in order and is emitted when a token is available. At most
      ``max_pending`` items wait; beyond that the new item is dropped, so memory stays bounded.
      Completion and errors are delivered after the waiting items.

    Every dropped item is counted and reported, as by :func:`backpressure`: ``on_drop(item)``
    is called and the measurement ``f"{name}.dropped"`` ticked in ``registry`` (default: the
    bus consumer's metrics); with neither, drops are logged on the ``rxbus`` loguru logger.

    Time is read from, and delays run on, the scheduler given to ``subscribe``, else
    ``scheduler``, else :func:`rxbus.scheduling.default_scheduler`.

    ::

        -abc-------------d--|         (a, b, c at t=1 s; d at t=17 s)
              rate_limit(per_second=0.2, mode="delay")
        -a----b----c-----d--|         (a at 1, b at 6, c at 11, d at 17)
              rate_limit(per_second=0.2, mode="drop")
        -a---------------d--|         (b, c dropped)

    Args:
        per_second: the sustained rate (> 0).
        mode: ``"drop"`` or ``"delay"`` items above the rate.
        burst: tokens the bucket holds, i.e. items that may pass back to back (>= 1).
        max_pending: ``"delay"`` mode: the most items waiting (>= 1).
        on_drop: called with each dropped item.
        registry: where the drop count goes (default: the bus consumer's metrics).
        name: prefix of the drop measurement.
        scheduler: the clock and timers when ``subscribe`` passes no scheduler.

    Raises:
        ValueError: naming a bad ``per_second``, ``mode``, ``burst`` or ``max_pending``.

    Examples:
        >>> import reactivex
        >>> from reactivex.testing import TestScheduler
        >>> from rxbus.operators import rate_limit
        >>> clock, out = TestScheduler(), []
        >>> _ = reactivex.from_iterable("abc").pipe(rate_limit(2, mode="delay")).subscribe(
        ...     lambda x: out.append((x, float(clock.clock))), scheduler=clock)
        >>> clock.start() and None; out
        [('a', 0.0), ('b', 0.5), ('c', 1.0)]
    """
    rate = check_positive("rate_limit() per_second", per_second)
    tokens_max = check_positive_int("rate_limit() burst", burst)
    pending_max = check_positive_int("rate_limit() max_pending", max_pending)
    if mode not in ("drop", "delay"):
        raise ValueError(f"rate_limit() mode must be 'drop' or 'delay', got {mode!r}")

    def operator(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], at_subscribe: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sched = pick_scheduler(at_subscribe, scheduler)
            why = f"above {rate:g}/s, mode={mode}"
            bucket = _Bucket(
                rate,
                tokens_max,
                pending_max,
                mode == "delay",
                observer,
                sched,
                drop_reporter(on_drop, registry, name, why),
            )
            bucket.upstream = source.subscribe(
                bucket.on_next, bucket.on_error, bucket.on_completed, scheduler=at_subscribe
            )
            return Disposable(bucket.dispose)

        return Observable(subscribe)

    return operator


class _Bucket:
    """One subscription's token bucket; every step under ``lock`` so downstream is serial."""

    def __init__(
        self,
        rate: float,
        capacity: int,
        max_pending: int,
        delay: bool,
        observer: abc.ObserverBase[Any],
        scheduler: abc.SchedulerBase,
        report_drop: Callable[[Any], None],
    ) -> None:
        self.rate = rate
        self.capacity = capacity
        self.max_pending = max_pending
        self.delay = delay
        self.observer = observer
        self.scheduler = scheduler
        self.now = seconds_of(scheduler)
        self.report_drop = report_drop
        self.lock = threading.RLock()
        self.tokens = float(capacity)
        self.stamp = self.now()
        self.pending: deque[Any] = deque()
        self.timer: abc.DisposableBase | None = None
        self.terminal: Callable[[], None] | None = None
        self.stopped = False
        self.upstream: abc.DisposableBase | None = None

    def _refill(self) -> None:
        t = self.now()
        self.tokens = min(self.capacity, self.tokens + (t - self.stamp) * self.rate)
        self.stamp = t

    def on_next(self, item: Any) -> None:
        dropped = False
        with self.lock:
            if self.stopped or self.terminal is not None:
                return
            self._refill()
            if not self.pending and self.tokens >= 1:
                self.tokens -= 1
                self.observer.on_next(item)
                return
            if self.delay and len(self.pending) < self.max_pending:
                self.pending.append(item)
                self._arm()
                return
            dropped = True
        if dropped:
            self.report_drop(item)

    def _arm(self) -> None:
        """(lock held) Schedule the release of the next waiting item, if not yet scheduled."""
        if self.timer is None and self.pending:
            wait = max(0.0, (1 - self.tokens) / self.rate)
            self.timer = self.scheduler.schedule_relative(wait, self._release)

    def _release(self, _: abc.SchedulerBase, __: Any = None) -> None:
        with self.lock:
            self.timer = None
            if self.stopped:
                return
            self._refill()
            # Float rounding can leave the bucket a hair under one token when the timer fires.
            if self.tokens < 1 - 1e-9:
                self._arm()
                return
            self.tokens = max(0.0, self.tokens - 1)
            self.observer.on_next(self.pending.popleft())
            if self.pending:
                self._arm()
            elif self.terminal is not None:
                self._finish()

    def _finish(self) -> None:
        terminal, self.terminal = self.terminal, None
        self.stopped = True
        if terminal is not None:
            terminal()

    def on_error(self, error: Exception) -> None:
        self._end(lambda: self.observer.on_error(error))

    def on_completed(self) -> None:
        self._end(self.observer.on_completed)

    def _end(self, terminal: Callable[[], None]) -> None:
        with self.lock:
            if self.stopped or self.terminal is not None:
                return
            self.terminal = terminal
            if not self.pending:
                self._finish()

    def dispose(self) -> None:
        with self.lock:
            self.stopped = True
            self.pending.clear()
            timer, self.timer = self.timer, None
            upstream, self.upstream = self.upstream, None
        if timer is not None:
            timer.dispose()
        if upstream is not None:
            upstream.dispose()
