"""SocketIOSink against a real python-socketio server in a subprocess (tests/integration/sio_receiver.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rxbus import (
    BufferOverflowError,
    BusClosedError,
    DeadLetter,
    DeliveryError,
    Event,
    EventBus,
    Overflow,
)
from rxbus.sinks import SocketIOSink
from tests.conftest import free_port, wait_until
from tests.integration.sio_receiver import ReceiverProcess

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverProcess]:
    """A running receiver on a free port, recording ids in tmp_path/ids.txt."""
    with ReceiverProcess(free_port(), tmp_path / "ids.txt") as proc:
        yield proc


@pytest.fixture
def sinks() -> Iterator[list[SocketIOSink]]:
    """Sinks a test made, closed at the end even if the test failed."""
    made: list[SocketIOSink] = []
    yield made
    for sink in made:
        sink.close(timeout=0.1)


def events(n: int, **data: Any) -> list[Event]:
    return [Event(topic="hook.tool", data={"i": i, **data}) for i in range(n)]


def read_payloads(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class TestDelivery:
    def test_every_event_reaches_the_server_once_through_the_bus(
        self, receiver: ReceiverProcess
    ) -> None:
        """2,000 events published on a bus arrive once each, and the sink's stats are in metrics."""
        sink = SocketIOSink(receiver.url, batch_size=100)
        bus = EventBus(name="sio")
        bus.subscribe(sink, topic="hook.**", name="socketio")
        published = [bus.publish("hook.tool", {"i": i}).id for i in range(2000)]
        assert sink.flush(timeout=20)
        sink_metrics = bus.metrics()["consumers"]["socketio"]["sink"]
        bus.close()
        assert receiver.ids() == published
        assert sink_metrics["sent"] == sink_metrics["acknowledged"] == 2000
        assert sink_metrics["outbox"] == 0
        assert sink_metrics["connected"] == 1
        assert sink_metrics["resent"] == sink_metrics["overflow"] == 0

    def test_many_publisher_threads_share_one_connection(self, receiver: ReceiverProcess) -> None:
        """Four threads calling on_next at once: one connection, every event delivered once."""
        sink = SocketIOSink(receiver.url)
        batches = [events(2500, thread=t) for t in range(4)]
        threads = [
            threading.Thread(target=lambda b=b: [sink.on_next(e) for e in b]) for b in batches
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sink.flush(timeout=30)
        sink.close()
        ids = receiver.ids()
        assert sorted(ids) == sorted(e.id for b in batches for e in b)
        assert receiver.stats()["connections"] == 1

    def test_bus_close_flushes_the_outbox_before_closing(self, receiver: ReceiverProcess) -> None:
        """Closing the bus completes the sink, which delivers everything still queued."""
        sink = SocketIOSink(receiver.url)
        bus = EventBus()
        bus.subscribe(sink)
        published = {bus.publish("hook.tool", {"i": i}).id for i in range(500)}
        bus.close(timeout=10)
        assert set(receiver.ids()) == published
        assert sink.stats["acknowledged"] == 500
        with pytest.raises(BusClosedError, match="closed"):
            sink.on_next(Event(topic="hook.tool"))

    def test_default_payload_is_a_list_of_event_dicts_per_emit(self, tmp_path: Path) -> None:
        """By default each emit is ``"publish"`` on ``/`` carrying a list of Event.to_dict()."""
        payloads = tmp_path / "payloads.jsonl"
        with ReceiverProcess(
            free_port(), tmp_path / "ids.txt", "--payloads-file", str(payloads)
        ) as receiver:
            sent = events(25, note="<b>é</b>")
            with SocketIOSink(receiver.url, batch_size=10) as sink:
                for event in sent:
                    sink.on_next(event)
                assert sink.flush(timeout=10)
        lines = read_payloads(payloads)
        assert {(line["event"], line["namespace"]) for line in lines} == {("publish", "/")}
        assert all(isinstance(line["payload"], list) for line in lines)
        assert max(len(line["payload"]) for line in lines) <= 10
        received = [Event.from_dict(d) for line in lines for d in line["payload"]]
        assert received == sent

    def test_event_name_namespace_and_payload_shape_are_configurable(self, tmp_path: Path) -> None:
        """event=, namespace= and payload= change what goes on the wire; batch_size=1 sends one
        payload per emit, not a list."""
        payloads = tmp_path / "payloads.jsonl"
        args = ("--event", "ingest", "--namespace", "/hooks", "--payloads-file", str(payloads))
        with ReceiverProcess(free_port(), tmp_path / "ids.txt", *args) as receiver:
            sent = events(5)
            with SocketIOSink(
                receiver.url,
                event="ingest",
                namespace="/hooks",
                batch_size=1,
                payload=lambda e: {"id": e.id, "topic": e.topic, "i": e.data["i"]},
            ) as sink:
                for event in sent:
                    sink.on_next(event)
                assert sink.flush(timeout=10)
        lines = read_payloads(payloads)
        assert [line["payload"] for line in lines] == [
            {"id": e.id, "topic": "hook.tool", "i": i} for i, e in enumerate(sent)
        ]
        assert {(line["event"], line["namespace"]) for line in lines} == {("ingest", "/hooks")}


class TestOutages:
    def test_server_down_at_start_queues_then_delivers_when_it_comes_up(
        self, tmp_path: Path, sinks: list[SocketIOSink]
    ) -> None:
        """Events published before the server exists wait in the outbox and arrive later."""
        receiver = ReceiverProcess(free_port(), tmp_path / "ids.txt")
        sink = SocketIOSink(receiver.url, reconnect_delay_max=0.2)
        sinks.append(sink)
        sent = events(500)
        for event in sent:
            sink.on_next(event)
        wait_until(
            lambda: sink.stats["connect_failures"] >= 1,
            timeout=20,
            what="a failed connection attempt",
        )
        stats = sink.stats
        assert (stats["outbox"], stats["connected"], stats["acknowledged"]) == (500, 0, 0)
        with receiver:
            assert sink.flush(timeout=20)
            assert receiver.ids() == [e.id for e in sent]
        assert sink.stats["acknowledged"] == 500

    def test_server_killed_mid_stream_loses_nothing(
        self, receiver: ReceiverProcess, sinks: list[SocketIOSink]
    ) -> None:
        """SIGKILL with batches in flight: they are resent after the restart; none is lost."""
        sink = SocketIOSink(receiver.url, batch_size=50, reconnect_delay_max=0.2)
        sinks.append(sink)
        first, second = events(2000), events(2000)
        for event in first:
            sink.on_next(event)
        wait_until(
            lambda: receiver.stats()["unique"] >= 200, timeout=20, what="the first events to arrive"
        )
        receiver.kill()
        wait_until(lambda: not sink.connected, timeout=20, what="the sink to notice the break")
        for event in second:  # the publisher carries on while the server is gone
            sink.on_next(event)
        receiver.start()
        assert sink.flush(timeout=30)
        assert set(receiver.ids()) == {e.id for e in first + second}
        assert sink.stats["reconnects"] >= 1

    def test_ack_timeout_resends_and_the_receiver_removes_duplicates(
        self, receiver: ReceiverProcess, sinks: list[SocketIOSink]
    ) -> None:
        """A frozen server acks late: the sink resends after ack_timeout; ids stay unique."""
        sink = SocketIOSink(receiver.url, ack_timeout=0.3, batch_size=20)
        sinks.append(sink)
        wait_until(lambda: sink.connected, timeout=20, what="the first connection")
        receiver.pause()
        try:
            sent = events(100)
            for event in sent:
                sink.on_next(event)
            wait_until(lambda: sink.stats["ack_timeouts"] >= 1, timeout=20, what="an ack timeout")
        finally:
            receiver.resume()
        assert sink.flush(timeout=20)
        ids = receiver.ids()
        assert set(ids) == {e.id for e in sent}
        assert len(ids) > len(sent)  # the resends arrived too, and were recognised
        stats = sink.stats
        assert stats["resent"] >= 20
        assert stats["sent"] == 100 + stats["resent"]
        assert receiver.stats()["duplicates"] == len(ids) - 100


class TestRejectionsAndLimits:
    def test_a_rejected_event_is_dead_lettered_and_its_batch_mates_delivered(
        self, receiver: ReceiverProcess
    ) -> None:
        """The server refuses a batch holding a bad event: the rest arrive, the bad one is a
        dead letter naming the server's reason."""
        letters: list[DeadLetter] = []
        sent = events(10)
        poison = Event(topic="hook.tool", data={"reject": True})
        sent.insert(4, poison)
        with SocketIOSink(receiver.url, batch_size=100, dead_letters=letters.append) as sink:
            for event in sent:
                sink.on_next(event)
            assert sink.flush(timeout=10)
            stats = sink.stats
        assert set(receiver.ids()) == {e.id for e in sent} - {poison.id}
        assert [letter.event for letter in letters] == [poison]
        assert "rejected" in str(letters[0].error)
        assert (stats["rejected"], stats["acknowledged"]) == (1, 10)

    def test_subscribed_without_dead_letters_it_uses_the_bus(
        self, receiver: ReceiverProcess
    ) -> None:
        """bus.subscribe(sink) binds the sink to the bus: a refused event is a bus dead letter
        carrying a DeliveryError, named after the consumer."""
        poison = Event(topic="hook.tool", data={"reject": True})
        with EventBus() as bus:
            letters: list[DeadLetter] = []
            bus.dead_letters.subscribe(letters.append)
            sink = SocketIOSink(receiver.url, batch_size=1)
            bus.subscribe(sink, name="sio")
            bus.publish(poison)
            assert sink.flush(timeout=10)
        assert [letter.event for letter in letters] == [poison]
        assert isinstance(letters[0].error, DeliveryError)

    @pytest.mark.parametrize(
        ("failure", "error_type"),
        [("raise", KeyError), ("bytes", TypeError)],
    )
    def test_a_failing_payload_function_dead_letters_its_batch_only(
        self, receiver: ReceiverProcess, failure: str, error_type: type[Exception]
    ) -> None:
        """payload= raising, or returning something that is not JSON, for one event
        dead-letters that emit's events; the connection stays up and later events arrive."""
        letters: list[DeadLetter] = []

        def shape(event: Event) -> dict[str, Any]:
            if event.data.get("bad") and failure == "raise":
                raise KeyError("no such field")
            if event.data.get("bad"):
                return {"id": event.id, "raw": b"\x00"}
            return event.to_dict()

        good, bad = events(3), Event(topic="hook.tool", data={"bad": True})
        with SocketIOSink(
            receiver.url, batch_size=1, payload=shape, dead_letters=letters.append
        ) as sink:
            for event in [good[0], bad, *good[1:]]:
                sink.on_next(event)
            assert sink.flush(timeout=10)
            assert sink.stats["rejected"] == 1
        assert receiver.ids() == [e.id for e in good]
        assert [letter.event for letter in letters] == [bad]
        assert isinstance(letters[0].error, error_type)
        assert sink.stats["reconnects"] == 0

    def test_on_error_delivers_what_is_queued_then_closes(self, receiver: ReceiverProcess) -> None:
        """An upstream error still flushes the outbox before the sink closes."""
        sink = SocketIOSink(receiver.url)
        sent = events(50)
        for event in sent:
            sink.on_next(event)
        sink.on_error(RuntimeError("upstream broke"))
        assert receiver.ids() == [e.id for e in sent]
        assert not sink._thread.is_alive()

    def test_wrong_token_never_connects_and_close_counts_what_was_abandoned(
        self, tmp_path: Path
    ) -> None:
        """A server with a token refuses a wrong one; the right one delivers."""
        with ReceiverProcess(free_port(), tmp_path / "ids.txt", "--token", "s3cret") as receiver:
            wrong = SocketIOSink(receiver.url, token="nope", reconnect_delay_max=0.1)
            for event in events(5):
                wrong.on_next(event)
            wait_until(
                lambda: wrong.stats["connect_failures"] >= 2, timeout=20, what="refused connections"
            )
            assert wrong.last_error is not None
            assert wrong.close(timeout=0.05) == 5
            assert wrong.stats["abandoned"] == 5
            right = SocketIOSink(receiver.url, token="s3cret")
            sent = events(5)
            for event in sent:
                right.on_next(event)
            assert right.flush(timeout=10)
            right.close()
            assert receiver.ids() == [e.id for e in sent]

    def test_full_outbox_raises_and_the_bus_dead_letters_the_event(
        self, sinks: list[SocketIOSink]
    ) -> None:
        """With no server, the 11th event into a 10-event outbox is refused, counted and, on a
        bus, becomes a dead letter; the publisher is never blocked."""
        sink = SocketIOSink(f"http://127.0.0.1:{free_port()}", outbox_size=10)
        sinks.append(sink)
        bus = EventBus()
        letters: list[DeadLetter] = []
        bus.dead_letters.subscribe(letters.append)
        bus.subscribe(sink, name="sio")
        published = [bus.publish("hook.tool", {"i": i}) for i in range(12)]
        assert [letter.event for letter in letters] == published[10:]
        assert all(isinstance(letter.error, BufferOverflowError) for letter in letters)
        assert sink.stats["overflow"] == 2
        assert sink.stats["outbox"] == 10
        assert bus.metrics()["consumers"]["sio"]["failed"] == 2

    def test_drop_newest_counts_without_raising(self, sinks: list[SocketIOSink]) -> None:
        """overflow=DROP_NEWEST drops the new event silently but counts it."""
        sink = SocketIOSink(
            f"http://127.0.0.1:{free_port()}", outbox_size=3, overflow=Overflow.DROP_NEWEST
        )
        sinks.append(sink)
        for event in events(5):
            sink.on_next(event)
        assert (sink.stats["outbox"], sink.stats["overflow"]) == (3, 2)


class TestSpill:
    def test_spill_holds_more_than_memory_and_survives_close(self, tmp_path: Path) -> None:
        """With spill=, 1,000 events fit a 100-event memory outbox while the server is down;
        what is unacknowledged at close stays in the file and the next sink delivers it."""
        spill = tmp_path / "outbox.sqlite"
        receiver = ReceiverProcess(free_port(), tmp_path / "ids.txt")
        sink = SocketIOSink(receiver.url, outbox_size=100, spill=spill)
        sent = events(1000)
        for start in range(0, 1000, 25):
            # Publish in bursts the spiller can absorb, as a steady producer would.
            wait_until(
                lambda: sink.stats["in_memory"] <= 50, timeout=20, what="the spiller to catch up"
            )
            for event in sent[start : start + 25]:
                sink.on_next(event)
        stats = sink.stats
        assert (stats["outbox"], stats["overflow"]) == (1000, 0)
        assert stats["spilled"] >= 900
        assert sink.close(timeout=0.05) == 1000
        assert sink.stats["abandoned"] == 0
        with receiver:
            again = SocketIOSink(receiver.url, spill=spill)
            assert again.stats["outbox"] == 1000
            assert again.flush(timeout=20)
            assert again.close() == 0
        assert receiver.ids() == [e.id for e in sent]
        again_after = SocketIOSink(receiver.url, spill=spill)
        assert again_after.stats["outbox"] == 0  # acknowledged rows were deleted
        again_after.close(timeout=0.05)


class TestArguments:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"url": "127.0.0.1:80"}, "url must be"),
            ({"event": "connect"}, "event must be"),
            ({"namespace": "hooks"}, "namespace must be"),
            ({"batch_size": 0}, "batch_size must be"),
            ({"window": -1}, "window must be"),
            ({"ack_timeout": 0}, "ack_timeout must be"),
            ({"outbox_size": 1.5}, "outbox_size must be"),
            ({"overflow": Overflow.BLOCK}, "never blocks"),
            ({"overflow": "sometimes"}, "overflow must be"),
            ({"payload": "to_dict"}, "payload must be"),
            ({"transports": ["carrier-pigeon"]}, "transports must be"),
        ],
    )
    def test_bad_argument_raises_value_error_naming_it(
        self, kwargs: dict[str, Any], message: str
    ) -> None:
        """Each bad argument raises one ValueError that names the argument and the value."""
        args = {"url": "http://127.0.0.1:9", **kwargs}
        url = args.pop("url")
        with pytest.raises(ValueError, match=message) as info:
            SocketIOSink(url, **args)
        assert repr(next(iter(kwargs.values()))) in str(info.value) or "sometimes" in str(
            info.value
        )

    def test_close_is_idempotent(self) -> None:
        """close() twice returns the same count and stops the sink's thread."""
        sink = SocketIOSink(f"http://127.0.0.1:{free_port()}")
        assert sink.close(timeout=0.05) == 0
        assert sink.close(timeout=0.05) == 0
        assert not sink._thread.is_alive()


