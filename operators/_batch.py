"""``batch``: group items into lists by size and by time, never emitting an empty list."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable

from ._common import check_positive, check_positive_int, pick_scheduler

__all__ = ["batch"]

_T = TypeVar("_T")


def batch(
    seconds: float | None,
    max_size: int | None = None,
    *,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[_T]], Observable[list[_T]]]:
    """Emit items in lists: at once when a list reaches ``max_size``, else ``seconds`` after
    its first item arrived.

    A timer runs only while a batch is open (it starts with the batch's first item and is
    cancelled when the batch fills up), so an idle stream costs nothing and no empty list is
    ever emitted. On completion and on error the open batch is emitted first, then the terminal
    notification. Disposal drops the open batch and cancels its timer.

    Timers run on the scheduler given to ``subscribe``, else ``scheduler``, else
    :func:`rxbus.scheduling.default_scheduler` (one thread for every timer of the process).

    ::

        ---a-b-c-d-------e-------|
              batch(seconds=5, max_size=3)     (time in ticks of 1 s)
        -------[abc]--------[de]-|     [abc] on size at once; [de] flushed on completion
                                       ([d] alone would have been emitted 5 s after d)

    Args:
        seconds: how long a batch stays open after its first item (``None``: no time limit).
        max_size: the most items in one batch (``None``: no size limit).
        scheduler: the scheduler for timers when ``subscribe`` passes none.

    Raises:
        ValueError: naming a non-positive ``seconds`` or ``max_size``, or if both are ``None``.

    Examples:
        >>> import reactivex
        >>> from rxbus.operators import batch
        >>> reactivex.from_iterable(range(7)).pipe(batch(seconds=1.0, max_size=3)).subscribe(
        ...     print)  # doctest: +ELLIPSIS
        [0, 1, 2]
        [3, 4, 5]
        [6]
        <...>
    """
    if seconds is None and max_size is None:
        raise ValueError("batch() needs seconds, max_size or both; got neither")
    span = None if seconds is None else check_positive("batch() seconds", seconds)
    limit = -1 if max_size is None else check_positive_int("batch() max_size", max_size)

    def operator(source: Observable[_T]) -> Observable[list[_T]]:
        def subscribe(
            observer: abc.ObserverBase[list[_T]], at_subscribe: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            timers = pick_scheduler(at_subscribe, scheduler) if span is not None else None
            delay = span or 0.0
            # Re-entrant: a downstream that feeds the same source from inside on_next must not
            # deadlock; the buffer is swapped out before anything is emitted.
            lock = threading.RLock()
            emit = observer.on_next
            buf: list[_T] = []
            # timer[0]: the open batch's timer; generation[0]: which batch it belongs to, so a
            # timer that fires just as its batch is flushed by size does nothing.
            timer: list[abc.DisposableBase | None] = [None]
            generation = [0]
            stopped = [False]

            def take() -> list[_T]:
                nonlocal buf
                out, buf = buf, []
                generation[0] += 1
                pending = timer[0]
                if pending is not None:
                    timer[0] = None
                    pending.dispose()
                return out

            def on_timer(_: abc.SchedulerBase, gen: Any = None) -> None:
                with lock:
                    if stopped[0] or gen != generation[0] or not buf:
                        return
                    emit(take())

            def on_next(item: _T) -> None:
                with lock:
                    if stopped[0]:
                        return
                    buf.append(item)
                    n = len(buf)
                    if n == limit:
                        emit(take())
                    elif n == 1 and timers is not None:
                        timer[0] = timers.schedule_relative(delay, on_timer, generation[0])

            def on_error(error: Exception) -> None:
                with lock:
                    if stopped[0]:
                        return
                    stopped[0] = True
                    if buf:
                        emit(take())
                    observer.on_error(error)

            def on_completed() -> None:
                with lock:
                    if stopped[0]:
                        return
                    stopped[0] = True
                    if buf:
                        emit(take())
                    observer.on_completed()

            def dispose() -> None:
                with lock:
                    stopped[0] = True
                    take()

            upstream = source.subscribe(on_next, on_error, on_completed, scheduler=at_subscribe)
            return CompositeDisposable(upstream, Disposable(dispose))

        return Observable(subscribe)

    return operator
