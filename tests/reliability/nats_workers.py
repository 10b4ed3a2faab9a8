"""Producer and consumer processes for the NATS crash tests (run with ``python -m``).

    python -m tests.reliability.nats_workers publish URL STREAM EVENTS_FILE STATS_FILE
    python -m tests.reliability.nats_workers consume URL STREAM DURABLE HANDLED_FILE \
        [--ack-wait S] [--fetch-timeout S] [--crash-on-topic TOPIC] [--max-deliver N] [--kill-after N]

``publish`` sends every event of a JSON-lines file through a NatsSink (the same ids on every
run, as a producer replaying its own log would) and writes the sink's stats to STATS_FILE.
``consume`` bridges the stream into an EventBus whose one sync consumer appends each handled
event id to HANDLED_FILE with an unbuffered ``os.write`` (so the record survives SIGKILL). On
SIGTERM it stops reading, closes the bus and writes its source stats to HANDLED_FILE + ".stats".
With ``--kill-after N`` it SIGKILLs itself right after handling its N-th event: a crash in the
middle of a batch, at a point the test chooses.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

import orjson

from rxbus import Event, EventBus
from rxbus.sinks import NatsSink
from rxbus.sources.nats import nats_stream


def publish(url: str, stream: str, events_file: Path, stats_file: Path) -> int:
    events = [Event.from_json(line) for line in events_file.read_bytes().splitlines()]
    sink = NatsSink(url, stream, create_stream=True, close_timeout=60.0)
    for event in events:
        sink.on_next(event)
    left = sink.close()
    stats_file.write_bytes(orjson.dumps(sink.stats))
    return 0 if left == 0 else 1


def consume(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fd = os.open(args.handled_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    bus = EventBus(name=args.durable, history=10)

    handled = 0

    def record(event: Event) -> None:
        nonlocal handled
        if event.topic == args.crash_on_topic:
            os._exit(3)  # a poison event that takes the whole process down
        os.write(fd, event.id.encode() + b"\n")
        handled += 1
        if handled == args.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    bus.subscribe(record, name="handler")
    source = nats_stream(
        args.url,
        args.stream,
        args.durable,
        ack_wait=args.ack_wait,
        max_deliver=args.max_deliver,
        fetch_timeout=args.fetch_timeout,
    )
    subscription = source.subscribe(on_next=bus.publish)
    stop.wait()
    subscription.dispose()
    bus.close()
    os.close(fd)
    Path(args.handled_file + ".stats").write_bytes(orjson.dumps(source.stats))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("publish")
    p.add_argument("url")
    p.add_argument("stream")
    p.add_argument("events_file", type=Path)
    p.add_argument("stats_file", type=Path)
    c = sub.add_parser("consume")
    c.add_argument("url")
    c.add_argument("stream")
    c.add_argument("durable")
    c.add_argument("handled_file")
    c.add_argument("--ack-wait", type=float, default=2.0)
    c.add_argument("--fetch-timeout", type=float, default=0.2)
    c.add_argument("--crash-on-topic", default="")
    c.add_argument("--max-deliver", type=int, default=5)
    c.add_argument("--kill-after", type=int, default=0)
    args = parser.parse_args(argv)
    if args.role == "publish":
        return publish(args.url, args.stream, args.events_file, args.stats_file)
    return consume(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
