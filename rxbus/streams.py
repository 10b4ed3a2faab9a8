"""``bus.stream(pattern)``: the bus's events as an async iterator.

An :class:`EventStream` is an ordinary ``async`` consumer of the bus: its ``queue_size`` and
``overflow`` are the bus's bounded queue and :class:`rxbus.Overflow` policies, and it shows in
``metrics()`` with honest counts. Its sink hands each event to the reader and waits until the
reader has taken it, so ``delivered`` means *read by the ``async for``*; everything else is
``queued``, ``dropped`` (by the overflow policy, or still queued when the stream was closed)
or dead-lettered, never lost without a count.

The reader may run on another loop than the bus's (a bus made outside asyncio runs its
``async`` consumers on a loop of its own): the hand-off then crosses loops thread-safely.

    >>> import asyncio
    >>> from rxbus import EventBus
    >>> async def main():
    ...     async with EventBus() as bus:
    ...         async with bus.stream("tick") as ticks:
    ...             for n in range(3):
    ...                 _ = bus.publish("tick", {"n": n})
    ...             return [(await anext(ticks)).data["n"] for _ in range(3)]
    >>> asyncio.run(main())
    [0, 1, 2]
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from rxbus.errors import BusClosedError
from rxbus.event import Event
from rxbus.policies import Overflow

if TYPE_CHECKING:
    from rxbus.consumer import Consumer

__all__ = ["EventStream"]

_END = object()
_DISPOSE_WAIT = 5.0


class _Channel:
    """The sink of a stream's consumer: hands events to the reader, one at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop  # the reader's loop; items, waiter and end change only on it
        self.items: deque[tuple[Event, asyncio.Future[bool]]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.end: Any = None  # _END, or the exception the consumer ended with
        self.closed = False
        self.consumer: Consumer | None = None
        self.busy = False  # the sink is handing an event over (changes on the bus's loop)
        self.dispose_after = False
        self.disposed: asyncio.Future[None] = loop.create_future()

    async def on_next(self, event: Event) -> None:
        """The consumer's sink, on the bus's loop: returns once the reader has the event."""
        if self.closed:
            raise BusClosedError(f"stream {self.name()!r} was closed before this event was read")
        self.busy = True
        try:
            if _running_loop() is self.loop:
                taken = await self.offer(event)
            else:
                handed = asyncio.run_coroutine_threadsafe(self.offer(event), self.loop)
                taken = await asyncio.wrap_future(handed)
        finally:
            self.busy = False
            if self.dispose_after:  # after this event is counted, on the next loop turn
                asyncio.get_running_loop().call_soon(self.dispose)
        if not taken:
            raise BusClosedError(f"stream {self.name()!r} was closed before this event was read")

    async def offer(self, event: Event) -> bool:
        """Queue ``event`` for the reader; True once read, False if the stream closed first."""
        if self.closed:
            return False
        taken = self.loop.create_future()
        self.items.append((event, taken))
        self.wake()
        return await taken

    def name(self) -> str:
        return self.consumer.name if self.consumer is not None else "stream"

    def dispose_when_idle(self) -> None:
        """On the bus's loop: dispose now, or right after the event the sink is handing over
        (disposing mid-hand-over would count an event the reader has as dropped)."""
        if self.busy:
            self.dispose_after = True
        else:
            self.dispose()

    def dispose(self) -> None:
        try:
            if self.consumer is not None:
                self.consumer.dispose()
        finally:
            self.call(self.mark_disposed, None)

    def mark_disposed(self, _: Any) -> None:
        if not self.disposed.done():
            self.disposed.set_result(None)

    def on_completed(self) -> None:
        self.call(self.finish, _END)

    def on_error(self, error: Exception) -> None:
        self.call(self.finish, error)

    def call(self, fn: Any, arg: Any) -> None:
        if _running_loop() is self.loop:
            fn(arg)
        else:
            try:
                self.loop.call_soon_threadsafe(fn, arg)
            except RuntimeError:  # the reader's loop is closed: nobody is left to tell
                pass

    def finish(self, end: Any) -> None:
        if self.end is None:
            self.end = end
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self, bus_loop: asyncio.AbstractEventLoop) -> None:
        """Stop (on the reader's loop): unread events fail in the sink, then the consumer is
        disposed on the bus's loop once the sink is idle."""
        self.closed = True
        while self.items:
            _, taken = self.items.popleft()
            if not taken.done():
                taken.set_result(False)
        self.finish(_END)
        if _running_loop() is bus_loop:
            bus_loop.call_soon(self.dispose_when_idle)
        else:
            try:
                bus_loop.call_soon_threadsafe(self.dispose_when_idle)
            except RuntimeError:  # the bus's loop is closed: the bus closed, nothing is queued
                self.dispose()


class EventStream:
    """An async iterator over a bus consumer's events; use it with ``async with``.

    Created by :meth:`rxbus.EventBus.stream`. Iteration ends when the stream is closed (leaving
    the ``async with``, :meth:`aclose`) or the bus closes (after the events already queued);
    with ``overflow=Overflow.ERROR`` a full queue ends it with
    :class:`~rxbus.errors.BufferOverflowError`. Closing disposes the consumer: events still
    queued are counted as dropped and dead-lettered, as for any disposed consumer.
    """

    def __init__(
        self,
        bus: Any,
        pattern: str,
        *,
        queue_size: int,
        overflow: Overflow | str,
        name: str,
    ) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "bus.stream() needs a running asyncio loop (create it inside async code); "
                "from a thread use bus.subscribe(..., mode='thread') or bus.wait_for()"
            ) from None
        self._channel = _Channel(loop)
        self._bus_loop: asyncio.AbstractEventLoop = bus.loop
        self.consumer: Consumer = bus.subscribe(
            self._channel,
            topic=pattern,
            mode="async",
            queue_size=queue_size,
            overflow=overflow,
            name=name,
        )
        self._channel.consumer = self.consumer
        # a stream dropped without closing must not hold a consumer (and a BLOCK queue) for ever
        self._finalizer = weakref.finalize(self, self.consumer.dispose)

    @property
    def name(self) -> str:
        """The consumer's name (its key in ``metrics()["consumers"]``)."""
        return self.consumer.name

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        channel = self._channel
        while True:
            if channel.items:
                event, taken = channel.items.popleft()
                if not taken.done():
                    taken.set_result(True)
                return event
            end = channel.end
            if end is not None:
                self.close()
                if end is not _END:
                    raise end
                raise StopAsyncIteration
            channel.waiter = channel.loop.create_future()
            try:
                await channel.waiter
            finally:
                channel.waiter = None

    def close(self) -> None:
        """End the iteration and dispose the consumer. Idempotent.

        Events the reader has not taken are counted by the consumer (``failed`` for the one
        being handed over, ``dropped`` for those still queued) and dead-lettered.
        """
        if self._channel.closed:
            return
        self._finalizer.detach()
        self._channel.close(self._bus_loop)

    async def aclose(self) -> None:
        """:meth:`close`, then wait (up to 5 s) until the consumer is disposed, so its counts
        are final and it has left ``metrics()``."""
        self.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._channel.disposed), _DISPOSE_WAIT)
        except TimeoutError:  # the bus's loop is stuck in a sink: it disposes when it can
            pass

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._channel.closed else "open"
        return f"<EventStream {self.name!r} {state}>"


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
