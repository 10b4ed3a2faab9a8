"""NATS JetStream bridge throughput, each way, next to raw nats-py loops in the same run (issue 15).

Against one real ``nats-server -js`` (file storage) started for the module, ``BATCH`` events per
round:

- sink: ``NatsSink.on_next`` for every event until ``flush`` reports all acknowledged, vs two
  floors doing the same job on one asyncio loop with nats-py: the idiomatic one
  (``js.publish_async`` with ``Nats-Msg-Id``, awaiting each chunk's acks) and the leanest one
  (``nc.publish`` with a reply inbox per message, acks matched by a callback; what the sink does).
- source: a fresh durable consumer reads the batch through ``nats_stream`` (parse, emit,
  processed-id record, ack) until all are acknowledged, vs the idiomatic floor
  (``pull_subscribe`` + ``fetch`` + ``msg.ack()``) and the leanest one (pull requests to an
  inbox, a callback, ``+ACK`` published).

Every round uses events (message ids) never published before, so the server stores each one
instead of dropping it as a duplicate; each round checks its counts, so a broken bridge cannot
post a fast number; no timing is asserted. The issue's target: >= 50,000 events/s each way
(<= 20,000 ns/event) and within 1.3x of raw. Run measured:
``pytest tests/benchmarks/test_nats.py --benchmark-only``.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from rxbus import Event
from rxbus.sinks import NatsSink
from rxbus.sources import nats_stream
from tests.benchmarks.conftest import Recorder
from tests.integration.nats_server import NatsServer, running_nats

BATCH = 10_000  # events per round, for the bridge and its floors alike
CHUNK = 500  # the sink's batch and the source's pull size, for the floors too

pytestmark = [pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    path: Path = tmp_path_factory.mktemp("nats-bench")
    with running_nats(path) as srv:
        yield srv


@pytest.fixture(scope="module")
def loop(server: NatsServer) -> Iterator[tuple[asyncio.AbstractEventLoop, Any]]:
    """One asyncio loop and one nats-py connection for the raw floors (and the setup)."""
    import nats

    ev_loop = asyncio.new_event_loop()
    nc = ev_loop.run_until_complete(nats.connect(server.url))
    yield ev_loop, nc
    ev_loop.run_until_complete(nc.close())
    ev_loop.close()


def fresh_events(bench: Recorder) -> Iterator[list[Event]]:
    """Batches of events never published before (new ids), made outside the timed rounds
    where possible: a pool is built up front (one batch when nothing is measured) and refilled
    only if a test outruns it."""
    pool = [make_batch() for _ in range(8 if bench.enabled else 1)]
    while True:
        yield pool.pop() if pool else make_batch()


def make_batch() -> list[Event]:
    return [
        Event(topic="bench.nats", data={"i": i, "tool": "Bash", "ok": True}) for i in range(BATCH)
    ]


@pytest.fixture(scope="module")
def filled(server: NatsServer, loop: tuple[asyncio.AbstractEventLoop, Any]) -> str:
    """A stream ``READ`` holding one batch, for the source benchmarks."""
    ev_loop, nc = loop
    batch = make_batch()

    async def fill() -> None:
        js = nc.jetstream()
        await js.add_stream(name="READ", subjects=["read.>"], storage="file")
        for start in range(0, BATCH, CHUNK):
            futures = [
                await js.publish_async(
                    f"read.{e.topic}", e.to_json(), headers={"Nats-Msg-Id": e.id}
                )
                for e in batch[start : start + CHUNK]
            ]
            await asyncio.gather(*futures)

    ev_loop.run_until_complete(fill())
    return "READ"


def stream_count(loop: tuple[asyncio.AbstractEventLoop, Any], stream: str) -> int:
    ev_loop, nc = loop

    async def info() -> int:
        return int((await nc.jetstream().stream_info(stream)).state.messages)

    return ev_loop.run_until_complete(info())


def per_second(bench: Recorder, key: str) -> None:
    """Print events/s next to the ns/event the report shows."""
    value = bench.report.values.get(key) if bench.enabled else None
    if value:
        print(f"\n{key}: {1e9 / value['median']:,.0f} events/s (median round)")


# -- sink ------------------------------------------------------------------------------------


def test_sink_floor_publish_async(
    bench: Recorder, loop: tuple[asyncio.AbstractEventLoop, Any]
) -> None:
    ev_loop, nc = loop
    batches = fresh_events(bench)

    async def setup() -> None:
        await nc.jetstream().add_stream(name="FLOORA", subjects=["floora.>"], storage="file")

    async def one_round(batch: list[Event]) -> None:
        js = nc.jetstream()
        for start in range(0, BATCH, CHUNK):
            futures = [
                await js.publish_async(
                    f"floora.{e.topic}", e.to_json(), headers={"Nats-Msg-Id": e.id}
                )
                for e in batch[start : start + CHUNK]
            ]
            for ack in await asyncio.gather(*futures):
                assert not ack.duplicate

    ev_loop.run_until_complete(setup())
    calls = bench.measure(
        "nats_sink.floor_publish_async",
        lambda: ev_loop.run_until_complete(one_round(next(batches))),
        ops=BATCH,
    )
    assert stream_count(loop, "FLOORA") == calls * BATCH
    per_second(bench, "nats_sink.floor_publish_async")


def test_sink_floor_lean(bench: Recorder, loop: tuple[asyncio.AbstractEventLoop, Any]) -> None:
    ev_loop, nc = loop
    batches = fresh_events(bench)
    pending: dict[str, asyncio.Future[bytes]] = {}
    inbox = nc.new_inbox()
    seq = itertools.count()

    async def on_ack(msg: Any) -> None:
        future = pending.pop(msg.subject, None)
        if future is not None:
            future.set_result(msg.data)

    async def setup() -> None:
        await nc.jetstream().add_stream(name="FLOORB", subjects=["floorb.>"], storage="file")
        await nc.subscribe(inbox + ".*", cb=on_ack)

    async def one_round(batch: list[Event]) -> None:
        running = asyncio.get_running_loop()
        for start in range(0, BATCH, CHUNK):
            futures = []
            for e in batch[start : start + CHUNK]:
                reply = f"{inbox}.{next(seq)}"
                future = pending[reply] = running.create_future()
                futures.append(future)
                await nc.publish(
                    f"floorb.{e.topic}", e.to_json(), reply=reply, headers={"Nats-Msg-Id": e.id}
                )
            for data in await asyncio.gather(*futures):
                assert b'"duplicate"' not in data and b'"error"' not in data

    ev_loop.run_until_complete(setup())
    calls = bench.measure(
        "nats_sink.floor_lean",
        lambda: ev_loop.run_until_complete(one_round(next(batches))),
        ops=BATCH,
    )
    assert stream_count(loop, "FLOORB") == calls * BATCH
    per_second(bench, "nats_sink.floor_lean")


def test_sink_throughput(
    bench: Recorder, server: NatsServer, loop: tuple[asyncio.AbstractEventLoop, Any]
) -> None:
    batches = fresh_events(bench)
    sink = NatsSink(server.url, "SINK", subject_prefix="sink", create_stream=True)

    def one_round() -> None:
        for e in next(batches):
            sink.on_next(e)
        assert sink.flush(60)

    calls = bench.measure("nats_sink.sink", one_round, ops=BATCH)
    assert sink.close() == 0
    assert sink.stats["written"] == calls * BATCH and sink.stats["duplicates"] == 0
    assert stream_count(loop, "SINK") == calls * BATCH
    note = "target >= 50,000 events/s (<= 20,000 ns/event) and <= 1.3x raw"
    bench.compare(
        "nats sink: on_next..flush vs raw js.publish_async",
        subject="nats_sink.sink",
        floor="nats_sink.floor_publish_async",
        note=note,
    )
    bench.compare(
        "nats sink: on_next..flush vs raw nc.publish + ack inbox",
        subject="nats_sink.sink",
        floor="nats_sink.floor_lean",
        note=note,
    )
    per_second(bench, "nats_sink.sink")


# -- source ----------------------------------------------------------------------------------


def test_source_floor_fetch(
    bench: Recorder, loop: tuple[asyncio.AbstractEventLoop, Any], filled: str
) -> None:
    ev_loop, nc = loop
    durables = itertools.count()

    async def one_round() -> None:
        js = nc.jetstream()
        sub = await js.pull_subscribe("read.>", durable=f"fetch{next(durables)}", stream=filled)
        got = 0
        while got < BATCH:
            for msg in await sub.fetch(CHUNK, timeout=5):
                Event.from_json(msg.data)
                await msg.ack()
                got += 1
        await sub.unsubscribe()
        assert got == BATCH

    bench.measure(
        "nats_source.floor_fetch", lambda: ev_loop.run_until_complete(one_round()), ops=BATCH
    )
    per_second(bench, "nats_source.floor_fetch")


def test_source_floor_lean(
    bench: Recorder, loop: tuple[asyncio.AbstractEventLoop, Any], filled: str
) -> None:
    from nats.js import api

    ev_loop, nc = loop
    durables = itertools.count()

    async def one_round() -> None:
        js = nc.jetstream()
        durable = f"lean{next(durables)}"
        await js.add_consumer(
            filled, api.ConsumerConfig(durable_name=durable, ack_policy=api.AckPolicy.EXPLICIT)
        )
        inbox = nc.new_inbox()
        done = asyncio.Event()
        got = 0

        async def on_msg(msg: Any) -> None:
            nonlocal got
            if not msg.data:  # a status message
                return
            Event.from_json(msg.data)
            await nc.publish(msg.reply, b"+ACK")
            got += 1
            if got % CHUNK == 0:
                if got == BATCH:
                    done.set()
                else:
                    await pull()

        async def pull() -> None:
            request = orjson.dumps({"batch": CHUNK, "expires": 5_000_000_000})
            await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{filled}.{durable}", request, inbox)

        sub = await nc.subscribe(inbox, cb=on_msg)
        await pull()
        await asyncio.wait_for(done.wait(), 60)
        await nc.flush()
        await sub.unsubscribe()

    bench.measure(
        "nats_source.floor_lean", lambda: ev_loop.run_until_complete(one_round()), ops=BATCH
    )
    per_second(bench, "nats_source.floor_lean")


def test_source_throughput(bench: Recorder, server: NatsServer, filled: str) -> None:
    durables = itertools.count()
    received = 0

    def one_round() -> None:
        nonlocal received
        source = nats_stream(
            server.url,
            filled,
            f"bridge{next(durables)}",
            subject_prefix="read",
            create_stream=False,
            batch_size=CHUNK,
        )
        counter = itertools.count(1)
        done = threading.Event()

        def on_next(_event: Event) -> None:
            if next(counter) == BATCH:
                done.set()

        subscription = source.subscribe(on_next)
        assert done.wait(60), source.stats
        subscription.dispose()  # returns once the reader stopped and flushed its acks
        assert source.stats["acked"] == BATCH
        received += source.stats["delivered"]

    calls = bench.measure("nats_source.bridge", one_round, ops=BATCH)
    assert received == calls * BATCH
    note = "target >= 50,000 events/s (<= 20,000 ns/event) and <= 1.3x raw"
    bench.compare(
        "nats source: nats_stream to acked vs raw pull_subscribe/fetch/ack",
        subject="nats_source.bridge",
        floor="nats_source.floor_fetch",
        note=note,
    )
    bench.compare(
        "nats source: nats_stream to acked vs raw pull requests + callback",
        subject="nats_source.bridge",
        floor="nats_source.floor_lean",
        note=note,
    )
    per_second(bench, "nats_source.bridge")
