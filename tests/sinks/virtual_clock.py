"""A virtual clock for the sinks' ``clock=`` argument: time moves only when a test says so."""

from __future__ import annotations


class VirtualClock:
    """``clock()`` returns ``now``; :meth:`advance` moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        self.now += seconds
