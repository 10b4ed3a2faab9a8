"""Instruction counts per publish, rxbus next to its peers, under ``valgrind --tool=callgrind``.

Wall-clock ratios move with the load of a shared machine; instruction counts do not. Each cell
runs the scenario twice in a fresh interpreter under callgrind (N operations, then 0) and reports
the difference divided by N, so start-up cost cancels out.

Scenarios (the same as ``tests/benchmarks/test_peers.py``):

- ``S1``: one topic, one handler;
- ``S2``: one topic, ten handlers;
- ``S3``: 20 topics, 40 subscribers (20 exact, 20 with wildcards; pyee and blinker get every
  concrete topic a pattern matches, expanded up front).

Usage::

    .venv/bin/python scripts/callgrind_peers.py              # this checkout
    .venv/bin/python scripts/callgrind_peers.py --root /path/to/other/checkout --python ...

Nothing is asserted: this reports.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBS = ("floor", "pyee", "blinker", "reactivex", "rxbus-prebuilt", "rxbus")
SCENARIOS = ("S1", "S2", "S3")

BODY = r"""
import sys
n, lib, scenario = int(sys.argv[1]), sys.argv[2], sys.argv[3]
from rxbus.topics import matches
exact = [f"app.s{i:02d}.done" for i in range(20)]
if scenario == "S1":
    topics, patterns = ["bench.one"], ["bench.one"]
elif scenario == "S2":
    topics, patterns = ["bench.one"], ["bench.one"] * 10
else:
    topics = exact
    patterns = exact + [f"app.s{i:02d}.*" for i in range(10)] + [
        f"*.s{i:02d}.done" for i in range(10, 15)] + ["app.**", "**", "*.*.done", "app.*.done", "**.done"]
data = {"n": 1, "tool": "Bash"}
hits = [0]
def handler(*_a, **_k):
    hits[0] += 1
routes = {t: [handler for p in patterns if matches(p, t)] for t in topics}
if lib == "floor":
    def op(t):
        for cb in routes[t]:
            cb(data)
elif lib == "pyee":
    from pyee import EventEmitter
    ee = EventEmitter()
    for t in topics:
        for cb in routes[t]:
            ee.on(t, lambda d, cb=cb: cb(d))
    def op(t):
        ee.emit(t, data)
elif lib == "blinker":
    from blinker import Namespace
    ns = Namespace()
    signals = {t: ns.signal(t) for t in topics}
    keep = []
    for t in topics:
        for cb in routes[t]:
            f = lambda sender, cb=cb, **kw: cb(kw)
            keep.append(f)
            signals[t].connect(f)
    def op(t):
        signals[t].send(None, data=data)
elif lib == "reactivex":
    from reactivex.subject import Subject
    from rxbus.topics import compile_pattern
    subject = Subject()
    for p in patterns:
        m = compile_pattern(p)
        subject.subscribe(lambda item, m=m: handler(item) if m(item[0]) else None)
    def op(t):
        subject.on_next((t, data))
else:
    from rxbus import Event, EventBus
    bus = EventBus(history=1000)
    for p in patterns:
        bus.subscribe(handler, topic=p)
    publish = bus.publish
    if lib == "rxbus-prebuilt":
        prebuilt = {t: Event(topic=t, data=data) for t in topics}
        def op(t):
            publish(prebuilt[t])
    else:
        def op(t):
            publish(t, data)
for t in topics:
    op(t)  # warm caches (routes, topic validation)
hits[0] = 0
k = len(topics)
for i in range(n):
    op(topics[i % k])
expected = n and sum(len(routes[topics[i % k]]) for i in range(n))
assert hits[0] == expected, (lib, scenario, hits[0], expected)
"""


def instructions(python: str, root: Path, n: int, lib: str, scenario: str) -> int:
    """Instructions callgrind collected for one run of the scenario."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        script = Path(tmp) / "bench.py"
        script.write_text(BODY)
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python,
             str(script), str(n), lib, scenario],
            cwd=root, capture_output=True, text=True, check=False,
            env={**os.environ, "PYTHONPATH": str(root)},
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{lib} {scenario} failed:\n{done.stderr[-2000:]}")
        found = re.search(r"Collected : (\d+)", done.stderr)
        assert found, done.stderr[-2000:]
        return int(found.group(1))


def per_op(python: str, root: Path, lib: str, scenario: str, n: int) -> float:
    return (
        instructions(python, root, n, lib, scenario) - instructions(python, root, 0, lib, scenario)
    ) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to measure")
    parser.add_argument("--python", default=sys.executable, help="interpreter with rxbus deps")
    parser.add_argument("-n", type=int, default=5_000, help="operations per run")
    parser.add_argument("--libs", default=",".join(LIBS))
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    libs = args.libs.split(",")
    print(f"Instructions per publish (callgrind, {args.n} operations), ratio to the floor\n")
    print("| scenario | " + " | ".join(libs) + " |")
    print("|---|" + "---:|" * len(libs))
    for scenario in SCENARIOS:
        counts = {lib: per_op(args.python, args.root, lib, scenario, args.n) for lib in libs}
        floor = counts.get("floor")
        cells = [
            f"{counts[lib]:,.0f}" + (f" ({counts[lib] / floor:.1f}x)" if floor else "")
            for lib in libs
        ]
        print(f"| {scenario} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
