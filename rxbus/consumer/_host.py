"""What a consumer needs from the bus it belongs to: a narrow protocol, so the consumer package
never imports the bus (the bus imports the consumers)."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Protocol

from reactivex import abc

from rxbus.deadletter import DeadLetter
from rxbus.metrics import MetricsRegistry

if TYPE_CHECKING:  # pragma: no cover
    from rxbus.consumer._consumer import Consumer
    from rxbus.consumer._pool import Executor

__all__ = ["MAX_PUBLISH_DEPTH", "ConsumerHost", "delivery_depth"]


class ConsumerHost(Protocol):
    """The bus as its consumers see it."""

    @property
    def name(self) -> str: ...

    @property
    def registry(self) -> MetricsRegistry: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def executor(self) -> Executor:
        """Where ``thread`` consumers run: the process's worker pool, or a test's."""
        ...

    @property
    def timers(self) -> abc.SchedulerBase | None:
        """The scheduler time-based operators use by default; None for the process's timer
        thread (and, for ``async`` consumers, the loop's own timers)."""
        ...

    @property
    def manual(self) -> bool:
        """True when a test drives the loop, the executor and the timers itself (a
        ``TestBus``): nothing runs until it does."""
        ...

    def report(self, letter: DeadLetter) -> None:
        """Count and publish a dead letter."""

    def fail(self, event: object, consumer: str, error: BaseException) -> None:
        """A sink raised for ``event``: a dead letter, made only when someone reads it."""

    def detach(self, consumer: Consumer) -> None:
        """Stop routing events to ``consumer`` (it stays in metrics)."""

    def retire(self, consumer: Consumer) -> None:
        """Fold a disposed consumer's counts into the bus totals and forget it."""

    def count_retired(self, received: int, dropped: int) -> None:
        """Count in the bus totals an event a consumer refused after it was retired."""


class _Depth(threading.local):
    """How many times the event being handled on this thread went round a busy consumer."""

    value = 0


delivery_depth = _Depth()
"""Per thread: a sync consumer handing its queued events over sets ``value`` to how many busy
consumers the event went through. A busy consumer refuses an event past
:data:`MAX_PUBLISH_DEPTH` (dropped, with a ``PublishLoopError`` dead letter), so a consumer that
publishes to itself (or a ring of them) without end stops instead of holding its publisher for
ever. Only the hand-over path reads it: a direct delivery pays nothing."""

MAX_PUBLISH_DEPTH = 100
