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

:class:`Recorder` keeps every event a bus publishes, for ``assert_published``; the pytest plugin
(``rxbus.pytest_plugin``, registered by entry point) gives tests a ``bus`` fixture that fails
the test on an unexpected dead letter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reactivex import Observable, abc

from rxbus.recorder import Recorder

__all__ = ["Lane", "Notification", "Recorder", "Recording", "record"]

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
