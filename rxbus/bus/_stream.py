"""``bus.events`` and ``bus.topic(pattern)``: hot streams whose subscribers are bus consumers."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import reactivex
from reactivex import Observable, abc

from rxbus.event import Event

if TYPE_CHECKING:  # pragma: no cover
    from rxbus.bus._bus import EventBus

__all__ = ["BusStream"]


class BusStream(Observable[Event]):
    """A hot stream of the bus's events matching ``pattern``: a ``Subject`` filtered by topic.

    ``pipe`` keeps the operators, and ``subscribe`` turns the whole chain into one bus consumer
    (mode ``sync``), so an exception anywhere in the chain becomes a dead letter and the
    subscriber keeps receiving later events, as for :meth:`EventBus.subscribe`. A ``pipe`` whose
    result is not a plain ``Observable`` (``publish()`` gives a ``ConnectableObservable``,
    ``to_future()`` a future) returns that result, built on this stream.
    """

    def __init__(
        self,
        bus: EventBus,
        pattern: str,
        operators: tuple[Callable[[Observable[Any]], Any], ...] = (),
    ) -> None:
        super().__init__()
        self._bus = bus
        self._pattern = pattern
        self._operators = operators

    def pipe(self, *operators: Callable[[Any], Any]) -> Any:  # type: ignore[override]
        if not operators:
            return self
        built = functools.reduce(lambda source, op: op(source), operators, self)
        if type(built) is not Observable:
            return built
        return BusStream(self._bus, self._pattern, self._operators + tuple(operators))

    def subscribe(  # type: ignore[override]
        self,
        on_next: abc.ObserverBase[Any] | Callable[[Any], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        on_completed: Callable[[], None] | None = None,
        *,
        scheduler: abc.SchedulerBase | None = None,
    ) -> abc.DisposableBase:
        if isinstance(on_next, abc.ObserverBase) or hasattr(on_next, "on_next"):
            observer: Any = on_next
        else:
            observer = reactivex.Observer(on_next, on_error, on_completed)
        return self._bus.subscribe(
            observer, *self._operators, topic=self._pattern, mode="sync", scheduler=scheduler
        )

    def _subscribe_core(
        self, observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        return self.subscribe(observer, scheduler=scheduler)
