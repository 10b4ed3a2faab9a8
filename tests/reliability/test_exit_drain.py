"""A script that exits without close() loses nothing silently."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = """
import sys, threading, time
from rxbus import EventBus

out = open(sys.argv[1], "a")
mode, n, exit_timeout, delay = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
bus = EventBus(name="script", exit_timeout=exit_timeout)

if mode == "async":
    import asyncio
    async def write(e):
        await asyncio.sleep(delay)
        out.write(f"{e.data['i']}\\n"); out.flush()
    bus.subscribe(write, name="writer")
else:
    def write(e):
        time.sleep(delay)
        out.write(f"{e.data['i']}\\n"); out.flush()
    bus.subscribe(write, mode="thread", name="writer")
for i in range(n):
    bus.publish("job.done", {"i": i})
# no close(): the interpreter exits here
"""


def _run(tmp_path: Path, mode: str, n: int, exit_timeout: float, delay: float):
    script = tmp_path / "exits.py"
    script.write_text(textwrap.dedent(SCRIPT))
    out = tmp_path / "delivered.txt"
    proc = subprocess.run(
        [sys.executable, str(script), str(out), mode, str(n), str(exit_timeout), str(delay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    delivered = out.read_text().split() if out.exists() else []
    return proc, delivered


def test_queued_events_are_drained_at_exit_and_the_drain_is_reported(tmp_path: Path) -> None:
    for mode in ("thread", "async"):
        (tmp_path / mode).mkdir()
        proc, delivered = _run(tmp_path / mode, mode, 200, 30.0, 0.001)
        assert proc.returncode == 0, proc.stderr
        assert delivered == [str(i) for i in range(200)], mode
        lines = [line for line in proc.stderr.splitlines() if line.startswith("rxbus:")]
        assert len(lines) == 1 and "0 not delivered" in lines[0], proc.stderr


def test_what_cannot_be_delivered_within_exit_timeout_is_counted_on_stderr(tmp_path: Path) -> None:
    proc, delivered = _run(tmp_path, "thread", 50, 0.3, 0.05)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("rxbus:")]
    assert len(lines) == 1, proc.stderr
    not_delivered = int(lines[0].split(": ")[-1].split()[0])
    assert not_delivered > 0
    # the event in the sink when time ran out may still be written before the process ends
    assert len(delivered) + not_delivered in (49, 50)
    assert "bus 'script'" in lines[0] and "0.3s" in lines[0]


def test_a_bus_with_nothing_queued_exits_silently(tmp_path: Path) -> None:
    proc, delivered = _run(tmp_path, "thread", 0, 3.0, 0.0)
    assert proc.returncode == 0 and delivered == []
    assert "rxbus:" not in proc.stderr
