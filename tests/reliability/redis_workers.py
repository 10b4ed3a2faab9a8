"""Producer and consumer processes for the Redis crash tests (run with ``python -m``).

    python -m tests.reliability.redis_workers produce URL STREAM COUNT IDS_FILE
    python -m tests.reliability.redis_workers consume URL STREAM GROUP NAME HANDLED_FILE \
        [--claim-idle S] [--crash-on-topic TOPIC] [--max-deliveries N] [--hold-at N]

The consumer bridges the stream into an EventBus whose one sync consumer appends each handled
event id to HANDLED_FILE with an unbuffered ``os.write`` (so the record survives SIGKILL). On
SIGTERM it stops reading, closes the bus and writes its source stats to HANDLED_FILE + ".stats".
With ``--hold-at N`` the handler, once it has recorded its Nth event, creates HANDLED_FILE +
".held" and never returns: the consumer holds its read batch unacknowledged until it is killed,
a moment the test can wait for instead of polling to catch one.
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
from rxbus.sinks import RedisStreamSink
from rxbus.sources.redis import redis_stream


def produce(url: str, stream: str, count: int, ids_file: Path) -> int:
    bus = EventBus(name="producer", history=10)
    sink = RedisStreamSink(url, stream=stream, batch_size=500, close_timeout=30.0)
    bus.subscribe(sink, name="to-redis")
    ids = [bus.publish("load.tick", {"n": n}).id for n in range(count)]
    bus.close(timeout=60.0)
    ids_file.write_bytes(orjson.dumps({"ids": ids, "stats": sink.stats}))
    return 0 if sink.stats["written"] == count else 1


def consume(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fd = os.open(args.handled_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    bus = EventBus(name=args.name, history=10)
    handled = 0

    def record(event: Event) -> None:
        nonlocal handled
        if event.topic == args.crash_on_topic:
            os._exit(3)  # a poison event that takes the whole process down
        os.write(fd, event.id.encode() + b"\n")
        handled += 1
        if handled == args.hold_at:
            Path(args.handled_file + ".held").touch()
            threading.Event().wait()  # until SIGKILL

    bus.subscribe(record, name="handler")
    source = redis_stream(
        args.url,
        args.stream,
        args.group,
        args.name,
        batch_size=500,
        block=0.1,
        claim_idle=args.claim_idle,
        claim_interval=0.25,
        max_deliveries=args.max_deliveries,
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
    p = sub.add_parser("produce")
    p.add_argument("url")
    p.add_argument("stream")
    p.add_argument("count", type=int)
    p.add_argument("ids_file", type=Path)
    c = sub.add_parser("consume")
    c.add_argument("url")
    c.add_argument("stream")
    c.add_argument("group")
    c.add_argument("name")
    c.add_argument("handled_file")
    c.add_argument("--claim-idle", type=float, default=2.0)
    c.add_argument("--crash-on-topic", default="")
    c.add_argument("--max-deliveries", type=int, default=5)
    c.add_argument("--hold-at", type=int, default=0)
    args = parser.parse_args(argv)
    if args.role == "produce":
        return produce(args.url, args.stream, args.count, args.ids_file)
    return consume(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
