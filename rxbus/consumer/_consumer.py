"""What every consumer has, whatever its delivery mode: the sink, the operator chain, counts,
dead letters and disposal. The modes (``_sync``, ``_thread``, ``_async``) add how events reach
the chain."""

from __future__ import annotations

import asyncio
import inspect
import threading
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from reactivex import Observable, abc
from reactivex.scheduler import CurrentThreadScheduler
from reactivex.subject import Subject

from rxbus import _context
from rxbus.consumer._host import ConsumerHost
from rxbus.consumer._queue import BoundedQueue
from rxbus.deadletter import DeadLetter
from rxbus.errors import BusClosedError
from rxbus.policies import Overflow
from rxbus.scheduling import PostingScheduler, default_scheduler

__all__ = ["MODES", "Consumer", "ConsumerStats", "Mode"]

Mode = Literal["sync", "thread", "async"]

START_ATTEMPTS = 3
"""Times in a row a chain that fails while it is being subscribed is built again."""
MODES = ("sync", "thread", "async")


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


class Call:
    """A timer action posted to a consumer (not an event: never dropped, never counted)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn


def is_async_callable(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    )


class _Terminal(abc.ObserverBase[Any]):
    """The end of a consumer's chain: calls the sink and keeps failures inside the consumer."""

    __slots__ = ("consumer",)

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def on_next(self, value: Any) -> None:
        self.consumer._emit(value)

    def on_error(self, error: Exception) -> None:
        self.consumer._chain_failed(error)

    def on_completed(self) -> None:
        self.consumer._chain_completed()


