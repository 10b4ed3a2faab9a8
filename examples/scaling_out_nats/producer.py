"""Process 1: publish orders on a local bus; NatsSink carries them to the JetStream stream ORDERS."""

import os

from rxbus import EventBus
from rxbus.sinks import NatsSink

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")

# create_stream: file storage, subjects "rxbus.>", the server drops re-sent ids for 2 minutes
sink = NatsSink(NATS_URL, "ORDERS", create_stream=True, duplicate_window=120)
with EventBus(name="shop") as bus:
    bus.subscribe(sink, topic="orders.**", name="to-nats")
    for n in range(1000):
        bus.publish("orders.created", {"order": n, "total": 10 + n % 7})
# Leaving the block closes the bus, which completes the sink: it waits for the acks, then stops.
print(f"producer: {sink.stats['written']} events acknowledged by JetStream")
