"""``Recorder``: ``published`` and ``assert_published`` with a readable failure."""

from __future__ import annotations

import pytest

from rxbus import EventBus
from rxbus.recorder import Recorder


@pytest.fixture
def recorded() -> tuple[EventBus, Recorder]:
    bus = EventBus()
    recorder = Recorder(bus)
    bus.publish("orders.placed", {"id": 1, "qty": 2})
    bus.publish("hook.tool", {"tool": "Bash"})
    bus.publish("orders.placed", {"id": 2, "qty": 5})
    yield bus, recorder  # type: ignore[misc]
    bus.close()


def test_published_is_every_event_in_order(recorded: tuple[EventBus, Recorder]) -> None:
    _, rec = recorded
    assert [(e.topic, e.data.get("id")) for e in rec.published] == [
        ("orders.placed", 1),
        ("hook.tool", None),
        ("orders.placed", 2),
    ]


def test_assert_published_matches_pattern_data_subset_and_count(
    recorded: tuple[EventBus, Recorder],
) -> None:
    _, rec = recorded
    assert len(rec.assert_published("orders.*", count=2)) == 2
    [match] = rec.assert_published("orders.*", data={"qty": 5})
    assert match.data["id"] == 2
    rec.assert_published("**", count=3)
    rec.assert_published("nothing", count=0)


def test_a_failure_lists_the_events_on_the_pattern_with_their_differences(
    recorded: tuple[EventBus, Recorder],
) -> None:
    _, rec = recorded
    with pytest.raises(AssertionError) as info:
        rec.assert_published("orders.*", data={"qty": 3, "id": 2})
    assert str(info.value) == (
        'assert_published(\'orders.*\', data={"id":2,"qty":3}): expected at least 1 matching '
        "event(s), found 0\n"
        "3 event(s) published, 2 on 'orders.*':\n"
        '  #1 orders.placed {"id":1,"qty":2}\n'
        "      qty: expected 3, got 2\n"
        "      id: expected 2, got 1\n"
        '  #2 orders.placed {"id":2,"qty":5}\n'
        "      qty: expected 3, got 5"
    )


def test_a_count_failure_and_an_unknown_topic(recorded: tuple[EventBus, Recorder]) -> None:
    _, rec = recorded
    with pytest.raises(AssertionError, match=r"expected exactly 1 matching event.*found 2"):
        rec.assert_published("orders.placed", count=1)
    with pytest.raises(AssertionError, match=r"topics published: \['hook.tool', 'orders.placed'\]"):
        rec.assert_published("build.*")
    with pytest.raises(AssertionError, match="missing"):
        rec.assert_published("hook.*", data={"exit": 0})


def test_bad_count_is_refused(recorded: tuple[EventBus, Recorder]) -> None:
    _, rec = recorded
    with pytest.raises(ValueError, match="count must be an int >= 0 or None, got -1"):
        rec.assert_published("**", count=-1)


def test_dispose_stops_recording_and_clear_forgets(recorded: tuple[EventBus, Recorder]) -> None:
    bus, rec = recorded
    rec.clear()
    assert len(rec) == 0
    rec.dispose()
    bus.publish("orders.placed", {"id": 3})
    assert rec.published == []
