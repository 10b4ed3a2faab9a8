"""Process 2: one worker of the durable consumer "billing"; start more to share the work."""

import os
import threading

from rxbus import Event, EventBus
from rxbus.sources.nats import bridge

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
EXPECTED = int(os.environ.get("EXPECTED", "1000"))  # stop after this many orders

billed: dict[int, int] = {}  # order -> total: idempotent by order, as handlers should be
done = threading.Event()


def bill(event: Event) -> None:
    billed[event.data["order"]] = event.data["total"]
    if len(billed) == EXPECTED:
        done.set()


with EventBus(name="billing") as bus:
    bus.subscribe(bill, topic="orders.created", name="bill")  # sync: done before the ack
    link = bridge(bus, NATS_URL, "ORDERS", "billing", filter="orders.*")
    done.wait()
    link.dispose()  # stop pulling; anything not yet acknowledged is redelivered to the others
print(f"consumer: billed {len(billed)} orders, total {sum(billed.values())}")
