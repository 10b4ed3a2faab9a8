"""Throughput of ``rxbus run`` (issue 14): a command's output through the monitor to a server,
next to the same command writing to /dev/null, in the same run.

Each round runs a generator writing ``MB`` MiB of 100-byte lines. The floor runs it with its
stdout on /dev/null; the subject runs it under ``rxbus run --quiet`` posting to a real HTTP
server on loopback (``tests/integration/ingest_counter.py``, which counts and digests what it
gets, so a broken monitor cannot post a fast number). Interpreter start-up is in both.

Run measured: ``python -m pytest tests/benchmarks/test_run_cli.py --benchmark-only``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.benchmarks.conftest import Recorder
from tests.integration.ingest_counter import IngestCounter
from tests.integration.serve_process import child_env, rxbus_cmd
from tests.integration.test_run_cli import GENERATOR, expected_digest

MB = 32


def test_floor_generator_to_devnull(bench: Recorder) -> None:
    """The generator alone, its output thrown away."""
    cmd = [sys.executable, "-c", GENERATOR, str(MB)]

    def once() -> None:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

    bench.measure("run.floor", once, ops=MB, group="run")


def test_rxbus_run_to_a_server(bench: Recorder, tmp_path: Path) -> None:
    """Every line of every round reaches the server, in order."""
    with IngestCounter() as server:
        cmd = rxbus_cmd("run", "--quiet", "--url", server.url, "--spool", str(tmp_path))
        cmd += ["--", sys.executable, "-c", GENERATOR, str(MB)]
        env = child_env()

        def once() -> None:
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)

        rounds = bench.measure("run.monitor", once, ops=MB, group="run")
    lines, _ = expected_digest(MB)
    tally = server.streams["stdout"]
    assert tally.lines == rounds * lines and tally.out_of_order == rounds - 1
    bench.compare(
        "rxbus run: 1 MiB of output to a server", subject="run.monitor", floor="run.floor"
    )
