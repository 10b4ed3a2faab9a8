"""Operator chains shared by the core tests."""

from __future__ import annotations

from typing import Any

from reactivex import Observable, abc


def fails_after_a_second(source: Observable[Any]) -> Observable[Any]:
    """An operator passing ``source`` through whose own timer fails it one second after each
    subscription (with or without events in between)."""

    def subscribe(observer: abc.ObserverBase[Any], scheduler: Any = None) -> Any:
        def fail_now(*_: Any) -> None:
            observer.on_error(ValueError("timer"))

        scheduler.schedule_relative(1.0, fail_now)
        return source.subscribe(observer, scheduler=scheduler)

    return Observable(subscribe)
