"""``retry``: call a handler per item and retry only the item that failed, on a timer."""

from __future__ import annotations

import random as _random
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxbus.deadletter import DeadLetter
from rxbus.policies import RetryPolicy

from ._common import DeadLetters, dead_letter_sink, pick_scheduler

__all__ = ["retry"]

_T = TypeVar("_T")
_R = TypeVar("_R")


def retry(
    handler: Callable[[_T], _R],
    policy: RetryPolicy | None = None,
    *,
    ordered: bool = False,
    dead_letters: DeadLetters | None = None,
    name: str | None = None,
    scheduler: abc.SchedulerBase | None = None,
    random: Callable[[], float] = _random.random,
) -> Callable[[Observable[_T]], Observable[_R]]:
    """Emit ``handler(item)`` for each item, retrying a failed call of that item alone.

    After the k-th failure of an item the call is retried ``policy.delay(k)`` seconds later
    (``initial_delay * multiplier**(k-1)``, capped at ``max_delay``, spread by ``jitter``), on
    the scheduler. An item that fails ``max_attempts`` times, or raises an exception not in
    ``policy.retry_on``, becomes a :class:`rxbus.DeadLetter` with its ``attempts``; the stream
    goes on. With ``RetryPolicy(max_attempts=4, initial_delay=1, multiplier=2)`` an item that
    always fails is tried at t = 0, 1, 3 and 7.

    Plain ``reactivex.operators.retry`` re-subscribes to the source after an error: on a hot
    source (the bus) the failed item is gone by then. This operator never re-subscribes.

    **Ordering while an item waits for its retry.** By default (``ordered=False``) later items
    go on being handled and emitted; the waiting item's result is emitted when its retry
    succeeds, so one slow item does not hold up the stream. With ``ordered=True`` later items
    wait (unhandled, in arrival order) until the item ahead succeeds or is dead-lettered, so
    ``handler`` calls and results keep the source order; the wait queue then grows with the
    source rate, so bound it upstream (``backpressure``) if the source is fast.

    Completion and errors from the source are delivered after every waiting item has been
    resolved. Disposal cancels the pending retries.

    ::

        ---a---b---c---------------|          b fails once, retry after 1 s
              retry(handler, RetryPolicy(initial_delay=1))
        ---A-------C---B-----------|          (ordered=False)
        ---A-----------B-C---------|          (ordered=True)

    Args:
        handler: called with each item; its result is emitted.
        policy: how often and how late to retry (default ``RetryPolicy()``).
        ordered: keep results in source order (see above).
        dead_letters: receives each :class:`rxbus.DeadLetter`; inside a bus consumer it defaults
            to the bus's dead letters, elsewhere to the ``rxbus`` loguru logger.
        name: the ``consumer`` recorded on dead letters.
        scheduler: the scheduler for retry timers when ``subscribe`` passes none.
        random: source of numbers in [0, 1) for the jitter.

    Examples:
        >>> import reactivex
        >>> from reactivex.testing import TestScheduler
        >>> from rxbus import RetryPolicy
        >>> from rxbus.operators import retry
        >>> failures = {"b": 1}
        >>> def send(x):
        ...     if failures.get(x, 0):
        ...         failures[x] -= 1
        ...         raise ConnectionError(x)
        ...     return x.upper()
        >>> clock, source, out = TestScheduler(), reactivex.subject.Subject(), []
        >>> _ = source.pipe(retry(send, RetryPolicy(initial_delay=1.0))).subscribe(
        ...     out.append, scheduler=clock)
        >>> for x in "abc":
        ...     source.on_next(x)
        >>> out
        ['A', 'C']
        >>> clock.advance_by(1.0); out
        ['A', 'C', 'B']
    """
    if not callable(handler):
        raise TypeError(f"retry() needs a callable handler, got {handler!r}")
    if policy is None:
        policy = RetryPolicy()
    elif not isinstance(policy, RetryPolicy):
        raise TypeError(f"retry() policy must be an rxbus.RetryPolicy, got {policy!r}")
    chosen = policy

    def operator(source: Observable[_T]) -> Observable[_R]:
        def subscribe(
            observer: abc.ObserverBase[_R], at_subscribe: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            report, consumer = dead_letter_sink(dead_letters, name, "retry")
            state = _Retrying(
                handler,
                chosen,
                ordered,
                observer,
                pick_scheduler(at_subscribe, scheduler),
                report,
                consumer,
                random,
            )
            upstream = source.subscribe(
                state.on_next, state.on_error, state.on_completed, scheduler=at_subscribe
            )
            state.upstream = upstream
            return Disposable(state.dispose)

        return Observable(subscribe)

    return operator


class _Retrying:
    """One subscription's state. Every method runs under ``lock``, so ``handler`` and the
    downstream observer are never called concurrently (timers fire on another thread)."""

    def __init__(
        self,
        handler: Callable[[Any], Any],
        policy: RetryPolicy,
        ordered: bool,
        observer: abc.ObserverBase[Any],
        scheduler: abc.SchedulerBase,
        report: DeadLetters,
        consumer: str,
        random: Callable[[], float],
    ) -> None:
        self.handler = handler
        self.policy = policy
        self.ordered = ordered
        self.observer = observer
        self.scheduler = scheduler
        self.report = report
        self.consumer = consumer
        self.random = random
        self.lock = threading.RLock()
        self.timers: dict[int, abc.DisposableBase] = {}  # pending retries by ticket
        self.tickets = 0
        self.waiting: deque[Any] = deque()  # ordered mode: items behind a retrying one
        self.terminal: Callable[[], None] | None = None
        self.stopped = False
        self.upstream: abc.DisposableBase | None = None

    def on_next(self, item: Any) -> None:
        with self.lock:
            if self.stopped or self.terminal is not None:
                return
            if self.ordered and (self.timers or self.waiting):
                self.waiting.append(item)
                return
            self._attempt(item, 0)

    def _attempt(self, item: Any, failures: int) -> None:
        """Try ``item`` (which failed ``failures`` times so far); emit, schedule or dead-letter."""
        try:
            result = self.handler(item)
        except Exception as err:
            failures += 1
            if isinstance(err, self.policy.retry_on) and failures < self.policy.max_attempts:
                self._schedule(item, failures)
            else:
                self.report(DeadLetter.capture(item, self.consumer, err, failures))
            return
        self.observer.on_next(result)

    def _schedule(self, item: Any, failures: int) -> None:
        ticket = self.tickets = self.tickets + 1
        delay = self.policy.delay(failures, self.random())

        def fire(_: abc.SchedulerBase, __: Any = None) -> None:
            with self.lock:
                if self.timers.pop(ticket, None) is None or self.stopped:
                    return
                self._attempt(item, failures)
                self._resume()

        self.timers[ticket] = self.scheduler.schedule_relative(delay, fire)

    def _resume(self) -> None:
        """After a retry resolved: let waiting items through, and end the stream if due."""
        while self.waiting and not self.timers and not self.stopped:
            self._attempt(self.waiting.popleft(), 0)
        if self.terminal is not None and not self.timers and not self.waiting:
            terminal, self.terminal = self.terminal, None
            self.stopped = True
            terminal()

    def on_error(self, error: Exception) -> None:
        with self.lock:
            if self.stopped or self.terminal is not None:
                return
            self.terminal = lambda: self.observer.on_error(error)
            self._resume()

    def on_completed(self) -> None:
        with self.lock:
            if self.stopped or self.terminal is not None:
                return
            self.terminal = self.observer.on_completed
            self._resume()

    def dispose(self) -> None:
        with self.lock:
            self.stopped = True
            timers = list(self.timers.values())
            self.timers.clear()
            self.waiting.clear()
            upstream, self.upstream = self.upstream, None
        for timer in timers:
            timer.dispose()
        if upstream is not None:
            upstream.dispose()
