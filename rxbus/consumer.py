"""Consumers: one sink, an optional operator chain, a delivery mode, and honest counts.

A :class:`Consumer` is what :meth:`rxbus.EventBus.subscribe` returns. It isolates its sink: an
exception raised by the sink or anywhere in its operator chain becomes a
:class:`~rxbus.DeadLetter` and never reaches the producer or another consumer, and the consumer
keeps receiving later events. Its :attr:`Consumer.stats` obey, at every quiet moment::

    received == delivered + failed + dropped + queued

Modes:

- ``sync``: the chain runs in the publisher's thread, under a re-entrant lock, so ``on_next`` is
  never called concurrently even when many threads publish.
- ``thread``: a bounded queue drained by the consumer's own worker thread.
- ``async``: a bounded queue drained by a task on the bus's asyncio loop; ``async def`` sinks are
  awaited one at a time.

"Delivered" means the event went through the consumer's chain and its sink without an exception.
An event an operator holds (a batch being filled) counts as delivered once the chain accepted it;
a failure of something emitted later from a timer is a dead letter of the emitted item.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxbus import _context
from rxbus.deadletter import DeadLetter
from rxbus.errors import BufferOverflowError, BusClosedError
from rxbus.policies import Overflow
from rxbus.scheduling import PostingScheduler, SerialScheduler, default_scheduler

if TYPE_CHECKING:
    from rxbus.bus import EventBus

__all__ = ["Consumer", "ConsumerStats", "Mode"]

Mode = Literal["sync", "thread", "async"]
_MODES = ("sync", "thread", "async")


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    """A snapshot of one consumer's counts."""

    received: int
    delivered: int
    failed: int
    dropped: int
    queued: int
    dead_lettered: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Call:
    """A timer action posted to a queued consumer's worker (not an event; never dropped)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn


def _is_async_callable(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    )


class _Terminal(abc.ObserverBase[Any]):
    """The end of a consumer's chain: calls the sink and keeps failures inside the consumer."""

    __slots__ = ("consumer",)

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def on_next(self, value: Any) -> None:
        c = self.consumer
        if c._awaiting is not None:
            c._awaiting.append(value)
            return
        if c._async_sink:  # emitted from a timer: the drain task awaits it in turn
            c._post_control(("emit", value))
            return
        try:
            c._sink_on_next(value)
        except Exception as err:
            c._item_failed(value, err)

    def on_error(self, error: Exception) -> None:
        self.consumer._chain_failed(error)

    def on_completed(self) -> None:
        self.consumer._chain_completed()


