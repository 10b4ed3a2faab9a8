"""The sink's process killed between publish and ack: the replay is deduplicated by the server.

A producer replays its own event log (the same ids every run) through a NatsSink. The first run
is SIGKILLed with a batch in flight: the server is paused (SIGSTOP) until the sink's next
publishes sit unread in its socket, then the sink's process is killed and the server resumed,
so it stores publishes whose acks nobody will read. The second run sends the whole log again;
the server drops every event it already had, by ``Nats-Msg-Id``, and the stream ends with each
event exactly once.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from rxbus import Event
from tests.conftest import child_env, wait_until
from tests.integration.nats_server import NatsServer, running_nats

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

COUNT = 50_000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    with running_nats(tmp_path) as srv:
        yield srv


def stored(server: NatsServer) -> int:
    from nats.js.errors import NotFoundError

    async def call(js: Any) -> int:
        try:
            return int((await js.stream_info("LOG")).state.messages)
        except NotFoundError:
            return 0

    return server.js(call)


def stream_ids(server: NatsServer) -> list[str]:
    async def call(js: Any) -> list[str]:
        sub = await js.pull_subscribe("rxbus.>", stream="LOG")
        ids: list[str] = []
        while len(ids) < COUNT:
            for msg in await sub.fetch(1000, timeout=5):
                ids.append(msg.headers["Nats-Msg-Id"])
                await msg.ack()
        return ids

    return server.js(call, timeout=60)


def unread_bytes(port: int) -> int:
    """Bytes received by the kernel on established sockets of local ``port`` and not yet read
    by the process (``/proc/net/tcp`` rx_queue)."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if state == "01" and int(local.split(":")[1], 16) == port:
            total += int(queues.split(":")[1], 16)
    return total


def publisher(server: NatsServer, events_file: Path, stats_file: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.nats_workers", "publish",
         server.url, "LOG", str(events_file), str(stats_file)],
        env=child_env(measured=False),  # see child_env
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_a_killed_sink_process_replays_without_duplicates(
    server: NatsServer, tmp_path: Path
) -> None:
    """SIGKILL the publishing process mid-stream, replay the same log: the stream holds every
    event once, and the replay's acks report the earlier ones as duplicates."""
    log = [Event(topic=f"orders.c{n % 5}", data={"n": n}) for n in range(COUNT)]
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"\n".join(e.to_json() for e in log))

    first = publisher(server, events_file, tmp_path / "first.json")
    assert server.process is not None
    try:
        wait_until(lambda: stored(server) >= COUNT // 3, 60, "a third stored", interval=0.005)
        before_pause = stored(server)
        server.process.send_signal(signal.SIGSTOP)
        try:
            # The sink goes on publishing its batch into the paused server's socket.
            wait_until(
                lambda: unread_bytes(server.port) > 0, 30, "publishes the server has not read"
            )
            first.send_signal(signal.SIGKILL)
            assert first.wait(10) == -signal.SIGKILL
        finally:
            server.process.send_signal(signal.SIGCONT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            first.kill()
        first.wait(10)
    # The server reads what the dead sink had sent and stores it: published, never acknowledged.
    wait_until(
        lambda: stored(server) > before_pause, 30, "the in-flight publishes stored", interval=0.05
    )
    at_kill = stored(server)

    second = publisher(server, events_file, tmp_path / "second.json")
    assert second.wait(120) == 0
    replay = orjson.loads((tmp_path / "second.json").read_bytes())
    ids = stream_ids(server)
    report = {
        "events": COUNT,
        "stored_before_pause": before_pause,
        "stored_when_killed": at_kill,
        "replay_acknowledged": replay["written"],
        "replay_dropped_as_duplicates": replay["duplicates"],
        "stream_messages": stored(server),
    }
    print("\nnats sink-crash report:", report)
    assert before_pause < at_kill < COUNT  # killed mid-stream, with publishes unacknowledged
    assert report["stream_messages"] == COUNT  # nothing twice, nothing missing
    assert sorted(ids) == sorted(e.id for e in log)
    assert replay["written"] == COUNT and replay["lost"] == 0
    # Everything the first run had stored came back as a duplicate (the server may have
    # stored a few more of its in-flight publishes after the count was taken).
    assert replay["duplicates"] >= at_kill
