"""Pipeable Rx operators for event streams: ``import rxbus.operators as ops``.

Every operator is a function returning ``Callable[[Observable[T]], Observable[R]]`` (spelled out,
not a type alias, so mypy infers the element type through a whole ``pipe``), used with
``.pipe(...)`` on any reactivex Observable (``bus.events``, ``bus.topic("hook.*")``) or passed
to ``bus.subscribe(sink, *operators)``:

    >>> import reactivex
    >>> import rxbus.operators as ops
    >>> from rxbus import Event
    >>> events = [Event(topic="hook.tool", data={"n": n}) for n in range(5)]
    >>> reactivex.from_iterable(events).pipe(
    ...     ops.topic("hook.*"),
    ...     ops.where(lambda e: e.data["n"] % 2 == 0),
    ...     ops.transform(lambda e: e.data["n"]),
    ...     ops.batch(seconds=1.0, max_size=2),
    ... ).subscribe(print)  # doctest: +ELLIPSIS
    [0, 2]
    [4]
    <...>

Families (one private module each):

- routing: :func:`topic`, :func:`of_type`, :func:`where`
- transforming: :func:`transform`, :func:`enrich`
- grouping: :func:`batch`
- flow control: :func:`backpressure`, :func:`rate_limit`
- failure handling: :func:`retry`, :func:`circuit_breaker`
- filtering repeats: :func:`dedupe`
- observing: :func:`measure`

Operators that run user code (``where``, ``transform``, ``retry``, ``circuit_breaker``, and
``dedupe``'s key) never let its exception end the stream: the item becomes a
:class:`rxbus.DeadLetter`, sent to ``dead_letters=`` or, inside a bus consumer, to the bus's
dead letters. Time-based operators (``batch``, ``retry``, ``rate_limit``, ``backpressure``'s
drain, the clocks of ``dedupe(ttl=)`` and ``circuit_breaker``) use the scheduler given to
``subscribe``, else the one given to the operator, else
:func:`rxbus.scheduling.default_scheduler`; none starts a thread of its own.
"""

from __future__ import annotations

from ._backpressure import backpressure
from ._batch import batch
from ._circuit import CircuitBreaker, CircuitOpenError, CircuitState, circuit_breaker
from ._common import DeadLetters
from ._dedupe import dedupe
from ._measure import measure
from ._rate import rate_limit
from ._retry import retry
from ._routing import of_type, topic, where
from ._transform import enrich, transform

__all__ = [
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "DeadLetters",
    "backpressure",
    "batch",
    "circuit_breaker",
    "dedupe",
    "enrich",
    "measure",
    "of_type",
    "rate_limit",
    "retry",
    "topic",
    "transform",
    "where",
]
