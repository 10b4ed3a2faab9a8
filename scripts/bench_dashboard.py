"""Measure the dashboard at speed: a real ``rxbus serve``, a publisher process, headless Chromium.

For each rate, a fresh ``rxbus serve`` (its defaults, a SQLite store in a temporary directory)
is fed by a separate process publishing over Socket.IO (acknowledged batches every 20 ms, as
``SocketIOSink`` does) while the dashboard is open in headless Chromium. The page is observed
from outside its code, so the same script measures an older checkout (``--root``):

- rows/s: rows the page inserted per second; counted: what the page says it received (and, on
  pages that have it, what it says it did not get) against what the server accepted;
- latency: publish time (in each event) to the moment its row was inserted, median and max;
- long tasks (the browser's ``longtask`` entries): count and main-thread ms per second;
- input delay: a click every 500 ms on an inert element, handler start minus event time;
- server RSS before and after (``/proc``).

``--stuck SECONDS`` instead blocks the page's main thread (it reads and acknowledges nothing)
while publishing at ``--rates``' first rate, and samples the server's RSS every second.

Nothing is asserted: this reports (markdown table, and JSON with ``--json``). Runs are short
(``--seconds``, 10 by default) because this machine is shared; say so when quoting figures.

Usage::

    .venv/bin/python scripts/bench_dashboard.py --rates 100,1000,5000,20000
    .venv/bin/python scripts/bench_dashboard.py --root /tmp/old-checkout --rates 5000
    .venv/bin/python scripts/bench_dashboard.py --stuck 60 --rates 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TICK = 0.02  # seconds between publisher batches

OBSERVER = """
window.__bench = { rows: 0, latencies: [], longtasks: [], delays: [], frames: 0 };
(function count() { window.__bench.frames += 1; requestAnimationFrame(count); })();
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__bench.longtasks.push(e.duration);
  }).observe({ type: "longtask", buffered: true });
} catch (e) {}
document.addEventListener("click", (e) => {
  if (e.target && e.target.id === "bench-target") {
    window.__bench.delays.push(performance.now() - e.timeStamp);
  }
}, true);
document.addEventListener("DOMContentLoaded", () => {
  const target = document.createElement("div");
  target.id = "bench-target";
  target.style.cssText = "position:fixed;right:0;bottom:0;width:20px;height:20px;z-index:9";
  document.body.appendChild(target);
  new MutationObserver((records) => {
    const now = Date.now();
    for (const r of records) {
      for (const node of r.addedNodes) {
        if (!node.dataset || !node.dataset.id) continue;
        window.__bench.rows += 1;
        const data = node.querySelector(".data");
        try {
          const t = JSON.parse(data.textContent).t;
          if (t) window.__bench.latencies.push(now - t);
        } catch (e) {}
      }
    }
  }).observe(document.getElementById("event-rows"), { childList: true });
});
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


class Server:
    """``rxbus serve`` from ``root`` on a free port with a store in a temporary directory."""

    def __init__(self, root: Path, directory: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RXBUS_")}
        env["PYTHONPATH"] = str(root)
        cmd = [sys.executable, "-m", "rxbus", "serve", "--port", str(self.port)]
        cmd += ["--store", str(directory / "events.sqlite"), "--spool", "none"]
        self.proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                get_json(self.url + "/healthz")
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("rxbus serve did not start")

    def accepted(self) -> int:
        return int(get_json(self.url + "/healthz")["accepted"])

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def start_publisher(url: str, rate: int, seconds: float) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, __file__, "--publisher", url, str(rate), str(seconds)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT)


async def publish(url: str, rate: int, seconds: float) -> dict[str, Any]:
    """Publish ``rate`` events/s for ``seconds`` in acknowledged batches; report what was sent."""
    import socketio

    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, wait_timeout=10)
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while (now := loop.time()) - start < seconds:
        due = int((now - start) * rate) + 1 - sent
        if due > 0:
            t = int(time.time() * 1000)
            batch = [
                {"topic": f"bench.t{n % 8}", "type": "Tick", "data": {"n": n, "t": t}}
                for n in range(sent, sent + min(due, 2000))
            ]
            ack = await client.call("publish", batch, timeout=60)
            assert ack.get("ok"), ack
            sent += len(batch)
        await asyncio.sleep(max(0.0, start + (sent / rate) - loop.time(), TICK / 4))
    elapsed = loop.time() - start
    await client.disconnect()
    return {"sent": sent, "seconds": elapsed}


