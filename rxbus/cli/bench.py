"""``rxbus bench``: the standard operator-chain suite, with a progress bar and a table."""

from __future__ import annotations

import argparse
import platform
import sys
from typing import Any

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "bench",
        help="benchmark the standard operator chains against a plain-Python floor",
        description=(
            "Runs each chain of the standard suite (the bus alone, where, where -> transform, "
            "batch, thread and async consumers, a bare reactivex Subject) over generated "
            "events, next to a plain-Python floor measured in the same run. Prints ns/event, "
            "events/s, the ratio to the floor and p50/p99 push-to-sink latency."
        ),
    )
    parser.add_argument(
        "-n", "--events", type=int, default=20_000, help="events per round (default 20000)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per chain (default 3)")
    parser.add_argument(
        "--only", default=None, help="run only the chains whose name or mode contains this text"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import orjson
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    import rxbus
    from rxbus.bench import bench_chain, standard_suite
    from rxbus.cli import CliError

    if args.events < 1:
        raise CliError(f"--events must be >= 1, got {args.events}")
    if args.rounds < 1:
        raise CliError(f"--rounds must be >= 1, got {args.rounds}")
    cases = standard_suite()
    if args.only:
        cases = [c for c in cases if args.only in c.name or args.only == c.mode]
        if not cases:
            raise CliError(f"--only {args.only!r} matches no chain of the suite")

    # The bar goes to stderr so that --json output on stdout stays machine-readable.
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )
    results = []
    with progress:
        task = progress.add_task("rxbus bench", total=len(cases))
        for case in cases:
            progress.update(task, description=f"{case.name} [{case.mode}]")
            results.append(
                bench_chain(
                    *case.operators(),
                    n=args.events,
                    mode=case.mode,
                    rounds=args.rounds,
                    name=case.name,
                )
            )
            progress.advance(task)

    machine = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "rxbus": rxbus.__version__,
    }
    if args.json:
        sys.stdout.write(
            orjson.dumps(
                {"machine": machine, "results": [r.as_dict() for r in results]},
                option=orjson.OPT_INDENT_2,
            ).decode()
            + "\n"
        )
        return 0
    # Fits 80 columns: no box; events/s is 1e9 / ns per event (and is in --json).
    table = Table(
        title=f"rxbus bench: {args.events:,} events x {args.rounds} rounds, best round",
        title_justify="left",
        caption=f"Python {machine['python']} on {machine['platform']}; floor = a plain "
        "Python loop calling the same sink, measured in the same run; events/s = 1e9 / ns/event",
        caption_justify="left",
        box=None,
        pad_edge=False,
    )
    for column in ("chain", "mode", "delivered", "ns/event", "x floor", "p50", "p99"):
        table.add_column(
            column,
            justify="left" if column in ("chain", "mode") else "right",
            header_style="bold underline",
            no_wrap=True,
        )
    for r in results:
        table.add_row(
            r.name,
            r.mode,
            f"{r.delivered:,}",
            f"{r.ns_per_event:,.0f}",
            f"{r.ratio:,.1f}",
            _ns(r.latency_ns.get("p50")),
            _ns(r.latency_ns.get("p99")),
        )
    width = None if sys.stdout.isatty() else 80
    Console(file=sys.stdout, width=width).print(table)
    return 0


def _ns(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:,.1f} ms"
    if value >= 1e3:
        return f"{value / 1e3:,.1f} µs"
    return f"{value:,.0f} ns"
