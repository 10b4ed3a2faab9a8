"""What every rxbus operator shares: where dead letters go, which scheduler runs timers, checks.

Everything here is resolved once per subscription (never per item), so the hot paths of the
operators stay a single closure call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from loguru import logger
from reactivex import abc

from rxbus import _context
from rxbus.deadletter import DeadLetter
from rxbus.metrics import MetricsRegistry

__all__ = [
    "DeadLetters",
    "check_positive",
    "check_positive_int",
    "dead_letter_sink",
    "drop_reporter",
    "pick_scheduler",
    "seconds_of",
]


DeadLetters = Callable[[DeadLetter], None]
"""A callable receiving each :class:`rxbus.DeadLetter` an operator produces."""

_EPOCH = datetime(1970, 1, 1)


def dead_letter_sink(
    explicit: DeadLetters | None, name: str | None, default_name: str
) -> tuple[DeadLetters, str]:
    """Where a subscription's dead letters go, and the consumer name they carry.

    Called at subscribe time, so inside a bus consumer it picks up that consumer's dead letters
    and name. ``name`` (given to the operator) wins over the consumer's name.
    """
    target = _context.dead_letter_target(explicit)
    if name is not None:
        return target, name
    ctx = _context.current()
    return target, (ctx.consumer if ctx is not None else default_name)


def drop_reporter(
    on_drop: Callable[[Any], None] | None,
    registry: MetricsRegistry | None,
    name: str,
    why: str,
) -> Callable[[Any], None]:
    """How a subscription reports an item it dropped (called at subscribe time).

    Each drop ticks the measurement ``f"{name}.dropped"`` in ``registry`` (default: the bus
    consumer's metrics) and is passed to ``on_drop``; with neither, it is logged on the
    ``rxbus`` loguru logger, so no drop goes unrecorded.
    """
    if registry is None:
        ctx = _context.current()
        registry = ctx.metrics if ctx is not None else None
    tick = registry.measurement(f"{name}.dropped").tick if registry is not None else None

    def report(item: Any) -> None:
        if tick is not None:
            tick()
        if on_drop is not None:
            on_drop(item)
        elif tick is None:
            logger.warning("rxbus {}: dropped {!r} ({})", name, item, why)

    return report


def pick_scheduler(
    at_subscribe: abc.SchedulerBase | None, given: abc.SchedulerBase | None
) -> abc.SchedulerBase:
    """The scheduler a time-based operator uses: the one passed to ``subscribe``, else the one
    passed to the operator, else :func:`rxbus.scheduling.default_scheduler` (one thread for
    every timer of the process)."""
    if at_subscribe is not None:
        return at_subscribe
    if given is not None:
        return given
    from rxbus.scheduling import default_scheduler

    return default_scheduler()


def seconds_of(scheduler: abc.SchedulerBase) -> Callable[[], float]:
    """A clock in seconds read from ``scheduler.now`` (virtual under a TestScheduler)."""

    def now() -> float:
        moment = scheduler.now
        if moment.tzinfo is not None:
            moment = moment.replace(tzinfo=None)
        return (moment - _EPOCH).total_seconds()

    return now


def check_positive(name: str, value: Any) -> float:
    """``value`` as a float if it is a finite number > 0, else a ``ValueError`` naming it."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_positive_int(name: str, value: Any) -> int:
    """``value`` if it is an int >= 1, else a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value
