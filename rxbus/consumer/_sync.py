"""Mode ``sync``: the chain runs in a publisher's thread, serialised without holding a lock.

This is the emitter loop of RxJava's ``SerializedObserver``: the first thread to reach an idle
consumer becomes its emitter and delivers; a thread that finds it busy hands the event over
(queued) and returns at once; the emitter delivers what was handed to it before it leaves. No
lock is held while user code runs, so two sync consumers that publish to each other from two
threads cannot deadlock, and ``on_next`` is still never called concurrently. Each producer's
events keep their order: a producer's later event is queued behind its earlier one, or
delivered by the producer itself after it.

The emitter is the thread holding the consumer's emit token: one item in a deque, taken with
``pop`` and given back with ``append`` (a deque's pops and appends are thread-safe). Taking it
needs no lock, so a delivery to an idle consumer takes none; the lock guards the hand-over
queue and ``_pending``, the flag an emitter looks at after it gives the token back.

What ``publish`` guarantees: when it returns, every sync consumer it reached has either handled
the event or been handed it by this thread, in which case the thread inside that consumer
handles it before its own ``publish`` returns.
"""

from __future__ import annotations

import sys
from collections import deque
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

    __slots__ = ("_direct", "_pending", "_plain", "_token")  # read at each delivery: see Consumer

    mode: Mode = "sync"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The emit token (module docstring): empty while a thread is delivering. A pop and an
        # append cost ~310 instructions, a lock's acquire and release ~830.
        self._token: deque[bool] = deque([True])
        self._direct = 0  # events the emitter took on itself: counted by it, without the lock
        self._pending = False  # something for the emitter to do before it leaves
        self._ending: tuple[str, Exception | None] | None = None
        self._ended = False
        super().__init__(*args, **kwargs)
        self._plain = self._inlet is None
        self._deliver_one = self._deliver_plain if self._plain else self._deliver
        if self._async_sink:  # pragma: no cover - the bus gives async sinks mode "async"
            raise ValueError(f"sink {self.name!r} is an async def function: use mode='async'")

    @property
    def received(self) -> int:
        """Events that reached this consumer so far: handed over (counted under the lock) and
        taken by the emitter itself (counted by it)."""
        return self._received + self._direct

    def push(self, event: Any) -> None:
        token = self._token
        # A look first: a pop that finds no token raises IndexError (~2,100 instructions), the
        # look costs ~70; the pop can still fail when another thread takes the token between.
        if not token:  # a thread is delivering (this one, further up, or another)
            self._hand_over(event)
            return
        try:
            token.pop()
        except IndexError:  # another thread took it since the look
            self._hand_over(event)
            return
        # Looked at with the token held: an ending (close) runs holding it too, so no event is
        # delivered after the ending ran; and work handed over first is delivered first.
        if self._pending or not self._accepting:
            token.append(True)
            self._hand_over(event)
            return
        self._direct += 1
        try:
            if self._plain:
                # _deliver_plain, inlined: the publish hot path pays one Python call less per
                # consumer; _sink_raised is the one home of what a failure does. The sink is
                # read into a local first: CPython 3.11 cannot specialise a method call through
                # an instance attribute, but it can the read.
                sink = self._sink_on_next
                try:
                    sink(event)
                except BaseException as err:
                    self._sink_raised(event, err)  # raises on a KeyboardInterrupt
                else:
                    self.delivered += 1
            else:
                self._deliver(event)
        except BaseException:  # KeyboardInterrupt in a sink: the next publisher drains
            token.append(True)
            raise
        token.append(True)
        if self._pending:
            self._handed()

    def _handed(self) -> None:
        """Work was handed over (``_pending`` set under the lock): deliver it unless a thread is
        delivering. That thread looks at ``_pending`` after it gives the token back, then calls
        this too: whichever of the two comes second finds the token, so the work is never left
        with nobody to deliver it."""
        token = self._token
        if not token:  # a thread is delivering: it looks at _pending when it leaves
            return
        with self._lock:
            if not self._pending:  # delivered meanwhile
                return
            try:
                token.pop()
            except IndexError:  # a publisher took it since the look (push takes no lock)
                return
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
        a ``KeyboardInterrupt`` (or other non-``Exception``) is counted, then raised on (the
        emitter gives the token back, and the next publisher drains the rest)."""
        self.failed += 1
        self.dead_lettered += 1
        self._fail(event, self.name, err)
        if not isinstance(err, Exception):
            raise err

    def _hand_over(self, event: Any) -> None:
        """``push`` when the consumer is busy (or closed): queue the event for the emitter, or
        refuse it; then see to what was handed over (``_handed``), also when the event was
        refused: ``push`` may have held the token a moment, while a hand-over or a close left
        its work to the token's holder."""
        lock = self._lock
        lock.acquire()
        self._received += 1
        hops = delivery_depth.value + 1
        if not self._accepting:
            self.dropped += 1
            lock.release()
            self._refused(event)
        elif hops > MAX_PUBLISH_DEPTH:
            self.dropped += 1
            lock.release()
            err = PublishLoopError(
                f"consumer {self.name!r} was handed an event that went round busy consumers "
                f"{MAX_PUBLISH_DEPTH} times: a consumer (or a ring of them) publishes to itself "
                "without end; dropped"
            )
            self._report(DeadLetter.capture(event, self.name, err))
        else:
            outcome, dropped = self._queue.put((event, hops), False)
            self.dropped += dropped
            if outcome == OVERFLOWED:
                self._accepting = False
                lock.release()
                self._overflowed(event)  # ends the consumer: _end sees to the rest
                return
            if outcome == ACCEPTED:
                self._pending = True
            lock.release()
        self._handed()

    def _post_call(self, fn: Callable[[], Any]) -> None:
        with self._lock:
            self._queue.calls.append((Call(fn), delivery_depth.value))
            self._pending = True
        self._handed()

    def _drain(self) -> None:
        """Deliver what was handed over, then give the token back (taken by ``_handed``). It
        goes back under the lock, with ``_pending`` cleared: a hand-over is either taken here
        or finds the token."""
        lock = self._lock
        token = self._token
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
                    self._pending = False
                    retire, self._retire_late = self._retire_late, False
                    token.append(True)
                    lock.release()
                    break
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
            token.append(True)
            raise
        if retire:
            self.host.retire(self)

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
        with self._lock:
            if self._ending is None:
                self._ending = ending
            self._pending = True
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
        if self._token:
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
