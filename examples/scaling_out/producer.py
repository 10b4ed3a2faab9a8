"""Process 1: publish orders on a local bus; RedisStreamSink carries them to the stream "orders"."""

import os

from rxbus import EventBus
from rxbus.sinks import RedisStreamSink

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

sink = RedisStreamSink(REDIS_URL, stream="orders", maxlen=1_000_000)
with EventBus(name="shop") as bus:
    bus.subscribe(sink, topic="orders.**", name="to-redis")
    for n in range(1000):
        bus.publish("orders.created", {"order": n, "total": 10 + n % 7})
# Leaving the block closes the bus, which completes the sink: it writes what is left, then stops.
print(f"producer: {sink.stats['written']} events written to Redis")
