"""docs/make_images.py draws the docs' pictures from real runs; the committed ones are current."""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
NS = {"svg": "http://www.w3.org/2000/svg"}


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_images", ROOT / "docs" / "make_images.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pictures_are_drawn_checked_and_rendered(tmp_path: Path) -> None:
    """Every picture is written as parseable SVG and as a PNG that is not blank."""
    written = _module().make(tmp_path)
    assert sorted(p.name for p in written) == [
        "marbles-retry.png",
        "marbles-retry.svg",
        "topology.png",
        "topology.svg",
    ]
    for path in written:
        if path.suffix == ".svg":
            assert ET.parse(path).getroot().tag == "{http://www.w3.org/2000/svg}svg"
        else:
            image = Image.open(path).convert("RGB")
            colours = image.getcolors(maxcolors=1_000_000)
            assert colours is not None and len(colours) > 20  # drawn, not an empty canvas


def test_retry_picture_shows_the_contract_schedule(tmp_path: Path) -> None:
    """The handler-calls lane has b at 2, 3, 5 and 9, and one dead letter at 9."""
    svg = _module().retry_diagram().svg
    root = ET.fromstring(svg)
    lanes = {g.get("data-name"): g for g in root.iterfind(".//svg:g[@class='lane']", NS)}
    calls = lanes["handler calls"].findall("svg:g[@class='item']", NS)
    b_times = [g.get("data-time") for g in calls if g.find("svg:text", NS).text == "b"]
    assert b_times == ["2", "3", "5", "9"]
    dead = lanes["dead letters"].findall("svg:g[@class='item']", NS)
    assert [g.get("data-time") for g in dead] == ["9"]


def test_committed_pictures_are_up_to_date(tmp_path: Path) -> None:
    """docs/img holds what make_images.py draws today (rerun it after changing the drawing)."""
    fresh = {p.name: p for p in _module().make(tmp_path)}
    for name in ("marbles-retry.svg", "topology.svg"):
        committed = ROOT / "docs" / "img" / name
        assert committed.exists(), f"{committed} is missing: run python docs/make_images.py"
        assert committed.read_text(encoding="utf-8") == fresh[name].read_text(encoding="utf-8"), (
            f"{name} is stale: run python docs/make_images.py"
        )
