"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (or whatever
``chromium`` is on PATH) through ``executable_path``. Set ``RXBUS_SCREENSHOT=1`` to write the
screenshot the docs use to ``docs/img/dashboard.png``; otherwise it goes to the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from rxbus.event import Event
from rxbus.server.app import STATIC, RxbusServer, ServerConfig
from tests.conftest import free_port
from tests.integration.dashboard_speed import chromium, page_totals, run_burst
from tests.integration.embedded_serve import EmbeddedServe
from tests.integration.serve_process import ROOT, ServeProcess
from tests.integration.test_publish_cli import publish

pytestmark = [pytest.mark.needs_chromium, pytest.mark.timeout(180)]

WAIT_MS = 15_000
# The page has seen the server go: "disconnected" lasts only until its first reconnect attempt
# fails (0.5-1.5 s later), then it shows "refused"; a loaded browser can poll past the first.
SERVER_LOST = '#status[data-state="disconnected"], #status[data-state="refused"]'
RECONNECT_MS = 30_000  # a restarted server and the page's reconnect backoff, on a loaded machine
XSS_DATA = {
    "html": "<script>window.__pwned = 'script'</script>",
    "img": "<img src=x onerror=\"window.__pwned = 'img'\">",
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 720}, timezone_id="UTC")
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda err: errors.append(str(err)))
    p.errors = errors
    try:
        yield p
    finally:
        context.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path) as proc:
        yield proc


