"""What the commands print fits a terminal of 80 columns, headers included.

(``rxbus bench``'s table is checked with its other behaviour in tests/viz/test_bench.py.)
"""

from __future__ import annotations

import subprocess
import sys


def test_demo_output_fits_80_columns_with_every_header() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "rxbus", "demo", "--events", "500"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if line.startswith("consumer "))
    assert header.split() == [
        "consumer", "topic", "mode", "received", "delivered", "failed", "dropped", "counted",
    ]  # fmt: skip
    assert "…" not in run.stdout  # nothing cut short
