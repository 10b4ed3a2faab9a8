"""``measure``: count items, their rate and latency percentiles, without changing the stream."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from reactivex import Observable, abc

from rxbus import _context
from rxbus.metrics import MetricsRegistry

from ._common import seconds_of

__all__ = ["measure"]

_T = TypeVar("_T")


def measure(
    name: str,
    *,
    registry: MetricsRegistry | None = None,
    latency: Literal["downstream", "age"] = "downstream",
    scheduler: abc.SchedulerBase | None = None,
    clock: Callable[[], int] | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Pass every item through, recording count, rate and latency into a measurement ``name``.

    The measurement (a :class:`rxbus.metrics.Measurement`) lives in ``registry``; by default,
    inside a bus consumer, in the bus's registry, so it appears in
    ``bus.metrics()["measurements"][name]`` as ``{"count", "rate_per_s", "latency_ns": {...}}``.
    Outside a bus consumer pass ``registry=rxbus.metrics.MetricsRegistry()`` and read
    ``registry.snapshot()``; with neither, subscribing fails with ``ValueError`` (a measurement
    nobody can read would be silently lost).

    ``latency="downstream"`` records how long the rest of the chain (operators after this one
    and the sink) took per item; ``"age"`` records how old each event is when it gets here
    (now minus ``event.timestamp``), i.e. the delay since it was published.

    The rate is measured on the clock of the scheduler given to ``subscribe`` (or to
    ``scheduler``) when there is one, so it is exact in virtual time; else on the monotonic
    clock. Latencies are read from ``clock``, a function returning nanoseconds: by default
    ``time.perf_counter_ns`` for ``"downstream"`` and ``time.time_ns`` for ``"age"`` (which
    compares with ``event.timestamp``, so a clock given for it must count from the epoch).
    Inject one to make latencies exact in tests.

    ::

        ---a---b---c---|
              measure("parsed")          (count 3, rate, latency of downstream)
        ---a---b---c---|

    Examples:
        >>> import reactivex
        >>> from rxbus.metrics import MetricsRegistry
        >>> from rxbus.operators import measure
        >>> registry = MetricsRegistry()
        >>> _ = reactivex.from_iterable(range(5)).pipe(measure("numbers", registry=registry)
        ...     ).subscribe(lambda x: None)
        >>> registry.snapshot()["numbers"]["count"]
        5

    Raises:
        ValueError: for an empty ``name``, an unknown ``latency`` or a ``clock`` that is not
            callable; at subscribe time when there is no registry to record into.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"measure() needs a non-empty name, got {name!r}")
    if latency not in ("downstream", "age"):
        raise ValueError(f"measure() latency must be 'downstream' or 'age', got {latency!r}")
    if clock is not None and not callable(clock):
        raise ValueError(f"measure() clock must be a function returning nanoseconds, got {clock!r}")

    def operator(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], at_subscribe: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            target = registry
            if target is None:
                ctx = _context.current()
                target = ctx.metrics if ctx is not None else None
            if target is None:
                raise ValueError(
                    f"measure({name!r}) is not inside a bus consumer; "
                    "pass registry=rxbus.metrics.MetricsRegistry()"
                )
            m = target.measurement(name)
            tick = m.tick
            record = m.latency.record
            emit = observer.on_next
            clock_source = at_subscribe or scheduler
            rate_clock = seconds_of(clock_source) if clock_source is not None else time.monotonic
            if latency == "downstream":
                counter: Callable[[], int] = clock or time.perf_counter_ns

                def on_next(item: _T) -> None:
                    tick(rate_clock())
                    start = counter()
                    try:
                        emit(item)
                    finally:
                        record(counter() - start)

            else:
                wall: Callable[[], int] = clock or time.time_ns

                def on_next(item: _T) -> None:
                    tick(rate_clock())
                    stamp: Any = getattr(item, "timestamp", None)
                    if stamp is not None:
                        record(max(0, wall() - int(stamp.timestamp() * 1e9)))
                    emit(item)

            return source.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=at_subscribe
            )

        return Observable(subscribe)

    return operator
