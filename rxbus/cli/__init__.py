"""The ``rxbus`` command line.

Each sub-command lives in a module of its own with ``register(subparsers)``; modules import
nothing heavy at import time, so ``rxbus publish`` starts fast enough for a shell hook.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

__all__ = ["CliError", "main"]

# Sub-command modules, in the order ``rxbus --help`` lists them.
_COMMANDS = (
    "rxbus.cli.demo",
    "rxbus.cli.serve",
    "rxbus.cli.publish",
    "rxbus.cli.run",
    "rxbus.cli.bench",
    "rxbus.cli.store",
    "rxbus.cli.spool",
)


class CliError(Exception):
    """A user error: printed as one line on stderr, exit code 2 (or ``code``)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


# Which module registers each command: ``rxbus publish`` loads only its own module.
_MODULE_OF = {
    "demo": "rxbus.cli.demo",
    "serve": "rxbus.cli.serve",
    "publish": "rxbus.cli.publish",
    "bench": "rxbus.cli.bench",
    "tail": "rxbus.cli.store",
    "replay": "rxbus.cli.store",
    "spool": "rxbus.cli.spool",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``rxbus`` parser with every command, or only ``command``'s (a hook's fast path)."""
    parser = _Parser(
        prog="rxbus",
        description="rxbus: a reactive event bus. Run 'rxbus demo' to see it work.",
    )
    parser.add_argument(
        "--version", action=_VersionAction, nargs=0, help="show the version and exit"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    modules = [_MODULE_OF[command]] if command in _MODULE_OF else _COMMANDS
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv else None)
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


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, sized without importing shutil (and bz2, lzma, zlib with it):
    argparse builds one for every ``add_argument``, so a hook would pay for them."""

    def __init__(self, prog: str, *args: object, **kwargs: object) -> None:
        if kwargs.get("width") is None:
            try:
                columns = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(2).columns
            except (ValueError, OSError):
                columns = 80
            kwargs["width"] = max(columns - 2, 20)
        super().__init__(prog, *args, **kwargs)  # type: ignore[arg-type]


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` (and sub-command parsers) using :class:`_Formatter`."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


class _VersionAction(argparse.Action):
    """``--version``: the version single-sourced in ``rxbus.__version__``."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(_version())
        parser.exit()


def _version() -> str:
    from rxbus import __version__
    from rxbus._extras import DIST_NAME

    return f"rxbus {__version__} ({DIST_NAME})"
