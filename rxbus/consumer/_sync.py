"""Mode ``sync``: the chain runs in a publisher's thread, serialised without holding a lock.

This is the emitter loop of RxJava's ``SerializedObserver``: the first thread to reach an idle
consumer becomes its emitter and delivers; a thread that finds it busy hands the event over
(queued) and returns at once; the emitter delivers what was handed to it before it leaves. No
lock is held while user code runs, so two sync consumers that publish to each other from two
threads cannot deadlock, and ``on_next`` is still never called concurrently. Each producer's
events keep their order: a producer's later event is queued behind its earlier one, or
delivered by the producer itself after it.

What ``publish`` guarantees: when it returns, every sync consumer it reached has either handled
the event or been handed it by this thread, in which case the thread inside that consumer
handles it before its own ``publish`` returns.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from rxbus.consumer._consumer import Call, Consumer, Mode
from rxbus.consumer._host import MAX_PUBLISH_DEPTH, delivery_depth
from rxbus.consumer._queue import ACCEPTED, OVERFLOWED
from rxbus.deadletter import DeadLetter
from rxbus.errors import BufferOverflowError, BusClosedError, PublishLoopError

__all__ = ["SyncConsumer"]


class SyncConsumer(Consumer):
    """A consumer delivered in the publisher's thread (see the module docstring)."""

    __slots__ = ("_emitting", "_pending", "_plain")  # read at each delivery: see Consumer

    mode: Mode = "sync"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._emitting = False
        self._pending = False  # something for the emitter to do before it leaves
        self._ending: tuple[str, Exception | None] | None = None
        self._ended = False
        super().__init__(*args, **kwargs)
        self._plain = self._inlet is None
        self._deliver_one = self._deliver_plain if self._plain else self._deliver
        if self._async_sink:  # pragma: no cover - the bus gives async sinks mode "async"
            raise ValueError(f"sink {self.name!r} is an async def function: use mode='async'")

    def push(self, event: Any) -> None:
        lock = self._lock
        lock.acquire()
        if self._emitting or self._pending or not self._accepting:
            self._hand_over(event)  # releases the lock
            return
        self._emitting = True
        self.received += 1
        lock.release()
        if self._plain:
            # _deliver_plain, inlined: the publish hot path pays one Python call less per
            # consumer; _sink_raised is the one home of what a failure does. The sink is read
            # into a local first: CPython 3.11 cannot specialise a method call through an
            # instance attribute, but it can the read.
            sink = self._sink_on_next
            try:
                sink(event)
            except BaseException as err:
                self._sink_raised(event, err)  # leaves, then raises on a KeyboardInterrupt
            else:
                self.delivered += 1
        else:
            try:
                self._deliver(event)
            except BaseException:  # KeyboardInterrupt in a sink: the next publisher drains
                self._leave()
                raise
        self._emitting = False
        if self._pending:
            self._reclaim()

    def _leave(self) -> None:
        with self._lock:
            self._emitting = False

    def _handed(self) -> None:
        """Work was handed to the emitter (``_pending`` set under the lock, now released). The
        emitter may have left between our look at ``_emitting`` and that: then nobody would
        deliver it, so take it over ourselves."""
        if not self._emitting:
            self._reclaim()

    def _reclaim(self) -> None:
        """Become the emitter again if work was handed over and nobody is delivering it."""
        lock = self._lock
        with lock:
            if self._emitting or not self._pending:
                return
            self._emitting = True
        self._drain()

    def _deliver_plain(self, event: Any) -> None:
        """``_deliver`` for a sink without operators (``push`` inlines it)."""
        try:
            self._sink_on_next(event)
        except BaseException as err:
            self._sink_raised(event, err)
        else:
            self.delivered += 1

    def _sink_raised(self, event: Any, err: BaseException) -> None:
        """A sink without operators raised for ``event``: counted as failed and dead-lettered;
        a ``KeyboardInterrupt`` (or other non-``Exception``) is counted, then raised on."""
        self.failed += 1
        self.dead_lettered += 1
        self._fail(event, self.name, err)
        if not isinstance(err, Exception):
            self._leave()  # the next publisher drains the rest
            raise err

    def _hand_over(self, event: Any) -> None:
        """``push`` when the consumer is busy (or closed): queue the event for the thread
        inside, or refuse it. Called with the lock held; releases it."""
        lock = self._lock
        self.received += 1
        if not self._accepting:
            self.dropped += 1
            lock.release()
            self._refused(event)
            return
        hops = delivery_depth.value + 1
        if hops > MAX_PUBLISH_DEPTH:
            self.dropped += 1
            lock.release()
            err = PublishLoopError(
                f"consumer {self.name!r} was handed an event that went round busy consumers "
                f"{MAX_PUBLISH_DEPTH} times: a consumer (or a ring of them) publishes to itself "
                "without end; dropped"
            )
            self._report(DeadLetter.capture(event, self.name, err))
            return
        outcome, dropped = self._queue.put((event, hops), False)
        self.dropped += dropped
        if outcome == OVERFLOWED:
            self._accepting = False
        elif outcome == ACCEPTED:
            self._pending = True
        lock.release()
        if outcome == OVERFLOWED:
            self._overflowed(event)
        else:
            self._handed()

    def _post_call(self, fn: Callable[[], Any]) -> None:
        call = Call(fn)
        lock = self._lock
        lock.acquire()
        self._queue.calls.append((call, delivery_depth.value))
        if self._emitting:
            self._pending = True
            lock.release()
            self._handed()
            return
        self._emitting = True
        lock.release()
        self._drain()

    def _drain(self) -> None:
        """Deliver what was handed over while this thread was inside, then leave."""
        lock = self._lock
        take = self._queue.take
        depth = delivery_depth
        try:
            while True:
                lock.acquire()
                item, control = take()
                if item is None:
                    ending = self._ending
                    if ending is not None and not self._ended:
                        self._ended = True
                        lock.release()
                        self._run_ending(ending)
                        continue
                    self._emitting = self._pending = False
                    retire, self._retire_late = self._retire_late, False
                    lock.release()
                    if retire:
                        self.host.retire(self)
                    return
                lock.release()
                value, hops = item
                saved = depth.value
                depth.value = hops
                try:
                    if control:
                        self._run_call(value)
                    else:
                        self._deliver_one(value)
                finally:
                    depth.value = saved
        except BaseException:  # as in push
            with lock:
                self._emitting = False
            raise

    def _run_ending(self, ending: tuple[str, Exception | None]) -> None:
        kind, err = ending
        if kind == "complete":
            self._complete_chain()
        else:  # "error": a sync consumer ends only these two ways
            assert err is not None
            self._finished = True
            self._error_sink(err)
        self._done.set()

    def _end(self, ending: tuple[str, Exception | None]) -> None:
        """Run ``ending`` after everything queued: now, or by the emitter when it is done."""
        lock = self._lock
        with lock:
            if self._ending is None:
                self._ending = ending
            self._pending = True
            if self._emitting:
                handed = True
            else:
                handed = False
                self._emitting = True
        if not handed:
            self._drain()
        else:
            self._handed()

    def _overflowed(self, event: Any) -> None:
        err = BufferOverflowError(
            f"consumer {self.name!r}: {self.queue_size} events waiting for a busy sync consumer "
            f"and overflow=Overflow.ERROR; the consumer ends"
        )
        self._report(DeadLetter.capture(event, self.name, err))
        self.host.detach(self)
        self._end(("error", err))

    def _events(self, items: list[Any]) -> list[Any]:
        return [value for value, _ in items]

    def begin_close(self) -> None:
        with self._lock:
            self._accepting = False
        self._end(("complete", None))

    def runs_here(self) -> bool:
        """True when the calling thread is this consumer's emitter (from inside its sink).

        Found on the calling thread's stack rather than recorded at each delivery: keeping the
        emitter's thread id cost every delivery ~430 instructions for a question asked only by
        ``close`` and ``dispose``. The thread is the emitter if ``_drain`` runs for this
        consumer, or ``push`` does past its hand-over (a ``push`` whose callee is
        ``_hand_over`` only handed the event over)."""
        if not self._emitting:
            return False
        frame: FrameType | None = sys._getframe(1)
        callee: FrameType | None = None
        while frame is not None:
            code = frame.f_code
            if (
                code in _EMITTER_CODES
                and frame.f_locals.get("self") is self
                and (code is not _PUSH or callee is None or callee.f_code is not _HAND_OVER)
            ):
                return True
            callee = frame
            frame = frame.f_back
        return False

    def _retire_when_left(self) -> bool:
        if not self.runs_here():
            return False
        with self._lock:
            self._retire_late = self._pending = True
        return True

    def _stop(self) -> None:
        self._abandon(BusClosedError(f"consumer {self.name!r} was disposed"))
        self._finished = True
        with self._lock:
            self._ended = True
        self._done.set()


_PUSH = SyncConsumer.push.__code__
_HAND_OVER = SyncConsumer._hand_over.__code__
_EMITTER_CODES = frozenset({_PUSH, SyncConsumer._drain.__code__})
