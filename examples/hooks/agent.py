"""AFTER, for a long-running program: one bus, one Socket.IO connection, a local audit log.

    python agent.py --count 100 --audit audit.jsonl

Where the seed opened a Socket.IO client per event, this program publishes on an in-process
bus. A ``SocketIOSink`` (whose ``on_next`` only appends to an outbox, so publishing never waits
for the network) keeps one connection to ``rxbus serve`` and an outbox of events not yet acknowledged, resent
after an outage. A ``JsonlSink`` keeps a local audit log of the same events, with their ids: if
the log is later shipped to the server as well (``rxbus replay --store audit.jsonl --to URL``),
the server recognises every event it already has and stores none twice.
"""

import argparse
import os

from rxbus import EventBus
from rxbus.sinks import JsonlSink, SocketIOSink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("RXBUS_URL", "http://127.0.0.1:8765"))
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--audit", default="audit.jsonl")
    args = parser.parse_args()

    socket = SocketIOSink(args.url, close_timeout=10.0)
    with EventBus(name="agent") as bus, JsonlSink(args.audit, fsync="never") as audit:
        bus.subscribe(socket, topic="agent.**", name="socketio")
        bus.subscribe(audit, topic="agent.**", name="audit")
        for step in range(args.count):
            bus.publish("agent.step", {"step": step}, source="agent")
    # leaving the block closed the bus: the sink flushed its outbox (up to close_timeout)
    print(f"agent: {args.count} events published; unacknowledged at exit: {socket.close()}")


if __name__ == "__main__":
    main()
