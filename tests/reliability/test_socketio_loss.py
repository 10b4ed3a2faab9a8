"""Zero loss over Socket.IO, counted: 100,000 events through a bus into SocketIOSink while the
receiving server (a real python-socketio server in a subprocess) is SIGKILLed and restarted, or
SIGSTOPped for 3 s. The receiver records every id it gets, flushed before it acks, so its record
survives the SIGKILL; we compare it with every id the bus published.

For contrast, raw python-socketio (``client.emit`` in a loop, no outbox) runs the kill/restart
scenario too; its loss is measured and reported, not asserted. Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rxbus import Event, EventBus
from rxbus.sinks import SocketIOSink
from tests.conftest import free_port, wait_until
from tests.integration.sio_receiver import ReceiverProcess

# One xdist worker runs these one after another: each offers events at a fixed rate, and two at
# once on a 2-core machine starved the spilling sink until its outbox overflowed (46 of 100,000
# counted as lost under soak).
# alone: each scenario offers 100,000 events at a fixed rate and asserts that none overflowed;
# beside other tests on a 2-core machine the sink's spill path was starved and its outbox
# overflowed (counted, and reported here as loss), which is about the machine, not the sink.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), pytest.mark.alone]

N = 100_000
RATE = 40_000  # events per second offered by the publisher, so outages happen mid-stream
OUTAGE_AT = 25_000  # the disruption starts once the receiver holds this many events
OUTAGE_EVENTS = 15_000  # a killed server stays down while the publisher offers this many more


def received(receiver: ReceiverProcess) -> int:
    try:
        return receiver.stats()["unique"]
    except OSError:  # down: stopped or restarting
        return 0


@dataclass
class Publisher:
    """Offers ``n`` events at ``rate`` per second from its own thread, recording their ids."""

    publish: Callable[[int], str]
    n: int = N
    rate: float = RATE
    ids: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name="publisher")

    def _run(self) -> None:
        start = due = time.perf_counter()
        for i in range(self.n):
            self.ids.append(self.publish(i))
            if i % 500 == 499:
                # Pace in small bursts, each due 500/rate after the one before and never
                # earlier: a publisher the machine held back goes on at `rate`, instead of
                # catching up with a fixed schedule in one burst that a CPU-starved sink could
                # not spill in time (its outbox overflowed under load).
                due += 500 / self.rate
                now = time.perf_counter()
                if due > now:
                    time.sleep(due - now)
                else:
                    due = now
        self.elapsed = time.perf_counter() - start

    def start(self) -> Publisher:
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join(timeout=120)
        assert not self.thread.is_alive(), "publisher stuck"


@dataclass
class Outcome:
    published: int
    unique: int
    lost: int
    duplicates: int
    seconds: float
    extra: dict[str, Any]

    def report(self, name: str, record: Callable[[str, object], None]) -> None:
        line = (
            f"{name}: published={self.published} received_unique={self.unique} "
            f"lost={self.lost} duplicates={self.duplicates} seconds={self.seconds:.2f} "
            f"throughput={self.published / self.seconds:,.0f} ev/s "
            + " ".join(f"{k}={v}" for k, v in self.extra.items())
        )
        print("\n" + line)
        record(name, line)


def count(receiver: ReceiverProcess, published: list[str]) -> tuple[int, int, int]:
    """(unique ids received, ids published but never received, duplicate deliveries)."""
    ids = receiver.ids()
    unique = set(ids)
    return len(unique), len(set(published) - unique), len(ids) - len(unique)


def run_sink(
    tmp_path: Path,
    disrupt: Callable[[ReceiverProcess, Publisher], dict[str, int]],
    rate: float = RATE,
    **sink_options: Any,
) -> Outcome:
    """Publish N events through a bus into a SocketIOSink while ``disrupt`` hits the server."""
    receiver = ReceiverProcess(free_port(), tmp_path / "ids.txt")
    receiver.start()
    try:
        bus = EventBus(name="loss", history=10)
        sink = SocketIOSink(receiver.url, **sink_options)
        bus.subscribe(sink, name="socketio")
        started = time.perf_counter()
        publisher = Publisher(lambda i: bus.publish("loss.test", {"i": i}).id, rate=rate).start()
        during = disrupt(receiver, publisher)
        publisher.join()
        assert sink.flush(timeout=60), f"outbox not drained: {sink.stats}"
        seconds = time.perf_counter() - started
        metrics = bus.metrics()
        bus.close(timeout=10)
        unique, lost, duplicates = count(receiver, publisher.ids)
        stats = metrics["consumers"]["socketio"]["sink"]
        extra = {
            k: stats[k]
            for k in (
                "sent",
                "acknowledged",
                "resent",
                "reconnects",
                "ack_timeouts",
                "overflow",
                "spilled_total",
            )
        }
        extra["publish_p99_us"] = round(metrics["publish_latency_ns"]["p99"] / 1000, 1)
        extra["publish_max_ms"] = round(metrics["publish_latency_ns"]["max"] / 1e6, 2)
        extra["publisher_s"] = round(publisher.elapsed, 2)
        extra.update(during)
        return Outcome(len(publisher.ids), unique, lost, duplicates, seconds, extra)
    finally:
        receiver.stop()


def kill_and_restart(receiver: ReceiverProcess, publisher: Publisher) -> dict[str, int]:
    wait_until(
        lambda: received(receiver) >= OUTAGE_AT, timeout=120, what=f"{OUTAGE_AT} events received"
    )  # well under a second on an idle machine; a minute on a loaded one was seen
    receiver.kill()
    killed_at = len(publisher.ids)
    wait_until(
        lambda: len(publisher.ids) >= min(N, killed_at + OUTAGE_EVENTS),
        timeout=120,
        what="the publisher to carry on during the outage",
    )
    receiver.start()
    return {"published_while_down": len(publisher.ids) - killed_at}


def stop_for_three_seconds(receiver: ReceiverProcess, publisher: Publisher) -> dict[str, int]:
    wait_until(
        lambda: received(receiver) >= OUTAGE_AT, timeout=30, what=f"{OUTAGE_AT} events received"
    )
    receiver.pause()
    stopped_at = len(publisher.ids)
    try:
        time.sleep(3.0)  # the scenario itself: a server frozen for 3 s (GC pause, debugger, VM)
    finally:
        receiver.resume()
    return {"published_while_stopped": len(publisher.ids) - stopped_at}


def test_sink_loses_nothing_when_the_server_is_killed_and_restarted(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """SIGKILL + restart mid-stream: every one of the 100,000 events arrives; duplicates only
    on the wire (the receiver removes them by id)."""
    outcome = run_sink(tmp_path, kill_and_restart)
    outcome.report("sink_kill_restart", record_property)
    assert outcome.published == N
    assert outcome.lost == 0
    assert outcome.unique == N
    assert outcome.extra["reconnects"] >= 1
    assert outcome.extra["published_while_down"] > 0
    assert outcome.extra["acknowledged"] == N


def test_sink_with_small_memory_spills_to_sqlite_and_loses_nothing(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """The kill/restart again with only 10,000 events allowed in memory: the outage's backlog
    goes to the SQLite spill file, nothing overflows, nothing is lost. (Offered at half the rate:
    spilling and reading back costs CPU, and on a shared 2-core machine a full-rate publisher can
    outrun it; the outbox then overflows, counted, which this test would report as loss.)"""
    outcome = run_sink(
        tmp_path,
        kill_and_restart,
        rate=RATE / 2,
        outbox_size=10_000,
        spill=tmp_path / "outbox.sqlite",
    )
    outcome.report("sink_kill_restart_spill", record_property)
    assert outcome.published == N
    assert outcome.lost == 0
    assert outcome.unique == N
    assert outcome.extra["overflow"] == 0
    assert outcome.extra["spilled_total"] > 0
    assert outcome.extra["acknowledged"] == N


def test_sink_loses_nothing_when_the_server_is_stopped_for_three_seconds(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """SIGSTOP for 3 s, then SIGCONT: every one of the 100,000 events arrives."""
    outcome = run_sink(tmp_path, stop_for_three_seconds)
    outcome.report("sink_sigstop_3s", record_property)
    assert outcome.published == N
    assert outcome.lost == 0
    assert outcome.unique == N
    assert outcome.extra["published_while_stopped"] > 0
    assert outcome.extra["acknowledged"] == N


def test_raw_python_socketio_loss_is_counted_under_kill_and_restart(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """The baseline: socketio.Client.emit in a loop, no outbox, same kill/restart. Its loss is
    measured and reported, not asserted (the seed saw 40-66%)."""
    import socketio

    receiver = ReceiverProcess(free_port(), tmp_path / "ids.txt")
    receiver.start()
    client = socketio.Client(handle_sigint=False)  # reconnection on, as the seed used it
    errors = 0
    try:
        client.connect(receiver.url)

        def emit(i: int) -> str:
            nonlocal errors
            event = Event(topic="loss.test", data={"i": i})
            try:
                client.emit("publish", event.to_dict())
            except Exception:  # disconnected: python-socketio raises and the event is gone
                errors += 1
            return event.id

        started = time.perf_counter()
        publisher = Publisher(emit).start()
        during = kill_and_restart(receiver, publisher)
        publisher.join()
        # No acks to wait for: settle once the receiver's count has not moved for 1 s.
        seen = {"count": -1, "since": time.monotonic()}

        def settled() -> bool:
            now = received(receiver)
            if now != seen["count"]:
                seen.update(count=now, since=time.monotonic())
            return time.monotonic() - seen["since"] >= 1.0

        wait_until(settled, timeout=15, what="the receiver's count to settle", interval=0.05)
        seconds = time.perf_counter() - started
        unique, lost, duplicates = count(receiver, publisher.ids)
    finally:
        client.disconnect()
        receiver.stop()
    outcome = Outcome(
        len(publisher.ids),
        unique,
        lost,
        duplicates,
        seconds,
        {"emit_errors": errors, "lost_pct": round(100 * lost / N, 1), **during},
    )
    outcome.report("raw_python_socketio_kill_restart", record_property)
    assert outcome.published == N
    assert outcome.unique + outcome.lost == N  # every event is accounted for, lost or received
