"""Wall time of one ``rxbus publish`` process, server up and down, next to bare start-up.

Issue 12's target: a median within 2x of ``python -c pass`` (interpreter start-up included). The
floor is ``python -c pass``, measured in the same run on the same machine, so a loaded machine
shows in both. Both run in a virtualenv laid out as a user's ``pip install`` leaves it (see
:func:`user_install`), not in the project's ``.venv``: its editable install's import hook loads
pathlib, re and more into every interpreter there, ``python -c pass`` included, which tripled
the floor and made publish look twice as cheap next to it as it is. Run as a script for a quick
report::

    .venv/bin/python -m tests.benchmarks.test_publish_cli 200
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from rxbus.metrics import percentiles
from rxbus.spool import Spool
from tests.conftest import free_port
from tests.integration.serve_process import ROOT, ServeProcess, child_env

pytestmark = pytest.mark.timeout(600)

RUNS = 120  # enough invocations for a meaningful p99 (the 2nd slowest of 120)


def installed_env(directory: Path) -> dict[str, str]:
    """The children's environment as on a user's machine: bytecode cached, no PYTHONPATH.

    An installed package has its ``.pyc`` files (pip compiles them), and the standard library's
    are always there; a run with ``PYTHONDONTWRITEBYTECODE`` would compile every rxbus module
    from source on each call and charge it to rxbus, not to the floor. The cache goes to a
    temporary ``PYTHONPYCACHEPREFIX``, so the checkout stays clean.
    """
    env = child_env(PYTHONPYCACHEPREFIX=str(directory / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPATH", None)
    return env


# What pip (and uv) write as the ``rxbus`` console script.
CONSOLE_SCRIPT = """# -*- coding: utf-8 -*-
import re
import sys
from rxbus.cli import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


def user_install(directory: Path) -> tuple[str, str]:
    """A virtualenv with rxbus as a wheel leaves it: ``(python, rxbus console script)``.

    The package is a symlink to this checkout's ``rxbus/`` (no build), the script is pip's, and
    no ``.pth`` import hook runs at start-up. ``publish`` needs nothing outside the standard
    library, so no dependency is installed.
    """
    import venv

    home = directory / "user-venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(home)
    [site] = (home / "lib").glob("python3*/site-packages")
    (site / "rxbus").symlink_to(ROOT / "rxbus", target_is_directory=True)
    script = home / "bin" / "rxbus"
    script.write_text(f"#!{home / 'bin' / 'python'}\n" + CONSOLE_SCRIPT)
    script.chmod(0o755)
    return str(home / "bin" / "python"), str(script)


def run_ok(cmd: Sequence[str], env: dict[str, str]) -> float:
    """Seconds one run of ``cmd`` takes (a fresh process); fails on a non-zero exit."""
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    return elapsed


def summary(times: list[float]) -> dict[str, float]:
    p = percentiles([t * 1000 for t in times], (50, 99))
    return {"median_ms": statistics.median(times) * 1000, "p99_ms": p["p99"]}


FLOOR = "python -c pass"


def measure(runs: int, directory: Path) -> dict[str, dict[str, float]]:
    """Median and p99 (ms) for the floors and for ``publish`` with the server up and down.

    The four commands take turns, run after run, so a change in machine load during the
    measurement affects them alike.
    """
    env = installed_env(directory)
    python, rxbus = user_install(directory)
    down_url = f"http://127.0.0.1:{free_port()}"
    down_spool = directory / "down-spool"
    times: dict[str, list[float]] = {}
    with ServeProcess(directory / "up") as server:
        commands = {
            FLOOR: [python, "-c", "pass"],
            "publish, server up": [
                rxbus,
                "publish",
                "bench.up",
                "--data",
                '{"n": 1}',
                "--url",
                server.url,
                "--spool",
                str(server.spool_dir),
            ],
            "publish, server down (spooled)": [
                rxbus,
                "publish",
                "bench.down",
                "--data",
                '{"n": 1}',
                "--url",
                down_url,
                "--spool",
                str(down_spool),
            ],
        }
        for cmd in commands.values():
            run_ok(cmd, env)  # warm-up: writes the bytecode cache, as an install would
        for _ in range(runs):
            for name, cmd in commands.items():
                times.setdefault(name, []).append(run_ok(cmd, env))
        stored = len(server.history("bench.up"))
    assert stored == runs + 1, f"{stored} of {runs + 1} published events stored"
    assert Spool.for_url(down_spool, down_url).pending() == runs + 1
    return {name: summary(t) for name, t in times.items()}


def test_publish_wall_time(bench: Any, tmp_path: Path) -> None:
    """Median/p99 per invocation, next to bare start-up; under --benchmark-disable 3 runs each."""
    env = installed_env(tmp_path)
    python, _ = user_install(tmp_path / "floor")
    bench.measure("publish_cli.floor", lambda: run_ok([python, "-c", "pass"], env), ops=1)
    result = measure(RUNS if bench.enabled else 3, tmp_path)
    for name, figures in result.items():
        key = "publish_cli." + "".join(c if c.isalnum() else "_" for c in name)
        bench.record(key + ".median", figures["median_ms"] * 1e6)
        bench.record(key + ".p99", figures["p99_ms"] * 1e6)
    for name, label in (
        ("publish__server_up", "rxbus publish, server up (median)"),
        ("publish__server_down__spooled_", "rxbus publish, server down (median)"),
    ):
        bench.compare(
            f"{label} / python -c pass",
            subject=f"publish_cli.{name}.median",
            floor="publish_cli.python__c_pass.median",
            target=2.0,
            note="issue 12: within 2x of python -c pass, same run",
        )
    print(format_table(result))


def format_table(result: dict[str, dict[str, float]]) -> str:
    lines = ["| invocation | median (ms) | p99 (ms) |", "|---|---:|---:|"]
    for name, figures in result.items():
        lines.append(f"| {name} | {figures['median_ms']:.1f} | {figures['p99_ms']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    with tempfile.TemporaryDirectory() as tmp:
        print(format_table(measure(runs, Path(tmp))))
