"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (or whatever
``chromium`` is on PATH) through ``executable_path``. Set ``RXBUS_SCREENSHOT=1`` to write the
screenshot the docs use to ``docs/img/dashboard.png``; otherwise it goes to the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rxbus.event import Event
from rxbus.server.app import STATIC, RxbusServer, ServerConfig
from tests.conftest import free_port, require_binary
from tests.integration.serve_process import ROOT, ServeProcess
from tests.integration.test_publish_cli import publish

pytestmark = [pytest.mark.needs_chromium, pytest.mark.timeout(180)]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
WAIT_MS = 15_000
XSS_DATA = {
    "html": "<script>window.__pwned = 'script'</script>",
    "img": "<img src=x onerror=\"window.__pwned = 'img'\">",
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = require_binary("chromium", "chromium-browser")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
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


def row(page: Any, event_id: str) -> Any:
    return page.wait_for_selector(f'#event-rows tr[data-id="{event_id}"]', timeout=WAIT_MS)


def cells(page: Any, event_id: str) -> list[str]:
    return [td.text_content() for td in row(page, event_id).query_selector_all("td")]


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
        page.wait_for_selector(f'#event-rows tr[data-id="{before.id}"]', state="detached")
        kept, dropped = Event(topic="dash.keep.me"), Event(topic="dash.drop.me")
        server.post([dropped.to_dict(), kept.to_dict()])
        row(page, kept.id)
        assert page.query_selector(f'#event-rows tr[data-id="{dropped.id}"]') is None
        assert "pattern=dash.keep.*" in page.url

    def test_pause_holds_events_and_resume_shows_them(
        self, page: Any, server: ServeProcess
    ) -> None:
        open_dashboard(page, server.url + "/")
        page.click("#pause")
        held = [Event(topic="dash.paused", data={"n": n}) for n in range(4)]
        server.post([e.to_dict() for e in held])
        page.wait_for_function(
            "document.getElementById('waiting').textContent.startsWith('4 waiting')",
            timeout=WAIT_MS,
        )
        assert page.query_selector_all("#event-rows tr") == []
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
        page.wait_for_selector('#status[data-state="disconnected"]', timeout=WAIT_MS)
        for n in range(1, 4):  # `rxbus publish` spools them; serve delivers them at start-up
            result = publish(
                "dash.live", "--data", f'{{"n": {n}}}', url=server.url, spool=server.spool_dir
            )
            assert result.returncode == 0
        server.start()
        page.wait_for_selector('#status[data-state="connected"]', timeout=WAIT_MS)
        page.wait_for_function(
            "document.querySelectorAll('#event-rows tr[data-topic=\"dash.live\"]').length >= 4",
            timeout=WAIT_MS,
        )
        datas = [td.text_content() for td in page.query_selector_all("#event-rows td.data")]
        assert sorted(datas) == [f'{{"n":{n}}}' for n in range(4)]
        assert page.text_content("#reconnects") == "1"


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
