"""Record what an Observable emits, and when, for tests and marble diagrams.

:func:`record` subscribes to one stream (or several, one *lane* each) and keeps every
notification with its time. Under a virtual-time scheduler (``reactivex.testing.TestScheduler``)
times are the scheduler's clock, so a recording of a time-based operator is exact and
repeatable; otherwise they are seconds since recording started::

    >>> import reactivex
    >>> from reactivex import operators as rx
    >>> from reactivex.testing import TestScheduler
    >>> from rxbus.testing import record
    >>> scheduler = TestScheduler()
    >>> ticks = reactivex.interval(10.0).pipe(rx.take(3))
    >>> rec = record({"ticks": ticks}, scheduler=scheduler)
    >>> scheduler.start()  # doctest: +ELLIPSIS
    <...>
    >>> rec["ticks"].values, rec["ticks"].times, rec["ticks"].completed
    ([0, 1, 2], [10.0, 20.0, 30.0], True)

``rxbus.viz.marbles(rec)`` draws the recording.

:class:`TestBus` is an :class:`~rxbus.EventBus` on virtual time: its ``thread`` and ``async``
consumers, timers and time-based operators run only in :meth:`TestBus.drain` and
:meth:`TestBus.advance`, in the test's own thread, so a test never sleeps::

    >>> import rxbus.operators as ops
    >>> bus = TestBus()
    >>> batches = []
    >>> _ = bus.subscribe(batches.append, ops.batch(seconds=5, max_size=10), mode="thread")
    >>> _ = bus.publish("job.done", {"n": 1})
    >>> bus.drain(); batches
    []
    >>> bus.advance(5); [[e.data["n"] for e in b] for b in batches], bus.now
    ([[1]], 5.0)
    >>> _ = bus.close()

:class:`Recorder` keeps every event a bus publishes, for ``assert_published`` (a ``TestBus``
has one); the pytest plugin (``rxbus.pytest_plugin``, registered by entry point) gives tests a
``bus`` fixture that fails the test on an unexpected dead letter.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reactivex import Observable, abc
from reactivex.testing import TestScheduler

from rxbus.bus import EventBus
from rxbus.consumer import ManualExecutor
from rxbus.deadletter import DeadLetter
from rxbus.event import Event
from rxbus.recorder import Recorder

__all__ = ["Lane", "Notification", "Recorder", "Recording", "TestBus", "record"]

Kind = Literal["next", "error", "completed"]


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification: ``kind`` is ``"next"``, ``"error"`` or ``"completed"``.

    ``value`` is the item for ``"next"``, the exception for ``"error"``, ``None`` otherwise.
    """

    time: float
    kind: Kind
    value: Any = None