def measure_rate(root: Path, rate: int, seconds: float, browser: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(root, Path(tmp))
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 720})
            page = context.new_page()
            page.add_init_script(OBSERVER)
            page.goto(server.url + "/")
            page.wait_for_selector('#status[data-state="connected"]', timeout=15_000)
            rss_before = rss_mb(server.proc.pid)
            publisher = start_publisher(server.url, rate, seconds)
            begin = time.monotonic()
            while publisher.poll() is None:
                page.mouse.click(1270, 710)  # the inert target in the bottom right corner
                page.wait_for_timeout(500)
            published = json.loads(publisher.stdout.read() if publisher.stdout else b"{}")
            rss_after = rss_mb(server.proc.pid)
            accepted = server.accepted()
            # Give the page up to 10 s to finish what it has; record where it stands.
            settle = time.monotonic() + 10
            counted = 0
            while time.monotonic() < settle:
                counted = page.evaluate(
                    "window.__rxbus ? window.__rxbus.received + window.__rxbus.notShown "
                    ": Number(document.getElementById('received').textContent)"
                )
                if counted >= accepted:
                    break
                page.wait_for_timeout(100)
            run = time.monotonic() - begin
            bench = page.evaluate("window.__bench")
            received = int(page.text_content("#received") or 0)
            not_shown = page.evaluate(
                "document.getElementById('not-shown') ? "
                "Number(document.getElementById('not-shown').textContent) : null"
            )
            context.close()
        finally:
            server.stop()
    lat = sorted(bench["latencies"]) or [float("nan")]
    delays = sorted(bench["delays"]) or [float("nan")]
    duration = published["seconds"]
    return {
        "rate": rate,
        "sent": published["sent"],
        "seconds": round(duration, 1),
        "accepted": accepted,
        "rows_per_s": round(bench["rows"] / duration, 1),
        "received": received,
        "not_shown": not_shown,
        "counted": counted,
        "latency_ms_median": round(statistics.median(lat)),
        "latency_ms_max": round(lat[-1]),
        "longtasks": len(bench["longtasks"]),
        "longtask_ms_per_s": round(sum(bench["longtasks"]) / run, 1),
        "input_delay_ms_median": round(statistics.median(delays), 1),
        "input_delay_ms_max": round(delays[-1], 1),
        "frames_per_s": round(bench["frames"] / run, 1),
        "rss_mb": [round(rss_before, 1), round(rss_after, 1)],
    }


def measure_stuck(
    root: Path, rate: int, seconds: float, browser: Any, *, with_page: bool = True
) -> dict[str, Any]:
    """Publish at ``rate`` while the page's main thread is blocked; sample server RSS.

    ``with_page=False`` measures the same without any page: the server's own growth.
    """
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(root, Path(tmp))
        try:
            context = browser.new_context()
            if with_page:
                page = context.new_page()
                page.goto(server.url + "/")
                page.wait_for_selector('#status[data-state="connected"]', timeout=15_000)
                block_ms = int((seconds + 2) * 1000)
                page.evaluate(
                    f"setTimeout(() => {{ const end = Date.now() + {block_ms}; "
                    "while (Date.now() < end); })"
                )
            samples = [rss_mb(server.proc.pid)]
            publisher = start_publisher(server.url, rate, seconds)
            while publisher.poll() is None:
                time.sleep(1)
                samples.append(rss_mb(server.proc.pid))
            published = json.loads(publisher.stdout.read() if publisher.stdout else b"{}")
            samples.append(rss_mb(server.proc.pid))
            try:
                stats = get_json(server.url + "/api/stats").get("server", {})
            except OSError:
                stats = {}
            context.close()
        finally:
            server.stop()
    return {
        "rate": rate,
        "seconds": seconds,
        "page": with_page,
        "sent": published["sent"],
        "rss_mb_start": round(samples[0], 1),
        "rss_mb_max": round(max(samples), 1),
        "rss_mb_end": round(samples[-1], 1),
        "server": stats,
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| rate | sent in | rows/s | counted / accepted | latency median / max | long tasks "
        "(ms/s) | input delay median / max | frames/s | server RSS |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['rate']:,}/s | {r['sent']:,} in {r['seconds']} s | {r['rows_per_s']:,} | "
            f"{r['counted']:,} / {r['accepted']:,} | {r['latency_ms_median']:,} / "
            f"{r['latency_ms_max']:,} ms | {r['longtasks']} ({r['longtask_ms_per_s']}) | "
            f"{r['input_delay_ms_median']} / {r['input_delay_ms_max']} ms | "
            f"{r['frames_per_s']} | {r['rss_mb'][0]} -> {r['rss_mb'][1]} MB |"
        )
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--publisher":
        url, rate, seconds = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
        print(json.dumps(asyncio.run(publish(url, rate, seconds))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="100,1000,5000,20000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose server to run")
    parser.add_argument("--stuck", type=float, default=0, help="seconds of a blocked page")
    parser.add_argument("--no-page", action="store_true", help="with --stuck: no page at all")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if not executable:
        print("chromium is not installed", file=sys.stderr)
        return 2
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    results: list[dict[str, Any]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            if args.stuck:
                result = measure_stuck(
                    args.root, rates[0], args.stuck, browser, with_page=not args.no_page
                )
                print(json.dumps(result), flush=True)
                results.append(result)
            else:
                for rate in rates:
                    result = measure_rate(args.root, rate, args.seconds, browser)
                    print(json.dumps(result), flush=True)
                    results.append(result)
                print(table(results))
        finally:
            browser.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