class TestRxbusServe:
    """The sink against the project's own server (``rxbus serve`` in a subprocess)."""

    def test_sink_delivers_to_rxbus_serve_with_a_token(self, tmp_path: Path) -> None:
        """Every event published on a local bus ends up in the server's store, once."""
        from tests.integration.serve_process import ServeProcess

        with ServeProcess(tmp_path / "serve", token="t0k3n") as server:
            bus = EventBus()
            sink = SocketIOSink(server.url, token="t0k3n", batch_size=64)
            bus.subscribe(sink, name="socketio")
            published = [bus.publish("hook.tool", {"i": i}).id for i in range(1000)]
            assert sink.flush(timeout=30)
            bus.close()
            assert [d["id"] for d in server.history("hook.**")] == published
            assert sink.stats["acknowledged"] == 1000

    def test_sink_survives_rxbus_serve_being_killed(self, tmp_path: Path) -> None:
        """SIGKILL of ``rxbus serve`` mid-stream: after its restart the store holds every event
        exactly once (the sink resends, the server dedupes by id)."""
        import signal

        from tests.integration.serve_process import ServeProcess

        server = ServeProcess(tmp_path / "serve").start()
        sink = SocketIOSink(server.url, batch_size=50, reconnect_delay_max=0.2)
        try:
            first, second = events(1000), events(1000)
            for event in first:
                sink.on_next(event)
            wait_until(lambda: sink.stats["acknowledged"] >= 100, timeout=20, what="the first acks")
            server.stop(signal.SIGKILL)
            wait_until(lambda: not sink.connected, timeout=20, what="the sink to notice the break")
            for event in second:
                sink.on_next(event)
            server.start()
            assert sink.flush(timeout=30)
            stored = [e.id for e in server.stored()]
        finally:
            sink.close(timeout=0.1)
            server.stop()
        assert sorted(stored) == sorted(e.id for e in first + second)