class Lane:
    """The notifications of one stream, in arrival order (thread-safe to append)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._items: list[Notification] = []

    def _add(self, note: Notification) -> None:
        with self._lock:
            self._items.append(note)

    @property
    def notifications(self) -> list[Notification]:
        """A copy of every notification so far."""
        with self._lock:
            return list(self._items)

    @property
    def values(self) -> list[Any]:
        """The ``on_next`` items, in order."""
        return [n.value for n in self.notifications if n.kind == "next"]

    @property
    def times(self) -> list[float]:
        """The times of the ``on_next`` items, in order."""
        return [n.time for n in self.notifications if n.kind == "next"]

    @property
    def completed(self) -> bool:
        """Whether the stream completed."""
        return any(n.kind == "completed" for n in self.notifications)

    @property
    def error(self) -> BaseException | None:
        """The exception the stream ended with, if it failed."""
        for n in self.notifications:
            if n.kind == "error":
                return n.value
        return None

    @property
    def ended(self) -> bool:
        """Whether the stream completed or failed."""
        return any(n.kind != "next" for n in self.notifications)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __repr__(self) -> str:
        end = "|" if self.completed else ("X" if self.error is not None else "...")
        return f"Lane({self.name!r}, {len(self.values)} items, {end})"


class Recording:
    """Lanes of recorded notifications sharing one clock.

    Create it with :func:`record`; add more streams with :meth:`add`. ``dispose()`` stops
    recording (it is also a context manager). ``rec["name"]`` is a lane; with one lane,
    ``rec.values`` / ``rec.completed`` / ``rec.error`` are that lane's.
    """

    def __init__(self, scheduler: abc.SchedulerBase | None = None) -> None:
        self.scheduler = scheduler
        self._lanes: dict[str, Lane] = {}
        self._subscriptions: list[abc.DisposableBase] = []
        self._now = _clock(scheduler)

    def now(self) -> float:
        """The current time on this recording's clock."""
        return self._now()

    def add(self, name: str, observable: Observable[Any]) -> Lane:
        """Subscribe to ``observable`` and record it in a new lane called ``name``.

        Raises:
            ValueError: if a lane called ``name`` already exists.
        """
        if not isinstance(observable, Observable):
            raise TypeError(
                f"record() needs a reactivex Observable for lane {name!r}, "
                f"got {type(observable).__name__}"
            )
        if name in self._lanes:
            raise ValueError(f"lane {name!r} already exists; lanes are {list(self._lanes)}")
        lane = Lane(name)
        self._lanes[name] = lane
        now = self._now

        def on_next(value: Any) -> None:
            lane._add(Notification(now(), "next", value))

        def on_error(error: Exception) -> None:
            lane._add(Notification(now(), "error", error))

        def on_completed() -> None:
            lane._add(Notification(now(), "completed"))

        self._subscriptions.append(
            observable.subscribe(on_next, on_error, on_completed, scheduler=self.scheduler)
        )
        return lane

    @property
    def lanes(self) -> list[Lane]:
        """Every lane, in the order added."""
        return list(self._lanes.values())

    def __getitem__(self, name: str) -> Lane:
        try:
            return self._lanes[name]
        except KeyError:
            raise KeyError(f"no lane {name!r}; lanes are {list(self._lanes)}") from None

    def __iter__(self) -> Iterator[Lane]:
        return iter(self.lanes)

    def __len__(self) -> int:
        return len(self._lanes)

    def _only(self) -> Lane:
        if len(self._lanes) != 1:
            raise ValueError(
                f"this recording has {len(self._lanes)} lanes {list(self._lanes)}; "
                "pick one with rec[name]"
            )
        return next(iter(self._lanes.values()))

    @property
    def values(self) -> list[Any]:
        """The single lane's ``on_next`` items."""
        return self._only().values

    @property
    def completed(self) -> bool:
        """Whether the single lane completed."""
        return self._only().completed

    @property
    def error(self) -> BaseException | None:
        """The single lane's error, if any."""
        return self._only().error

    def wait(self, count: int, timeout: float = 5.0, lane: str | None = None) -> bool:
        """Poll until ``lane`` (the only lane by default) has ``count`` notifications.

        For real (threaded or asyncio) streams; returns False if the deadline passed first.
        """
        target = self[lane] if lane is not None else self._only()
        deadline = time.monotonic() + timeout
        while len(target) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True

    def dispose(self) -> None:
        """Stop recording every lane (what was recorded stays)."""
        subs, self._subscriptions = self._subscriptions, []
        for sub in subs:
            sub.dispose()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()

    def _repr_svg_(self) -> str:
        from rxbus.viz import marbles

        return marbles(self).svg

    def __repr__(self) -> str:
        return f"Recording({self.lanes!r})"


def record(
    observable: Observable[Any] | Mapping[str, Observable[Any]],
    scheduler: abc.SchedulerBase | None = None,
    *,
    name: str = "stream",
) -> Recording:
    """Subscribe now and record every notification with its time.

    Args:
        observable: one Observable (recorded in a lane called ``name``), or a mapping of lane
            name to Observable (one lane each, subscribed in order).
        scheduler: passed to ``subscribe`` (so time-based operators use it) and used as the
            clock. A virtual-time scheduler's clock is recorded as is; any other clock is
            recorded as seconds since this call.
        name: the lane name when ``observable`` is a single stream.

    Returns:
        A :class:`Recording` that keeps filling as notifications arrive.

    Example:
        >>> import reactivex
        >>> rec = record(reactivex.of(1, 2, 3))
        >>> rec.values, rec.completed
        ([1, 2, 3], True)
    """
    rec = Recording(scheduler)
    streams = observable if isinstance(observable, Mapping) else {name: observable}
    if not streams:
        raise ValueError("record() needs at least one stream, got an empty mapping")
    for lane_name, stream in streams.items():
        rec.add(str(lane_name), stream)
    return rec


