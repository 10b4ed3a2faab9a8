"""``circuit_breaker``: stop calling a failing handler for a while, then try it again."""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from reactivex import Observable, abc

from rxbus.deadletter import DeadLetter
from rxbus.errors import CircuitOpenError

from ._common import (
    DeadLetters,
    check_positive,
    check_positive_int,
    dead_letter_sink,
    pick_scheduler,
    seconds_of,
)

__all__ = ["CircuitBreaker", "CircuitOpenError", "CircuitState", "circuit_breaker"]

_T = TypeVar("_T")
_R = TypeVar("_R")


class CircuitState(enum.Enum):
    """The states of a :class:`CircuitBreaker`."""

    CLOSED = "closed"
    """Calls go through; consecutive failures are counted."""
    OPEN = "open"
    """Calls are refused until ``recovery_timeout`` has passed."""
    HALF_OPEN = "half_open"
    """One trial call goes through: success closes the circuit, failure opens it again."""


class CircuitBreaker(Generic[_T, _R]):
    """A pipeable operator (``source.pipe(breaker)``) that guards calls of ``handler``.

    Build it with :func:`circuit_breaker`. The state belongs to the breaker, not to one
    subscription: a breaker guards one dependency, so every stream piped through the same
    breaker (and a re-subscription) sees the same open or closed circuit.
    """

    def __init__(
        self,
        handler: Callable[[_T], _R],
        failure_threshold: int,
        recovery_timeout: float,
        *,
        fallback: Callable[[_T], _R] | None,
        dead_letters: DeadLetters | None,
        name: str | None,
        scheduler: abc.SchedulerBase | None,
        on_state_change: Callable[[CircuitState, CircuitState], None] | None,
    ) -> None:
        if not callable(handler):
            raise TypeError(f"circuit_breaker() needs a callable handler, got {handler!r}")
        if fallback is not None and not callable(fallback):
            raise TypeError(f"circuit_breaker() fallback must be callable, got {fallback!r}")
        threshold = check_positive_int("circuit_breaker() failure_threshold", failure_threshold)
        timeout = check_positive("circuit_breaker() recovery_timeout", recovery_timeout)
        self.handler = handler
        self.failure_threshold = threshold
        self.recovery_timeout = timeout
        self.fallback = fallback
        self.name = name
        self._dead_letters = dead_letters
        self._scheduler = scheduler
        self._on_state_change = on_state_change
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._trial = False  # a half-open trial call is in flight
        self._counts = {"calls": 0, "succeeded": 0, "failed": 0, "rejected": 0, "opened": 0}

    @property
    def state(self) -> CircuitState:
        """The current state (an open circuit shows ``OPEN`` until an item finds it due)."""
        return self._state

    @property
    def stats(self) -> dict[str, Any]:
        """``{"state", "calls", "succeeded", "failed", "rejected", "opened"}``: ``rejected``
        counts items refused while open (sent to the fallback or to dead letters)."""
        with self._lock:
            return {"state": self._state.value, **self._counts}

    def __call__(self, source: Observable[_T]) -> Observable[_R]:
        def subscribe(
            observer: abc.ObserverBase[_R], at_subscribe: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            report, consumer = dead_letter_sink(self._dead_letters, self.name, "circuit_breaker")
            now = seconds_of(pick_scheduler(at_subscribe, self._scheduler))
            emit = observer.on_next

            def on_next(item: _T) -> None:
                if not self._admit(now()):
                    self._reject(item, emit, report, consumer, now())
                    return
                try:
                    result = self.handler(item)
                except Exception as err:
                    self._failed(now())
                    report(DeadLetter.capture(item, consumer, err))
                    return
                self._succeeded()
                emit(result)

            return source.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=at_subscribe
            )

        return Observable(subscribe)

    # -- state machine (each step under the lock; the handler runs outside it) ---------------

    def _admit(self, now: float) -> bool:
        changed = None
        with self._lock:
            state = self._state
            if state is CircuitState.OPEN:
                if now - self._opened_at < self.recovery_timeout:
                    self._counts["rejected"] += 1
                    return False
                changed = self._move(CircuitState.HALF_OPEN)
                state = CircuitState.HALF_OPEN
            if state is CircuitState.HALF_OPEN:
                if self._trial:
                    self._counts["rejected"] += 1
                    admitted = False
                else:
                    self._trial = admitted = True
            else:
                admitted = True
            if admitted:
                self._counts["calls"] += 1
        self._notify(changed)
        return admitted

    def _failed(self, now: float) -> None:
        changed = None
        with self._lock:
            self._counts["failed"] += 1
            self._consecutive += 1
            half_open = self._state is CircuitState.HALF_OPEN
            self._trial = False
            if half_open or (
                self._state is CircuitState.CLOSED and self._consecutive >= self.failure_threshold
            ):
                self._opened_at = now
                self._counts["opened"] += 1
                changed = self._move(CircuitState.OPEN)
        self._notify(changed)

    def _succeeded(self) -> None:
        changed = None
        with self._lock:
            self._counts["succeeded"] += 1
            self._consecutive = 0
            if self._state is CircuitState.HALF_OPEN:
                self._trial = False
                changed = self._move(CircuitState.CLOSED)
        self._notify(changed)

    def _move(self, new: CircuitState) -> tuple[CircuitState, CircuitState]:
        old, self._state = self._state, new
        return old, new

    def _notify(self, changed: tuple[CircuitState, CircuitState] | None) -> None:
        if changed is not None and self._on_state_change is not None:
            self._on_state_change(*changed)

    def _reject(
        self,
        item: _T,
        emit: Callable[[_R], None],
        report: DeadLetters,
        consumer: str,
        now: float,
    ) -> None:
        if self.fallback is not None:
            try:
                result = self.fallback(item)
            except Exception as err:
                report(DeadLetter.capture(item, consumer, err))
                return
            emit(result)
            return
        wait = max(0.0, self.recovery_timeout - (now - self._opened_at))
        refused = CircuitOpenError(
            f"circuit {self.name or consumer!r} is open after {self.failure_threshold} "
            f"consecutive failures; next trial in {wait:.3g}s"
        )
        report(DeadLetter.capture(item, consumer, refused, attempts=0))

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker({self.name or getattr(self.handler, '__name__', 'handler')!r}, "
            f"state={self._state.value})"
        )


