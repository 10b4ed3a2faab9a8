"""Transforming operators: ``transform`` maps items through user code, ``enrich`` adds metadata."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from reactivex import Observable, abc

from rxbus.deadletter import DeadLetter
from rxbus.event import Event, json_size

from ._common import DeadLetters, dead_letter_sink

__all__ = ["enrich", "transform"]

_T = TypeVar("_T")
_R = TypeVar("_R")


def transform(
    fn: Callable[[_T], _R],
    *,
    dead_letters: DeadLetters | None = None,
    name: str | None = None,
) -> Callable[[Observable[_T]], Observable[_R]]:
    """Emit ``fn(item)`` for each item.

    Unlike ``reactivex.operators.map``, an exception raised by ``fn`` does not end the stream:
    the item becomes a :class:`rxbus.DeadLetter` (holding the input item) and the next item is
    handled as usual.

    ::

        ---1---2---0---4---|
              transform(lambda x: 12 // x)           (0 raises ZeroDivisionError)
        ---12--6-------3---|     dead letters: 0

    Args:
        fn: called once per item; its result is emitted.
        dead_letters: receives each :class:`rxbus.DeadLetter`; inside a bus consumer it defaults
            to the bus's dead letters, elsewhere to the ``rxbus`` loguru logger.
        name: the ``consumer`` recorded on dead letters (default: the bus consumer's name, else
            ``"transform"``).

    Examples:
        >>> import reactivex
        >>> from rxbus.operators import transform
        >>> letters = []
        >>> reactivex.from_iterable([1, 2, 0, 4]).pipe(
        ...     transform(lambda x: 12 // x, dead_letters=letters.append)
        ... ).subscribe(print)  # doctest: +ELLIPSIS
        12
        6
        3
        <...>
        >>> [d.event for d in letters]
        [0]
    """
    if not callable(fn):
        raise TypeError(f"transform() needs a callable, got {fn!r}")
    return _mapping(fn, dead_letters, name, "transform")


def _mapping(
    fn: Callable[[_T], _R], dead_letters: DeadLetters | None, name: str | None, default: str
) -> Callable[[Observable[_T]], Observable[_R]]:
    def operator(source: Observable[_T]) -> Observable[_R]:
        def subscribe(
            observer: abc.ObserverBase[_R], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            emit = observer.on_next
            report, consumer = dead_letter_sink(dead_letters, name, default)
            capture = DeadLetter.capture

            def on_next(item: _T) -> None:
                try:
                    result = fn(item)
                except Exception as err:
                    report(capture(item, consumer, err))
                    return
                emit(result)

            return source.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)

    return operator


def enrich(**metadata: Any) -> Callable[[Observable[Event]], Observable[Event]]:
    """Add ``metadata`` to every event (the event's own keys are overwritten by these).

    The event keeps its id, topic, time and payload; only ``metadata`` changes. The metadata is
    checked once, when the operator is built, so the per-event cost is one dict merge and a
    copy of the event without re-validation.

    ::

        ---a{}---------b{"k": 1}-------|
              enrich(host="ci-7")
        ---a{host}-----b{k, host}------|

    Examples:
        >>> import reactivex
        >>> from rxbus import Event
        >>> from rxbus.operators import enrich
        >>> reactivex.of(Event(topic="build.done")).pipe(enrich(host="ci-7")).subscribe(
        ...     lambda e: print(e.topic, e.metadata))  # doctest: +ELLIPSIS
        build.done {'host': 'ci-7'}
        <...>

    Raises:
        ValueError: if no metadata is given.
        PayloadError: if the metadata is not JSON-serialisable.
        TypeError: (as a dead letter, at run time) for an item that is not an ``Event``.
    """
    if not metadata:
        raise ValueError("enrich() needs at least one keyword, e.g. enrich(host='ci-7')")
    json_size("enrich() metadata", metadata)
    extra = dict(metadata)

    def add(event: Event) -> Event:
        if not isinstance(event, Event):
            raise TypeError(f"enrich() needs rxbus.Event items, got {type(event).__name__}")
        meta = {**event.metadata, **extra} if event.metadata else dict(extra)
        copy = Event._trusted(
            event.topic,
            event.type,
            event.data,
            event.source,
            meta,
            event.correlation_id,
            None,
            event.id,
            event.timestamp,
        )
        return copy

    return _mapping(add, None, None, "enrich")
