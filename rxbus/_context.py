"""Which bus consumer a chain is being built for.

A bus consumer sets this while it subscribes its operator chain, so operators that run user code
can send dead letters to the bus, and ``measure`` can report into the bus metrics, without the
user passing either. Operators read it once, at subscribe time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from rxbus._log import logger
from rxbus.deadletter import DeadLetter
from rxbus.metrics import MetricsRegistry

__all__ = ["ConsumerContext", "current", "dead_letter_target", "using"]


@dataclass(frozen=True, slots=True)
class ConsumerContext:
    """What an operator may use from the consumer it runs in."""

    consumer: str
    report_dead_letter: Callable[[DeadLetter], None]
    metrics: MetricsRegistry | None = None


_current: ContextVar[ConsumerContext | None] = ContextVar("rxbus_consumer", default=None)


def current() -> ConsumerContext | None:
    """The consumer whose chain is being subscribed, if any."""
    return _current.get()


@contextmanager
def using(ctx: ConsumerContext) -> Iterator[None]:
    """Make ``ctx`` current for the duration of the block."""
    token = _current.set(ctx)
    try:
        yield
    finally:
        _current.reset(token)


def _log_dead_letter(letter: DeadLetter) -> None:
    logger.opt(exception=letter.error).error(
        "rxbus dead letter from {} (no dead_letters= target): {!r}", letter.consumer, letter.event
    )


def dead_letter_target(
    explicit: Callable[[DeadLetter], None] | None,
) -> Callable[[DeadLetter], None]:
    """Where an operator sends dead letters: ``explicit``, else the current bus consumer's,
    else the ``rxbus`` loguru logger (disabled unless the application enables ``"rxbus"``)."""
    if explicit is not None:
        return explicit
    ctx = _current.get()
    if ctx is not None:
        return ctx.report_dead_letter
    return _log_dead_letter
