"""Policies shared by the bus and the operators: overflow handling and retry."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Overflow", "RetryPolicy"]


class Overflow(enum.Enum):
    """What a bounded queue does with a new item when it is full.

    - ``BLOCK``: the producer waits for room (memory stays bounded, the producer slows down).
    - ``DROP_OLDEST``: the oldest queued item is dropped to make room.
    - ``DROP_NEWEST``: the new item is dropped.
    - ``LATEST``: everything queued is dropped; only the newest item is kept.
    - ``ERROR``: the consumer ends with :class:`rxbus.errors.BufferOverflowError`.

    Every dropped item is counted; none disappears silently.
    """

    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"
    LATEST = "latest"
    ERROR = "error"

    @classmethod
    def parse(cls, value: Overflow | str) -> Overflow:
        """Accept an ``Overflow`` or its name/value in any case (``"drop_oldest"``)."""
        if isinstance(value, Overflow):
            return value
        if isinstance(value, str):
            try:
                return cls(value.lower())
            except ValueError:
                pass
        raise ValueError(
            f"overflow must be one of {[m.value for m in cls]} or an Overflow, got {value!r}"
        )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How :func:`rxbus.operators.retry` retries a failing item.

    The k-th retry waits ``min(initial_delay * multiplier**(k-1), max_delay)``, spread by
    ``± jitter`` (a fraction, 0..1). With ``RetryPolicy(max_attempts=4, initial_delay=1,
    multiplier=2)`` an item that always fails is tried at t = 0, 1, 3 and 7.

    Args:
        max_attempts: total tries, the first one included (>= 1).
        initial_delay: seconds before the first retry (>= 0).
        max_delay: cap on any single delay, seconds.
        multiplier: growth factor of the delay (>= 1).
        jitter: relative spread of each delay, 0 (none) to 1.
        retry_on: exception types worth retrying; others go to dead letters at once.
    """

    max_attempts: int = 3
    initial_delay: float = 0.1
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {self.max_attempts!r}")
        if self.initial_delay < 0:
            raise ValueError(f"initial_delay must be >= 0, got {self.initial_delay!r}")
        if self.max_delay < 0:
            raise ValueError(f"max_delay must be >= 0, got {self.max_delay!r}")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter!r}")
        if isinstance(self.retry_on, type):
            object.__setattr__(self, "retry_on", (self.retry_on,))

    def delay(self, failures: int, random: float = 0.5) -> float:
        """Seconds to wait after ``failures`` failed tries (>= 1).

        ``random`` in [0, 1) picks the point in the jitter band; 0.5 is the centre.
        """
        base = min(self.initial_delay * self.multiplier ** (failures - 1), self.max_delay)
        if self.jitter:
            base *= 1 + self.jitter * (2 * random - 1)
        return max(0.0, base)
