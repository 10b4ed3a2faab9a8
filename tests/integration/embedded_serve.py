"""A process that embeds ``rxbus serve`` and publishes on its bus: the dashboard at 20,000/s.

An application that embeds the dashboard runs :class:`rxbus.server.RxbusServer` on its own
loop and publishes on the served bus. This module is such an application: it serves with the
defaults of ``rxbus serve`` (SQLite store, bounded page queues) and, on ``SIGUSR1``, publishes
``--rate`` events a second for ``--seconds`` seconds from a task on the server's loop, straight
into the bus (no HTTP or Socket.IO ingest in between: one publishing process cannot push
20,000 events/s through this machine's ingest). When done it writes what it sent and how long
it took to ``--report`` as JSON. SIGTERM stops it as it stops ``rxbus serve``.

    with EmbeddedServe(tmp_path, rate=20_000, seconds=10) as server:
        server.burst()                   # SIGUSR1
        report = server.wait_report(60)  # {"sent": 200000, "seconds": 10.0, ...}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rxbus.server.app import RxbusServer, ServerConfig
from tests.conftest import wait_until
from tests.integration.serve_process import ServeProcess

TICK = 0.005  # seconds between the producer's steps
MOST_PER_STEP = 100  # a late producer catches up in small steps, so the loop still serves pages


class EmbeddedServe(ServeProcess):
    """This module run as a child process, driven like :class:`ServeProcess`.

    Args:
        directory: holds the store, the log and the report.
        rate: events per second of the burst.
        seconds: how long the burst lasts (``rate * seconds`` events in all).
        topics: the events go round ``dash.speed.t0`` .. ``t{topics - 1}``.
        args: extra arguments, e.g. ``("--page-queue", "500")``.
    """

    # Unmeasured: at 20,000 events/s coverage's tracer would take the CPU the rate needs; the
    # server code it runs is the one ServeProcess tests measure.
    measured = False

    def __init__(
        self,
        directory: Path,
        *,
        rate: int,
        seconds: float,
        topics: int = 4,
        args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(directory, args=args)
        self.rate = rate
        self.seconds = seconds
        self.topics = topics
        self.report_path = self.directory / "burst.json"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tests.integration.embedded_serve",
            "--port",
            str(self.port),
            "--store",
            str(self.store_path),
            "--rate",
            str(self.rate),
            "--seconds",
            str(self.seconds),
            "--topics",
            str(self.topics),
            "--report",
            str(self.report_path),
            *self.args,
        ]

    @property
    def total(self) -> int:
        """Events the burst publishes."""
        return int(self.rate * self.seconds)

    def burst(self) -> None:
        """Start publishing (the child answers SIGUSR1)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR1)

    def wait_report(self, timeout: float) -> dict[str, Any]:
        """What the burst sent, once it has ended."""
        wait_until(self.report_path.exists, timeout, "the end of the burst", interval=0.05)
        return dict(json.loads(self.report_path.read_text()))

    def rss_mb(self) -> float:
        """The server process's resident memory, MB (``/proc``)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS in /proc")

    def bus_totals(self) -> dict[str, int]:
        """The bus's own per-topic counts (``GET /api/stats``)."""
        status, body = self.get("/api/stats")
        assert status == 200, body
        return {t: int(c["published"]) for t, c in json.loads(body)["topics"].items()}


async def produce(bus: Any, rate: int, seconds: float, topics: int) -> dict[str, Any]:
    """Publish ``rate`` events a second for ``seconds`` s on the loop; report the pace kept."""
    from rxbus import Event

    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    start = loop.time()
    sent = 0
    steps = 0
    while sent < total:
        due = min(total, int((loop.time() - start) * rate) + 1, sent + MOST_PER_STEP) - sent
        if due > 0:
            t = int(time.time() * 1000)  # the page measures publish-to-row latency from it
            for n in range(sent, sent + due):
                bus.publish(
                    Event(topic=f"dash.speed.t{n % topics}", type="Tick", data={"n": n, "t": t})
                )
            sent += due
            steps += 1
        await asyncio.sleep(TICK if sent >= int((loop.time() - start) * rate) else 0)
    return {"sent": sent, "seconds": round(loop.time() - start, 3), "steps": steps}


async def main(args: argparse.Namespace) -> None:
    config = ServerConfig(
        port=args.port,
        store=args.store,
        spool=None,
        page_queue=args.page_queue,
    )
    server = RxbusServer(config)
    await server.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def burst() -> None:
        report = await produce(server.bus, args.rate, args.seconds, args.topics)
        Path(args.report).write_text(json.dumps(report))

    loop.add_signal_handler(signal.SIGUSR1, lambda: tasks.append(loop.create_task(burst())))
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"embedded rxbus serve on {server.url}", flush=True)
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await server.stop()


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--topics", type=int, default=4)
    parser.add_argument("--report", required=True)
    parser.add_argument("--page-queue", type=int, default=ServerConfig().page_queue)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(_arguments(sys.argv[1:])))