class Consumer(abc.DisposableBase):
    """A subscription of one sink to the bus. Created by :meth:`rxbus.EventBus.subscribe`.

    It isolates its sink: an exception raised by the sink or anywhere in its operator chain
    becomes a :class:`~rxbus.DeadLetter` and never reaches the producer or another consumer,
    and the consumer keeps receiving later events. At every quiet moment its :attr:`stats`
    obey ``received == delivered + failed + dropped + queued``.

    "Delivered" means the chain accepted the event and nothing raised while it went through
    (an operator may hold it, as a batch does, or filter it out). An event that reaches a
    chain with no subscription to its source at that moment (``delay_subscription``, an
    operator between resubscriptions) is counted as dropped, exactly where a plain ``Subject``
    would lose it.

    Attributes:
        name: unique within its bus.
        pattern: the topic pattern it receives.
        mode: ``"sync"``, ``"thread"`` or ``"async"``.
    """

    # The counts and what a delivery reads are slots. CPython 3.11 keeps at most 29 attributes
    # inline in an instance; past that they live in a plain dict, where no ``self.x`` specialises
    # beyond a hinted dict lookup and no ``self.method()`` at all, and a consumer has over 40.
    # Slots are a fixed offset (measured: ~290 instructions less a sync delivery), and they keep
    # a sync consumer's __dict__ under the limit (a delivery through an operator ~940 less; a
    # test holds it there). Everything else stays in __dict__.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_accepting",
        "_chain_done",
        "_current",
        "_failed_now",
        "_idle_failures",
        "_inlet",
        "_lock",
        "_received",
        "_retire_late",
        "_sink_on_next",
        "dead_lettered",
        "delivered",
        "dropped",
        "failed",
    )

    mode: Mode = "sync"

    def __init__(
        self,
        host: ConsumerHost,
        sink: Any,
        operators: Sequence[Callable[[Observable[Any]], Observable[Any]]],
        *,
        pattern: str,
        queue_size: int,
        overflow: Overflow,
        name: str,
        scheduler: abc.SchedulerBase | None,
    ) -> None:
        if not isinstance(queue_size, int) or isinstance(queue_size, bool) or queue_size < 1:
            raise ValueError(f"queue_size must be an int >= 1, got {queue_size!r}")
        for op in operators:
            if not callable(op):
                raise TypeError(
                    f"operators must be callables such as reactivex.operators.map(...), "
                    f"got {type(op).__name__}: {op!r:.80}"
                )
        self.host = host
        self._fail = host.fail
        self.sink = sink
        self.name = name
        self.pattern = pattern
        self.queue_size = queue_size
        self.overflow = overflow
        self.seq = 0  # the bus's subscription order, which routes keep
        self.subscriber_thread = 0  # the thread that subscribed it
        self.retired = False  # its counts were folded into the bus totals
        self._operators = tuple(operators)

        # _received/dropped change under _lock; delivered/failed only where the chain runs,
        # which is one place at a time.
        self._received = 0
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self.dead_lettered = 0

        self._failed_now = False  # set by the chain while it processes the current event
        self._current: Any = None  # the event being processed, for dead letters
        self._finished = False  # chain completed/errored terminally, or disposed
        self._chain_done = False  # the chain completed by itself (e.g. take(n))
        self._accepting = True
        self._retire_late = False
        self._completion_sent = False
        self._done = threading.Event()  # set once the consumer has drained and completed
        self._lock = threading.Lock()
        self._queue = BoundedQueue(queue_size, overflow, self._lock)

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
        self._async_sink = is_async_callable(self._sink_on_next)
        self._scheduler = self._make_scheduler(scheduler)

        bind = getattr(sink, "bind_consumer", None)
        if callable(bind):
            # lets a sink send its own failures (a server refusing an event) to this bus
            bind(self._context())
        self._inlet: Subject[Any] | None = None
        self._subscription: abc.DisposableBase | None = None
        self._building = False
        self._failed_building: Exception | None = None
        self._idle_failures = 0  # chain failures in a row not caused by an event
        if self._operators:
            self._build_chain()

    # -- set up by the modes ---------------------------------------------------------------------

    def _make_scheduler(self, scheduler: abc.SchedulerBase | None) -> abc.SchedulerBase:
        """Time-based operators get a scheduler whose actions run serialised with the events:
        posted to this consumer like an event, on the user's scheduler or the shared timer."""
        if scheduler is not None:
            return PostingScheduler(scheduler, self._post_call)
        timers = self.host.timers
        return PostingScheduler(
            default_scheduler() if timers is None else timers,
            self._post_call,
            CurrentThreadScheduler.singleton(),
        )

    @abstractmethod
    def push(self, event: Any) -> None:
        """Hand ``event`` to this consumer (the publish path)."""

    @abstractmethod
    def _post_call(self, fn: Callable[[], Any]) -> None:
        """Run a timer action serialised with this consumer's events."""

    # -- the chain -------------------------------------------------------------------------------

    def _build_chain(self) -> None:
        """Subscribe the operators to a fresh ``Subject``: the chain sees a hot source exactly as
        it would over a plain Subject (retry, repeat and catch resubscribe to it)."""
        for _ in range(START_ATTEMPTS):
            inlet: Subject[Any] = Subject()
            chain = inlet.pipe(*self._operators)
            self._inlet = inlet
            self._failed_building = None
            self._building = True
            try:
                with _context.using(self._context()):
                    self._subscription = chain.subscribe(_Terminal(self), scheduler=self._scheduler)
            finally:
                self._building = False
            if self._failed_building is None:
                return
            self._subscription.dispose()
        # it fails each time it is subscribed: building it again cannot help
        assert self._failed_building is not None
        self._finished = True
        self.host.detach(self)
        self._error_sink(self._failed_building)

    def _context(self) -> _context.ConsumerContext:
        return _context.ConsumerContext(
            consumer=self.name, report_dead_letter=self._report, metrics=self.host.registry
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

    def _emit(self, value: Any) -> None:
        """The chain emitted ``value``: hand it to the sink (async modes override)."""
        try:
            self._sink_on_next(value)
        except Exception as err:
            self._item_failed(value, err)

    def _item_failed(self, item: Any, err: BaseException) -> None:
        """The sink raised for ``item`` (an event, or something the chain derived from one)."""
        self._failed_now = True
        self.dead_lettered += 1
        self._fail(item, self.name, err)

    def _chain_failed(self, err: Exception) -> None:
        """An operator sent on_error: dead-letter the current event and start a fresh chain."""
        self._failed_now = True
        self._report(DeadLetter.capture(self._current, self.name, err))
        if self._building:
            self._failed_building = err
            return
        if self._current is None:  # not caused by an event: at subscribe, or from a timer
            self._idle_failures += 1
            if self._idle_failures >= START_ATTEMPTS:  # building it again cannot help
                self._finished = True
                self.host.detach(self)
                self._error_sink(err)
                return
        self._rebuild_chain()

    def _chain_completed(self) -> None:
        """The chain completed (by itself, as ``take(n)`` does, or at close): finished."""
        if self._chain_done:
            return
        self._finished = True
        self._chain_done = True
        self.host.detach(self)
        self._complete_sink()

    def _report(self, letter: DeadLetter) -> None:
        self.dead_lettered += 1
        self.host.report(letter)

    def _deliver(self, event: Any) -> None:
        """Run one event through the chain and the sink, and count the outcome.

        A ``BaseException`` that is not an ``Exception`` (a sink's ``KeyboardInterrupt``) counts
        the event as failed and dead-letters it, then goes on up: to the publisher of a ``sync``
        consumer, to the worker or drain task of the others, which log it and go on.
        """
        try:
            ok = self._process(event)
        except BaseException as err:
            self._current = None
            self.failed += 1
            self._item_failed(event, err)
            raise
        else:
            if ok:
                self.delivered += 1
            elif ok is not None:
                self.failed += 1
        finally:
            if self._retire_late:  # disposed from its own sink: counted now, then folded
                self._retire_late = False
                self.host.retire(self)

    def _process(self, event: Any) -> bool | None:
        """Run one event through the chain and the sink: True if nothing failed, None if the
        event was dropped (and counted) because nothing wanted it."""
        if self._chain_done:  # queued behind a chain that completed itself: not wanted
            self._count_dropped(1)
            return None
        inlet = self._inlet
        if inlet is not None and not inlet.observers:
            self._count_dropped(1)  # nothing in the chain listens now: a Subject loses it too
            return None
        self._failed_now = False
        self._current = event
        if inlet is None:
            self._emit(event)  # no chain: the sink's failure is caught and counted there
        else:
            try:
                inlet.on_next(event)
            except Exception as err:  # an operator that raised instead of sending on_error
                self._failed_now = True
                self._report(DeadLetter.capture(event, self.name, err))
                self._rebuild_chain()
        self._current = None
        if self._failed_now:
            return False
        self._idle_failures = 0
        return True

    def _run_call(self, call: Call) -> None:
        try:
            call.fn()
        except Exception as err:
            self._report(DeadLetter.capture(None, self.name, err))

    def _count_dropped(self, n: int) -> None:
        with self._lock:
            self.dropped += n

    # -- completion ------------------------------------------------------------------------------

    def _complete_chain(self) -> None:
        """Complete the operator chain, which flushes what it holds and completes the sink in
        its own time (a ``delay`` completes later); without a chain, complete the sink."""
        inlet = self._inlet
        if inlet is None or self._finished:
            self._finished = True
            self._complete_sink()
            return
        self._finished = True
        try:
            inlet.on_completed()
        except Exception as err:
            self._report(DeadLetter.capture(None, self.name, err))

    def _complete_sink(self) -> None:
        if self._completion_sent:
            return
        self._completion_sent = True
        if self._sink_on_completed is not None:
            try:
                result = self._sink_on_completed()
                if inspect.isawaitable(result):
                    self._await_later(result)
            except Exception as err:
                self._report(DeadLetter.capture(None, self.name, err))

    def _error_sink(self, err: Exception) -> None:
        if self._completion_sent:
            return
        self._completion_sent = True
        if self._sink_on_error is not None:
            try:
                result = self._sink_on_error(err)
                if inspect.isawaitable(result):
                    self._await_later(result)
            except Exception as sink_err:
                self._report(DeadLetter.capture(None, self.name, sink_err))

    def _await_later(self, awaitable: Any) -> None:
        """An ``async def`` on_completed/on_error: run it on the bus loop."""
        asyncio.run_coroutine_threadsafe(awaitable, self.host.loop)

    def _refused(self, event: Any) -> None:
        """``event`` arrived after the consumer stopped accepting (counted by the caller)."""
        if self.retired:  # a stale route reached it after its counts were folded
            self.host.count_retired(1, 1)
        if not self._chain_done:
            why = BusClosedError(f"consumer {self.name!r} stopped accepting events")
            self._report(DeadLetter(event, self.name, why, "", 0))

    def _abandon(self, reason: Exception) -> list[DeadLetter]:
        """Give up on what is still queued: count it as dropped and dead-letter it."""
        with self._lock:
            left = self._abandon_inflight() + self._events(self._queue.clear())
            self.dropped += len(left)
        letters = [DeadLetter(event, self.name, reason, "", 0) for event in left]
        for letter in letters:
            self._report(letter)
        return letters

    def _events(self, items: list[Any]) -> list[Any]:
        """The events among queued ``items`` (a mode may queue them with extra state)."""
        return items

    def _abandon_inflight(self) -> list[Any]:
        return []

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def received(self) -> int:
        """Events that reached this consumer so far."""
        return self._received

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def stats(self) -> ConsumerStats:
        """A snapshot: received, delivered, failed, dropped, queued, dead_lettered."""
        with self._lock:
            return ConsumerStats(
                received=self.received,
                delivered=self.delivered,
                failed=self.failed,
                dropped=self.dropped,
                queued=self._queued_now(),
                dead_lettered=self.dead_lettered,
            )

    def _queued_now(self) -> int:
        return len(self._queue)

    @property
    def is_disposed(self) -> bool:
        return self._finished and not self._accepting

    @property
    def processed(self) -> int:
        """Events delivered, failed or dropped so far."""
        return self.delivered + self.failed + self.dropped

    @property
    def blocked(self) -> int:
        """Producers waiting for room in the queue (``Overflow.BLOCK``)."""
        return self._queue.blocked

    @property
    def finished(self) -> bool:
        """True once the chain completed or failed for good, or the consumer was disposed."""
        return self._finished

    @property
    def done(self) -> bool:
        """True once the consumer has drained and completed (or was stopped)."""
        return self._done.is_set()

    @abstractmethod
    def begin_close(self) -> None:
        """Stop accepting; complete the chain once everything queued has been delivered."""

    @abstractmethod
    def runs_here(self) -> bool:
        """True when called from where this consumer runs (it cannot be waited for there)."""

    def wait_closed(self, timeout: float) -> bool:
        """Wait for the drain; through the executor, which may help (a pool worker runs other
        consumers meanwhile, a virtual-time test drains everything first)."""
        return self.host.executor.wait(self._done, timeout)

    def abandon(self, reason: Exception) -> list[DeadLetter]:
        """Count what is still queued as dropped and dead-letter it; returns the letters."""
        return self._abandon(reason)

    def dispose(self) -> None:
        """Unsubscribe now. Events still queued are counted as dropped, not delivered."""
        if self._finished and not self._accepting:
            return
        self.host.detach(self)
        with self._lock:
            self._accepting = False
        self._queue.close()
        self._stop()
        sub = self._subscription
        self._subscription = None
        if sub is not None:
            sub.dispose()
        if not self._retire_when_left():
            self.host.retire(self)

    def _retire_when_left(self) -> bool:
        """Disposed from its own sink while it handles an event: fold the consumer into the bus
        totals once that event is counted (True), rather than now."""
        if self._current is not None and self.runs_here():
            self._retire_late = True
            return True
        return False

    @abstractmethod
    def _stop(self) -> None:
        """Disposal, mode by mode: stop delivering without completing the sink."""

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<Consumer {self.name!r} topic={self.pattern!r} mode={self.mode} "
            f"received={s.received} delivered={s.delivered} failed={s.failed} "
            f"dropped={s.dropped} queued={s.queued}>"
        )
