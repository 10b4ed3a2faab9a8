"""The dashboard under a burst: what the page showed, how it kept up, and what it cost.

Shared by the browser test (``test_dashboard.py``, which asserts the counts and the views) and
the benchmark (``tests/benchmarks/test_dashboard_speed.py``, which reports the timings). The
page is watched by an init script, from outside the dashboard's code:

- frames (``requestAnimationFrame`` callbacks) and the browser's ``longtask`` entries (over
  50 ms of main thread), counted over the burst;
- input delay: the test clicks an inert element every ``CLICK_EVERY_MS``; the delay is the
  click handler's start minus the event's own time (what a user's click waits);
- rows inserted, and for each its publish-to-row latency (the producer's clock is in the
  event's ``data.t``; producer and page run on the same machine);
- every text the ``#mode`` and ``#lag`` indicators showed.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.conftest import require_binary
from tests.integration.embedded_serve import EmbeddedServe

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@contextmanager
def chromium() -> Iterator[Any]:
    """The system's headless Chromium under Playwright (skips, or fails under CI, without it)."""
    executable = require_binary("chromium", "chromium-browser")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


CLICK_EVERY_MS = 250
SETTLE_S = 60.0  # after the burst, how long the page may take to account for every event

OBSERVER = """
window.__speed = { on: false, rows: 0, latencies: [], longtasks: [], delays: [], frames: 0,
                   mode: [], lag: [] };
(function count() {
  if (window.__speed.on) window.__speed.frames += 1;
  requestAnimationFrame(count);
})();
try {
  new PerformanceObserver((list) => {
    if (!window.__speed.on) return;
    for (const e of list.getEntries()) window.__speed.longtasks.push(e.duration);
  }).observe({ type: "longtask" });
} catch (e) {}
document.addEventListener("click", (e) => {
  if (e.target && e.target.id === "speed-target") {
    window.__speed.delays.push(performance.now() - e.timeStamp);
  }
}, true);
document.addEventListener("DOMContentLoaded", () => {
  const speed = window.__speed;
  const target = document.createElement("div");
  target.id = "speed-target";
  target.style.cssText = "position:fixed;right:0;bottom:0;width:20px;height:20px;z-index:9";
  document.body.appendChild(target);
  const watch = (id, into) => new MutationObserver(() => {
    const el = document.getElementById(id);
    into.push(el.dataset.mode || el.dataset.behind || "", el.textContent);
  }).observe(document.getElementById(id), { childList: true, characterData: true, subtree: true,
                                             attributes: true });
  watch("mode", speed.mode);
  watch("lag", speed.lag);
  new MutationObserver((records) => {
    if (!speed.on) return;
    const now = Date.now();
    for (const r of records) {
      for (const node of r.addedNodes) {
        if (!node.dataset || !node.dataset.id) continue;
        speed.rows += 1;
        const data = node.querySelector(".data");
        try {
          const t = JSON.parse(data.textContent).t;
          if (t) speed.latencies.push(now - t);
        } catch (e) {}
      }
    }
  }).observe(document.getElementById("event-rows"), { childList: true });
});
"""

_SNAPSHOT = """() => ({
  rows: __speed.rows, latencies: __speed.latencies, longtasks: __speed.longtasks,
  delays: __speed.delays, frames: __speed.frames, mode: __speed.mode, lag: __speed.lag,
  received: __rxbus.received, notShown: __rxbus.notShown, drawn: __rxbus.drawn,
  sampledOut: __rxbus.sampledOut, reconnects: __rxbus.reconnects,
})"""


def page_totals(page: Any) -> dict[str, int]:
    """The totals the page shows in its Topics table."""
    return {
        r.get_attribute("data-topic"): int(r.query_selector("td.total").text_content())
        for r in page.query_selector_all("#rate-rows tr")
    }


