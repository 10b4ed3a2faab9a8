"""Dead letters keep the exception and format its traceback only when someone reads it."""

from __future__ import annotations

import traceback

import pytest

from rxbus import DeadLetter, Event, EventBus


def test_a_failing_consumer_formats_no_traceback_until_one_is_read(
    bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    formatted: list[BaseException] = []
    real = traceback.format_exception

    def counting(*args: object, **kwargs: object) -> list[str]:
        formatted.append(args[1])  # type: ignore[arg-type]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(traceback, "format_exception", counting)

    def fails(e: Event) -> None:
        raise ValueError(f"bad {e.data['i']}")

    bus.subscribe(fails, name="fails")
    for i in range(100):
        bus.publish("x.y", {"i": i})
    letters = bus.recent_dead_letters(limit=100)
    assert len(letters) == 100 and formatted == []
    text = letters[-1].traceback
    assert "ValueError: bad 99" in text and "in fails" in text
    assert len(formatted) == 1
    assert letters[-1].traceback is text  # formatted once, then kept


def test_a_given_traceback_is_kept_as_given() -> None:
    letter = DeadLetter("item", "c", RuntimeError("x"), "given", 3)
    assert letter.traceback == "given" and letter.attempts == 3
    assert letter.to_dict()["traceback"] == "given"


def test_dead_letters_are_immutable_and_compare_by_value() -> None:
    err = RuntimeError("x")
    a = DeadLetter("item", "c", err, "", 1)
    b = DeadLetter("item", "c", err, "", 1, a.timestamp)
    assert a == b and a != DeadLetter("other", "c", err, "", 1, a.timestamp)
    assert a.__eq__("not a letter") is NotImplemented
    with pytest.raises(AttributeError, match="immutable"):
        a.consumer = "d"  # type: ignore[misc]
    assert "consumer='c'" in repr(a)