def _clock(scheduler: abc.SchedulerBase | None) -> Callable[[], float]:
    clock = getattr(scheduler, "clock", None)
    if isinstance(clock, int | float):
        # Virtual time: the clock is already the number a test reasons about.
        return lambda: float(scheduler.clock)  # type: ignore[union-attr]
    if scheduler is not None:
        start_dt = scheduler.now
        return lambda: (scheduler.now - start_dt).total_seconds()
    start = time.perf_counter()
    return lambda: time.perf_counter() - start


# -- virtual time for a whole bus ----------------------------------------------------------------

MAX_DRAIN_STEPS = 10_000
"""Rounds :meth:`TestBus.drain` runs before it decides the bus cannot settle (a consumer or a
timer that schedules itself again at once, for ever)."""


class VirtualClock(TestScheduler):
    """The clock of a :class:`TestBus`: a ``reactivex.testing.TestScheduler`` (seconds as a
    float, starting at 0) that the bus steps one due timer at a time, draining between them."""

    __test__ = False  # not a pytest test class

    def next_due(self) -> float | None:
        """The time of the earliest pending timer, if any."""
        with self._lock:
            queue = self._queue
            while queue:
                item = queue.peek()
                if not item.is_cancelled():
                    return self.to_seconds(item.duetime)
                queue.dequeue()
        return None

    def run_due(self) -> bool:
        """Run every timer due now (in due order); True if one ran."""
        ran = False
        while True:
            with self._lock:
                if not self._queue:
                    return ran
                item = self._queue.peek()
                if item.duetime > self.now:
                    return ran
                self._queue.dequeue()
            if not item.is_cancelled():
                item.invoke()
                ran = True

    def move_to(self, seconds: float) -> None:
        """Set the clock forward to ``seconds`` (never back); runs nothing."""
        with self._lock:
            if seconds > self.to_seconds(self._clock):
                self._clock = seconds


