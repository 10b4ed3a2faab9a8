"""Mode ``async``: a bounded queue drained by a task on the bus's asyncio loop; ``async def``
sinks are awaited one item at a time."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from reactivex import abc
from reactivex.scheduler.eventloop import AsyncIOThreadSafeScheduler

from rxbus._log import logger
from rxbus.consumer._consumer import Mode
from rxbus.consumer._thread import QueuedConsumer
from rxbus.deadletter import DeadLetter
from rxbus.errors import BusClosedError

__all__ = ["AsyncConsumer"]


class AsyncConsumer(QueuedConsumer):
    """A consumer whose chain runs on the bus's asyncio loop."""

    mode: Mode = "async"
    #: Seconds :meth:`subscribe` waits for the bus's loop to start the drain task before it
    #: raises (the loop is not running). A class attribute so a test can shorten it.
    loop_start_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._completion: asyncio.Future[Any] | None = None
        self._awaiting: list[Any] | None = None  # items the chain emitted for an async sink
        self._inflight: Any = None  # the event an async sink is awaiting
        self._inflight_abandoned = False
        super().__init__(*args, **kwargs)
        self._start_task()

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The drain task on the bus loop."""
        return self._task

    def _make_scheduler(self, scheduler: abc.SchedulerBase | None) -> abc.SchedulerBase:
        self._loop = self.host.loop
        if scheduler is None and self.host.timers is None:
            # the loop serialises timer actions with the events already
            return AsyncIOThreadSafeScheduler(self._loop)
        return super()._make_scheduler(scheduler)

    # -- the chain's output ---------------------------------------------------------------------

    def _emit(self, value: Any) -> None:
        if self._awaiting is not None:
            self._awaiting.append(value)
        elif self._async_sink:  # emitted from a timer: the drain task awaits it in turn
            self._post_control(("emit", value))
        else:
            super()._emit(value)

    def _await_later(self, awaitable: Any) -> None:
        loop = self._loop
        assert loop is not None
        if self._in_loop():
            self._completion = asyncio.ensure_future(awaitable, loop=loop)
        else:
            asyncio.run_coroutine_threadsafe(awaitable, loop)

    # -- waking the task ------------------------------------------------------------------------

    def _in_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def runs_here(self) -> bool:
        return self._in_loop()

    def _wake_outside(self) -> None:
        loop = self._loop
        assert loop is not None
        if self._in_loop():
            self._set_wake()
            return
        try:
            loop.call_soon_threadsafe(self._set_wake)
        except RuntimeError:  # the loop is closed (e.g. the asyncio.run that made the bus ended)
            self._loop_gone(f"its asyncio loop {loop!r} is closed")

    def _set_wake(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        else:  # the drain task was cancelled (see _run): nothing would ever take the event
            self._loop_gone("its drain task was cancelled")

    def _loop_gone(self, why: str) -> None:
        """The consumer can never run again (its loop is closed, or its drain task was
        cancelled). Stop it and dead-letter what it held, instead of letting publish() raise or
        the events wait for ever."""
        with self._lock:
            if not self._accepting and self._done.is_set():
                return
            self._accepting = False
        self._queue.close()
        self.host.detach(self)
        self._abandon(BusClosedError(f"consumer {self.name!r}: {why}"))
        self._finished = True
        self._done.set()

    def _start_task(self) -> None:
        loop = self._loop
        assert loop is not None
        if self._in_loop() or self.host.manual:  # a test's loop: runs when the test drives it
            self._task = loop.create_task(self._run(), name=f"rxbus-{self.name}")
            return
        ready = threading.Event()

        def start() -> None:
            self._task = loop.create_task(self._run(), name=f"rxbus-{self.name}")
            ready.set()

        loop.call_soon_threadsafe(start)
        if not ready.wait(timeout=self.loop_start_timeout):
            raise RuntimeError(f"the asyncio loop of bus {self.host.name!r} is not running")

    # -- the drain task -------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                with self._lock:
                    item, control = self._next()
                    if item is None:
                        self._waiting = True
                        self._wake = loop.create_future()
                if item is None:
                    await self._wake  # type: ignore[misc]
                    continue
                if control:
                    if item.__class__ is tuple and item[0] == "emit":
                        self._awaiting = [item[1]]
                        await self._drain_awaiting()
                        continue
                    self._awaiting = [] if self._async_sink else None
                    finished = self._handle_control(item)
                    await self._drain_awaiting()
                    if finished:
                        if self._completion is not None:
                            # an async on_completed/on_error finishes before the consumer does
                            try:
                                await self._completion
                            except Exception as err:
                                self._report(DeadLetter.capture(None, self.name, err))
                        return
                    continue
                try:
                    if self._async_sink:
                        await self._deliver_async(item)
                    else:
                        self._deliver(item)
                except asyncio.CancelledError:
                    raise  # see below
                except BaseException as err:  # counted; the loop's other consumers go on
                    logger.opt(exception=err).error(
                        "rxbus: a consumer raised out of its drain task; it goes on"
                    )
        except asyncio.CancelledError:
            # close() gave up on it, or its loop is shutting down (the end of the asyncio.run
            # that made the bus): what it holds can never be delivered, and the next event
            # must wake it to find it gone (_set_wake), not wait in its queue for ever
            with self._lock:
                self._waiting = True
            self._abandon(BusClosedError(f"consumer {self.name!r}: its drain task was cancelled"))
            raise
        finally:
            self._awaiting = None
            self._done.set()

    async def _deliver_async(self, event: Any) -> None:
        """``_deliver`` for an async sink: the chain runs, then each emitted item is awaited."""
        self._awaiting = []
        self._inflight = event
        try:
            ok = self._process(event)
            if ok is not None:
                ok = await self._drain_awaiting() and ok
        except asyncio.CancelledError:
            raise  # the task is stopped (close() gave up on it and counted it as dropped)
        except BaseException as err:  # a sink's KeyboardInterrupt: as in _deliver
            self._awaiting = None
            self._current = None
            if self._settle(False):
                self._item_failed(event, err)
            raise
        self._awaiting = None
        self._settle(ok)

    def _settle(self, ok: bool | None) -> bool:
        """Count the event an async sink was awaiting (None: dropped, counted already), unless
        close() gave up on it and counted it as dropped (then False)."""
        self._inflight = None
        counted = not self._inflight_abandoned
        self._inflight_abandoned = False
        if counted and ok is not None:
            if ok:
                self.delivered += 1
            else:
                self.failed += 1
        if self._retire_late:  # disposed by its own chain: counted now, then folded
            self._retire_late = False
            self.host.retire(self)
        return counted

    async def _drain_awaiting(self) -> bool:
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

    def _abandon_inflight(self) -> list[Any]:
        inflight = self._inflight
        if inflight is not None and not self._inflight_abandoned:
            # an async sink still awaiting it: its loop may never resume it
            self._inflight_abandoned = True
            return [inflight]
        return []
