"""``bus.events`` and ``bus.topic(pattern)``: hot streams whose subscribers are bus consumers."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxbus.deadletter import DeadLetter
from rxbus.event import Event

if TYPE_CHECKING:  # pragma: no cover
    from rxbus.bus._bus import EventBus

__all__ = ["START_ATTEMPTS", "BusStream"]

START_ATTEMPTS = 3
"""Failures in a row, with no item between, after which a piped stream gives up: it ends with
the error (dead-lettered too) instead of subscribing again for ever."""


class BusStream(Observable[Event]):
    """A hot stream of the bus's events matching ``pattern``: a ``Subject`` filtered by topic.

    Each subscription is a bus consumer (mode ``sync``). ``pipe`` applies the operators once,
    as over a Subject (so ``share()`` shares, ``publish()`` gives a ``ConnectableObservable``
    and ``to_future()`` a future), and guards each subscriber of the result: an exception in
    its chain becomes a dead letter and the chain is subscribed again, so the subscriber keeps
    receiving later events.
    """

    def __init__(self, bus: EventBus, pattern: str, report: Callable[[DeadLetter], None]) -> None:
        super().__init__()
        self._bus = bus
        self._pattern = pattern
        self._report = report

    def _subscribe_core(
        self, observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        return self._bus.subscribe(observer, topic=self._pattern, mode="sync", scheduler=scheduler)

    def pipe(self, *operators: Callable[[Any], Any]) -> Any:
        built = functools.reduce(lambda source, op: op(source), operators, self)
        if type(built) is Observable:
            return _Guarded(built, self._bus, self._report)
        return built  # a ConnectableObservable, a future, or a BusStream (no operators)


class _Guarded(Observable[Any]):
    """A piped bus stream: subscribers that fail are dead-lettered and resubscribed."""

    def __init__(
        self, chain: Observable[Any], bus: EventBus, report: Callable[[DeadLetter], None]
    ) -> None:
        super().__init__()
        self._chain = chain
        self._bus = bus
        self._report = report

    def _subscribe_core(
        self, observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        guard = _Guard(self._chain, observer, self._bus, self._report, scheduler)
        guard.start()
        return Disposable(guard.dispose)


class _Guard(abc.ObserverBase[Any]):
    """Passes a chain's notifications to one subscriber; a failure is a dead letter, never the
    end of the subscription."""

    def __init__(
        self,
        chain: Observable[Any],
        observer: abc.ObserverBase[Any],
        bus: EventBus,
        report: Callable[[DeadLetter], None],
        scheduler: abc.SchedulerBase | None,
    ) -> None:
        self._chain = chain
        self._observer = observer
        self._bus = bus
        self._report = report
        self._scheduler = scheduler
        self._lock = threading.Lock()
        self._subscription: abc.DisposableBase | None = None
        self._disposed = False
        self._starting = False
        self._failed_start: Exception | None = None
        self._failures = 0  # in a row, with no item between
        self.name = _name_of(observer)

    def start(self) -> None:
        """Subscribe the chain; one that fails while it is subscribed is tried again, up to
        :data:`START_ATTEMPTS` times in a row, then its error goes to the subscriber."""
        for _ in range(START_ATTEMPTS):
            self._failed_start = None
            self._starting = True
            try:
                subscription = self._chain.subscribe(self, scheduler=self._scheduler)
            finally:
                self._starting = False
            if self._failed_start is None:
                break
            subscription.dispose()
        else:
            assert self._failed_start is not None
            try:
                self._observer.on_error(self._failed_start)
            except Exception as err:
                self._report(DeadLetter.capture(None, self.name, err))
            return
        with self._lock:
            # another thread may have failed this chain and started a fresh one meanwhile
            if not self._disposed and self._subscription is None:
                self._subscription = subscription
                return
        subscription.dispose()

    def on_next(self, value: Any) -> None:
        self._failures = 0
        try:
            self._observer.on_next(value)
        except Exception as err:
            self._report(DeadLetter.capture(value, self.name, err))

    def on_error(self, error: Exception) -> None:
        self._report(DeadLetter.capture(None, self.name, error))
        if self._starting:  # failed while being subscribed: start() decides what comes next
            self._failed_start = error
            return
        self._failures += 1
        if self._failures >= START_ATTEMPTS:  # failing again and again with nothing between
            self.dispose()
            try:
                self._observer.on_error(error)
            except Exception as err:
                self._report(DeadLetter.capture(None, self.name, err))
            return
        with self._lock:
            old, self._subscription = self._subscription, None
            if self._disposed or self._bus.closed:
                return
        if old is not None:
            old.dispose()
        self.start()  # a fresh chain, as a bus consumer's chain is rebuilt

    def on_completed(self) -> None:
        try:
            self._observer.on_completed()
        except Exception as err:
            self._report(DeadLetter.capture(None, self.name, err))

    def dispose(self) -> None:
        with self._lock:
            self._disposed = True
            subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.dispose()


def _name_of(observer: Any) -> str:
    fn = getattr(observer, "_on_next_core", None) or getattr(observer, "on_next", None)
    return getattr(fn, "__qualname__", type(observer).__name__)
