"""Consumers: one sink, an optional operator chain, a delivery mode, and honest counts.

- ``_consumer``: what every consumer has (sink, chain, counts, dead letters, disposal);
- ``_sync``, ``_thread``, ``_async``: the three delivery modes;
- ``_queue``: the bounded queue, the one place that applies :class:`rxbus.Overflow`;
- ``_pool``: the bounded worker pool ``thread`` consumers run on;
- ``_host``: what a consumer needs from its bus (the bus imports this package, never the
  other way round).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from reactivex import Observable, abc

from rxbus.consumer._async import AsyncConsumer
from rxbus.consumer._consumer import MODES, Consumer, ConsumerStats, Mode, is_async_callable
from rxbus.consumer._host import MAX_PUBLISH_DEPTH, ConsumerHost, delivery_depth
from rxbus.consumer._pool import BATCH, Executor, ManualExecutor, WorkerPool, worker_pool
from rxbus.consumer._sync import SyncConsumer
from rxbus.consumer._thread import DedicatedThreadConsumer, ThreadConsumer
from rxbus.policies import Overflow

__all__ = [
    "BATCH",
    "MAX_PUBLISH_DEPTH",
    "MODES",
    "Consumer",
    "ConsumerHost",
    "ConsumerStats",
    "Executor",
    "ManualExecutor",
    "Mode",
    "WorkerPool",
    "delivery_depth",
    "make_consumer",
    "worker_pool",
]

_BY_MODE: dict[str, type[Consumer]] = {
    "sync": SyncConsumer,
    "thread": ThreadConsumer,
    "async": AsyncConsumer,
}


def make_consumer(
    host: ConsumerHost,
    sink: Any,
    operators: Sequence[Callable[[Observable[Any]], Observable[Any]]],
    *,
    mode: str,
    pattern: str,
    queue_size: int,
    overflow: Overflow,
    name: str,
    scheduler: abc.SchedulerBase | None,
    dedicated: bool = False,
) -> Consumer:
    """A consumer of ``mode``; an ``async def`` sink asked for ``sync`` runs in ``async``;
    ``dedicated`` gives a ``thread`` consumer a thread of its own instead of the pool."""
    if mode not in _BY_MODE:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if dedicated and mode != "thread":
        raise ValueError(
            f"dedicated=True gives a mode='thread' consumer a thread of its own; "
            f"it means nothing for mode={mode!r}"
        )
    target = getattr(sink, "on_next", sink)
    if mode == "sync" and is_async_callable(target):
        mode = "async"  # an async def sink can only be awaited on a loop
    cls = DedicatedThreadConsumer if dedicated else _BY_MODE[mode]
    return cls(
        host,
        sink,
        operators,
        pattern=pattern,
        queue_size=queue_size,
        overflow=overflow,
        name=name,
        scheduler=scheduler,
    )
