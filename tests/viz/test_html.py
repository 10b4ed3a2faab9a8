"""Rich HTML views: an event card, a bus table, a live view and the topology picture."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

import pytest
from reactivex.subject import Subject
from reactivex.testing import TestScheduler

from rxbus import Event
from rxbus.viz import LiveView, bus_html, event_html, live, topology

NS = {"svg": "http://www.w3.org/2000/svg"}


class _Text(HTMLParser):
    """Collects the visible text and the tags of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(fragment: str) -> _Text:
    parser = _Text()
    parser.feed(fragment)
    parser.close()
    return parser


HOSTILE = "<script>alert('x')</script>"


def test_event_card_shows_every_field_escaped() -> None:
    """The card shows topic, type, id, source, correlation, data and metadata, all escaped."""
    event = Event(
        topic="hook.tool",
        type=HOSTILE,
        data={"cmd": HOSTILE, "n": 1},
        source="<src>",
        metadata={"who": "<me>"},
        correlation_id="<c>",
    )
    card = event_html(event)
    assert event._repr_html_() == card
    parsed = _parse(card)
    assert "script" not in parsed.tags
    text = "".join(parsed.text)
    for shown in ("hook.tool", HOSTILE, event.id, "<src>", "<me>", "<c>", '"n": 1'):
        assert shown in text, shown


def test_event_card_cuts_huge_payloads() -> None:
    """A large payload is cut so the card stays compact."""
    card = event_html(Event(topic="a", data={"blob": "x" * 100_000}), max_chars=500)
    assert len(card) < 3000


class _Handle:
    """Stands in for an IPython display handle: keeps what each update showed."""

    def __init__(self) -> None:
        self.shown: list[str] = []

    def update(self, obj: Any) -> None:
        self.shown.append(obj._repr_html_())


def test_live_view_renders_on_the_timer_not_per_event() -> None:
    """Events only mark the view dirty; it renders at most once per interval, with the count."""
    scheduler = TestScheduler()
    subject: Subject[Event] = Subject()
    handle = _Handle()
    view = live(subject, interval=1.0, scheduler=scheduler, handle=handle)
    assert isinstance(view, LiveView)

    def burst(n: int) -> Any:
        def action(_: Any, __: Any = None) -> None:
            for i in range(n):
                subject.on_next(Event(topic="t.x", data={"i": i, "html": HOSTILE}))

        return action

    scheduler.schedule_absolute(0.1, burst(500))
    scheduler.schedule_absolute(0.2, burst(500))
    scheduler.advance_to(0.9)
    assert handle.shown == []  # 1,000 events, no render yet: publishers never render
    scheduler.advance_to(1.0)
    assert len(handle.shown) == 1
    assert "<b>1,000</b> events seen" in handle.shown[0]
    assert "script" not in _parse(handle.shown[0]).tags
    scheduler.advance_to(10.0)
    assert len(handle.shown) == 1  # nothing changed, nothing rendered
    scheduler.schedule_absolute(10.5, burst(1))
    scheduler.advance_to(11.0)
    assert len(handle.shown) == 2 and "<b>1,001</b>" in handle.shown[1]
    view.stop()
    assert len(handle.shown) == 3 and view.updates == 3
    view.stop()
    subject.on_next(Event(topic="t.x"))
    scheduler.advance_to(20.0)
    assert view.count == 1001 and len(handle.shown) == 3


def test_live_view_shows_completion() -> None:
    """A completed stream says so on the next render."""
    scheduler = TestScheduler()
    subject: Subject[int] = Subject()
    handle = _Handle()
    with live(subject, interval=0.5, scheduler=scheduler, handle=handle):
        subject.on_next(42)
        subject.on_completed()
        scheduler.advance_to(0.5)
    assert "stream completed" in handle.shown[0]
    assert "42" in handle.shown[0]


def test_live_rejects_bad_arguments() -> None:
    """A non-positive interval or something that is not a stream is one clear error."""
    with pytest.raises(ValueError, match="interval"):
        live(Subject(), interval=0, handle=_Handle(), scheduler=TestScheduler())
    with pytest.raises(TypeError, match="EventBus or an Observable"):
        live(object(), handle=_Handle(), scheduler=TestScheduler())  # type: ignore[arg-type]


def test_bus_table_lists_topics_and_consumers_with_stats(bus: Any) -> None:
    """The bus repr shows totals, each topic's count and each consumer's stats."""
    seen: list[Event] = []
    bus.subscribe(seen.append, topic="hook.*", name="<collector>")

    def fail(event: Event) -> None:
        raise RuntimeError("no")

    bus.subscribe(fail, topic="hook.tool", name="failing")
    for _ in range(3):
        bus.publish("hook.tool", {"x": HOSTILE})
    bus.publish("hook.stop")
    bus.publish("other.thing")
    page = bus_html(bus)
    assert bus._repr_html_() == page
    parsed = _parse(page)
    assert "script" not in parsed.tags
    cells = [t for t in parsed.text if t.strip()]
    # topics table: each topic followed by its count
    assert cells[cells.index("hook.tool") + 1] == "3"
    assert cells[cells.index("other.thing") + 1] == "1"
    row = cells.index("<collector>")
    assert cells[row + 1 : row + 5] == ["hook.*", "sync", "4", "4"]
    row = cells.index("failing")
    assert cells[row + 3 : row + 6] == ["3", "0", "3"]
    assert len(seen) == 4


def test_topology_links_producers_topics_and_consumers(bus: Any) -> None:
    """The topology SVG has a node per producer, topic and consumer, with counts and links."""
    bus.subscribe(lambda e: None, topic="hook.*", name="hooks")
    bus.subscribe(lambda e: None, topic="**", name="<all>")
    bus.publish("hook.tool", source="claude")
    bus.publish("hook.tool", source="claude")
    bus.publish("build.done", source="ci")
    picture = topology(bus)
    assert picture._repr_svg_() == picture.svg
    root = ET.fromstring(picture.svg)
    nodes = {
        (g.get("class"), g.get("data-name")): g
        for g in root.iterfind(".//svg:g", NS)
        if g.get("class", "").startswith("node")
    }
    assert set(nodes) == {
        ("node producer", "claude"),
        ("node producer", "ci"),
        ("node topic", "hook.tool"),
        ("node topic", "build.done"),
        ("node consumer", "hooks"),
        ("node consumer", "<all>"),
    }
    assert "2 published" in nodes[("node topic", "hook.tool")].find("svg:title", NS).text
    assert len(root.findall(".//svg:path[@class='edge produce']", NS)) == 2
    # hooks <- hook.tool; <all> <- both topics
    assert len(root.findall(".//svg:path[@class='edge consume']", NS)) == 3