def open_dashboard(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector('#status[data-state="connected"]', timeout=WAIT_MS)


def until(page: Any, expression: str, timeout_ms: int = WAIT_MS) -> Any:
    """Evaluate ``expression`` in the page until it is truthy, or fail at the deadline.

    ``page.evaluate`` goes through the DevTools protocol, so the page's CSP (no eval) allows it
    where ``wait_for_function`` with a string does not.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_ms} ms: {expression} (got {value!r})")
        page.wait_for_timeout(25)


def row(page: Any, event_id: str) -> Any:
    return page.wait_for_selector(f'#event-rows [data-id="{event_id}"]', timeout=WAIT_MS)


def cells(page: Any, event_id: str) -> list[str]:
    return [cell.text_content() for cell in row(page, event_id).query_selector_all("span")]


class TestLiveEvents:
    def test_page_connects_and_shows_published_events(
        self, page: Any, server: ServeProcess
    ) -> None:
        open_dashboard(page, server.url + "/")
        sent = [
            Event(topic="dash.build", type="Started", source="ci", data={"n": n}) for n in range(3)
        ]
        assert server.post([e.to_dict() for e in sent])[0] == 200
        for event in sent:
            values = cells(page, event.id)
            assert values[1:5] == ["dash.build", "Started", "ci", f'{{"n":{event.data["n"]}}}']
        assert page.text_content("#received") == "3"
        page.wait_for_selector('#rate-rows tr[data-topic="dash.build"]', timeout=WAIT_MS)
        assert page.text_content('#rate-rows tr[data-topic="dash.build"] td.total') == "3"
        assert page.errors == []

    def test_markup_in_events_is_shown_as_text(self, page: Any, server: ServeProcess) -> None:
        """<script> and <img onerror> in data, type and source appear as characters, never run."""
        open_dashboard(page, server.url + "/")
        event = Event(
            topic="dash.xss",
            type="<b>bold</b>",
            source='<img src=y onerror="window.__pwned = 1">',
            data=XSS_DATA,
        )
        assert server.post(event.to_dict())[0] == 200
        values = cells(page, event.id)
        assert values[2] == "<b>bold</b>" and values[3] == event.source
        assert "<script>window.__pwned = 'script'</script>" in values[4]
        assert "<img src=x onerror=" in values[4]
        the_row = row(page, event.id)
        assert the_row.query_selector_all("script, img, b") == []
        page.wait_for_timeout(300)  # give an injected onerror handler the chance to fire
        assert page.evaluate("window.__pwned") is None
        assert page.errors == []

    def test_filter_by_pattern(self, page: Any, server: ServeProcess) -> None:
        before = Event(topic="dash.other", data={"k": 1})
        server.post(before.to_dict())
        open_dashboard(page, server.url + "/")
        row(page, before.id)  # shown from history on start
        page.fill("#pattern", "dash.keep.*")
        page.click("#filter button")
        page.wait_for_selector(f'#event-rows [data-id="{before.id}"]', state="detached")
        kept, dropped = Event(topic="dash.keep.me"), Event(topic="dash.drop.me")
        server.post([dropped.to_dict(), kept.to_dict()])
        row(page, kept.id)
        assert page.query_selector(f'#event-rows [data-id="{dropped.id}"]') is None
        assert "pattern=dash.keep.*" in page.url

    def test_pause_holds_events_and_resume_shows_them(
        self, page: Any, server: ServeProcess
    ) -> None:
        open_dashboard(page, server.url + "/")
        page.click("#pause")
        held = [Event(topic="dash.paused", data={"n": n}) for n in range(4)]
        server.post([e.to_dict() for e in held])
        until(page, "document.getElementById('waiting').textContent.startsWith('4 waiting')")
        assert page.query_selector_all("#event-rows > .row") == []
        page.click("#pause")
        for event in held:
            row(page, event.id)
        assert page.is_hidden("#waiting")

    def test_reconnects_and_asks_for_missed_events_by_last_id(
        self, page: Any, server: ServeProcess
    ) -> None:
        """Events spooled while the server is down appear after it restarts, none twice."""
        first = Event(topic="dash.live", data={"n": 0})
        open_dashboard(page, server.url + "/")
        server.post(first.to_dict())
        row(page, first.id)
        server.stop(signal.SIGTERM)
        page.wait_for_selector(SERVER_LOST, timeout=WAIT_MS)
        for n in range(1, 4):  # `rxbus publish` spools them; serve delivers them at start-up
            result = publish(
                "dash.live", "--data", f'{{"n": {n}}}', url=server.url, spool=server.spool_dir
            )
            assert result.returncode == 0
        server.start(timeout=60)
        # Each step waits on its own condition with a deadline that allows for the page's
        # reconnect backoff on a busy machine, then the exact outcome is asserted.
        page.wait_for_selector('#status[data-state="connected"]', timeout=RECONNECT_MS)
        until(page, "window.__rxbus.received === 4", RECONNECT_MS)
        until(page, "document.querySelectorAll('#event-rows .data').length === 4")
        datas = [td.text_content() for td in page.query_selector_all("#event-rows .data")]
        assert sorted(datas) == [f'{{"n":{n}}}' for n in range(4)]
        assert page.text_content("#reconnects") == "1"
        assert page.text_content("#received") == "4"
        assert page.text_content("#not-shown") == "0"


def post_all(server: ServeProcess, events: list[Event], per_request: int = 50) -> None:
    """POST ``events`` in order, ``per_request`` at a time, each answered 200."""
    for start in range(0, len(events), per_request):
        status, reply = server.post([e.to_dict() for e in events[start : start + per_request]])
        assert status == 200, reply


def server_totals(server: ServeProcess) -> dict[str, int]:
    """The server's own per-topic counts (``GET /api/stats``)."""
    status, body = server.get("/api/stats")
    assert status == 200
    return {t: c["published"] for t, c in json.loads(body)["topics"].items()}


def server_counts(server: ServeProcess) -> dict[str, int]:
    """The server's own counters, the per-client outlets' included."""
    status, body = server.get("/api/stats")
    assert status == 200
    return dict(json.loads(body)["server"])


def short_time(event: Event) -> str:
    """An event's time as the page shows it (the test browser runs in UTC)."""
    return event.timestamp.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]


# Records every text the flow indicators show and every batch of rows the page inserts, so a
# test can tell what the page showed between two of its own checks.
RECORDER = """
window.__seen = { mode: [], lag: [], inserts: [], frames: 0 };
(function count() { window.__seen.frames += 1; requestAnimationFrame(count); })();
document.addEventListener("DOMContentLoaded", () => {
  const seen = window.__seen;
  const watch = (id, into) => new MutationObserver(() => {
    const el = document.getElementById(id);
    into.push(el.dataset.mode || el.dataset.behind || "", el.textContent);
  }).observe(document.getElementById(id), { childList: true, characterData: true, subtree: true,
                                             attributes: true });
  watch("mode", seen.mode);
  watch("lag", seen.lag);
  new MutationObserver((records) => {
    for (const r of records) {
      const rows = [...r.addedNodes].filter((n) => n.dataset && n.dataset.id).length;
      if (rows) seen.inserts.push(rows);
    }
  }).observe(document.getElementById("event-rows"), { childList: true });
});
"""


