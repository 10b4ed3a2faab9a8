"""``rxbus spool``: list, retry and drop the events ``rxbus publish`` could not deliver yet.

    rxbus spool list                     # per destination: waiting, rejected, quarantined
    rxbus spool retry                    # send every destination's spool now
    rxbus spool retry --url http://127.0.0.1:8765 --rejected   # also resend refused events
    rxbus spool drop --url http://127.0.0.1:8765               # delete what waits for it

Imports only the standard library and :mod:`rxbus.spool` until it sends, so it is as cheap as
``rxbus publish``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from rxbus.cli import CliError

TYPE_CHECKING = False  # typing is not imported at run time: see rxbus/__init__.py
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

__all__ = ["register", "run"]

RETRY_TIMEOUT = 10.0  # seconds per batch: a person is waiting, not a hook


def register(subparsers: Any) -> None:
    """Add the ``spool`` sub-command to ``rxbus``'s parser."""
    p = subparsers.add_parser(
        "spool",
        help="list, retry or drop events 'rxbus publish' spooled while the server was down",
        description=(
            "The spool keeps, per destination URL, the events 'rxbus publish' could not deliver; "
            "'rxbus serve' and later publishes deliver them. 'list' shows what waits, 'retry' "
            "sends it now, 'drop' deletes it."
        ),
    )
    p.add_argument("action", choices=("list", "retry", "drop"), help="what to do")
    p.add_argument(
        "--spool", default=None, help="spool directory (default: $RXBUS_SPOOL or ~/.local/state)"
    )
    p.add_argument("--url", default=None, help="only this destination (default: every one)")
    p.add_argument("--token", default=None, help="bearer token for retry (default: $RXBUS_TOKEN)")
    p.add_argument(
        "--rejected",
        action="store_true",
        help="retry: send the events the server refused too; drop: delete those instead",
    )
    p.add_argument(
        "--all", action="store_true", help="drop: every destination (needed without --url)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List, retry or drop; retry returns 1 when events are still waiting afterwards.

    Raises:
        CliError: for a bad URL, ``drop`` without ``--url`` or ``--all``, or a spool that
            cannot be read or written.
    """
    try:
        return _run(args)
    except OSError as err:
        where = err.filename or args.spool or "the spool"
        raise CliError(f"cannot use {where}: {err.strerror or err}") from None


def _run(args: argparse.Namespace) -> int:
    from rxbus.spool import Spool, default_spool_dir

    root = args.spool or default_spool_dir()
    spools = Spool.destinations(root)
    if args.url is not None:
        try:
            wanted = Spool.for_url(root, args.url)
        except ValueError as err:
            raise CliError(str(err)) from None
        legacy = [s for s in spools if s.url is None]  # no recorded destination: --url says
        chosen = [s for s in spools if s.directory == wanted.directory] or [wanted]
        spools = chosen if args.action == "drop" else chosen + legacy
    if args.action == "list":
        return _list(spools, root)
    if args.action == "drop":
        if args.url is None and not args.all:
            raise CliError("drop deletes events: name the destination with --url, or pass --all")
        for spool in spools:
            dropped = spool.drop(rejected=args.rejected)
            what = "rejected events" if args.rejected else "events"
            print(f"{_name(spool)}: dropped {dropped} {what}")
        return 0
    return _retry(spools, args)


def _name(spool: Any) -> str:
    return spool.url or f"(no destination recorded: {spool.directory})"


def _list(spools: list[Any], root: object) -> int:
    if not spools:
        print(f"nothing spooled in {root}")
        return 0
    for spool in spools:
        print(
            f"{_name(spool)}: {spool.pending()} waiting, {len(spool.rejected())} rejected, "
            f"{len(spool.quarantined())} quarantined ({spool.directory})"
        )
    return 0


def _retry(spools: list[Any], args: argparse.Namespace) -> int:
    from rxbus.cli.publish import outcome, post

    token = args.token if args.token is not None else os.environ.get("RXBUS_TOKEN")
    waiting = 0
    for spool in spools:
        url = spool.url or args.url
        if url is None:
            print(f"{_name(spool)}: skipped; pass --url to say where these go", file=sys.stderr)
            waiting += spool.pending()
            continue
        if args.rejected:
            spool.restore_rejected()

        def send(lines: list[bytes], url: str = url) -> Any:
            return outcome(post(url, lines, token, deadline=time.monotonic() + RETRY_TIMEOUT))

        delivered = spool.drain(send, wait=True)
        left = spool.pending()
        waiting += left
        refused = len(spool.rejected())
        print(
            f"{url}: delivered {delivered}, {left} still waiting"
            + (f", {refused} rejected ({spool.directory / 'rejected'})" if refused else "")
        )
    return 1 if waiting else 0
