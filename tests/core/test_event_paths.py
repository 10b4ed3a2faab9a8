"""One way to make an Event: an event from any path can be published again and arrives equal."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import reactivex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rxbus.operators as ops
from rxbus import Event, EventBus, PayloadError
from rxbus.sinks import JsonlSink, SQLiteStore, read_jsonl

segment = st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True)
topics = st.lists(segment, min_size=1, max_size=4).map(".".join)
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
json_dict = st.dictionaries(st.text(max_size=8), json_value, max_size=5)
events = st.builds(
    Event,
    topic=topics,
    type=st.text(min_size=1, max_size=10),
    data=json_dict,
    source=st.text(max_size=10),
    metadata=json_dict,
    correlation_id=st.none() | st.text(min_size=1, max_size=12),
)


def _via_jsonl(event: Event) -> Event:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "e.jsonl"
        with JsonlSink(path) as sink:
            sink.on_next(event)
        (back,) = list(read_jsonl(path))
        return back


def _via_sqlite(event: Event) -> Event:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "e.db"
        with SQLiteStore(path) as store:
            store.on_next(event)
            store.flush()
            (back,) = store.query()
        return back


def _via_enrich(event: Event) -> Event:
    got: list[Event] = []
    reactivex.of(event).pipe(ops.enrich(path="enrich")).subscribe(got.append)
    return got[0]


PATHS: dict[str, Callable[[Event], Event]] = {
    "constructor": lambda e: Event(
        topic=e.topic,
        type=e.type,
        data=e.data,
        id=e.id,
        timestamp=e.timestamp,
        source=e.source,
        metadata=e.metadata,
        correlation_id=e.correlation_id,
    ),
    "from_json": lambda e: Event.from_json(e.to_json()),  # also how the Redis source reads
    "from_dict": lambda e: Event.from_dict(e.to_dict()),
    "evolve": lambda e: e.evolve(source="evolved"),
    "enrich": _via_enrich,
    "read_jsonl": _via_jsonl,
    "sqlite_query": _via_sqlite,
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=events)
def test_an_event_from_any_path_republishes_and_arrives_equal(event: Event) -> None:
    for name, path in PATHS.items():
        made = path(event)
        with EventBus(name=name, max_event_bytes=10_000_000) as bus:
            got: list[Event] = []
            bus.subscribe(got.append)
            assert bus.publish(made) is made
            assert got == [made], name
        assert made.payload_size == Event.from_json(made.to_json()).payload_size, name
        assert made.id == event.id, name


def test_payload_size_is_measured_when_a_path_did_not_set_it() -> None:
    made = Event._trusted("a.b", "b", {"k": "v" * 100}, "", {}, None)
    assert made.payload_size == len(b'{"k":"' + b"v" * 100 + b'"}')
    with EventBus(max_event_bytes=50) as bus, pytest.raises(PayloadError, match="max_event_bytes"):
        bus.publish(made)
