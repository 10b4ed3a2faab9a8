"""The dashboard at 1,000, 5,000 and 20,000 events/s: what it shows and what it costs (issue 17).

A process embedding the server (``tests/integration/embedded_serve.py``: ``rxbus serve``'s
defaults, a SQLite store) publishes on its bus from a task on the server's loop, while the
dashboard is open in headless Chromium and clicked every 250 ms
(``tests/integration/dashboard_speed.py`` measures). Per rate, ``SECONDS`` seconds:

- sent in: the events published and how long that took (the producer's pace, kept or not);
- shown/s: rows the page inserted per second; counted / published: what the page accounts for
  (received + not shown) once it settles, against the bus's own per-topic counts;
- latency: publish to row inserted, median / max, over the rows drawn (a sample at 20,000/s);
- input delay: each click's handler start minus its event time, median / max;
- long tasks: the browser's ``longtask`` entries during the burst, their main-thread ms per
  second and the longest; frames/s: ``requestAnimationFrame`` callbacks per second;
- server RSS: the embedding process at the start and its maximum (``/proc``).

The counts are asserted (as in the browser test); no timing is: the issue's "input delay under
100 ms at 20,000/s" is printed as met or missed. Under ``--benchmark-disable`` (``make test``)
it runs 2 s at 20,000/s only, so it cannot rot. Measured::

    .venv/bin/python -m pytest tests/benchmarks/test_dashboard_speed.py --benchmark-only -s

Set ``RXBUS_DASH_BENCH_JSON=/path/out.json`` to also write the rows as JSON.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.benchmarks.conftest import Recorder
from tests.integration.dashboard_speed import chromium, figures, markdown, run_burst
from tests.integration.embedded_serve import EmbeddedServe

pytestmark = [pytest.mark.needs_chromium, pytest.mark.timeout(600)]

RATES = (1_000, 5_000, 20_000)
SECONDS = 15.0
INPUT_DELAY_TARGET_MS = 100.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def one_rate(browser: Any, directory: Path, rate: int, seconds: float) -> dict[str, Any]:
    """A fresh server and page for one burst; the counts checked, the figures returned."""
    context = browser.new_context(viewport={"width": 1280, "height": 720}, timezone_id="UTC")
    try:
        page = context.new_page()
        with EmbeddedServe(directory, rate=rate, seconds=seconds) as server:
            run = run_burst(page, server)
    finally:
        context.close()
    row = figures(run)
    assert run["settled"], row
    assert row["sent"] == row["accepted"] == row["counted"] == row["page_total"] == server.total
    assert run["page_totals"] == run["bus_totals"]
    return row


def test_dashboard_at_speed(bench: Recorder, browser: Any, tmp_path: Path) -> None:
    """Each rate for SECONDS s (2 s at 20,000/s unmeasured): counts exact, timings reported."""
    plan = [(rate, SECONDS) for rate in RATES] if bench.enabled else [(20_000, 2.0)]
    rows: list[dict[str, Any]] = []

    def run_all() -> None:
        rows.clear()
        for rate, seconds in plan:
            rows.append(one_rate(browser, tmp_path / f"rate-{rate}", rate, seconds))

    bench.benchmark.pedantic(run_all, rounds=1, iterations=1, warmup_rounds=0)
    print()
    print(markdown(rows))
    for row in rows:
        if row["rate"] == 20_000:
            met = row["input_delay_ms_max"] < INPUT_DELAY_TARGET_MS
            print(
                f"input delay at 20,000/s: max {row['input_delay_ms_max']} ms over "
                f"{row['clicks']} clicks: under {INPUT_DELAY_TARGET_MS:g} ms "
                f"{'met' if met else 'MISSED'} (Python {platform.python_version()}, "
                f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})"
            )
    out = os.environ.get("RXBUS_DASH_BENCH_JSON")
    if out:
        Path(out).write_text(json.dumps(rows, indent=2))
