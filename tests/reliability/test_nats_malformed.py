"""Malformed messages in a JetStream stream (hypothesis): every message is either handled or
dead-lettered, counted, and the source keeps going."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxbus import Event
from rxbus.sources import nats_stream
from tests.conftest import wait_until
from tests.integration.nats_server import NatsServer, running_nats

pytestmark = [pytest.mark.timeout(300)]

STREAMS = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with running_nats(tmp_path_factory.mktemp("nats-fuzz")) as srv:
        yield srv


payloads = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda d: Event(topic="orders.created", data=d).to_json(),
        st.dictionaries(
            st.text(max_size=8), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20), max_size=4
        ),
    ),
    st.builds(lambda t: b'{"topic": ' + t.encode("utf-8", "replace") + b"}", st.text(max_size=30)),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(payloads, min_size=1, max_size=15))
def test_every_message_is_handled_or_dead_lettered(
    server: NatsServer, messages: list[bytes]
) -> None:
    """Whatever the payloads, handled + dead-lettered == published, with no error upstream."""
    stream = f"FUZZ{next(STREAMS)}"
    prefix = stream.lower()

    async def setup(js: Any) -> None:
        await js.add_stream(name=stream, subjects=[f"{prefix}.>"], storage="memory")
        for body in messages:
            await js.publish(f"{prefix}.orders.created", body)

    server.js(setup)
    valid = 0
    for body in messages:
        try:
            Event.from_json(body)
            valid += 1
        except ValueError:
            pass
    handled: list[Event] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def on_next(event: Event) -> None:
        with lock:
            handled.append(event)

    source = nats_stream(
        server.url, stream, "d", subject_prefix=prefix, create_stream=False, fetch_timeout=0.2
    )
    sub = source.subscribe(on_next, errors.append)
    try:
        wait_until(
            lambda: len(handled) + source.stats["dead_lettered"] == len(messages),
            30,
            "every message handled or dead-lettered",
        )
    finally:
        sub.dispose()
    assert errors == []
    assert len(handled) == valid
    assert source.stats["dead_lettered"] == len(messages) - valid
