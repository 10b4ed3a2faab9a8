"""Event: immutability, value equality, exact JSON round trip, ids, and clear errors."""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxbus import Event, InvalidTopicError, PayloadError
from rxbus.event import new_event_id

segment = st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True)
topics = st.lists(segment, min_size=1, max_size=6).map(".".join)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.dictionaries(st.text(max_size=10), json_values, max_size=6)
times = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


class TestConstruction:
    def test_keyword_construction_fills_defaults(self) -> None:
        """Only topic, type and data are needed; the rest has documented defaults."""
        e = Event(topic="hook.tool", type="PreToolUse", data={"tool": "Bash"})
        assert (e.source, e.metadata, e.correlation_id) == ("", {}, None)
        assert e.timestamp.tzinfo is UTC
        assert abs(e.timestamp - datetime.now(UTC)) < timedelta(seconds=5)
        assert isinstance(e.id, str) and len(e.id) == 30

    def test_type_defaults_to_last_topic_segment(self) -> None:
        assert Event(topic="build.error").type == "error"

    def test_frozen_and_slotted(self) -> None:
        e = Event(topic="a.b")
        with pytest.raises(dataclasses.FrozenInstanceError):
            e.topic = "c"  # type: ignore[misc]
        assert not hasattr(e, "__dict__")
        assert [f.name for f in dataclasses.fields(Event)] == [
            "topic",
            "type",
            "data",
            "id",
            "timestamp",
            "source",
            "metadata",
            "correlation_id",
        ]

    def test_value_equality(self) -> None:
        e = Event(topic="a.b", data={"x": 1})
        assert e == dataclasses.replace(e)
        assert e != e.evolve(data={"x": 2})

    def test_non_utc_timestamp_is_normalised_to_utc(self) -> None:
        t = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
        e = Event(topic="a", timestamp=t)
        assert e.timestamp == t and e.timestamp.tzinfo is UTC and e.timestamp.hour == 10


class TestBadInput:
    @pytest.mark.parametrize("topic", ["", "a..b", "a.b c", "ä", "a." * 17 + "a", "x" * 256, 3])
    def test_invalid_topic_names_the_value(self, topic: object) -> None:
        with pytest.raises(InvalidTopicError) as info:
            Event(topic=topic)  # type: ignore[arg-type]
        assert repr(topic)[:20].strip("'") in str(info.value) or "characters" in str(info.value)

    @pytest.mark.parametrize(
        ("field", "value", "needle"),
        [
            ("data", {"x": object()}, "data is not JSON-serialisable"),
            ("data", [1, 2], "data must be a dict"),
            ("data", {1: "non-str key"}, "data is not JSON-serialisable"),
            ("data", {"when": datetime(2026, 1, 1, tzinfo=UTC)}, "data is not JSON-serialisable"),
            ("metadata", {"k": type("Tag", (str,), {})("x")}, "metadata is not JSON-serialisable"),
            ("metadata", "x", "metadata must be a dict"),
            ("source", 5, "source must be a str"),
            ("timestamp", datetime(2026, 1, 1), "timestamp must be timezone-aware"),
            ("timestamp", "2026-01-01", "timestamp must be a datetime"),
            ("correlation_id", 7, "correlation_id must be a str"),
            ("id", "", "id must be a non-empty str"),
        ],
    )
    def test_bad_field_raises_payload_error_naming_it(
        self, field: str, value: object, needle: str
    ) -> None:
        with pytest.raises(PayloadError, match=needle):
            Event(topic="a.b", **{field: value})

    def test_errors_are_value_errors(self) -> None:
        assert issubclass(PayloadError, ValueError) and issubclass(InvalidTopicError, ValueError)

    @pytest.mark.parametrize(
        ("raw", "needle"),
        [
            (b"{not json", "invalid event JSON"),
            (b"[1,2]", "must be a JSON object"),
            (b'{"type": "x"}', "'topic' is missing"),
            (b'{"topic": "a", "bogus": 1}', "unknown event field"),
            (b'{"topic": "a", "timestamp": "yesterday"}', "'yesterday' is not an ISO 8601"),
            (b'{"topic": "a", "timestamp": "2026-01-01T00:00:00"}', "timezone-aware"),
        ],
    )
    def test_from_json_rejects_malformed_input(self, raw: bytes, needle: str) -> None:
        with pytest.raises(PayloadError, match=needle):
            Event.from_json(raw)

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=64) | st.text(max_size=64))
    def test_from_json_on_garbage_raises_only_value_errors(self, raw: bytes | str) -> None:
        """Whatever arrives, the only outcome besides an Event is a clear ValueError."""
        try:
            Event.from_json(raw)
        except ValueError as err:
            assert str(err)


class TestRoundTrip:
    @settings(max_examples=300, deadline=None)
    @given(
        topic=topics,
        data=payloads,
        metadata=payloads,
        ts=times,
        source=st.text(max_size=10),
        cid=st.none() | st.text(max_size=10),
    )
    def test_json_and_dict_round_trip_exactly(self, topic, data, metadata, ts, source, cid) -> None:  # type: ignore[no-untyped-def]
        e = Event(
            topic=topic,
            data=data,
            metadata=metadata,
            timestamp=ts,
            source=source,
            correlation_id=cid,
        )
        assert Event.from_json(e.to_json()) == e
        assert Event.from_json(e.to_json().decode()) == e
        assert Event.from_dict(e.to_dict()) == e
        assert Event.from_dict(orjson.loads(e.to_json())).timestamp == ts

    def test_microseconds_survive(self) -> None:
        ts = datetime(2026, 11, 28, 6, 0, 0, 1, tzinfo=UTC)
        assert Event.from_json(Event(topic="a", timestamp=ts).to_json()).timestamp == ts


def _ids_in_process(n: int) -> list[str]:
    return [new_event_id() for _ in range(n)]


class TestIds:
    def test_unique_across_threads(self) -> None:
        out: list[list[str]] = []
        threads = [
            threading.Thread(target=lambda: out.append(_ids_in_process(20_000))) for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        flat = [i for chunk in out for i in chunk]
        assert len(flat) == 160_000 == len(set(flat))

    def test_unique_across_processes_including_forks(self) -> None:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(4) as pool:
            chunks = pool.map(_ids_in_process, [10_000] * 4)
        flat = [i for chunk in chunks for i in chunk] + _ids_in_process(10_000)
        assert len(flat) == len(set(flat)) == 50_000

    @pytest.mark.parametrize("start", [0, 0xFFD, 0x1FFFFFF, 0xFFFFFFFFFFFD])
    def test_counter_part_is_the_counter_in_12_hex_digits_across_cache_edges(
        self, monkeypatch: pytest.MonkeyPatch, start: int
    ) -> None:
        """The counter's high digits are cached per 4,096 ids and its low three come from a
        table: across those edges (and the 48-bit wrap) each id still ends in its own count."""
        import itertools

        from rxbus.event import _ids

        monkeypatch.setattr(_ids, "counter", itertools.count(start))
        monkeypatch.setattr(_ids, "high", (-1, ""))
        ids = [new_event_id() for _ in range(8)]
        assert [int(i[18:], 16) for i in ids] == [(start + k) & 0xFFFFFFFFFFFF for k in range(8)]
        assert all(len(i) == 30 for i in ids)

    def test_ids_sort_by_creation_time(self) -> None:
        events = [Event(topic="a") for _ in range(2_000)]
        assert [e.id for e in events] == sorted(e.id for e in events)
        a = new_event_id()
        later = datetime.now(UTC)
        while datetime.now(UTC) - later < timedelta(milliseconds=2):
            pass
        assert new_event_id() > a
