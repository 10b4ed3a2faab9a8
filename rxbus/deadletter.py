"""Dead letters: items a consumer or operator could not handle, kept with their cause."""

from __future__ import annotations

from datetime import UTC, datetime
from time import time
from typing import Any

__all__ = ["DeadLetter"]


class DeadLetter:
    """An item that could not be delivered, and why. Immutable.

    Attributes:
        event: the item (usually an :class:`rxbus.Event`; after a transform, whatever it became).
        consumer: name of the consumer (or operator) that failed.
        error: the exception raised.
        traceback: the formatted traceback of ``error``: formatted on first read, so a consumer
            that fails on every event costs its publisher only the exception, not the format.
        attempts: how many times delivery was tried.
        timestamp: when it was dead-lettered (UTC).
    """

    __slots__ = ("_at", "_timestamp", "_traceback", "attempts", "consumer", "error", "event")

    event: Any
    consumer: str
    error: BaseException
    attempts: int
    _at: float
    _timestamp: datetime | None
    _traceback: str | None

    def __init__(
        self,
        event: Any,
        consumer: str,
        error: BaseException,
        traceback: str | None = None,
        attempts: int = 1,
        timestamp: datetime | None = None,
    ) -> None:
        _set_event(self, event)
        _set_consumer(self, consumer)
        _set_error(self, error)
        _set_traceback(self, traceback)
        _set_attempts(self, attempts)
        # the clock as a float: a failing consumer should not pay for a datetime it may never show
        _set_at(self, time() if timestamp is None else timestamp.timestamp())
        _set_timestamp(self, timestamp)

    @classmethod
    def _from_parts(cls, event: Any, consumer: str, error: BaseException, at: float) -> DeadLetter:
        """A dead letter from parts kept by the bus: ``at`` is ``time.time()`` when it failed."""
        letter = cls(event, consumer, error, None, 1)
        _set_at(letter, at)
        return letter

    @classmethod
    def capture(
        cls, event: Any, consumer: str, error: BaseException, attempts: int = 1
    ) -> DeadLetter:
        """A dead letter for ``error``; its traceback is formatted when first read."""
        return cls(event, consumer, error, None, attempts)

    @property
    def timestamp(self) -> datetime:
        """When it was dead-lettered (UTC)."""
        ts = self._timestamp
        if ts is None:
            ts = datetime.fromtimestamp(self._at, UTC)
            _set_timestamp(self, ts)
        return ts

    @property
    def traceback(self) -> str:
        tb = self._traceback
        if tb is None:
            import traceback  # ~10 ms that a process publishing one event never needs

            error = self.error
            tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            _set_traceback(self, tb)
        return tb

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"DeadLetter is immutable; cannot set {name!r}")

    def _key(self) -> tuple[Any, ...]:
        return (
            self.event,
            self.consumer,
            self.error,
            self.traceback,
            self.attempts,
            self.timestamp,
        )

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not DeadLetter:
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"DeadLetter(event={self.event!r}, consumer={self.consumer!r}, error={self.error!r}, "
            f"attempts={self.attempts}, timestamp={self.timestamp!r})"
        )

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


_set_event = vars(DeadLetter)["event"].__set__
_set_consumer = vars(DeadLetter)["consumer"].__set__
_set_error = vars(DeadLetter)["error"].__set__
_set_traceback = vars(DeadLetter)["_traceback"].__set__
_set_attempts = vars(DeadLetter)["attempts"].__set__
_set_at = vars(DeadLetter)["_at"].__set__
_set_timestamp = vars(DeadLetter)["_timestamp"].__set__