class TestCounts:
    def test_filter_changes_count_each_event_once(self, page: Any, server: ServeProcess) -> None:
        """Issue 12 item 13: three events stay three events after three Filter presses."""
        sent = [Event(topic="dash.count", data={"n": n}) for n in range(3)]
        post_all(server, sent)
        open_dashboard(page, server.url + "/")
        until(page, "window.__rxbus.received === 3")
        for pattern in ("dash.*", "dash.count", "**"):
            page.fill("#pattern", pattern)
            page.click("#filter button")
            until(
                page,
                f"window.__rxbus.pattern === {json.dumps(pattern)} && "
                "document.querySelectorAll('#event-rows [data-id]').length === 3 && "
                "document.querySelectorAll('#rate-rows tr').length === 1",
            )
            assert page.text_content("#received") == "3", pattern
            assert page_totals(page) == {"dash.count": 3}, pattern
        assert page.errors == []

    def test_reconnect_past_the_replay_cap_shows_an_exact_gap(
        self, page: Any, server: ServeProcess
    ) -> None:
        """5,000 events missed while offline: the newest 1,000 arrive, 4,000 are an exact gap."""
        first = Event(topic="dash.burst", data={"n": -1})
        open_dashboard(page, server.url + "/")
        post_all(server, [first])
        row(page, first.id)
        page.context.set_offline(True)  # the page cannot reconnect until we say so
        page.evaluate("window.__rxbus.socket.io.engine.close()")
        page.wait_for_selector(SERVER_LOST, timeout=WAIT_MS)
        missed = [Event(topic="dash.burst", data={"n": n}) for n in range(5000)]
        post_all(server, missed, per_request=100)
        page.context.set_offline(False)
        until(page, "window.__rxbus.received === 1001", RECONNECT_MS)
        until(page, "document.getElementById('not-shown').textContent === '4000'")
        text = f"4,000 events not shown, from {short_time(missed[0])} to {short_time(missed[3999])}"
        assert page.text_content("#gap-note") == text  # older than the 500 rows the table keeps
        # The newest missed event is the newest row.
        assert page.get_attribute("#event-rows > :first-child", "data-id") == missed[-1].id
        until(page, "document.querySelector('#rate-rows td.total')?.textContent === '5001'")
        assert page_totals(page) == server_totals(server) == {"dash.burst": 5001}
        assert page.text_content("#reconnects") == "1"
        assert page.errors == []


