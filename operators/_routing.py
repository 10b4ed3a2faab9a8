"""Routing operators: keep the items a consumer cares about.

``topic`` and ``of_type`` look at event fields; ``where`` runs a user predicate and turns its
exceptions into dead letters. All three are a single closure call per item: no allocation, the
downstream ``on_next`` bound once at subscribe time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from reactivex import Observable, abc

from rxbus.deadletter import DeadLetter
from rxbus.event import Event
from rxbus.topics import compile_pattern, is_wildcard, validate_pattern

from ._common import DeadLetters, dead_letter_sink

__all__ = ["of_type", "topic", "where"]

_T = TypeVar("_T")
_E = TypeVar("_E", bound=Event)

# A stream of ever-new topics must not grow a pattern's cache without bound.
_TOPIC_CACHE_LIMIT = 4096


def topic(pattern: str) -> Callable[[Observable[_E]], Observable[_E]]:
    """Keep the events whose topic matches ``pattern``.

    ``*`` stands for one segment, ``**`` for zero or more (see :mod:`rxbus.topics`). A wildcard
    pattern is matched once per distinct topic and the answer cached, so the per-event cost is
    one dict lookup. An item without a ``topic`` becomes a dead letter.

    ::

        hook.tool  build.error  hook.stop  |
        ---a-----------b-----------c-------|
              topic("hook.*")
        ---a-----------------------c-------|

    Examples:
        >>> import reactivex
        >>> from rxbus import Event
        >>> from rxbus.operators import topic
        >>> events = [Event(topic=t) for t in ("hook.tool", "build.error", "hook.stop")]
        >>> reactivex.from_iterable(events).pipe(topic("hook.*")).subscribe(
        ...     lambda e: print(e.topic))  # doctest: +ELLIPSIS
        hook.tool
        hook.stop
        <...>

    Raises:
        InvalidTopicError: at once, for a malformed pattern.
    """
    validate_pattern(pattern)
    if pattern == "**":
        return _topic_all
    if not is_wildcard(pattern):
        return _topic_filter(pattern, None)
    return _topic_filter(pattern, compile_pattern(pattern))


def _topic_all(source: Observable[_E]) -> Observable[_E]:
    # "**" matches every topic: the source itself, at no cost per event.
    return source


def _topic_filter(
    pattern: str, match: Callable[[str], bool] | None
) -> Callable[[Observable[_E]], Observable[_E]]:
    cache: dict[str, bool] = {}

    def operator(source: Observable[_E]) -> Observable[_E]:
        def subscribe(
            observer: abc.ObserverBase[_E], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            emit = observer.on_next
            report, consumer = dead_letter_sink(None, None, f"topic({pattern})")
            lookup = cache.get

            if match is None:

                def on_next(event: _E) -> None:
                    try:
                        hit = event.topic == pattern
                    except AttributeError:
                        _no_topic(report, consumer, event)
                        return
                    if hit:
                        emit(event)

            else:

                def on_next(event: _E) -> None:
                    try:
                        name = event.topic
                    except AttributeError:
                        _no_topic(report, consumer, event)
                        return
                    hit = lookup(name)
                    if hit is None:
                        if len(cache) >= _TOPIC_CACHE_LIMIT:
                            cache.clear()
                        hit = cache[name] = match(name)
                    if hit:
                        emit(event)

            return source.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)

    return operator


def _no_topic(report: DeadLetters, consumer: str, item: object) -> None:
    err = TypeError(f"topic() needs items with a 'topic' (rxbus.Event), got {type(item).__name__}")
    report(DeadLetter.capture(item, consumer, err))


@overload
def of_type(*types: str) -> Callable[[Observable[_E]], Observable[_E]]: ...


@overload
def of_type(*types: type[_T]) -> Callable[[Observable[object]], Observable[_T]]: ...


def of_type(*types: Any) -> Callable[[Observable[Any]], Observable[Any]]:
    """Keep events of the given event types (strings), or items of the given Python classes.

    With strings, an event passes if ``event.type`` is one of them (``"PreToolUse"``). With
    classes, an item passes if it is an instance of one of them, and the result is typed as that
    class. Mixing the two is an error.

    ::

        PreToolUse  Stop  PostToolUse  |
        ---a---------b-------c---------|
              of_type("PreToolUse", "PostToolUse")
        ---a-----------------c---------|

    Examples:
        >>> import reactivex
        >>> from rxbus import Event
        >>> from rxbus.operators import of_type
        >>> events = [Event(topic="hook.tool", type=t) for t in ("PreToolUse", "Stop")]
        >>> reactivex.from_iterable(events).pipe(of_type("PreToolUse")).subscribe(
        ...     lambda e: print(e.type))  # doctest: +ELLIPSIS
        PreToolUse
        <...>

    Raises:
        ValueError: if no type is given, or strings and classes are mixed.
        TypeError: naming an argument that is neither a str nor a class.
    """
    if not types:
        raise ValueError("of_type() needs at least one event type (str) or class")
    for t in types:
        if not isinstance(t, str | type):
            raise TypeError(f"of_type() takes event types (str) or classes, got {t!r}")
    if all(isinstance(t, str) for t in types):
        wanted = frozenset(types)

        def keep_type(event: Any) -> bool:
            return getattr(event, "type", None) in wanted

        return _filter(keep_type)
    if all(isinstance(t, type) for t in types):
        classes = tuple(types)

        def keep_instance(item: Any) -> bool:
            return isinstance(item, classes)

        return _filter(keep_instance)
    raise ValueError(f"of_type() takes either event types (str) or classes, not both: {types!r}")


def _filter(keep: Callable[[Any], bool]) -> Callable[[Observable[Any]], Observable[Any]]:
    # Internal predicates cannot raise, so no dead-letter path is needed.
    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            emit = observer.on_next

            def on_next(item: Any) -> None:
                if keep(item):
                    emit(item)

            return source.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)

    return operator


def where(
    predicate: Callable[[_T], object],
    *,
    dead_letters: DeadLetters | None = None,
    name: str | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Keep the items for which ``predicate(item)`` is true.

    Unlike ``reactivex.operators.filter``, an exception raised by ``predicate`` does not end the
    stream: the item becomes a :class:`rxbus.DeadLetter` and the next item is handled as usual.

    ::

        ---1---2---3---4---|
              where(lambda x: 10 // (x - 3) > 0)     (3 raises ZeroDivisionError)
        ---------------4---|     dead letters: 3

    Args:
        predicate: called once per item; a truthy result keeps it.
        dead_letters: receives each :class:`rxbus.DeadLetter`; inside a bus consumer it defaults
            to the bus's dead letters, elsewhere to the ``rxbus`` loguru logger.
        name: the ``consumer`` recorded on dead letters (default: the bus consumer's name, else
            ``"where"``).

    Examples:
        >>> import reactivex
        >>> from rxbus.operators import where
        >>> letters = []
        >>> reactivex.from_iterable([1, 2, 3, 4]).pipe(
        ...     where(lambda x: 10 // (x - 3) > 0, dead_letters=letters.append)
        ... ).subscribe(print)  # doctest: +ELLIPSIS
        4
        <...>
        >>> [(d.event, type(d.error).__name__) for d in letters]
        [(3, 'ZeroDivisionError')]
    """
    if not callable(predicate):
        raise TypeError(f"where() needs a callable predicate, got {predicate!r}")

    def operator(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            emit = observer.on_next
            report, consumer = dead_letter_sink(dead_letters, name, "where")
            capture = DeadLetter.capture

            def on_next(item: _T) -> None:
                try:
                    keep = predicate(item)
                except Exception as err:
                    report(capture(item, consumer, err))
                    return
                if keep:
                    emit(item)

            return source.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)

    return operator
