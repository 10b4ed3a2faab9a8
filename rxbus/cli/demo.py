"""``rxbus demo``: a pipeline on the embedded bus, and a table of what happened to every event."""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from typing import Any

__all__ = ["register", "run"]

_PRODUCERS = {
    "hook": ("hook.tool", "hook.response", "hook.session"),
    "cli": ("cli.command", "cli.exit"),
    "agent": ("agent.start", "agent.step", "agent.done"),
    "build": ("build.start", "build.error", "build.done"),
    "system": ("system.heartbeat", "system.disk"),
}


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "demo",
        help="run a pipeline on the embedded bus and print what happened to every event",
        description=(
            "Simulated producers (hook, cli, agent, build, system) publish from five threads "
            "through consumers in all three modes: one fails now and then, one is slow and "
            "drops the oldest events when its queue is full. No server needed. Prints, per "
            "topic and per consumer, what was delivered, dropped, failed and dead-lettered."
        ),
    )
    parser.add_argument(
        "--events", type=int, default=20_000, help="events per producer (default 20000)"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--json", action="store_true", help="print bus.metrics() as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import orjson
    from rich.console import Console
    from rich.table import Table

    import rxbus.operators as ops
    from rxbus import EventBus, Overflow

    if args.events < 1:
        from rxbus.cli import CliError

        raise CliError(f"--events must be >= 1, got {args.events}")
    rng = random.Random(args.seed)
    console = Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 80)

    bus = EventBus(name="demo", history=1000)
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def count(name: str) -> Any:
        def sink(item: Any) -> None:
            with lock:
                counts[name] = counts.get(name, 0) + (len(item) if isinstance(item, list) else 1)

        return sink

    def flaky(event: Any) -> None:
        if event.data["seq"] % 97 == 0:
            raise RuntimeError(f"flaky consumer rejects seq {event.data['seq']}")

    def slow(event: Any) -> None:
        time.sleep(0.0002)

    async def dashboard(event: Any) -> None:
        count("dashboard")(event)

    bus.subscribe(count("audit-log"), topic="**", name="audit-log")
    bus.subscribe(flaky, topic="hook.*", name="flaky-hooks")
    bus.subscribe(
        count("build-batches"),
        ops.of_type("error", "done"),
        ops.batch(0.05, 100),
        topic="build.**",
        mode="thread",
        name="build-batches",
    )
    bus.subscribe(
        slow,
        topic="agent.*",
        mode="thread",
        queue_size=500,
        overflow=Overflow.DROP_OLDEST,
        name="slow-agent-ui",
    )
    bus.subscribe(dashboard, topic="*.error", mode="async", name="dashboard")

    def produce(kind: str, topics: tuple[str, ...], seed: int) -> None:
        r = random.Random(seed)
        for seq in range(args.events):
            bus.publish(r.choice(topics), {"seq": seq, "producer": kind}, source=kind)

    threads = [
        threading.Thread(target=produce, args=(kind, topics, rng.random()), name=f"producer-{kind}")
        for kind, topics in _PRODUCERS.items()
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    published_s = time.perf_counter() - start
    undelivered = bus.close(timeout=10)
    total_s = time.perf_counter() - start
    metrics = bus.metrics()

    if args.json:
        sys.stdout.write(orjson.dumps(metrics, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0

    console.print(
        f"[bold]rxbus demo[/]: {len(_PRODUCERS)} producer threads published "
        f"{metrics['published']:,} events in {published_s:.2f}s "
        f"([bold]{metrics['published'] / published_s:,.0f} events/s[/]); "
        f"drained and closed in {total_s:.2f}s"
    )
    topics = Table(title="Per topic", title_justify="left", box=None, pad_edge=False)
    topics.add_column("topic", header_style="bold underline")
    topics.add_column("published", justify="right", header_style="bold underline")
    for topic, entry in metrics["topics"].items():
        topics.add_row(topic, f"{entry['published']:,}")
    console.print(topics)

    # Fits 80 columns: no box, and the dead letters are totalled in the line below.
    consumers = Table(
        title="Per consumer", title_justify="left", box=None, pad_edge=False, show_edge=False
    )
    for col in ("consumer", "topic", "mode", "received", "delivered", "failed", "dropped"):
        consumers.add_column(
            col,
            justify="left" if col in ("consumer", "topic", "mode") else "right",
            header_style="bold underline",
            no_wrap=True,
        )
    consumers.add_column("counted", justify="center", header_style="bold underline")
    for name, c in metrics["consumers"].items():
        ok = c["received"] == c["delivered"] + c["failed"] + c["dropped"] + c["queued"]
        consumers.add_row(
            name,
            c["topic"],
            c["mode"],
            f"{c['received']:,}",
            f"{c['delivered']:,}",
            f"{c['failed']:,}",
            f"{c['dropped']:,}",
            "[green]yes[/]" if ok else "[red]NO[/]",
        )
    console.print(consumers)
    lat = metrics["publish_latency_ns"]
    console.print(
        f"publish latency (sampled, ns): p50={lat.get('p50', 0):,} p99={lat.get('p99', 0):,}; "
        f"dead letters: {metrics['dead_lettered']:,}; undelivered at close: {len(undelivered)}"
    )
    console.print(
        "Every event is delivered, or counted as dropped (slow-agent-ui's queue is bounded and "
        "drops the oldest) or failed and dead-lettered (flaky-hooks); counted: "
        "received == delivered + failed + dropped + queued."
    )
    return 0
