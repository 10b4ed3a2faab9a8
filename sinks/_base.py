"""What rxbus sinks share: closing as a context manager, and where their failures go."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Self

from rxbus._context import ConsumerContext
from rxbus.deadletter import DeadLetter

__all__ = ["ClosingSink", "DeadLetterBinding"]


class ClosingSink(ABC):
    """A sink that releases its resources in :meth:`close`; ``with sink:`` closes it on exit."""

    @abstractmethod
    def close(self) -> object:
        """Release the sink's resources (flushing what it holds first). Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class DeadLetterBinding:
    """Lets a sink send what it could not deliver to the bus it is subscribed to.

    The sink sets ``_dead_letters`` and ``_explicit_dead_letters`` (``dead_letters=`` given);
    without an explicit target, the bus's :meth:`bind_consumer` call replaces it with the
    bus's own dead letters.
    """

    _dead_letters: Callable[[DeadLetter], None] | None
    _explicit_dead_letters: bool

    def bind_consumer(self, context: ConsumerContext) -> None:
        """Called by the bus on ``bus.subscribe(sink)``: without ``dead_letters=``, what this
        sink cannot deliver becomes a dead letter of that bus (counted in its metrics)."""
        if not self._explicit_dead_letters:
            self._dead_letters = context.report_dead_letter
