"""rxbus.bench.bench_chain and the ``rxbus bench`` command."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from reactivex import operators as rx

from rxbus import Event
from rxbus.bench import BenchResult, bench_chain, results_html, standard_events, standard_suite

NS = {"svg": "http://www.w3.org/2000/svg"}


def _even(e: Event) -> bool:
    return e.data["i"] % 2 == 0


def _check(result: BenchResult) -> None:
    assert result.ns_per_event > 0 and result.floor_ns_per_event > 0
    assert result.events_per_s == pytest.approx(1e9 / result.ns_per_event)
    assert result.ratio == pytest.approx(result.ns_per_event / result.floor_ns_per_event)
    assert result.ns_per_event == min(result.round_ns_per_event)
    assert len(result.round_ns_per_event) == result.rounds


@pytest.mark.parametrize("mode", ["rx", "sync", "thread", "async"])
def test_every_mode_delivers_every_event(mode: str) -> None:
    """In every mode the sink receives each event exactly once, and latency covers them all."""
    result = bench_chain(n=1_000, mode=mode, rounds=2)  # type: ignore[arg-type]
    _check(result)
    assert (result.mode, result.n, result.delivered) == (mode, 1_000, 1_000)
    assert set(result.latency_ns) == {"p50", "p90", "p99", "p99_9", "max"}
    assert 0 < result.latency_ns["p50"] <= result.latency_ns["p99"] <= result.latency_ns["max"]


def test_filter_and_batch_change_what_the_sink_sees() -> None:
    """A filter halves the deliveries; a batch of 100 turns 1,000 events into 10 lists."""
    halved = bench_chain(rx.filter(_even), n=1_000, rounds=1, name="even")
    assert halved.delivered == 500 and halved.name == "even"
    batched = bench_chain(rx.buffer_with_count(100), n=1_000, mode="rx", rounds=1)
    assert batched.delivered == 10
    # batch elements are traced back to their events, so latency covers all 1,000
    assert batched.latency_ns["p50"] > 0


def test_topic_pattern_and_custom_events() -> None:
    """A consumer on one topic sees only its share; events may come from a function."""
    result = bench_chain(n=2_000, topic="bench.t03", rounds=1)
    assert result.delivered == 100  # 2,000 events over 20 topics
    custom = bench_chain(
        events=lambda i: Event(topic="x.y", data={"i": i}), n=300, rounds=1, topic="x.*"
    )
    assert custom.delivered == 300
    cycled = bench_chain(events=standard_events(7), n=50, rounds=1)
    assert cycled.delivered == 50


def test_untraceable_outputs_have_no_latency() -> None:
    """A chain that maps events to plain values still counts, but cannot report latency."""
    result = bench_chain(rx.map(lambda e: e.data["i"]), n=500, mode="rx", rounds=1)
    assert result.delivered == 500
    assert result.latency_ns == {}
    assert "no traceable items" in result.plot().svg


def test_html_repr_and_latency_plot() -> None:
    """The HTML repr is a table with the figures; the plot has one bar per percentile."""
    result = bench_chain(rx.filter(_even), n=1_000, rounds=1, name="<even>")
    page = result._repr_html_()
    assert "&lt;even&gt;" in page and "<even>" not in page
    assert f"{result.delivered:,}" in page
    root = ET.fromstring(result.plot().svg)
    bars = root.findall("svg:g[@class='bar']", NS)
    assert [b.get("data-key") for b in bars] == ["p50", "p90", "p99", "p99_9", "max"]
    widths = [float(b.find("svg:rect", NS).get("width")) for b in bars]
    assert widths == sorted(widths)
    assert [float(b.get("data-ns")) for b in bars] == [
        result.latency_ns[k] for k in ("p50", "p90", "p99", "p99_9", "max")
    ]
    assert results_html([result, result]).count("<tr>") == 3
    assert json.loads(json.dumps(result.as_dict()))["delivered"] == 500


def test_bad_arguments_are_named() -> None:
    """Unknown mode, bad n or rounds, and empty events are refused with the value."""
    with pytest.raises(ValueError, match="'fast'"):
        bench_chain(mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be"):
        bench_chain(n=0)
    with pytest.raises(ValueError, match="rounds must be"):
        bench_chain(n=10, rounds=0)
    with pytest.raises(ValueError, match="events is empty"):
        bench_chain(events=[], n=10)


def test_standard_suite_cases_build() -> None:
    """Every case of the standard suite builds its operators and names a known mode."""
    suite = standard_suite()
    assert len(suite) >= 6
    assert {c.mode for c in suite} == {"rx", "sync", "thread", "async"}
    for case in suite:
        assert all(callable(op) for op in case.operators())


def test_cli_bench_json() -> None:
    """``rxbus bench --json`` runs the suite and prints machine-readable results."""
    proc = subprocess.run(
        [sys.executable, "-m", "rxbus", "bench", "--json", "-n", "500", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["machine"]["python"] == ".".join(map(str, sys.version_info[:3]))
    results = doc["results"]
    assert [(r["name"], r["mode"]) for r in results] == [(c.name, c.mode) for c in standard_suite()]
    for r in results:
        assert r["n"] == 500 and r["ns_per_event"] > 0 and r["ratio"] > 0
    by_name = {(r["name"], r["mode"]): r for r in results}
    assert by_name[("sink only", "sync")]["delivered"] == 500
    assert by_name[("sink only", "thread")]["delivered"] == 500
    assert by_name[("sink only", "async")]["delivered"] == 500


def test_cli_bench_table_and_errors() -> None:
    """Without --json it prints a table; a bad argument is one line and exit code 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "rxbus", "bench", "-n", "300", "--rounds", "1", "--only", "rx"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "x floor" in proc.stdout and "Subject: filter → map" in proc.stdout
    assert max(map(len, proc.stdout.splitlines())) <= 80  # fits a terminal of 80 columns
    bad = subprocess.run(
        [sys.executable, "-m", "rxbus", "bench", "-n", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "rxbus bench: error: --events must be >= 1, got 0"