class Consumer(abc.DisposableBase):
    """A subscription of one sink to the bus. Created by :meth:`rxbus.EventBus.subscribe`.

    Attributes:
        name: unique within its bus.
        pattern: the topic pattern it receives.
        mode: ``"sync"``, ``"thread"`` or ``"async"``.
    """

    def __init__(
        self,
        bus: EventBus,
        sink: Any,
        operators: Sequence[Callable[[Observable[Any]], Observable[Any]]],
        *,
        pattern: str,
        mode: Mode,
        queue_size: int,
        overflow: Overflow,
        name: str,
        scheduler: abc.SchedulerBase | None,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {list(_MODES)}, got {mode!r}")
        if not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be an int >= 1, got {queue_size!r}")
        self.bus = bus
        self.sink = sink
        self.name = name
        self.pattern = pattern
        self.mode: Mode = mode
        self.queue_size = queue_size
        self.overflow = overflow
        self._operators = tuple(operators)

        # Counters. received/dropped change under the queue lock (or the sync lock);
        # delivered/failed only where the chain runs, which is one place at a time.
        self.received = 0
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self.dead_lettered = 0

        self._failed_now = False  # set by the chain while processing the current event
        self._current: Any = None  # the event being processed, for dead letters
        self._awaiting: list[Any] | None = None  # async sinks: items emitted by the chain
        self._finished = False  # chain completed/errored terminally, or disposed
        self._chain_done = False  # the chain completed by itself (e.g. take(n))
        self._accepting = True
        self._completion_sent = False
        self._done = threading.Event()  # set once the consumer has drained and completed

        on_next = getattr(sink, "on_next", None)
        if on_next is not None and callable(on_next):
            self._sink_on_next: Callable[[Any], Any] = on_next
            self._sink_on_error: Callable[[Exception], Any] | None = getattr(sink, "on_error", None)
            self._sink_on_completed: Callable[[], Any] | None = getattr(sink, "on_completed", None)
        elif callable(sink):
            self._sink_on_next = sink
            self._sink_on_error = None
            self._sink_on_completed = None
        else:
            raise TypeError(
                f"sink must be an observer (with on_next), a callable or an async def function, "
                f"got {type(sink).__name__}: {sink!r:.80}"
            )
        self._async_sink = _is_async_callable(self._sink_on_next)
        if self._async_sink and mode == "sync":
            self.mode = mode = "async"  # an async def sink can only be awaited on a loop
        if self._async_sink and mode == "thread":
            raise ValueError(
                f"sink {name!r} is an async def function: use mode='async' (or the default), "
                "not mode='thread'"
            )

        self._lock = threading.RLock()
        # One lock, two conditions. Hot paths take the raw lock (a C call); Condition.__enter__
        # is Python code.
        self._qlock = threading.Lock()
        self._cond = threading.Condition(self._qlock)
        self._not_full = threading.Condition(self._qlock)
        self._blocked = 0  # producers waiting in _not_full.wait()
        self._queue: deque[Any] = deque()
        self._calls: deque[Any] = deque()
        self._ending: tuple[str, Exception | None] | None = None
        self._worker: threading.Thread | None = None
        self._waiting = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._completion_task: asyncio.Future[Any] | None = None
        self._inflight: Any = None  # the event an async sink is awaiting
        self._inflight_abandoned = False

        base = scheduler if scheduler is not None else default_scheduler()
        self._user_scheduler = scheduler
        if mode == "sync":
            self._scheduler: abc.SchedulerBase = (
                scheduler if scheduler is not None else SerialScheduler(base, self._lock)
            )
        elif mode == "thread":
            self._scheduler = (
                scheduler if scheduler is not None else PostingScheduler(base, self._post)
            )
        else:
            from reactivex.scheduler.eventloop import AsyncIOThreadSafeScheduler

            self._loop = bus.loop
            self._scheduler = (
                scheduler if scheduler is not None else AsyncIOThreadSafeScheduler(self._loop)
            )

        bind = getattr(sink, "bind_consumer", None)
        if callable(bind):
            # lets a sink send its own failures (a server refusing an event) to this bus
            bind(self._context())
        self._head: Callable[[Any], Any] = self._sink_on_next
        self._subscription: abc.DisposableBase | None = None
        if self._operators:
            self._build_chain()
        elif self._async_sink:
            self._head = self._terminal_async_append
        self.push: Callable[[Any], None]
        if mode == "sync":
            self.push = self._push_sync if self._operators else self._push_sync_plain
        elif mode == "thread":
            self.push = self._push_queue
            self._worker = threading.Thread(
                target=self._run_worker, name=f"rxbus-{name}", daemon=True
            )
            self._worker.start()
        else:
            self.push = self._push_queue
            self._start_task()

    # -- the chain ---------------------------------------------------------------------------

    def _terminal_async_append(self, value: Any) -> None:
        assert self._awaiting is not None
        self._awaiting.append(value)

    def _build_chain(self) -> None:
        heads: list[abc.ObserverBase[Any]] = []

        def inlet_subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            heads.append(observer)
            return Disposable(lambda: heads.remove(observer) if observer in heads else None)

        source: Observable[Any] = Observable(inlet_subscribe)
        chain = source.pipe(*self._operators)
        with _context.using(self._context()):
            self._subscription = chain.subscribe(_Terminal(self), scheduler=self._scheduler)
        if not heads:  # the chain did not subscribe to its source (e.g. an operator replaced it)
            self._head = lambda _v: None
        else:
            self._head = heads[-1].on_next

    def _context(self) -> _context.ConsumerContext:
        return _context.ConsumerContext(
            consumer=self.name, report_dead_letter=self._report, metrics=self.bus._registry
        )

    def _rebuild_chain(self) -> None:
        old = self._subscription
        self._subscription = None
        if old is not None:
            try:
                old.dispose()
            except Exception:  # a broken chain's disposal must not stop the rebuild
                pass
        if not self._finished:
            self._build_chain()

    def _item_failed(self, item: Any, err: Exception) -> None:
        """The sink raised for ``item`` (an event, or something the chain derived from one)."""
        self._failed_now = True
        self._report(DeadLetter.capture(item, self.name, err))

    def _chain_failed(self, err: Exception) -> None:
        """An operator sent on_error: dead-letter the current event and start a fresh chain."""
        self._failed_now = True
        self._report(DeadLetter.capture(self._current, self.name, err))
        self._rebuild_chain()

    def _chain_completed(self) -> None:
        """The chain completed by itself (e.g. ``take(n)``): this consumer is finished."""
        if self._finished:
            return
        self._finished = True
        self._chain_done = True
        self.bus._detach(self)
        self._complete_sink()

    def _report(self, letter: DeadLetter) -> None:
        self.dead_lettered += 1
        self.bus._dead_letter(letter)

    def _complete_sink(self) -> None:
        if self._completion_sent:
            return
        self._completion_sent = True
        if self._sink_on_completed is not None:
            try:
                result = self._sink_on_completed()
                if inspect.isawaitable(result):
                    self._awaiting_result(result)
            except Exception as err:
                self._report(DeadLetter.capture(None, self.name, err))

    def _awaiting_result(self, result: Any) -> None:
        if self._loop is not None and self._in_loop():
            self._completion_task = asyncio.ensure_future(result, loop=self._loop)
        elif self._loop is not None:
            asyncio.run_coroutine_threadsafe(result, self._loop)

    def _error_sink(self, err: Exception) -> None:
        if self._completion_sent:
            return
        self._completion_sent = True
        if self._sink_on_error is not None:
            try:
                result = self._sink_on_error(err)
                if inspect.isawaitable(result):
                    self._awaiting_result(result)
            except Exception as sink_err:
                self._report(DeadLetter.capture(None, self.name, sink_err))

    def _process(self, event: Any) -> bool:
        """Run ``event`` through the chain (not the awaits). True if nothing failed."""
        self._failed_now = False
        self._current = event
        try:
            self._head(event)
        except Exception as err:
            self._failed_now = True
            self._report(DeadLetter.capture(event, self.name, err))
            if self._operators:
                self._rebuild_chain()
        self._current = None
        return not self._failed_now

    # -- sync mode ---------------------------------------------------------------------------

    def _push_sync(self, event: Any) -> None:
        with self._lock:
            if self._finished or not self._accepting:
                self._refuse(event)
                return
            self.received += 1
            if self._process(event):
                self.delivered += 1
            else:
                self.failed += 1

    def _push_sync_plain(self, event: Any) -> None:
        """``_push_sync`` for a sink without operators: the publish hot path, kept short."""
        lock = self._lock
        lock.acquire()  # explicit acquire/release: measurably cheaper than ``with`` here
        try:
            if self._finished or not self._accepting:
                self._refuse(event)
                return
            self.received += 1
            try:
                self._sink_on_next(event)
            except Exception as err:
                self.failed += 1
                self._report(DeadLetter.capture(event, self.name, err))
            else:
                self.delivered += 1
        finally:
            lock.release()

    def _refuse(self, event: Any) -> None:
        """An event arrived after the consumer stopped accepting (a race with close/dispose)."""
        with self._qlock:
            self.received += 1
            self.dropped += 1
        self._report_refused(event)

    def _report_refused(self, event: Any) -> None:
        """Dead-letter an event refused because the consumer was closing or disposed; one
        refused because the chain completed by itself (``take(n)``) was simply not wanted."""
        if not self._chain_done:
            why = BusClosedError(f"consumer {self.name!r} stopped accepting events")
            self._report(DeadLetter(event, self.name, why, "", 0))

    # -- queued modes ------------------------------------------------------------------------

    def _push_queue(self, event: Any) -> None:
        overflow_error = False
        with self._qlock:
            if not self._accepting:
                self.received += 1
                self.dropped += 1
                refused = True
            else:
                refused = False
        if refused:
            self._report_refused(event)
            return
        with self._qlock:
            self.received += 1
            queue = self._queue
            if len(queue) >= self.queue_size:
                policy = self.overflow
                if policy is Overflow.BLOCK and not self._on_own_thread():
                    self._blocked += 1
                    try:
                        while len(queue) >= self.queue_size and self._accepting:
                            self._not_full.wait()
                    finally:
                        self._blocked -= 1
                    if not self._accepting:
                        self.dropped += 1
                        refused = True
                elif policy is Overflow.DROP_OLDEST:
                    queue.popleft()
                    self.dropped += 1
                elif policy is Overflow.DROP_NEWEST:
                    self.dropped += 1
                    return
                elif policy is Overflow.LATEST:
                    self.dropped += len(queue)
                    queue.clear()
                elif policy is Overflow.ERROR:
                    self.dropped += 1
                    self._accepting = False
                    overflow_error = True
                # BLOCK on the consumer's own thread or loop cannot wait for itself: the queue
                # goes over its bound rather than deadlock.
            if not overflow_error and not refused:
                queue.append(event)
            wake = self._waiting
            if wake:
                self._waiting = False
                if self._worker is not None:
                    self._cond.notify()
        if refused:
            self._report_refused(event)
            return
        if overflow_error:
            err = BufferOverflowError(
                f"consumer {self.name!r}: queue full ({self.queue_size} events) and "
                f"overflow=Overflow.ERROR; the consumer ends"
            )
            self._report(DeadLetter.capture(event, self.name, err))
            self.bus._detach(self)
            self._end_after_queue(("error", err))
            return
        if wake and self._loop is not None:
            self._wake_loop()

    def _on_own_thread(self) -> bool:
        if self._worker is not None:
            return threading.current_thread() is self._worker
        return self._in_loop()

    def _in_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _post(self, fn: Callable[[], Any]) -> None:
        """Hand a timer action to this consumer's worker (thread mode)."""
        self._post_control(_Call(fn))

    def _post_control(self, item: Any) -> None:
        with self._cond:
            self._calls.append(item)
            wake = self._waiting
            self._waiting = False
            if self._worker is not None:
                self._cond.notify()
        if wake and self._loop is not None:
            self._wake_loop()

    def _take(self) -> tuple[Any, bool]:
        """Pop the next control item or event; (None, False) if both queues are empty.

        Called with the condition held.
        """
        if self._calls:
            return self._calls.popleft(), True
        if self._queue:
            event = self._queue.popleft()
            if self._blocked:
                self._not_full.notify()
            return event, False
        if self._ending is not None:  # completion or error, after everything queued
            return self._ending, True
        return None, False

    def _end_after_queue(self, ending: tuple[str, Exception | None]) -> None:
        """Complete (or error) the sink once the queue has drained."""
        with self._cond:
            if self._ending is None:
                self._ending = ending
            wake = self._waiting
            self._waiting = False
            if self._worker is not None:
                self._cond.notify()
        if wake and self._loop is not None:
            self._wake_loop()

    def _handle_control(self, item: Any) -> bool:
        """Run a control item; True if the consumer is finished."""
        if isinstance(item, _Call):
            try:
                item.fn()
            except Exception as err:
                self._report(DeadLetter.capture(None, self.name, err))
            return False
        kind, arg = item
        if kind == "complete":
            self._finish_chain_completed(complete_sink=not self._async_sink)
        elif kind == "error":
            self._finish_chain_error(arg)
        # "stop" (disposal) ends the worker without completing the sink
        return True

    def _finish_chain_completed(self, complete_sink: bool = True) -> None:
        if self._operators and self._subscription is not None and not self._finished:
            self._finished = True
            complete = self._inlet_complete()
            if complete is not None:
                try:
                    complete()
                except Exception as err:
                    self._report(DeadLetter.capture(None, self.name, err))
        self._finished = True
        if complete_sink:
            self._complete_sink()

    def _finish_chain_error(self, err: Exception) -> None:
        self._finished = True
        self._error_sink(err)

    def _inlet_complete(self) -> Callable[[], None] | None:
        head = getattr(self._head, "__self__", None)
        return getattr(head, "on_completed", None)

    def _run_worker(self) -> None:
        cond = self._cond
        while True:
            with self._qlock:
                item, control = self._take()
                while item is None and not control:
                    self._waiting = True
                    cond.wait()
                    item, control = self._take()
            if control:
                if self._handle_control(item):
                    self._done.set()
                    return
                continue
            if self._chain_done:  # queued behind a chain that completed itself: not wanted
                self._count_unwanted()
                continue
            if self._process(item):
                self.delivered += 1
            else:
                self.failed += 1

    # -- async mode ----------------------------------------------------------------------------

    def _start_task(self) -> None:
        loop = self._loop
        assert loop is not None
        if self._in_loop():
            self._task = loop.create_task(self._run_async(), name=f"rxbus-{self.name}")
        else:
            ready = threading.Event()

            def start() -> None:
                self._task = loop.create_task(self._run_async(), name=f"rxbus-{self.name}")
                ready.set()

            loop.call_soon_threadsafe(start)
            if not ready.wait(timeout=10):
                raise RuntimeError(f"the asyncio loop of bus {self.bus.name!r} is not running")

    def _wake_loop(self) -> None:
        loop = self._loop
        assert loop is not None
        if self._in_loop():
            self._set_wake()
            return
        try:
            loop.call_soon_threadsafe(self._set_wake)
        except RuntimeError:  # the loop is closed (e.g. the asyncio.run that made the bus ended)
            self._loop_gone(loop)

    def _loop_gone(self, loop: asyncio.AbstractEventLoop) -> None:
        """The consumer's loop is closed: it can never run again. Stop it and dead-letter what
        it held, instead of letting publish() raise."""
        with self._qlock:
            if not self._accepting and self._done.is_set():
                return
            self._accepting = False
            self._not_full.notify_all()
        self.bus._detach(self)
        self._abandon(
            BusClosedError(f"consumer {self.name!r}: its asyncio loop {loop!r} is closed")
        )
        self._finished = True
        self._done.set()

    def _set_wake(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _run_async(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                with self._qlock:
                    item, control = self._take()
                    if item is None and not control:
                        self._waiting = True
                        self._wake = loop.create_future()
                if item is None and not control:
                    await self._wake  # type: ignore[misc]
                    continue
                if control:
                    if isinstance(item, tuple) and item[0] == "emit":
                        self._awaiting = [item[1]]
                        await self._drain_awaiting(None)
                        continue
                    self._awaiting = [] if self._async_sink else None
                    finished = self._handle_control(item)
                    await self._drain_awaiting(None)
                    if finished:
                        if item[0] == "complete":
                            self._complete_sink()
                        if self._completion_task is not None:
                            # an async on_completed/on_error finishes before the consumer does
                            try:
                                await self._completion_task
                            except Exception as err:
                                self._report(DeadLetter.capture(None, self.name, err))
                        return
                    continue
                if self._chain_done:
                    self._count_unwanted()
                    continue
                if self._async_sink:
                    self._awaiting = []
                    self._inflight = item
                    ok = self._process(item)
                    ok = await self._drain_awaiting(item) and ok
                    self._inflight = None
                    if self._inflight_abandoned:  # close() gave up on it and counted it
                        self._inflight_abandoned = False
                        continue
                else:
                    ok = self._process(item)
                if ok:
                    self.delivered += 1
                else:
                    self.failed += 1
        finally:
            self._awaiting = None
            self._done.set()

    async def _drain_awaiting(self, event: Any) -> bool:
        """Await the async sink for every item the chain emitted; False if any failed."""
        pending = self._awaiting
        self._awaiting = None
        ok = True
        while pending:
            item = pending.pop(0)
            try:
                await self._sink_on_next(item)
            except Exception as err:
                ok = False
                self._report(DeadLetter.capture(item, self.name, err))
        return ok

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def stats(self) -> ConsumerStats:
        """A snapshot: received, delivered, failed, dropped, queued, dead_lettered."""
        with self._cond:
            return ConsumerStats(
                received=self.received,
                delivered=self.delivered,
                failed=self.failed,
                dropped=self.dropped,
                queued=len(self._queue),
                dead_lettered=self.dead_lettered,
            )

    @property
    def is_disposed(self) -> bool:
        return self._finished and not self._accepting

    def _begin_close(self) -> None:
        """Stop accepting; complete the chain once everything queued has been delivered."""
        if self.mode == "sync":
            with self._lock:
                self._accepting = False
                if not self._finished:
                    self._finish_chain_completed()
                self._complete_sink()
            self._done.set()
            return
        with self._cond:
            if not self._accepting and self._done.is_set():
                return
            self._accepting = False
            self._not_full.notify_all()
        self._end_after_queue(("complete", None))

    def _count_unwanted(self) -> None:
        with self._qlock:
            self.dropped += 1

    def _runs_here(self) -> bool:
        """True when called from this consumer's own worker thread or loop (it cannot be
        waited for from here)."""
        if self._worker is not None:
            return threading.current_thread() is self._worker
        return self._loop is not None and self._in_loop()

    def _wait_closed(self, timeout: float) -> bool:
        return self._done.wait(timeout)

    def _abandon(self, reason: Exception) -> list[DeadLetter]:
        """Give up on what is still queued: count it as dropped and dead-letter it."""
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
            inflight = self._inflight
            if inflight is not None and not self._inflight_abandoned:
                # an async sink still awaiting it: its loop may never resume it
                self._inflight_abandoned = True
                left.insert(0, inflight)
            self.dropped += len(left)
            self._not_full.notify_all()
        letters = [DeadLetter(event, self.name, reason, "", 0) for event in left]
        for letter in letters:
            self._report(letter)
        return letters

    def dispose(self) -> None:
        """Unsubscribe now. Events still queued are counted as dropped, not delivered."""
        if self._finished and not self._accepting:
            return
        self.bus._detach(self)
        with self._cond:
            self._accepting = False
            self._not_full.notify_all()
        if self.mode == "sync":
            with self._lock:
                self._finished = True
        else:
            self._abandon(BusClosedError(f"consumer {self.name!r} was disposed"))
            self._finished = True
            self._post_control(("stop", None))
        sub = self._subscription
        self._subscription = None
        if sub is not None:
            sub.dispose()
        self.bus._retire(self)

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<Consumer {self.name!r} topic={self.pattern!r} mode={self.mode} "
            f"received={s.received} delivered={s.delivered} failed={s.failed} "
            f"dropped={s.dropped} queued={s.queued}>"
        )
