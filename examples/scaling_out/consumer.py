"""Process 2: one consumer of the group "billing"; start more with other CONSUMER names."""

import os
import threading

from rxbus import Event, EventBus
from rxbus.sources.redis import bridge

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CONSUMER = os.environ.get("CONSUMER", "worker-1")  # stable, so a restart resumes its own work
EXPECTED = int(os.environ.get("EXPECTED", "1000"))  # stop after this many orders

billed: dict[int, int] = {}  # order -> total: idempotent by order, as handlers should be
done = threading.Event()


def bill(event: Event) -> None:
    billed[event.data["order"]] = event.data["total"]
    if len(billed) == EXPECTED:
        done.set()


with EventBus(name="billing") as bus:
    bus.subscribe(bill, topic="orders.created", name="bill")  # sync: done before the ack
    link = bridge(bus, REDIS_URL, "orders", group="billing", consumer=CONSUMER)
    done.wait()
    link.dispose()  # stop reading; anything not yet acknowledged stays pending for others
print(f"consumer {CONSUMER}: billed {len(billed)} orders, total {sum(billed.values())}")
