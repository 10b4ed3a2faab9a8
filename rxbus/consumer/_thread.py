"""Mode ``thread``: a bounded queue drained on the shared worker pool (:mod:`._pool`), or, with
``dedicated=True``, by the consumer's own thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rxbus._log import logger
from rxbus.consumer._consumer import Call, Consumer, Mode
from rxbus.consumer._pool import Executor
from rxbus.consumer._queue import OVERFLOWED, REFUSED
from rxbus.deadletter import DeadLetter
from rxbus.errors import BufferOverflowError, BusClosedError

__all__ = ["DedicatedThreadConsumer", "QueuedConsumer", "ThreadConsumer"]

_get_ident = threading.get_ident


class QueuedConsumer(Consumer):
    """What the ``thread`` and ``async`` modes share: a bounded queue between the publisher and
    the place the chain runs, and an ending delivered after everything queued."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._ending: tuple[str, Exception | None] | None = None
        self._waiting = False  # the drainer sleeps until woken
        super().__init__(*args, **kwargs)
        self._cond = threading.Condition(self._lock)

    def push(self, event: Any) -> None:
        lock = self._lock
        lock.acquire()
        try:
            self._received += 1
            if not self._accepting:
                self.dropped += 1
                outcome = REFUSED
            else:
                queue = self._queue
                # whether this thread may wait for room matters only when the queue is full
                can_wait = len(queue.items) < queue.capacity or self._can_wait()
                outcome, dropped = queue.put(event, can_wait)
                self.dropped += dropped
                if outcome == OVERFLOWED:
                    self._accepting = False
            wake = self._wake_locked()
        finally:
            lock.release()
        if outcome == REFUSED:
            self._refused(event)
        elif outcome == OVERFLOWED:
            err = BufferOverflowError(
                f"consumer {self.name!r}: queue full ({self.queue_size} events) and "
                f"overflow=Overflow.ERROR; the consumer ends"
            )
            self._report(DeadLetter.capture(event, self.name, err))
            self.host.detach(self)
            self._end(("error", err))
        elif wake:
            self._wake_outside()

    def _can_wait(self) -> bool:
        """Whether this thread may wait for room in the full queue (``Overflow.BLOCK``): not the
        consumer's own, nor a pool worker (see :mod:`rxbus.consumer._pool`), nor a producer in
        a virtual-time test, where nothing drains until the test does."""
        return not self.runs_here() and self.host.executor.may_wait()

    def _post_call(self, fn: Callable[[], Any]) -> None:
        self._post_control(Call(fn))

    def _post_control(self, item: Any) -> None:
        with self._lock:
            self._queue.calls.append(item)
            wake = self._wake_locked()
        if wake:
            self._wake_outside()

    def _end(self, ending: tuple[str, Exception | None]) -> None:
        """Complete, error or stop once the queue has drained."""
        with self._lock:
            if self._ending is None:
                self._ending = ending
            wake = self._wake_locked()
        if wake:
            self._wake_outside()

    def _next(self) -> tuple[Any, bool]:
        """The next call, event or ending (with the lock held); ``(None, False)`` if none."""
        item, control = self._queue.take()
        if item is None and self._ending is not None:
            return self._ending, True
        return item, control

    def _wake_locked(self) -> bool:
        """Wake a sleeping drainer (lock held); True if it slept (then call _wake_outside)."""
        wake = self._waiting
        self._waiting = False
        if wake:
            self._notify()
        return wake

    def _notify(self) -> None:
        """Wake the drainer (lock held)."""

    def _wake_outside(self) -> None:
        """Wake the drainer (lock not held)."""

    def _handle_control(self, item: Any) -> bool:
        """Run a call or the ending; True once the consumer is finished."""
        if item.__class__ is Call:
            self._run_call(item)
            return False
        kind, arg = item
        if kind == "complete":
            self._complete_chain()
        elif kind == "error":
            self._finished = True
            self._error_sink(arg)
        return True  # "stop" (disposal) ends without completing the sink

    def begin_close(self) -> None:
        with self._lock:
            self._accepting = False
        self._queue.close()
        self._end(("complete", None))

    def _stop(self) -> None:
        self._abandon(BusClosedError(f"consumer {self.name!r} was disposed"))
        self._finished = True
        with self._lock:
            self._ending = ("stop", None)
            wake = self._wake_locked()
        if wake:
            self._wake_outside()


