"""Fuzz ``POST /events`` of a real ``rxbus serve`` with hypothesis.

Whatever the body, the server answers 200 with counts that add up, or a 4xx with a one-line
reason and no change; it never answers 5xx and never stops answering.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxbus.event import Event
from tests.integration.serve_process import ServeProcess

pytestmark = pytest.mark.timeout(300)

FIELDS = ["id", "topic", "type", "timestamp", "source", "data", "metadata", "correlation_id"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
plain_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
topics = st.sampled_from(["fuzz.a", "fuzz.b.c", "", "a..b", "x" * 300, "ok.*", "sp ace"]) | st.text(
    max_size=12
)
field_values = {
    "id": st.none() | st.text(max_size=40) | st.integers(),
    "topic": topics,
    "type": st.none() | st.text(max_size=10) | st.integers(),
    "timestamp": st.none()
    | st.sampled_from(["2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00", "yesterday"])
    | st.integers(),
    "source": st.none() | st.text(max_size=10) | st.integers(),
    "data": st.none() | json_values,
    "metadata": st.none() | json_values,
    "correlation_id": st.none() | st.text(max_size=10) | st.integers(),
}
event_like = st.fixed_dictionaries(
    {"topic": topics},
    optional={name: field_values[name] for name in FIELDS if name != "topic"},
) | st.dictionaries(st.text(max_size=10), json_values, max_size=4)


def encode(items: list[Any], form: str) -> tuple[bytes, str]:
    if form == "array":
        return json.dumps(items).encode(), "application/json"
    if form == "lines":
        return b"\n".join(json.dumps(i).encode() for i in items), "application/x-ndjson"
    return json.dumps(items[0] if items else {}).encode(), "application/json"


bodies = st.one_of(
    st.tuples(
        st.binary(max_size=200), st.sampled_from(["application/json", "application/x-ndjson"])
    ),
    st.tuples(st.lists(event_like, max_size=5), st.sampled_from(["array", "lines", "one"])).map(
        lambda t: encode(*t)
    ),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("fuzz"), args=("--max-body", "65536")) as proc:
        yield proc


def accepted(server: ServeProcess) -> int:
    status, body = server.get("/healthz")
    assert status == 200
    return int(json.loads(body)["accepted"])


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
def test_ingest_answers_every_body_sanely(server: ServeProcess, body: tuple[bytes, str]) -> None:
    """200 with accepted + duplicates = events sent, or 4xx with one line and nothing accepted."""
    raw, content_type = body
    before = accepted(server)
    status, reply = server.post(raw=raw, content_type=content_type)
    after = accepted(server)
    if status == 200:
        assert set(reply) == {"accepted", "duplicates"}
        assert after - before == reply["accepted"]
    else:
        assert status in (400, 413), reply
        assert isinstance(reply["error"], str) and reply["error"]
        assert "\n" not in reply["error"]
        assert after == before


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.builds(
            lambda data: Event(topic="fuzz.valid", data=data),
            st.dictionaries(st.text(max_size=8), plain_json, max_size=4),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_valid_events_round_trip(server: ServeProcess, sent: list[Event]) -> None:
    """Every valid batch is accepted whole and read back unchanged by id."""
    status, reply = server.post([e.to_dict() for e in sent])
    assert (status, reply) == (200, {"accepted": len(sent), "duplicates": 0})
    stored = {e["id"]: Event.from_dict(e) for e in server.history("fuzz.valid", after=None)}
    assert all(stored[e.id] == e for e in sent)


def test_store_matches_the_accepted_count(server: ServeProcess) -> None:
    """After the fuzzing, the store holds exactly as many events as the server accepted."""
    assert len(server.history("**")) == accepted(server)