def circuit_breaker(
    handler: Callable[[_T], _R],
    failure_threshold: int = 5,
    recovery_timeout: float = 30.0,
    *,
    fallback: Callable[[_T], _R] | None = None,
    dead_letters: DeadLetters | None = None,
    name: str | None = None,
    scheduler: abc.SchedulerBase | None = None,
    on_state_change: Callable[[CircuitState, CircuitState], None] | None = None,
) -> CircuitBreaker[_T, _R]:
    """Emit ``handler(item)`` per item, refusing calls while the handler keeps failing.

    - **closed**: every item is handed to ``handler``; a failure makes that item a dead letter
      and counts towards ``failure_threshold`` consecutive failures (a success resets it).
    - **open** (after ``failure_threshold`` consecutive failures): ``handler`` is not called;
      each item goes to ``fallback(item)`` (whose result is emitted) or, without a fallback, to
      dead letters with :class:`CircuitOpenError` and ``attempts == 0``. Counted as
      ``rejected`` in :attr:`CircuitBreaker.stats`.
    - **half-open** (the first item ``recovery_timeout`` seconds after opening): that one item
      is a trial call; success closes the circuit, failure opens it for another
      ``recovery_timeout``. Items arriving while the trial runs are rejected.

    The stream never ends because of ``handler`` or ``fallback``. Time is read from the
    scheduler given to ``subscribe``, else ``scheduler``, else the default scheduler's clock
    (no timer is ever started: the recovery is checked when the next item arrives).

    ::

        ---1---2---3---4---5---------6---7---|   h fails for 1 and 2; 6 comes 10 s after 2
              circuit_breaker(h, failure_threshold=2, recovery_timeout=10)
        -----------------------------h6--h7--|   1, 2: dead letters (their errors)
                                                 3, 4, 5: dead letters (CircuitOpenError)
                                                 6: the half-open trial; it succeeds, closed

    Args:
        handler: called with each item while the circuit is closed or half-open.
        failure_threshold: consecutive failures that open the circuit (>= 1).
        recovery_timeout: seconds the circuit stays open before a trial call (> 0).
        fallback: called instead of ``handler`` while open; its result is emitted.
        dead_letters: receives each :class:`rxbus.DeadLetter`; inside a bus consumer it defaults
            to the bus's dead letters, elsewhere to the ``rxbus`` loguru logger.
        name: names the circuit in errors and dead letters.
        scheduler: the clock when ``subscribe`` passes no scheduler.
        on_state_change: called with ``(old, new)`` :class:`CircuitState` on every change.

    Returns:
        A :class:`CircuitBreaker`: pipe it, and read ``.state`` and ``.stats`` from it.

    Raises:
        ValueError: naming a bad ``failure_threshold`` or ``recovery_timeout``.

    Examples:
        >>> import reactivex
        >>> from rxbus.operators import circuit_breaker
        >>> def call(x):
        ...     raise ConnectionError("service down")
        >>> breaker = circuit_breaker(call, failure_threshold=2, recovery_timeout=30.0,
        ...                           fallback=lambda x: f"cached {x}", dead_letters=print)
        >>> _ = reactivex.from_iterable([1, 2, 3]).pipe(breaker).subscribe(  # doctest: +ELLIPSIS
        ...     print)
        DeadLetter(event=1, ...
        DeadLetter(event=2, ...
        cached 3
        >>> breaker.stats
        {'state': 'open', 'calls': 2, 'succeeded': 0, 'failed': 2, 'rejected': 1, 'opened': 1}
    """
    return CircuitBreaker(
        handler,
        failure_threshold,
        recovery_timeout,
        fallback=fallback,
        dead_letters=dead_letters,
        name=name,
        scheduler=scheduler,
        on_state_change=on_state_change,
    )