class TestAtSpeed:
    def test_fast_publisher_and_a_forced_reconnect_leave_exact_counts(
        self, page: Any, tmp_path: Path
    ) -> None:
        """20,000 events faster than the page draws and a reconnect midway: every event is
        received or counted in a visible gap, the totals are the server's, rows come in
        batches of at most 50 per frame, and the sampled view comes and goes."""
        page.add_init_script(RECORDER)
        with ServeProcess(tmp_path, args=("--page-queue", "500")) as server:
            open_dashboard(page, server.url + "/")
            sent = [Event(topic=f"dash.fast.t{n % 4}", data={"n": n}) for n in range(20_000)]
            progress = {"posted": 0}

            def publisher() -> None:
                for start in range(0, len(sent), 100):
                    post_all(server, sent[start : start + 100], per_request=100)
                    progress["posted"] = start + 100

            thread = threading.Thread(target=publisher)
            thread.start()
            try:
                until(page, "window.__rxbus.received > 2000", 60_000)
                page.evaluate("window.__rxbus.socket.io.engine.close()")
            finally:
                thread.join(120)
            assert not thread.is_alive() and progress["posted"] == 20_000
            until(
                page,
                "window.__rxbus.received + window.__rxbus.notShown === 20000 && "
                "window.__rxbus.pending.length === 0 && window.__rxbus.mode === 'live'",
                60_000,
            )
            until(page, "[...window.__rxbus.totals.values()].reduce((a, b) => a + b, 0) === 20000")
            state = page.evaluate(
                "({received: __rxbus.received, notShown: __rxbus.notShown, "
                "reconnects: __rxbus.reconnects, sampledOut: __rxbus.sampledOut, "
                "drawn: __rxbus.drawn, frames: __seen.frames, inserts: __seen.inserts, "
                "modes: __seen.mode})"
            )
            assert state["reconnects"] == 1
            assert state["received"] + state["notShown"] == 20_000
            shown = {t: n for t, n in server_totals(server).items() if t.startswith("dash.fast")}
            assert shown == {f"dash.fast.t{k}": 5000 for k in range(4)}
            until(page, "document.querySelectorAll('#rate-rows tr').length === 4")
            assert page_totals(page) == shown
            if state["notShown"]:
                assert "events not shown" in page.text_content("#gap-note")
            assert page.text_content("#received") == str(state["received"])
            # Drawn in batches: one insert of at most 50 rows per frame, a sample of the rest.
            assert max(state["inserts"]) <= 50
            assert len(state["inserts"]) <= state["frames"]
            assert state["drawn"] + state["sampledOut"] == state["received"]
            assert state["sampledOut"] > 0
            assert page.eval_on_selector_all("#event-rows > .row", "rows => rows.length") <= 500
            assert page.eval_on_selector_all("#event-rows .fresh", "rows => rows.length") <= 3
            # The sampled view was shown and then gave way to the live view.
            assert "sampled" in state["modes"] and state["modes"][-2] == "live"
            assert page.get_attribute("#mode", "data-mode") == "live"
            assert page.errors == []

    def test_a_page_that_stops_reading_is_told_how_far_behind_and_what_it_lost(
        self, page: Any, tmp_path: Path
    ) -> None:
        """The page's main thread blocks while 3,000 events arrive: the server keeps at most
        200 for it, drops the rest counted, and the page shows the lag and the gap."""
        page.add_init_script(RECORDER)
        with ServeProcess(tmp_path, args=("--page-queue", "200")) as server:
            open_dashboard(page, server.url + "/")
            sent = [Event(topic="dash.stuck", data={"n": n}) for n in range(3000)]
            # Block the page's main thread (it reads nothing, acknowledges nothing) for 3 s and
            # until every event is posted, however long that takes on a loaded machine: in a
            # synchronous request the test answers after posting, then in a loop.
            held: list[Any] = []
            page.route("**/__hold", lambda route: held.append(route))
            with page.expect_request("**/__hold"):
                page.evaluate(
                    "setTimeout(() => { const end = Date.now() + 3000;"
                    " const r = new XMLHttpRequest(); r.open('GET', '/__hold', false); r.send();"
                    " while (Date.now() < end); })"
                )
            post_all(server, sent, per_request=100)
            page.unroute("**/__hold")
            for route in held:  # the handler runs within a Playwright call, so once at most
                route.fulfill(status=204)
            until(page, "window.__rxbus.received + window.__rxbus.notShown === 3000", 30_000)
            received = page.evaluate("window.__rxbus.received")
            not_shown = page.evaluate("window.__rxbus.notShown")
            assert not_shown >= 3000 - 200 - 1000 > 0  # a 1,000-event batch may be in flight
            counts = server_counts(server)
            assert counts["client_dropped"] == not_shown
            assert counts["client_sent"] == received
            assert counts["client_queued"] == 0
            until(page, "document.getElementById('not-shown').textContent !== '0'")
            assert "events not shown, from" in page.text_content("#gap-note")
            lag = page.evaluate("window.__seen.lag")
            assert any(t.startswith("behind: ") and " events, " in t for t in lag), lag
            until(page, "document.getElementById('lag').dataset.behind === 'no'")
            assert page.text_content("#lag") == "up to date"
            assert page.errors == []

    def test_twenty_thousand_a_second_leave_exact_counts_in_the_sampled_view(
        self, page: Any, tmp_path: Path
    ) -> None:
        """An application embedding the server publishes 20,000 events/s on its bus for 8 s:
        the page shows the sampled view and how far behind it is while the burst lasts, then
        accounts for every event (received, or counted in a visible gap), shows the bus's own
        totals, and goes back to live. Counts only: the timings (input delay, long tasks,
        frames) are reported by tests/benchmarks/test_dashboard_speed.py, never asserted."""
        with EmbeddedServe(tmp_path, rate=20_000, seconds=8) as server:
            run = run_burst(page, server)
            until(page, "document.getElementById('lag').dataset.behind === 'no'")
        during, final = run["during"], run["final"]
        assert run["report"]["sent"] == 160_000
        assert run["settled"], {k: final[k] for k in ("received", "notShown", "mode")}
        assert run["bus_totals"] == {f"dash.speed.t{k}": 40_000 for k in range(4)}
        assert run["page_totals"] == run["bus_totals"]
        assert final["received"] + final["notShown"] == 160_000
        assert run["received_text"] == str(final["received"])
        assert run["not_shown_text"] == str(final["notShown"])
        assert final["drawn"] + final["sampledOut"] == final["received"]
        assert final["reconnects"] == 0
        # While the burst lasted: the sampled view and the lag were on screen; after it, live.
        assert "sampled" in during["mode"], during["mode"]
        assert any(t.startswith("behind: ") for t in during["lag"]), during["lag"][:10]
        assert run["mode_now"] == "live"
        assert page.text_content("#lag") == "up to date"
        assert during["delays"], "no click was measured"  # the benchmark reports their delay
        assert page.errors == []


