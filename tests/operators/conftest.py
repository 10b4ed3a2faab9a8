"""Helpers for the operator marble tests: virtual time and dead-letter collectors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from reactivex.testing import TestScheduler

from rxbus import _context
from rxbus.deadletter import DeadLetter
from rxbus.metrics import MetricsRegistry


@pytest.fixture
def scheduler() -> TestScheduler:
    """A virtual clock: 1 tick == 1 second for time-based operators."""
    return TestScheduler()


@pytest.fixture
def letters() -> list[DeadLetter]:
    """Collects dead letters; pass ``letters.append`` as ``dead_letters=``."""
    return []


@pytest.fixture
def consumer_context() -> Iterator[tuple[list[DeadLetter], MetricsRegistry]]:
    """Pretend to be a bus consumer called ``"audit"`` while the test subscribes."""
    seen: list[DeadLetter] = []
    registry = MetricsRegistry()
    with _context.using(_context.ConsumerContext("audit", seen.append, registry)):
        yield seen, registry
