"""Dead letters: items a consumer or operator could not handle, kept with their cause."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["DeadLetter"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An item that could not be delivered, and why.

    Attributes:
        event: the item (usually an :class:`rxbus.Event`; after a transform, whatever it became).
        consumer: name of the consumer (or operator) that failed.
        error: the exception raised.
        traceback: the formatted traceback of ``error``.
        attempts: how many times delivery was tried.
        timestamp: when it was dead-lettered (UTC).
    """

    event: Any
    consumer: str
    error: BaseException
    traceback: str = ""
    attempts: int = 1
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def capture(
        cls, event: Any, consumer: str, error: BaseException, attempts: int = 1
    ) -> DeadLetter:
        """Build a dead letter for ``error``, formatting its traceback."""
        import traceback  # imported here: ~10 ms that a process publishing one event never needs

        tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        return cls(event, consumer, error, tb, attempts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-native dict (the event as :meth:`rxbus.Event.to_dict` where it is one)."""
        event = self.event
        to_dict = getattr(event, "to_dict", None)
        return {
            "event": to_dict() if callable(to_dict) else repr(event),
            "consumer": self.consumer,
            "error": f"{type(self.error).__name__}: {self.error}",
            "error_type": type(self.error).__name__,
            "traceback": self.traceback,
            "attempts": self.attempts,
            "timestamp": self.timestamp.isoformat(),
        }
