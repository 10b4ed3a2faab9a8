"""rxbus.viz.marbles: SVG structure (parsed) and a PNG render checked pixel by pixel."""

from __future__ import annotations

import io
import itertools
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import reactivex
from reactivex import operators as rx
from reactivex.testing import TestScheduler

from rxbus import Event
from rxbus.testing import record
from rxbus.viz import MarbleDiagram, marbles

NS = {"svg": "http://www.w3.org/2000/svg"}


def _boom_at_5(x: int) -> int:
    if x == 5:
        raise ValueError("five <is> bad")
    return x * 10


def _recording():  # type: ignore[no-untyped-def]
    scheduler = TestScheduler()
    source = reactivex.interval(10.0).pipe(rx.take(8))
    rec = record(
        {
            "source": source,
            "map x10": source.pipe(rx.map(_boom_at_5)),
            "buffer 3": source.pipe(rx.buffer_with_count(3)),
        },
        scheduler=scheduler,
    )
    scheduler.start()
    return rec


def _lanes(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-name"): g for g in root.iterfind(".//svg:g[@class='lane']", NS)}


def test_one_lane_per_stream_with_items_completion_and_error() -> None:
    """Each stream is a lane; items, the completion bar and the error cross are all there."""
    diagram = marbles(_recording(), title="three lanes")
    assert isinstance(diagram, MarbleDiagram)
    root = ET.fromstring(diagram.svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    lanes = _lanes(root)
    assert list(lanes) == ["source", "map x10", "buffer 3"]

    source = lanes["source"]
    assert len(source.findall("svg:g[@class='item']", NS)) == 8
    assert [t.text for t in source.iterfind("svg:g/svg:text", NS)] == [str(i) for i in range(8)]
    assert len(source.findall("svg:line[@class='complete']", NS)) == 1
    assert source.findall("svg:g[@class='error']", NS) == []

    mapped = lanes["map x10"]
    assert [t.text for t in mapped.iterfind("svg:g/svg:text", NS)] == ["0", "10", "20", "30", "40"]
    errors = mapped.findall("svg:g[@class='error']", NS)
    assert len(errors) == 1
    assert errors[0].get("data-time") == "60"
    assert errors[0].find("svg:title", NS).text == "t=60: ValueError: five <is> bad"
    assert mapped.findall("svg:line[@class='complete']", NS) == []

    batches = lanes["buffer 3"].findall("svg:g/svg:rect[@class='marble batch']", NS)
    assert len(batches) == 3
    assert root.find("svg:text[@class='title']", NS).text == "three lanes"


def test_marbles_are_placed_by_time_in_order() -> None:
    """x grows with time, and equal gaps in time are equal gaps on the page."""
    root = ET.fromstring(marbles(_recording()).svg)
    circles = _lanes(root)["source"].findall("svg:g/svg:circle", NS)
    xs = [float(c.get("cx")) for c in circles]
    gaps = [b - a for a, b in itertools.pairwise(xs)]
    assert all(g > 0 for g in gaps)
    assert max(gaps) - min(gaps) < 0.5


def test_simultaneous_items_are_spread_apart_in_order() -> None:
    """Items at the same instant do not overlap: each is at least a marble apart."""
    scheduler = TestScheduler()
    rec = record(reactivex.of("a", "b", "c"), scheduler=scheduler)
    scheduler.start()
    root = ET.fromstring(marbles(rec).svg)
    items = _lanes(root)["stream"].findall("svg:g[@class='item']", NS)
    assert [g.get("data-time") for g in items] == ["0", "0", "0"]
    xs = [float(g.find("svg:circle", NS).get("cx")) for g in items]
    assert xs[1] - xs[0] >= 26 and xs[2] - xs[1] >= 26


def test_a_burst_too_dense_for_the_axis_is_counted_in_group_markers() -> None:
    """120 items in bursts (as dead letters come): the picture keeps its width, every marker
    sits on the time axis, and the markers count every item once, in order."""
    scheduler = TestScheduler()
    times = [0.01 * i for i in range(100)] + [5.0] + [9.0 + 0.001 * i for i in range(19)]
    source = reactivex.merge(*(reactivex.timer(t).pipe(rx.map(lambda _, t=t: t)) for t in times))
    rec = record({"dead letters": source}, scheduler=scheduler)
    scheduler.start()
    diagram = marbles(rec, title="dead letters over time", time_unit="s")
    root = ET.fromstring(diagram.svg)
    axis = root.find(".//svg:g[@class='time-axis']/svg:line", NS)
    axis_start, axis_end = float(axis.get("x1")), float(axis.get("x2"))
    assert axis_end - axis_start == 640 and diagram.width <= 900
    items = _lanes(root)["dead letters"].findall("svg:g", NS)
    counts = [int(g.get("data-count", 1)) for g in items]
    assert sum(counts) == 120 and max(counts) > 1
    starts = [float(g.get("data-time")) for g in items]
    assert starts == sorted(starts) and starts[0] == 0 and 5.0 in starts
    for g in items:
        shape = (
            g.find("svg:rect", NS)
            if g.find("svg:rect", NS) is not None
            else g.find("svg:circle", NS)
        )
        left = float(shape.get("x", shape.get("cx")))
        right = left + float(shape.get("width", 0)) if shape.get("x") else left
        assert axis_start - 14 <= left and right <= axis_end + 2 * 13 + 4


def test_event_labels_and_text_are_escaped() -> None:
    """Events are labelled by type; hostile content is escaped and still parses."""
    events = [Event(topic="a.b", type="<x>", data={"html": "<script>alert(1)</script>"})]
    diagram = marbles(record(reactivex.from_iterable(events), name="<lane & co>"))
    assert "<script>" not in diagram.svg
    root = ET.fromstring(diagram.svg)
    lane = _lanes(root)["<lane & co>"]
    assert lane.find("svg:g/svg:text", NS).text == "<x>"
    assert "<script>alert(1)</script>" in lane.find("svg:g/svg:title", NS).text


def test_custom_label() -> None:
    """label= decides what a marble shows."""
    root = ET.fromstring(marbles(record(reactivex.of(1, 2)), label=lambda v: f"#{v}").svg)
    texts = [t.text for t in _lanes(root)["stream"].iterfind("svg:g/svg:text", NS)]
    assert texts == ["#1", "#2"]


def test_jupyter_repr_and_save_svg(tmp_path: Path) -> None:
    """_repr_svg_ is the SVG text, and save() writes it to a file."""
    diagram = marbles(_recording())
    assert diagram._repr_svg_() == diagram.svg
    path = diagram.save(tmp_path / "m.svg")
    assert path.read_text(encoding="utf-8") == diagram.svg
    ET.parse(path)


def test_png_render_shows_marbles_and_the_error_cross(tmp_path: Path) -> None:
    """Rendered with cairosvg, the PNG shows coloured marbles and a red cross where expected."""
    from PIL import Image

    diagram = marbles(_recording())
    path = diagram.save(tmp_path / "m.png")
    image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    assert image.size == (round(diagram.width * 2), round(diagram.height * 2))
    root = ET.fromstring(diagram.svg)

    # The centre of the first source marble is its palette colour.
    first = _lanes(root)["source"].find("svg:g/svg:circle", NS)
    cx, cy = float(first.get("cx")), float(first.get("cy"))
    fill = first.get("fill").lstrip("#")
    expected = tuple(int(fill[i : i + 2], 16) for i in (0, 2, 4))
    # Sample off the centre: the label text sits in the middle.
    pixel = image.getpixel((round((cx - 9) * 2), round((cy - 6) * 2)))
    assert all(abs(a - b) <= 8 for a, b in zip(pixel, expected, strict=True)), (pixel, fill)

    # The error cross is drawn in red at its position.
    cross = _lanes(root)["map x10"].find("svg:g[@class='error']/svg:line", NS)
    x = (float(cross.get("x1")) + float(cross.get("x2"))) / 2
    y = (float(cross.get("y1")) + float(cross.get("y2"))) / 2
    r, g, b = image.getpixel((round(x * 2), round(y * 2)))
    assert r > 150 and g < 60 and b < 60

    # The background is white and most of the picture is background.
    assert image.getpixel((2, 2)) == (255, 255, 255)
    colours = image.getcolors(maxcolors=1_000_000)
    white = next(count for count, colour in colours if colour == (255, 255, 255))
    assert 0.6 < white / (image.size[0] * image.size[1]) < 0.99


def test_bad_input_is_one_clear_error() -> None:
    """Something that is not a recording, or an unusable width, is refused by name."""
    with pytest.raises(TypeError, match="str"):
        marbles("not a recording")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        marbles([])
    with pytest.raises(ValueError, match="width"):
        marbles(record(reactivex.of(1)), width=10)
