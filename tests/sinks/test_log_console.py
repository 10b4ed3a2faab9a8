"""LogSink (loguru) and ConsoleSink (rich): records, levels, handlers left alone, readable lines."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from loguru import logger

from rxbus import DeadLetter, Event, EventBus
from rxbus.sinks import ConsoleSink, LogSink


@pytest.fixture
def records() -> Iterator[list[Any]]:
    """Records reaching a handler the *application* added (removed after the test)."""
    seen: list[Any] = []
    handler = logger.add(lambda m: seen.append(m.record), level="DEBUG")
    try:
        yield seen
    finally:
        logger.remove(handler)


class TestLogSink:
    def test_record_carries_the_event_fields(self, records: list[Any]) -> None:
        """extra holds id, topic, type, source, data, metadata, correlation id and time."""
        e = Event(
            topic="hook.tool",
            type="PreToolUse",
            data={"tool": "Bash"},
            source="claude",
            metadata={"m": 1},
            correlation_id="c-1",
        )
        LogSink().on_next(e)
        [record] = records
        assert record["extra"] == {
            "event_id": e.id,
            "topic": "hook.tool",
            "type": "PreToolUse",
            "source": "claude",
            "data": {"tool": "Bash"},
            "metadata": {"m": 1},
            "correlation_id": "c-1",
            "timestamp": e.timestamp.isoformat(),
        }
        assert record["message"] == "hook.tool PreToolUse {'tool': 'Bash'}"
        assert record["level"].name == "INFO"
        assert record["name"] == "rxbus_events"

    def test_level_per_topic_and_per_type(self, records: list[Any]) -> None:
        """type_levels wins over topic_levels; the first matching topic pattern wins."""
        sink = LogSink(
            level="DEBUG",
            topic_levels={"build.error": "ERROR", "build.**": "INFO"},
            type_levels={"Deprecation": "WARNING"},
        )
        for topic, type_ in [
            ("build.error", "error"),
            ("build.step", "step"),
            ("build.error", "Deprecation"),
            ("other.x", "x"),
        ]:
            sink.on_next(Event(topic=topic, type=type_))
        assert [r["level"].name for r in records] == ["ERROR", "INFO", "WARNING", "DEBUG"]

    def test_dead_letter_logs_at_error(self, records: list[Any]) -> None:
        e = Event(topic="mail.send")
        LogSink().on_next(DeadLetter.capture(e, "mailer", RuntimeError("smtp down")))
        [record] = records
        assert record["level"].name == "ERROR"
        assert record["extra"]["data"]["error"] == "RuntimeError: smtp down"

    def test_global_handlers_are_left_alone(self, bus: EventBus) -> None:
        """Creating and using a LogSink adds, removes and changes no loguru handler."""
        before = dict(logger._core.handlers)  # type: ignore[attr-defined]
        bus.subscribe(LogSink())
        bus.publish("t.a")
        assert dict(logger._core.handlers) == before  # type: ignore[attr-defined]

    def test_records_flow_while_the_library_logger_is_disabled(self, records: list[Any]) -> None:
        """logger.disable("rxbus") silences rxbus's own diagnostics, not the events asked for."""
        from rxbus._context import dead_letter_target

        logger.disable("rxbus")  # the library's default (rxbus/__init__.py), made explicit here
        LogSink().on_next(Event(topic="t.a"))
        # rxbus's own fallback dead-letter logging stays silent meanwhile
        dead_letter_target(None)(DeadLetter.capture(Event(topic="t.b"), "c", RuntimeError("x")))
        assert [r["extra"]["topic"] for r in records] == ["t.a"]

    def test_application_can_silence_the_event_records(self, records: list[Any]) -> None:
        logger.disable("rxbus_events")
        try:
            LogSink().on_next(Event(topic="t.a"))
        finally:
            logger.enable("rxbus_events")
        assert records == []

    def test_bad_template_is_counted_and_dead_lettered(self, records: list[Any]) -> None:
        letters: list[DeadLetter] = []
        sink = LogSink(message="{missing}", dead_letters=letters.append)
        sink.on_next(Event(topic="t.a"))
        assert sink.stats == {"logged": 0, "errors": 1}
        assert isinstance(letters[0].error, KeyError)

    def test_stats_in_bus_metrics(self, bus: EventBus, records: list[Any]) -> None:
        bus.subscribe(LogSink(), name="log")
        for _ in range(3):
            bus.publish("t.a")
        assert bus.metrics()["consumers"]["log"]["sink"] == {"logged": 3, "errors": 0}


class TestConsoleSink:
    def test_one_readable_line_per_event(self) -> None:
        out = io.StringIO()
        sink = ConsoleSink(out, color=False)
        sink.on_next(Event(topic="build.error", data={"code": 2}, source="ci"))
        sink.on_next(Event(topic="hook.tool", data={"tool": "Bash"}))
        lines = out.getvalue().splitlines()
        assert len(lines) == 2
        assert "build.error" in lines[0] and '{"code":2}' in lines[0] and " ci " in lines[0]
        assert "hook.tool" in lines[1] and '{"tool":"Bash"}' in lines[1]
        assert "\x1b[" not in out.getvalue()

    def test_colour_when_forced(self) -> None:
        out = io.StringIO()
        ConsoleSink(out, color=True).on_next(Event(topic="build.error"))
        assert "\x1b[" in out.getvalue()

    def test_markup_in_events_is_printed_literally(self) -> None:
        out = io.StringIO()
        ConsoleSink(out, color=True).on_next(Event(topic="t.a", data={"s": "[bold red]x[/]"}))
        assert "[bold red]x[/]" in out.getvalue()

    def test_long_data_is_cut(self) -> None:
        out = io.StringIO()
        ConsoleSink(out, color=False, max_data=30).on_next(
            Event(topic="t.a", data={"s": "z" * 500})
        )
        line = out.getvalue().strip()
        assert line.endswith("…") and "z" * 500 not in line

    def test_dead_letters_are_marked(self) -> None:
        out = io.StringIO()
        sink = ConsoleSink(out, color=False)
        letter = DeadLetter.capture(Event(topic="mail.send"), "mailer", RuntimeError("smtp"))
        sink.on_next(letter)
        from rxbus.sinks._batch import as_event

        sink.on_next(as_event(letter))  # as read back from a store
        for line in out.getvalue().splitlines():
            assert "DEAD LETTER" in line and "mail.send" in line and "RuntimeError: smtp" in line

    def test_failed_print_is_counted_not_raised(self) -> None:
        out = io.StringIO()
        sink = ConsoleSink(out, color=False)
        out.close()
        sink.on_next(Event(topic="t.a"))
        assert sink.stats == {"printed": 0, "errors": 1}