class TestToken:
    def test_token_in_the_url_connects_and_without_it_is_refused(
        self, page: Any, tmp_path: Path
    ) -> None:
        with ServeProcess(tmp_path, token="dash-secret") as server:
            response = page.goto(server.url + "/")
            assert response.status == 401
            open_dashboard(page, server.url + "/?token=dash-secret")
            event = Event(topic="dash.tok")
            server.post(event.to_dict())
            row(page, event.id)


def test_vendored_client_matches_npm_package() -> None:
    """static/socket.io.min.js is the unmodified build named in THIRD_PARTY.txt."""
    vendored = (STATIC / "socket.io.min.js").read_bytes()
    notice = (STATIC / "THIRD_PARTY.txt").read_text()
    assert hashlib.sha256(vendored).hexdigest() in notice
    assert b"Socket.IO v4.8.4" in vendored[:200] and "MIT" in notice
    npm_copy = ROOT / "tests/js/node_modules/socket.io-client/dist/socket.io.min.js"
    if npm_copy.exists():
        assert npm_copy.read_bytes() == vendored


class _ThreadServer:
    """An in-process server on its own loop thread, for a bus with a consumer that fails."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: RxbusServer | None = None

    def start(self) -> RxbusServer:
        self.thread.start()

        async def boot() -> RxbusServer:
            from rxbus import EventBus

            bus = EventBus(name="dashboard-test")

            def fragile(event: Event) -> None:
                if event.topic == "dash.fail":
                    raise RuntimeError(f"cannot handle <b>{event.data.get('why')}</b>")

            bus.subscribe(fragile, topic="dash.*", name="fragile-consumer")
            server = RxbusServer(self.config, bus=bus)
            await server.start()
            return server

        self.server = asyncio.run_coroutine_threadsafe(boot(), self.loop).result(30)
        return self.server

    def stop(self) -> None:
        server = self.server
        if server is not None:

            async def down() -> None:
                await server.stop()
                await server.bus.aclose()

            asyncio.run_coroutine_threadsafe(down(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_dead_letters_rates_and_screenshot(page: Any, tmp_path: Path) -> None:
    """Dead letters appear (as text) with their consumer; the docs screenshot is taken here."""
    port = free_port()
    harness = _ThreadServer(
        ServerConfig(port=port, store=str(tmp_path / "events.sqlite"), spool=None)
    )
    server = harness.start()
    try:
        open_dashboard(page, server.url + "/")
        topics = ["hook.tool", "hook.tool", "hook.prompt", "build.done", "dash.ok"]
        sample = [
            Event(topic=t, type=t.split(".")[1].title(), source="demo", data={"seq": i})
            for i, t in enumerate(topics * 3)
        ]
        failing = Event(topic="dash.fail", source="demo", data={"why": "<script>x</script>"})
        xss = Event(topic="hook.tool", type="PreToolUse", source="demo", data=XSS_DATA)

        async def feed() -> None:
            await server.ingest([*sample, failing, xss])

        asyncio.run_coroutine_threadsafe(feed(), harness.loop).result(30)
        item = page.wait_for_selector("#dead-letters li", timeout=WAIT_MS)
        text = item.text_content()
        assert "RuntimeError: cannot handle <b><script>x</script></b>" in text, text
        assert "fragile-consumer" in text and failing.id in text, text
        assert item.query_selector_all("b, script") == []
        assert page.text_content("#dead-count") == "1"
        row(page, xss.id)
        page.wait_for_selector('#rate-rows tr[data-topic="hook.tool"]', timeout=WAIT_MS)
        assert page.text_content('#rate-rows tr[data-topic="hook.tool"] td.total') == "7"
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=False)
        assert shot.stat().st_size > 10_000
        if os.environ.get("RXBUS_SCREENSHOT"):
            target = ROOT / "docs" / "img" / "dashboard.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, target)
        assert page.errors == []
    finally:
        harness.stop()
