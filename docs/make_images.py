"""Draw the docs' pictures from real runs: ``python docs/make_images.py [OUTDIR]``.

- ``marbles-retry.svg`` / ``.png``: ``retry`` with ``RetryPolicy(max_attempts=4, initial_delay=1,
  multiplier=2)`` recorded on a virtual clock: the failing item is tried at t=2, 3, 5 and 9,
  then dead-lettered, while the other items flow on.
- ``topology.svg`` / ``.png``: a small bus with three producers, topics and consumers.

Each picture is checked before it is written (the recorded times and values are asserted), so
a change in behaviour fails here instead of drawing a wrong picture.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

import rxbus.operators as ops
from rxbus import DeadLetter, Event, EventBus, RetryPolicy
from rxbus.testing import record
from rxbus.viz import SvgImage, marbles, topology

HERE = Path(__file__).resolve().parent


def _label(item: object) -> str:
    if isinstance(item, Event):
        return str(item.data["k"])
    if isinstance(item, DeadLetter):
        return f"DL:{_label(item.event)}"
    return str(item)


def retry_diagram() -> SvgImage:
    """The retry schedule of the contract, from a recorded run in virtual time."""
    clock = TestScheduler()
    source = clock.create_hot_observable(
        ReactiveTest.on_next(1, Event(topic="orders.created", data={"k": "a"})),
        ReactiveTest.on_next(2, Event(topic="orders.created", data={"k": "b"})),
        ReactiveTest.on_next(4, Event(topic="orders.created", data={"k": "c"})),
        ReactiveTest.on_next(6, Event(topic="orders.created", data={"k": "d"})),
        ReactiveTest.on_completed(12),
    )
    calls: Subject[Event] = Subject()
    dead: Subject[DeadLetter] = Subject()

    def deliver(event: Event) -> Event:
        calls.on_next(event)
        if event.data["k"] == "b":
            raise ConnectionError("service down")
        return event

    policy = RetryPolicy(max_attempts=4, initial_delay=1, multiplier=2)
    rec = record(
        {
            "source": source,
            "handler calls": calls,
            "retry(deliver)": source.pipe(ops.retry(deliver, policy, dead_letters=dead.on_next)),
            "dead letters": dead,
        },
        scheduler=clock,
    )
    clock.start()
    b_calls = [n.time for n in rec["handler calls"].notifications if n.value.data["k"] == "b"]
    assert b_calls == [2.0, 3.0, 5.0, 9.0], b_calls
    assert [_label(v) for v in rec["retry(deliver)"].values] == ["a", "c", "d"]
    assert rec["dead letters"].values[0].attempts == 4
    return marbles(
        rec,
        label=_label,
        title="retry(deliver, RetryPolicy(max_attempts=4, initial_delay=1, multiplier=2))",
        time_unit="s",
    )


def topology_picture() -> SvgImage:
    """Producers, topics and consumers of a small bus, with counts."""
    with EventBus(name="docs") as bus:
        consumers = [
            bus.subscribe(lambda e: None, topic="hook.*", name="hook-logger"),
            bus.subscribe(lambda e: None, topic="build.**", mode="thread", name="ci-notifier"),
            bus.subscribe(lambda e: None, topic="**", mode="thread", name="sqlite-store"),
        ]
        for i in range(12):
            bus.publish("hook.tool", {"i": i}, source="claude-code")
        bus.publish("hook.stop", source="claude-code")
        for i in range(4):
            bus.publish("build.started", {"i": i}, source="ci")
            bus.publish("build.finished", {"i": i}, source="ci")
        bus.publish("build.error", source="compiler")
        deadline = time.monotonic() + 10
        while any(c.stats.queued or c.stats.received != c.stats.delivered for c in consumers):
            if time.monotonic() > deadline:  # pragma: no cover - a stuck consumer
                raise RuntimeError(f"consumers did not drain: {[c.stats for c in consumers]}")
            time.sleep(0.005)
        picture = topology(bus)
    return picture


def make(outdir: Path = HERE / "img") -> list[Path]:
    """Write every picture (SVG and PNG) into ``outdir``; returns the paths written."""
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, picture in (("marbles-retry", retry_diagram()), ("topology", topology_picture())):
        written.append(picture.save(outdir / f"{name}.svg"))
        written.append(picture.save(outdir / f"{name}.png"))
    return written


if __name__ == "__main__":
    for path in make(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "img"):
        print(path)