class ThreadConsumer(QueuedConsumer):
    """A consumer whose chain runs on the shared worker pool, one batch at a time.

    While it has work it is *scheduled* (``_scheduled``, under its lock): in the pool's run
    queue, or being run by one worker, never both and never twice, so its events are delivered
    in order and its ``on_next`` is never called concurrently.
    """

    mode: Mode = "thread"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._scheduled = False  # in the run queue or running: nothing else may schedule it
        self._runner = 0  # thread id of the worker running it now
        self._executor: Executor = args[0].executor
        self._submit = self._executor.submit
        super().__init__(*args, **kwargs)
        self._items = self._queue.items  # the same deque for the consumer's life
        if self._async_sink:
            raise ValueError(
                f"sink {self.name!r} is an async def function: use mode='async' (or the "
                "default), not mode='thread'"
            )

    def runs_here(self) -> bool:
        return self._runner == _get_ident()

    def push(self, event: Any) -> None:
        # The common case inline (room in the queue): one publish reaching 1,000 consumers
        # pays this 1,000 times.
        lock = self._lock
        lock.acquire()
        if not self._accepting or len(self._items) >= self.queue_size:
            lock.release()
            super().push(event)  # refused, or an overflow policy to apply
            return
        self._received += 1
        self._items.append(event)
        if self._scheduled:
            lock.release()
            return
        self._scheduled = True
        lock.release()
        self._submit(self)

    def _wake_locked(self) -> bool:
        if self._scheduled:
            return False
        self._scheduled = True
        return True

    def _wake_outside(self) -> None:
        self._executor.submit(self)

    def run_batch(self, limit: int) -> bool:
        """Deliver up to ``limit`` queued items (the pool calls this); True if work remains."""
        lock = self._lock
        self._runner = _get_ident()
        try:
            for _ in range(limit):
                with lock:
                    item, control = self._next()
                    if item is None:
                        self._scheduled = False
                        return False
                if control:
                    if self._handle_control(item):
                        self._done.set()
                        return False  # finished: it stays scheduled, so it is never run again
                    continue
                self._deliver(item)
            with lock:
                queue = self._queue
                if queue.items or queue.calls or self._ending is not None:
                    return True
                self._scheduled = False
                return False
        finally:
            self._runner = 0


class DedicatedThreadConsumer(QueuedConsumer):
    """A ``thread`` consumer with a thread of its own (``subscribe(..., dedicated=True)``): for a
    sink that blocks for long, which on the pool would hold a shared worker."""

    mode: Mode = "thread"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._worker: threading.Thread | None = None
        super().__init__(*args, **kwargs)
        if self._async_sink:
            raise ValueError(
                f"sink {self.name!r} is an async def function: use mode='async' (or the "
                "default), not mode='thread'"
            )
        self._worker = threading.Thread(target=self._run, name=f"rxbus-{self.name}", daemon=True)
        self._worker.start()

    def runs_here(self) -> bool:
        return threading.current_thread() is self._worker

    def _notify(self) -> None:
        self._cond.notify()

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                item, control = self._next()
                while item is None:
                    self._waiting = True
                    cond.wait()
                    item, control = self._next()
            if control:
                if self._handle_control(item):
                    self._done.set()
                    return
                continue
            try:
                self._deliver(item)
            except BaseException as err:  # counted; the thread goes on, as a pool worker does
                logger.opt(exception=err).error(
                    "rxbus: a consumer raised out of its thread; it goes on"
                )
