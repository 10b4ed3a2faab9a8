"""The rxbus pytest plugin (registered by entry point: installing rxbus enables it).

Fixtures:

- ``bus``: a fresh :class:`rxbus.EventBus` named after the test, closed after it. The test fails
  (at teardown) if anything was dead-lettered, or left undelivered at close, unless it is
  marked ``@pytest.mark.rxbus_allow_dead_letters``.
- ``bus_recorder``: a :class:`rxbus.recorder.Recorder` on that bus, for ``published`` and
  ``assert_published``.
- ``testbus``: a virtual-time :class:`rxbus.testing.TestBus` (``drain()``, ``advance()``,
  ``published``), checked and closed like ``bus``.

A project's own ``bus`` fixture (in a ``conftest.py``) takes precedence over this one.
Disable the plugin with ``-p no:rxbus``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from rxbus.bus import EventBus
    from rxbus.recorder import Recorder
    from rxbus.testing import TestBus

_B = TypeVar("_B", bound="EventBus")

MARKER = "rxbus_allow_dead_letters"
_SHOWN = 10


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: the rxbus 'bus' fixture does not fail the test for dead letters",
    )


@pytest.fixture
def bus(request: pytest.FixtureRequest) -> Iterator[EventBus]:
    """A fresh EventBus, closed after the test; fails the test on unexpected dead letters."""
    from rxbus import EventBus

    yield from _checked(request, EventBus(name=f"test:{request.node.name}"[:200]))


@pytest.fixture
def testbus(request: pytest.FixtureRequest) -> Iterator[TestBus]:
    """A fresh virtual-time :class:`rxbus.testing.TestBus`, checked and closed like ``bus``."""
    from rxbus.testing import TestBus

    yield from _checked(request, TestBus(name=f"test:{request.node.name}"[:200]))


def _checked(request: pytest.FixtureRequest, b: _B) -> Iterator[_B]:
    letters: list[Any] = []
    subscription = b.dead_letters.subscribe(letters.append)
    try:
        yield b
    finally:
        undelivered = b.close(timeout=5.0)
        subscription.dispose()
    if request.node.get_closest_marker(MARKER) is not None:
        return
    # close() sends its undelivered events to dead_letters too; list each once
    seen = {id(x) for x in letters}
    letters.extend(x for x in undelivered if id(x) not in seen)
    if letters:
        lines = [
            f"  {d.consumer}: {type(d.error).__name__}: {d.error} "
            f"(event {getattr(d.event, 'topic', d.event)!r:.80})"
            for d in letters[:_SHOWN]
        ]
        more = f"\n  ... and {len(letters) - _SHOWN} more" if len(letters) > _SHOWN else ""
        pytest.fail(
            f"{len(letters)} unexpected dead letter(s) on bus {b.name!r} "
            f"(mark the test @pytest.mark.{MARKER} if they are expected):\n"
            + "\n".join(lines)
            + more,
            pytrace=False,
        )


@pytest.fixture
def bus_recorder(bus: EventBus) -> Iterator[Recorder]:
    """A Recorder of every event published on the ``bus`` fixture."""
    from rxbus.recorder import Recorder

    with Recorder(bus) as recorder:
        yield recorder
