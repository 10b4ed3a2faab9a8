"""LogHandler and loguru_sink: log records become bus events, and logging never fails."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loguru import logger as loguru_logger

from rxbus import EventBus
from rxbus.errors import InvalidTopicError
from rxbus.producers import LogHandler, loguru_sink
from rxbus.topics import validate_topic


@pytest.fixture
def bus() -> Iterator[EventBus]:
    b = EventBus(name="logs", history=10_000)
    yield b
    b.close()


@pytest.fixture
def log(bus: EventBus) -> Iterator[tuple[logging.Logger, LogHandler]]:
    """A fresh non-propagating logger with a LogHandler attached."""
    lg = logging.getLogger("tests.producers.app")
    lg.setLevel(logging.DEBUG)
    lg.propagate = False
    handler = LogHandler(bus)
    lg.addHandler(handler)
    yield lg, handler
    lg.removeHandler(handler)


class TestLogHandler:
    def test_record_becomes_event(
        self, bus: EventBus, log: tuple[logging.Logger, LogHandler]
    ) -> None:
        """Topic is log.<logger>, type the level, data the record's fields and extras."""
        lg, handler = log
        lg.info("paid %d", 3, extra={"order": "A-1", "items": [1, 2]})
        [event] = bus.history("log.**")
        assert event.topic == "log.tests.producers.app"
        assert event.type == "INFO"
        assert event.source == "logging"
        d = event.data
        assert d["message"] == "paid 3"
        assert (d["level"], d["logger"], d["module"]) == ("INFO", lg.name, "test_log_handler")
        assert d["function"] == "test_record_becomes_event" and d["line"] > 0
        assert d["exception"] is None
        assert (d["order"], d["items"]) == ("A-1", [1, 2])
        assert d["created"].endswith("+00:00")
        assert handler.stats == {"published": 1, "dropped": 0, "suppressed": 0}

    def test_exception_text(self, bus: EventBus, log: tuple[logging.Logger, LogHandler]) -> None:
        """logger.exception carries the formatted traceback."""
        lg, _ = log
        try:
            raise KeyError("sku-9")
        except KeyError:
            lg.exception("lookup failed")
        [event] = bus.history("log.**")
        assert event.type == "ERROR"
        assert "Traceback" in event.data["exception"]
        assert "KeyError: 'sku-9'" in event.data["exception"]

    def test_unserialisable_extra_is_named_not_fatal(
        self, bus: EventBus, log: tuple[logging.Logger, LogHandler]
    ) -> None:
        """An extra field orjson cannot serialise is left out and named; the rest is kept."""
        lg, _ = log
        lg.warning("x", extra={"ok": 1, "lock": threading.Lock(), "message_id": 5})
        [event] = bus.history("log.**")
        assert event.data["ok"] == 1
        assert event.data["unserialisable"] == ["lock"]
        assert event.data["message_id"] == 5

    def test_extra_shadowing_own_field_is_renamed(self, bus: EventBus) -> None:
        """An extra named like a payload field (``line``) is kept as ``extra_line``."""
        handler = LogHandler(bus)
        record = logging.LogRecord("svc", logging.INFO, __file__, 10, "hi", None, None)
        record.line = "not the line number"
        handler.handle(record)
        data = bus.history("log.**")[0].data
        assert data["line"] == 10 and data["extra_line"] == "not the line number"

    def test_bad_format_args_still_publish(self, bus: EventBus) -> None:
        """A record whose %-arguments do not format is published with the raw message."""
        record = logging.LogRecord("svc", logging.ERROR, "", 1, "%d items", ("many",), None)
        LogHandler(bus).handle(record)
        [event] = bus.history("log.**")
        assert event.data["message"].startswith("%d items (args ('many',)")

    def test_closed_bus_drops_with_count(
        self, bus: EventBus, log: tuple[logging.Logger, LogHandler]
    ) -> None:
        """After close the logging call returns normally and the record is counted as dropped."""
        lg, handler = log
        bus.close()
        lg.error("after close")
        assert handler.stats == {"published": 0, "dropped": 1, "suppressed": 0}
        assert type(handler.last_error).__name__ == "BusClosedError"

    def test_too_large_drops_with_count(self) -> None:
        """A record larger than max_event_bytes is dropped and counted."""
        with EventBus(max_event_bytes=200) as small:
            handler = LogHandler(small)
            handler.handle(logging.LogRecord("big", logging.INFO, "", 1, "x" * 500, None, None))
            handler.handle(logging.LogRecord("big", logging.INFO, "", 1, "ok", None, None))
            assert handler.stats == {"published": 1, "dropped": 1, "suppressed": 0}
            assert [e.data["message"] for e in small.history()] == ["ok"]

    def test_no_recursion_from_a_sync_consumer(
        self, bus: EventBus, log: tuple[logging.Logger, LogHandler]
    ) -> None:
        """A sync consumer that logs on every log event does not feed itself forever."""
        lg, handler = log
        consumer = bus.subscribe(lambda e: lg.info("saw %s", e.topic), topic="log.**")
        lg.info("first")
        assert [e.data["message"] for e in bus.history("log.**")] == ["first"]
        assert handler.stats == {"published": 1, "dropped": 0, "suppressed": 1}
        assert consumer.stats.delivered == 1 and consumer.stats.failed == 0

    def test_rxbus_own_loggers_are_suppressed(self, bus: EventBus) -> None:
        """Records from rxbus's own loggers never become events (no loop through the bus)."""
        handler = LogHandler(bus)
        for name in ("rxbus", "rxbus.server", "rxbusy"):
            handler.handle(logging.LogRecord(name, logging.ERROR, "", 1, "m", None, None))
        assert [e.topic for e in bus.history()] == ["log.rxbusy"]
        assert handler.stats["suppressed"] == 2

    def test_root_logger_and_odd_names(self, bus: EventBus) -> None:
        """The root logger is log.root; names are cut to valid topic segments."""
        handler = LogHandler(bus, topic_prefix="sys.log")
        for name in ("root", "", "my app..v2", "ünï.cødé", "a." + ".".join("s" * 20)):
            handler.handle(logging.LogRecord(name, logging.INFO, "", 1, "m", None, None))
        topics = [e.topic for e in bus.history()]
        assert topics[:4] == [
            "sys.log.root",
            "sys.log.root",
            "sys.log.my_app.v2",
            "sys.log._n_.c_d_",
        ]
        assert topics[4].count(".") == 15

    def test_invalid_prefix_is_refused(self, bus: EventBus) -> None:
        """A bad topic_prefix raises at construction, naming it."""
        with pytest.raises(InvalidTopicError, match="log prefix"):
            LogHandler(bus, topic_prefix="log prefix")

    def test_level_filter(self, bus: EventBus) -> None:
        """The handler's level filters as any logging handler's does."""
        lg = logging.getLogger("tests.producers.levels")
        lg.propagate = False
        lg.setLevel(logging.DEBUG)
        handler = LogHandler(bus, level=logging.WARNING)
        lg.addHandler(handler)
        try:
            lg.info("quiet")
            lg.warning("loud")
        finally:
            lg.removeHandler(handler)
        assert [e.type for e in bus.history()] == ["WARNING"]

    def test_every_record_counted_across_threads(self, bus: EventBus) -> None:
        """4 threads x 500 records: each one published, none lost or duplicated."""
        handler = LogHandler(bus)
        seen: list[str] = []
        bus.subscribe(lambda e: seen.append(e.data["message"]), topic="log.**", mode="thread")

        def work(n: int) -> None:
            for i in range(500):
                handler.handle(
                    logging.LogRecord(f"w{n}", logging.INFO, "", 1, f"{n}-{i}", None, None)
                )

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        bus.close()
        assert handler.stats == {"published": 2000, "dropped": 0, "suppressed": 0}
        assert sorted(seen) == sorted(f"{n}-{i}" for n in range(4) for i in range(500))

    def test_thread_consumer_that_logs_does_not_deadlock(self, bus: EventBus) -> None:
        """A publish waiting for room in a full queue does not hold a lock the consumer's
        worker needs to log: 200 records go through a queue of 1 while the worker logs each."""
        handler = LogHandler(bus)
        app, worker = logging.getLogger("tests.dl.app"), logging.getLogger("tests.dl.worker")
        for lg in (app, worker):
            lg.propagate = False
            lg.setLevel(logging.INFO)
            lg.addHandler(handler)
        seen: list[str] = []

        def work(event: object) -> None:
            worker.info("handled %s", getattr(event, "id", "?"))
            seen.append("x")

        bus.subscribe(work, topic="log.tests.dl.app", mode="thread", queue_size=1, name="w")
        producer = threading.Thread(target=lambda: [app.info("n=%d", n) for n in range(200)])
        try:
            producer.start()
            producer.join(timeout=30)
            assert not producer.is_alive(), "the logging call is stuck"
            bus.close()  # the worker handles the queued events, still logging through handler
        finally:
            for lg in (app, worker):
                lg.removeHandler(handler)
        assert len(seen) == 200
        stats = handler.stats
        # the worker's last record may come after close(): refused, and counted as dropped
        assert stats["published"] + stats["dropped"] == 400 and stats["suppressed"] == 0
        assert stats["published"] >= 399

    @settings(max_examples=200, deadline=None)
    @given(
        name=st.text(max_size=300),
        msg=st.one_of(st.text(max_size=200), st.integers(), st.none()),
        args=st.one_of(
            st.none(), st.tuples(st.text(max_size=5)), st.tuples(st.integers(), st.floats())
        ),
        extra=st.dictionaries(
            st.from_regex(r"[a-z][a-z_]{0,9}", fullmatch=True),
            st.one_of(
                st.integers(), st.text(max_size=10), st.just(object()), st.binary(max_size=4)
            ),
            max_size=4,
        ),
    )
    def test_malformed_records_never_raise(
        self, name: str, msg: object, args: object, extra: dict
    ) -> None:
        """Any logger name, message, args and extras: published or counted, never raised."""
        with EventBus(history=10) as b:
            handler = LogHandler(b)
            record = logging.LogRecord(name, logging.INFO, "", 1, msg, args, None)
            for key, value in extra.items():
                if key not in record.__dict__:
                    setattr(record, key, value)
            handler.handle(record)
            stats = handler.stats
            assert stats["published"] + stats["dropped"] + stats["suppressed"] == 1
            if stats["published"]:
                validate_topic(b.history()[-1].topic)


