"""A poison event that crashes its consumer process every time ends in the dead-letter stream.

The durable consumer is created with ``max_deliver + 1`` on the server, so after the handler has
crashed the process ``max_deliver`` times the message comes back once more, and the source
dead-letters it unhandled instead of the server silently giving up on it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rxbus import Event
from rxbus.sinks import NatsSink
from tests.conftest import child_env, wait_until
from tests.integration.nats_server import NatsServer, running_nats

pytestmark = [pytest.mark.timeout(120)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    with running_nats(tmp_path) as srv:
        yield srv


def dead_letters(server: NatsServer) -> list[Any]:
    from nats.js.errors import NotFoundError

    async def call(js: Any) -> list[Any]:
        try:
            info = await js.stream_info("ORDERS_DEAD")
        except NotFoundError:
            return []
        return [
            await js.get_msg("ORDERS_DEAD", seq)
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
            if info.state.messages
        ]

    return server.js(call)


def test_an_event_that_crashes_its_process_is_dead_lettered(
    server: NatsServer, tmp_path: Path
) -> None:
    """Deliveries 1 and 2 kill the process; the third start dead-letters the event with its
    delivery count and handles the others."""
    events = [Event(topic="orders.created", data={"i": i}) for i in range(5)]
    poison = Event(topic="orders.poison", data={"i": 99})
    with NatsSink(server.url, "ORDERS", create_stream=True) as sink:
        for e in [*events[:2], poison, *events[2:]]:
            sink.on_next(e)
        assert sink.flush(30)
    handled_file = tmp_path / "handled.ids"
    cmd = [
        sys.executable, "-m", "tests.reliability.nats_workers", "consume",
        server.url, "ORDERS", "billing", str(handled_file),
        "--crash-on-topic", "orders.poison", "--max-deliver", "2", "--ack-wait", "0.5",
    ]  # fmt: skip
    wanted = {e.id for e in events}

    def handled_ids() -> set[str]:
        return set(handled_file.read_text().split()) if handled_file.exists() else set()

    exits = []
    for _ in range(3):  # deliveries 1 and 2 crash the process; the 3rd start dead-letters it
        proc = subprocess.Popen(cmd, env=child_env(), stdin=subprocess.DEVNULL)
        try:
            code = proc.wait(30) if len(exits) < 2 else None
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            # the dead letter and the events behind the poison: the process is stopped only
            # once both are done (the dead letter alone came first under load)
            wait_until(
                lambda: len(dead_letters(server)) == 1 and handled_ids() >= wanted,
                60,
                "the dead letter and the five other events handled",
                interval=0.1,
            )
            proc.terminate()
            assert proc.wait(30) == 0
        exits.append(code)
    assert exits == [3, 3, None]  # crashed twice, then dead-lettered it and lived on
    (letter,) = dead_letters(server)
    assert letter.headers["Nats-Msg-Id"] == poison.id
    assert letter.headers["Rxbus-Deliveries"] == "3"
    assert "max_deliver=2" in letter.headers["Rxbus-Error"]
    assert Event.from_json(letter.data) == poison
    handled = handled_file.read_text().split()
    assert sorted(set(handled)) == sorted(e.id for e in events)
