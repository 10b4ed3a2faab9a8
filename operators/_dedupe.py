"""``dedupe``: drop items already seen, remembering a bounded window of keys."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, overload

from reactivex import Observable, abc

from rxbus.deadletter import DeadLetter

from ._common import (
    DeadLetters,
    check_positive,
    check_positive_int,
    dead_letter_sink,
    pick_scheduler,
    seconds_of,
)

__all__ = ["dedupe"]

_T = TypeVar("_T")


def _event_id(item: Any) -> Hashable:
    # Events dedupe by id; other items by themselves (they must be hashable).
    key = getattr(item, "id", None)
    return item if key is None else key


@overload
def dedupe(
    key: None = None,
    window: int = 10_000,
    *,
    ttl: float | None = None,
    on_duplicate: Callable[[Any], None] | None = None,
    dead_letters: DeadLetters | None = None,
    name: str | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]: ...


@overload
def dedupe(
    key: Callable[[_T], Hashable],
    window: int = 10_000,
    *,
    ttl: float | None = None,
    on_duplicate: Callable[[Any], None] | None = None,
    dead_letters: DeadLetters | None = None,
    name: str | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]: ...


def dedupe(
    key: Callable[[_T], Hashable] | None = None,
    window: int = 10_000,
    *,
    ttl: float | None = None,
    on_duplicate: Callable[[Any], None] | None = None,
    dead_letters: DeadLetters | None = None,
    name: str | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Drop an item whose key was seen among the last ``window`` keys (and within ``ttl``).

    The key is ``key(item)``, by default the event's ``id`` (an item without one is its own
    key). At most ``window`` keys are remembered (the oldest is forgotten first), so memory is
    bounded whatever the stream; with ``ttl`` a key is also forgotten ``ttl`` seconds after it
    was first seen, read on the scheduler's clock. A duplicate does not refresh its key.
    A ``key`` function that raises makes the item a dead letter; the stream goes on.

    ::

        ---a---b---a---c---b---a---|
              dedupe(window=2)              (remembers the last 2 distinct keys)
        ---a---b-------c-------a---|        c pushed a out, so the last a passes again

    Args:
        key: maps an item to a hashable key (default: ``item.id``).
        window: the most keys remembered (>= 1).
        ttl: seconds a key is remembered (``None``: until pushed out by ``window``).
        on_duplicate: called with each dropped duplicate.
        dead_letters: receives a :class:`rxbus.DeadLetter` when ``key`` raises.
        name: the ``consumer`` recorded on dead letters.
        scheduler: the clock for ``ttl`` when ``subscribe`` passes no scheduler.

    Raises:
        ValueError: naming a bad ``window`` or ``ttl``.

    Examples:
        >>> import reactivex
        >>> from rxbus.operators import dedupe
        >>> reactivex.from_iterable(["a", "b", "a", "c"]).pipe(dedupe()).subscribe(
        ...     print)  # doctest: +ELLIPSIS
        a
        b
        c
        <...>
    """
    if key is not None and not callable(key):
        raise TypeError(f"dedupe() key must be callable, got {key!r}")
    size = check_positive_int("dedupe() window", window)
    life = None if ttl is None else check_positive("dedupe() ttl", ttl)
    keyfn: Callable[[Any], Hashable] = key if key is not None else _event_id

    def operator(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], at_subscribe: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            emit = observer.on_next
            report, consumer = dead_letter_sink(dead_letters, name, "dedupe")
            now = seconds_of(pick_scheduler(at_subscribe, scheduler)) if life else None
            seen: OrderedDict[Hashable, float] = OrderedDict()
            lock = threading.Lock()

            def on_next(item: _T) -> None:
                try:
                    k = keyfn(item)
                    hash(k)
                except Exception as err:
                    report(DeadLetter.capture(item, consumer, err))
                    return
                t = now() if now is not None else 0.0
                with lock:
                    if now is not None:
                        # Keys are in first-seen order, so the expired ones are at the front.
                        horizon = t - (life or 0.0)
                        while seen and next(iter(seen.values())) <= horizon:
                            seen.popitem(last=False)
                    duplicate = k in seen
                    if not duplicate:
                        seen[k] = t
                        if len(seen) > size:
                            seen.popitem(last=False)
                if duplicate:
                    if on_duplicate is not None:
                        on_duplicate(item)
                    return
                emit(item)

            return source.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=at_subscribe
            )

        return Observable(subscribe)

    return operator