class TestLoguruSink:
    def test_record_becomes_event(self, bus: EventBus) -> None:
        """A loguru record, with bound extras and an exception, becomes one event."""
        sink = loguru_sink(bus)
        handler_id = loguru_logger.add(sink, level="INFO")
        try:
            loguru_logger.bind(order=7).info("paid {}", "now")
            try:
                1 / 0  # noqa: B018
            except ZeroDivisionError:
                loguru_logger.exception("boom")
            loguru_logger.debug("below the level")
        finally:
            loguru_logger.remove(handler_id)
        paid, boom = bus.history("log.**")
        assert paid.topic == "log.tests.producers.test_log_handler"
        assert (paid.type, paid.source) == ("INFO", "loguru")
        assert paid.data["message"] == "paid now" and paid.data["order"] == 7
        assert paid.data["function"] == "test_record_becomes_event"
        assert boom.type == "ERROR" and "ZeroDivisionError" in boom.data["exception"]
        assert sink.stats == {"published": 2, "dropped": 0, "suppressed": 0}

    def test_rxbus_records_suppressed_and_closed_bus_dropped(self, bus: EventBus) -> None:
        """rxbus's own loguru records are skipped; a closed bus counts a drop, never raises."""
        sink = loguru_sink(bus)
        handler_id = loguru_logger.add(sink, level="INFO")
        loguru_logger.enable("rxbus")
        try:
            loguru_logger.patch(lambda r: r.update(name="rxbus.bus")).error("internal")
            bus.close()
            loguru_logger.info("after close")
        finally:
            loguru_logger.disable("rxbus")
            loguru_logger.remove(handler_id)
        assert sink.stats == {"published": 0, "dropped": 1, "suppressed": 1}

    def test_rxbus_logging_for_real_does_not_loop(self, bus: EventBus) -> None:
        """A real rxbus log record (the bus logs a dead-letter observer that raised), with
        rxbus's logs enabled into the sink: suppressed, so no log event feeds the failing
        consumer again, and the publish that caused it returns normally."""
        sink = loguru_sink(bus)
        handler_id = loguru_logger.add(sink, level="INFO")
        loguru_logger.enable("rxbus")

        def broken_observer(letter: object) -> None:
            raise RuntimeError("observer down")

        def failing(event: object) -> None:
            raise ValueError("consumer down")

        bus.dead_letters.subscribe(broken_observer)
        consumer = bus.subscribe(failing, topic="**", name="failing")
        try:
            bus.publish("app.start")
        finally:
            loguru_logger.disable("rxbus")
            loguru_logger.remove(handler_id)
        assert sink.stats == {"published": 0, "dropped": 0, "suppressed": 1}
        assert [e.topic for e in bus.history()] == ["app.start"]
        assert consumer.stats.failed == 1

    def test_a_logging_worker_with_a_dropping_queue_does_not_deadlock(self, bus: EventBus) -> None:
        """loguru holds its handler lock while it calls a sink. A thread consumer that logs
        through the same handler must not use Overflow.BLOCK (a publisher blocked on its full
        queue would hold the lock the worker waits for); with DROP_NEWEST nothing deadlocks and
        every record is counted: delivered to the worker or dropped by its queue."""
        sink = loguru_sink(bus)
        handler_id = loguru_logger.add(sink, level="INFO")
        seen: list[int] = []

        def work(event: Any) -> None:
            loguru_logger.info("handled {}", event.data["n"])
            seen.append(event.data["n"])

        worker = bus.subscribe(
            work, topic="log.app", mode="thread", queue_size=1, overflow="drop_newest", name="w"
        )
        app = loguru_logger.patch(lambda record: record.update(name="app"))
        producer = threading.Thread(target=lambda: [app.bind(n=n).info("job") for n in range(200)])
        try:
            producer.start()
            producer.join(timeout=30)
            assert not producer.is_alive(), "the logging call is stuck"
            bus.close()
        finally:
            loguru_logger.remove(handler_id)
        stats = worker.stats
        assert stats.received == 200 and stats.delivered + stats.dropped == 200
        assert sorted(seen) == sorted(set(seen)) and len(seen) == stats.delivered
        assert sink.stats["published"] + sink.stats["dropped"] == 200 + len(seen)
