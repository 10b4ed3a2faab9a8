"""Schedulers for time-based operators: one timer thread, never a thread per timer.

reactivex's default ``TimeoutScheduler`` starts a thread for every timer, and an
``EventLoopScheduler`` alone lets an exception in one action kill its thread.
:class:`TimerScheduler` is the two of RxPY's own pieces that fix both:
``CatchScheduler(EventLoopScheduler())``.

Inside a bus consumer, operators receive a :class:`PostingScheduler` that hands each due action
to the consumer, which runs it serialised with its events (in whichever thread or task the
consumer delivers), so downstream is never called concurrently.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from reactivex import abc, typing
from reactivex.scheduler import CatchScheduler, EventLoopScheduler
from reactivex.scheduler.periodicscheduler import PeriodicScheduler

from rxbus._log import logger

__all__ = ["PostingScheduler", "TimerScheduler", "default_scheduler"]

_T = TypeVar("_T")


class TimerScheduler(CatchScheduler):
    """reactivex's ``EventLoopScheduler`` (one daemon thread for every timer) wrapped in its
    ``CatchScheduler``, so an action that raises is logged (``rxbus`` logger) and the thread goes
    on instead of dying with it.

    Like RxPY's own scheduler, a cancelled timer stays queued (skipped) until its due time.
    """

    def __init__(self, name: str = "rxbus-timer") -> None:
        def thread_factory(target: Callable[[], None]) -> threading.Thread:
            return threading.Thread(target=target, name=name, daemon=True)

        self._loop_scheduler = EventLoopScheduler(thread_factory=thread_factory)
        super().__init__(self._loop_scheduler, _log_and_go_on)

    def stop(self) -> None:
        """End the thread; pending timers never run."""
        self._loop_scheduler.dispose()


def _log_and_go_on(error: Exception) -> bool:
    logger.opt(exception=error).error("rxbus: a scheduled action raised; the timer thread goes on")
    return True


class PostingScheduler(PeriodicScheduler):
    """Wraps ``base`` so each due action is handed to ``post`` instead of run in place.

    A bus consumer posts its operators' timer actions to itself, and runs them between events
    where it runs events: the publisher's thread (``sync``), its worker (``thread``).

    With ``immediate`` (a trampoline), actions due now run there instead, in the caller's
    thread, as they would for a chain subscribed without a scheduler: ``retry``, ``concat`` and
    ``repeat`` resubscribe at once, not one timer tick later.
    """

    def __init__(
        self,
        base: abc.SchedulerBase,
        post: Callable[[Callable[[], Any]], None],
        immediate: abc.SchedulerBase | None = None,
    ) -> None:
        super().__init__()
        self._base = base
        self._post = post
        self._immediate = immediate

    @property
    def now(self) -> datetime:
        return self._base.now

    def _wrap(self, action: typing.ScheduledAction[_T]) -> typing.ScheduledAction[_T]:
        post = self._post

        def posted(_: abc.SchedulerBase, state: _T | None = None) -> None:
            post(lambda: action(self, state))

        return posted

    def schedule(
        self, action: typing.ScheduledAction[_T], state: _T | None = None
    ) -> abc.DisposableBase:
        if self._immediate is not None:
            return self._immediate.schedule(action, state)
        return self._base.schedule(self._wrap(action), state)

    def schedule_relative(
        self,
        duetime: typing.RelativeTime,
        action: typing.ScheduledAction[_T],
        state: _T | None = None,
    ) -> abc.DisposableBase:
        if self._immediate is not None and self.to_seconds(duetime) <= 0:
            return self._immediate.schedule(action, state)
        return self._base.schedule_relative(duetime, self._wrap(action), state)

    def schedule_absolute(
        self,
        duetime: typing.AbsoluteTime,
        action: typing.ScheduledAction[_T],
        state: _T | None = None,
    ) -> abc.DisposableBase:
        return self._base.schedule_absolute(duetime, self._wrap(action), state)


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