def run_burst(page: Any, server: EmbeddedServe, *, wait_ms: int = 15_000) -> dict[str, Any]:
    """Open the dashboard, run the server's burst while clicking, and wait until the page has
    accounted for every event (or ``SETTLE_S`` passed). Returns the raw figures.

    ``server`` must be started; the page must be fresh (the init script is added here).
    """
    page.add_init_script(OBSERVER)
    page.goto(server.url + "/")
    page.wait_for_selector('#status[data-state="connected"]', timeout=wait_ms)
    rss = [server.rss_mb()]
    page.evaluate("window.__speed.on = true")
    server.burst()
    begin = time.monotonic()
    while not server.report_path.exists():
        if time.monotonic() - begin > server.seconds * 4 + 30:
            raise AssertionError(f"the burst did not end: {server.log()[-2000:]}")
        page.mouse.click(1270, 710)  # the inert target in the bottom right corner
        page.wait_for_timeout(CLICK_EVERY_MS)
        rss.append(server.rss_mb())
    report = server.wait_report(5)
    during = page.evaluate(_SNAPSHOT)  # the page's costs over the burst only
    during_s = time.monotonic() - begin
    page.evaluate("window.__speed.on = false")
    total = server.total
    # Then the page finishes what it has: every event received or counted as not shown, the
    # server's totals in its table, and the live view back.
    deadline = time.monotonic() + SETTLE_S
    settled = False
    while time.monotonic() < deadline:
        settled = page.evaluate(
            f"""() => window.__rxbus.received + window.__rxbus.notShown === {total}
                && window.__rxbus.pending.length === 0 && window.__rxbus.mode === "live"
                && [...window.__rxbus.totals.values()].reduce((a, b) => a + b, 0) === {total}"""
        )
        if settled:
            break
        page.wait_for_timeout(50)
    settle_s = time.monotonic() - begin - during_s
    rss.append(server.rss_mb())
    final = page.evaluate(_SNAPSHOT)
    return {
        "rate": server.rate,
        "total": total,
        "report": report,
        "during": during,
        "during_s": during_s,
        "final": final,
        "settled": settled,
        "settle_s": settle_s,
        "rss_mb": rss,
        "bus_totals": {t: n for t, n in server.bus_totals().items() if t.startswith("dash.")},
        "page_totals": page_totals(page),
        "mode_now": page.get_attribute("#mode", "data-mode"),
        "lag_now": page.text_content("#lag"),
        "received_text": page.text_content("#received"),
        "not_shown_text": page.text_content("#not-shown"),
    }


def figures(run: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's row for one run: rate kept, rows shown, counts, latency, input delay,
    long tasks, frames and server RSS."""
    during, report = run["during"], run["report"]
    seconds = max(run["during_s"], 1e-9)
    latencies = sorted(during["latencies"]) or [float("nan")]
    delays = sorted(during["delays"]) or [float("nan")]
    final = run["final"]
    return {
        "rate": run["rate"],
        "sent": report["sent"],
        "sent_seconds": report["seconds"],
        "shown_per_s": round(during["rows"] / seconds, 1),
        "counted": final["received"] + final["notShown"],
        "received": final["received"],
        "not_shown": final["notShown"],
        "accepted": sum(run["bus_totals"].values()),
        "page_total": sum(run["page_totals"].values()),
        "latency_ms_median": round(statistics.median(latencies)),
        "latency_ms_max": round(latencies[-1]),
        "input_delay_ms_median": round(statistics.median(delays), 1),
        "input_delay_ms_max": round(delays[-1], 1),
        "clicks": len(during["delays"]),
        "longtasks": len(during["longtasks"]),
        "longtask_ms_per_s": round(sum(during["longtasks"]) / seconds, 1),
        "longtask_ms_max": round(max(during["longtasks"], default=0)),
        "frames_per_s": round(during["frames"] / seconds, 1),
        "rss_mb": [round(run["rss_mb"][0], 1), round(max(run["rss_mb"]), 1)],
        "sampled_seen": "sampled" in during["mode"] or "sampled" in final["mode"],
        "behind_seen": "yes" in final["lag"],
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    """The docs table for :func:`figures` rows."""
    lines = [
        "| rate | sent in | shown/s | counted / published | latency median / max "
        "| input delay median / max (clicks) | long tasks (ms/s, longest) | frames/s "
        "| server RSS start -> max |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['rate']:,}/s | {r['sent']:,} in {r['sent_seconds']} s | {r['shown_per_s']:,} "
            f"| {r['counted']:,} / {r['accepted']:,} "
            f"| {r['latency_ms_median']:,} / {r['latency_ms_max']:,} ms "
            f"| {r['input_delay_ms_median']} / {r['input_delay_ms_max']} ms ({r['clicks']}) "
            f"| {r['longtasks']} ({r['longtask_ms_per_s']}, {r['longtask_ms_max']} ms) "
            f"| {r['frames_per_s']} | {r['rss_mb'][0]} -> {r['rss_mb'][1]} MB |"
        )
    return "\n".join(lines)
