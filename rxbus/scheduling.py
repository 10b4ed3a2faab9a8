"""Schedulers for time-based operators: one timer thread, never a thread per timer.

reactivex's default ``TimeoutScheduler`` starts a thread for every timer, and
``EventLoopScheduler`` lets an exception in one action kill its thread. :class:`TimerScheduler`
runs every timer of the process on one daemon thread from a heap, and survives a failing action.

Inside a bus consumer, operators receive a scheduler that also serialises timer actions with the
consumer's ``on_next`` (:class:`SerialScheduler`) or posts them to the consumer's own worker
(:class:`PostingScheduler`), so downstream is never called concurrently.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from abc import abstractmethod
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from reactivex import abc, typing
from reactivex.disposable import Disposable
from reactivex.scheduler.periodicscheduler import PeriodicScheduler

from rxbus._log import logger

__all__ = ["PostingScheduler", "SerialScheduler", "TimerScheduler", "default_scheduler"]

_T = TypeVar("_T")


class _Timer:
    __slots__ = ("action", "cancelled", "due", "state")

    def __init__(self, due: datetime, action: Any, state: Any) -> None:
        self.due = due
        self.action = action
        self.state = state
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerScheduler(PeriodicScheduler):
    """Runs scheduled actions on one daemon thread, in due-time order.

    The thread starts on the first timer. An action that raises is logged (``rxbus`` logger) and
    the thread goes on. Cancelled timers are skipped when due and purged when they pile up.
    """

    def __init__(self, name: str = "rxbus-timer") -> None:
        super().__init__()
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[datetime, int, _Timer]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def thread(self) -> threading.Thread | None:
        """The timer thread, once started."""
        return self._thread

    def schedule(
        self, action: typing.ScheduledAction[_T], state: _T | None = None
    ) -> abc.DisposableBase:
        return self.schedule_absolute(self.now, action, state)

    def schedule_relative(
        self,
        duetime: typing.RelativeTime,
        action: typing.ScheduledAction[_T],
        state: _T | None = None,
    ) -> abc.DisposableBase:
        return self.schedule_absolute(self.now + self.to_timedelta(duetime), action, state)

    def schedule_absolute(
        self,
        duetime: typing.AbsoluteTime,
        action: typing.ScheduledAction[_T],
        state: _T | None = None,
    ) -> abc.DisposableBase:
        timer = _Timer(self.to_datetime(duetime), action, state)
        with self._cond:
            if self._stopped:
                raise RuntimeError(f"scheduler {self._name!r} is stopped")
            heapq.heappush(self._heap, (timer.due, next(self._seq), timer))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0][2] is timer:
                self._cond.notify()
        return Disposable(timer.cancel)

    def stop(self) -> None:
        """Stop the thread; pending timers never run."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    if not self._heap:
                        self._cond.wait()
                        continue
                    due, _, timer = self._heap[0]
                    if timer.cancelled:
                        heapq.heappop(self._heap)
                        continue
                    wait = (due - self.now).total_seconds()
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        break
                    self._cond.wait(wait)
            try:
                timer.action(self, timer.state)
            except Exception:
                logger.exception("rxbus: a scheduled action raised; the timer thread goes on")


class _WrappingScheduler(PeriodicScheduler):
    """Delegates to ``base``, passing every action through :meth:`_wrap` first."""

    def __init__(self, base: abc.SchedulerBase) -> None:
        super().__init__()
        self._base = base

    @property
    def now(self) -> datetime:
        return self._base.now

    @abstractmethod
    def _wrap(self, action: typing.ScheduledAction[_T]) -> typing.ScheduledAction[_T]:
        """The action to hand to ``base`` in place of ``action``."""

    def schedule(
        self, action: typing.ScheduledAction[_T], state: _T | None = None
    ) -> abc.DisposableBase:
        return self._base.schedule(self._wrap(action), state)

    def schedule_relative(
        self,
        duetime: typing.RelativeTime,
        action: typing.ScheduledAction[_T],
        state: _T | None = None,
    ) -> abc.DisposableBase:
        return self._base.schedule_relative(duetime, self._wrap(action), state)

    def schedule_absolute(
        self,
        duetime: typing.AbsoluteTime,
        action: typing.ScheduledAction[_T],
        state: _T | None = None,
    ) -> abc.DisposableBase:
        return self._base.schedule_absolute(duetime, self._wrap(action), state)


class SerialScheduler(_WrappingScheduler):
    """Wraps another scheduler so each action runs while holding ``lock``.

    A ``sync`` bus consumer holds the same (re-entrant) lock around ``on_next``, so its timer
    actions and its events never run at the same time.
    """

    def __init__(self, base: abc.SchedulerBase, lock: Any) -> None:
        super().__init__(base)
        self._lock = lock

    def _wrap(self, action: typing.ScheduledAction[_T]) -> typing.ScheduledAction[_T]:
        lock = self._lock

        def locked(_: abc.SchedulerBase, state: _T | None = None) -> abc.DisposableBase | None:
            with lock:
                return action(self, state)

        return locked


class PostingScheduler(_WrappingScheduler):
    """Wraps another scheduler so each due action is handed to ``post`` instead of run in place.

    A ``thread`` bus consumer posts actions to its own worker, which runs them between events.
    """

    def __init__(self, base: abc.SchedulerBase, post: Callable[[Callable[[], Any]], None]) -> None:
        super().__init__(base)
        self._post = post

    def _wrap(self, action: typing.ScheduledAction[_T]) -> typing.ScheduledAction[_T]:
        post = self._post

        def posted(_: abc.SchedulerBase, state: _T | None = None) -> None:
            post(lambda: action(self, state))

        return posted


_default_lock = threading.Lock()
_default: list[TimerScheduler] = []


def default_scheduler() -> TimerScheduler:
    """The process-wide timer scheduler (one thread for every timer), started on first use.

    This is the one piece of shared state in rxbus: a timer thread per bus or per operator would
    be the thread-per-timer cost this module exists to avoid.
    """
    if not _default:
        with _default_lock:
            if not _default:
                _default.append(TimerScheduler())
    return _default[0]
