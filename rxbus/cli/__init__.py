"""The ``rxbus`` command line.

Each sub-command lives in a module of its own with ``register(subparsers)``; modules import
nothing heavy at import time, so ``rxbus publish`` starts fast enough for a shell hook.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["CliError", "main"]

# Sub-command modules, in the order ``rxbus --help`` lists them.
_COMMANDS = (
    "rxbus.cli.demo",
    "rxbus.cli.serve",
    "rxbus.cli.publish",
    "rxbus.cli.bench",
    "rxbus.cli.store",
    "rxbus.cli.spool",
)


class CliError(Exception):
    """A user error: printed as one line on stderr, exit code 2 (or ``code``)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rxbus",
        description="rxbus: a reactive event bus. Run 'rxbus demo' to see it work.",
    )
    parser.add_argument(
        "--version", action=_VersionAction, nargs=0, help="show the version and exit"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from rxbus.errors import MissingExtraError

    try:
        return int(args.func(args) or 0)
    except (CliError, MissingExtraError) as err:
        print(f"rxbus {args.command}: error: {err}", file=sys.stderr)
        return getattr(err, "code", 2)
    except KeyboardInterrupt:
        return 130


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked: importlib.metadata costs a shell hook ~10 ms."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(_version())
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"rxbus {version('rxbus')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "rxbus (source)"
