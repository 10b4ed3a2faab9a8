"""Run the core benchmarks (``tests/benchmarks/test_core.py``) and print their ratios as markdown.

Each run is a separate pytest process measuring every subject next to its floor; the table shows
one ratio column per run, so the run-to-run spread on a shared machine is visible. Nothing is
asserted: this reports.

Usage::

    .venv/bin/python scripts/bench_core.py            # two runs
    .venv/bin/python scripts/bench_core.py --runs 3 -- -k "a_ or b_"
    RXBUS_BENCH_JSON=run1.json .venv/bin/python -m pytest tests/benchmarks/test_core.py \
        --benchmark-only && .venv/bin/python scripts/bench_core.py --from-json run1.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_once(pytest_args: list[str]) -> dict[str, Any]:
    """One measured pytest run of the core benchmarks; returns what the conftest wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ratios.json"
        env = {**os.environ, "RXBUS_BENCH_JSON": str(out)}
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "tests/benchmarks/test_core.py",
            "--benchmark-only",
            "-p",
            "no:cacheprovider",
            "-q",
            *pytest_args,
        ]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise SystemExit(f"benchmark run failed (exit {proc.returncode})")
        data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return data


def versions() -> str:
    """Python and the versions of the packages the benchmarks depend on."""
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"{platform.python_implementation()} {platform.python_version()}"]
    for name in ("rxbus-events", "reactivex", "orjson", "pytest-benchmark"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def table(runs: list[dict[str, Any]]) -> str:
    """A markdown table: one row per comparison, one median-ratio column per run."""
    labels: list[str] = []
    by_run: list[dict[str, dict[str, Any]]] = []
    for run in runs:
        rows = {r["label"]: r for r in run["ratios"]}
        by_run.append(rows)
        labels.extend(label for label in rows if label not in labels)
    head = "| benchmark | " + " | ".join(
        f"run {i + 1}: rxbus / floor (ns/op) | run {i + 1}: ratio" for i in range(len(runs))
    )
    lines = [head + " | target |", "|---|" + "---:|---:|" * len(runs) + "---|"]
    for label in labels:
        cells = []
        target = None
        for rows in by_run:
            r = rows.get(label)
            if r is None:
                cells.append("- | -")
                continue
            target = r["target"]
            cells.append(f"{r['subject_ns']:,.0f} / {r['floor_ns']:,.0f} | {r['ratio']:.2f}x")
        if target is None:
            verdict = "-"
        else:
            met = [rows[label]["met"] for rows in by_run if label in rows]
            verdict = f"<= {target:g}x: " + (
                "met" if all(met) else "missed" if not any(met) else "met in some runs"
            )
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="separate measured runs (default 2)")
    parser.add_argument(
        "--from-json",
        nargs="+",
        metavar="FILE",
        help="format runs saved earlier (RXBUS_BENCH_JSON=FILE) instead of running pytest",
    )
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest after --")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    if args.from_json:
        runs = [json.loads(Path(f).read_text(encoding="utf-8")) for f in args.from_json]
    else:
        runs = [run_once(args.pytest_args) for _ in range(args.runs)]
    first = runs[0]
    print(f"Machine: {first['machine']}, {first['cpus']} CPUs; {versions()}")
    print()
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