class _VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop that never runs on its own: :class:`TestBus` runs it until it has nothing
    ready, and its ``time()`` is the bus's virtual clock, so ``await asyncio.sleep(5)`` ends
    when the test advances 5 seconds."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._virtual = clock

    def time(self) -> float:
        return float(self._virtual.clock)

    def _has_work(self) -> bool:
        if self._ready:  # type: ignore[attr-defined]
            return True
        scheduled = self._scheduled  # type: ignore[attr-defined]
        return bool(scheduled) and scheduled[0].when() <= self.time()

    def next_timer(self) -> float | None:
        """When the earliest pending timer (``call_later``, ``asyncio.sleep``) is due."""
        pending = [h.when() for h in self._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
        return min(pending, default=None)

    def run_ready(self) -> bool:
        """Run the loop, one pass at a time, while anything is ready; True if anything ran."""
        if self.is_running() or self.is_closed():  # drained from inside one of its own tasks
            return False
        ran = False
        while self._has_work():
            self.call_soon(self.stop)  # one pass, without waiting for I/O
            self.run_forever()
            ran = True
        return ran

    def shut(self) -> None:
        """Cancel what is left and close the loop."""
        if self.is_running() or self.is_closed():
            return
        tasks = asyncio.all_tasks(self)
        for task in tasks:
            task.cancel()
        if tasks:
            self.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.close()


class TestBus(EventBus):
    """An :class:`~rxbus.EventBus` on virtual time, for tests that never sleep.

    Everything that would run later runs only in :meth:`drain` and :meth:`advance`, in the
    calling thread, in a deterministic order:

    - ``thread`` consumers get no OS thread: they are scheduled on a manual executor (the
      stand-in for the worker pool) and run in :meth:`drain`;
    - ``async`` consumers run on a private event loop that no thread runs; :meth:`drain` runs
      it until nothing is ready, and its ``loop.time()`` is the virtual clock, so
      ``await asyncio.sleep(5)`` in a sink ends on ``advance(5)``;
    - timers and time-based operators (``rxbus.operators.batch(seconds, ...)``,
      ``reactivex.operators.debounce``, ``retry`` delays) use the virtual clock
      (:attr:`scheduler`, a ``reactivex.testing.TestScheduler``) unless ``subscribe`` is given
      another scheduler.

    ``sync`` consumers run in the publisher's thread as on any bus. :attr:`published` and
    :meth:`assert_published` come from a :class:`~rxbus.recorder.Recorder` (a ``sync``
    consumer named ``recorder``) attached at construction.

    What stays real, and why:

    - event ``timestamp`` and ``id`` (they record when an event was made, not the test's clock);
    - ``subscribe(..., dedicated=True)`` (asks for a real thread: it gets one) and a sink's own
      blocking calls (a socket, ``time.sleep``, a lock another thread holds);
    - ``await bus.next(...)``, ``bus.stream(...)``, ``request``: they wait on a loop that runs
      by itself; use :meth:`drain` and :attr:`published` instead;
    - :meth:`drain` and :meth:`advance` run the private loop, so they must be called from
      synchronous code, not from inside a running event loop (an ``async def`` test);
    - ``close(timeout)`` drains first, then reports at once (without waiting ``timeout``)
      what only a later :meth:`advance` could have delivered.

    Args:
        name: the bus name (default ``"testbus"``); other keyword arguments as for
            :class:`~rxbus.EventBus`.
        record: attach the ``recorder`` consumer (it shows in ``metrics()`` like any
            consumer); ``False`` for a bus whose metrics must see only the test's consumers.

    Example:
        >>> bus = TestBus()
        >>> seen = []
        >>> _ = bus.subscribe(lambda e: seen.append(e.topic), mode="thread")
        >>> _ = bus.publish("a.b")
        >>> seen
        []
        >>> bus.drain()
        >>> seen
        ['a.b']
        >>> _ = bus.assert_published("a.*", count=1)
        >>> bus.close()
        []
    """

    __test__ = False  # not a pytest test class

    def __init__(self, *, name: str = "testbus", record: bool = True, **options: Any) -> None:
        super().__init__(name=name, **options)
        self.scheduler = VirtualClock()
        self._virtual_loop = _VirtualLoop(self.scheduler)
        self._manual = ManualExecutor(drive=self.drain)
        host = self._host
        host.executor = self._manual
        host.timers = self.scheduler
        host.manual = True
        self._loop = self._virtual_loop
        self.recorder: Recorder | None = Recorder(self) if record else None

    @property
    def now(self) -> float:
        """The virtual time in seconds (0.0 when the bus was made)."""
        return float(self.scheduler.clock)

    def drain(self) -> None:
        """Run every queued ``thread`` and ``async`` consumer, and every timer due now, until
        nothing is left to do (no virtual time passes).

        Raises:
            RuntimeError: if it does not settle within :data:`MAX_DRAIN_STEPS` rounds.
        """
        for _ in range(MAX_DRAIN_STEPS):
            ran = self._manual.run_pending()
            ran = self._virtual_loop.run_ready() or ran
            ran = self.scheduler.run_due() or ran
            if not ran:
                return
        raise RuntimeError(
            f"TestBus {self.name!r}: drain() did not settle after {MAX_DRAIN_STEPS} rounds; "
            "a consumer or a timer schedules itself again at once without end"
        )

    def advance(self, seconds: float) -> None:
        """Move the virtual clock ``seconds`` forward, firing each timer when it falls due and
        draining after each (a timer sees what the ones before it did).

        Raises:
            ValueError: for a negative ``seconds``.
        """
        if not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError(f"seconds must be a number >= 0, got {seconds!r}")
        target = self.now + seconds
        self.drain()
        while True:
            due = [
                t
                for t in (self.scheduler.next_due(), self._virtual_loop.next_timer())
                if t is not None
            ]
            if not due or min(due) > target:
                break
            self.scheduler.move_to(min(due))
            self.drain()
        self.scheduler.move_to(target)
        self.drain()

    def _recording(self) -> Recorder:
        if self.recorder is None:
            raise RuntimeError(
                f"TestBus {self.name!r} was made with record=False: it keeps no published events"
            )
        return self.recorder

    @property
    def published(self) -> list[Event]:
        """Every event published on this bus so far, in publish order."""
        return self._recording().published

    def assert_published(
        self,
        pattern: str = "**",
        *,
        data: Mapping[str, Any] | None = None,
        count: int | None = None,
    ) -> list[Event]:
        """:meth:`rxbus.recorder.Recorder.assert_published` on everything this bus published."""
        return self._recording().assert_published(pattern, data=data, count=count)

    def close(self, timeout: float = 5.0) -> list[DeadLetter]:
        """:meth:`rxbus.EventBus.close`, drained in virtual time; then the private loop closes."""
        undelivered = super().close(timeout)
        self._virtual_loop.shut()
        return undelivered
