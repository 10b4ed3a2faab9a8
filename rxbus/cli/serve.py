"""``rxbus serve``: the bus behind Socket.IO, HTTP ingest and a live dashboard.

    rxbus serve                       # http://127.0.0.1:8765, history in ~/.local/state/rxbus
    rxbus serve --host 0.0.0.0 --token "$(openssl rand -hex 16)"

Binds 127.0.0.1 unless told otherwise, and refuses any other address without ``--token``.
SIGINT or SIGTERM stops it after the bus has drained into the store.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from rxbus.cli import CliError

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``serve`` sub-command to ``rxbus``'s parser."""
    p = subparsers.add_parser(
        "serve",
        help="run the Socket.IO server, HTTP ingest and live dashboard",
        description=(
            "Serve an event bus: Socket.IO (publish/subscribe), HTTP ingest (POST /events), "
            "history (GET /events), Prometheus metrics (GET /metrics) and a dashboard (GET /)."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0: any)")
    p.add_argument(
        "--token",
        default=None,
        help="require this token from every client (default: $RXBUS_TOKEN; needed off loopback)",
    )
    p.add_argument(
        "--store",
        default=None,
        help="SQLite file for history and dedupe across restarts "
        "(default ~/.local/state/rxbus/events.sqlite; 'none' for memory only)",
    )
    p.add_argument(
        "--max-body",
        type=int,
        default=4 * 1024 * 1024,
        help="largest request body in bytes (default 4194304)",
    )
    p.add_argument(
        "--max-event-bytes",
        type=int,
        default=1_048_576,
        help="largest single event in bytes of JSON (default 1048576)",
    )
    p.add_argument(
        "--spool",
        default=None,
        help="spool directory of 'rxbus publish' to deliver (default: the same as publish's; "
        "'none' to skip)",
    )
    p.add_argument(
        "--page-queue",
        type=int,
        default=10_000,
        help="most events queued for one slow dashboard or client (default 10000)",
    )
    p.add_argument(
        "--page-overflow",
        default="drop_oldest",
        help="what a full client queue does: drop_oldest (default), drop_newest, latest or "
        "error (disconnect it); drops are counted and told to that client",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted.

    Raises:
        CliError: for an unsafe bind, bad limits, an address already in use, or a missing
            serve extra.
    """
    import asyncio
    import signal

    from rxbus._extras import require

    require("serve", "rxbus serve")
    from rxbus.server.app import RxbusServer, ServerConfig
    from rxbus.spool import default_spool_dir

    state = default_spool_dir().parent
    store = args.store or os.environ.get("RXBUS_STORE") or str(state / "events.sqlite")
    spool = args.spool or str(default_spool_dir())
    config = ServerConfig(
        host=args.host,
        port=args.port,
        token=args.token if args.token is not None else os.environ.get("RXBUS_TOKEN"),
        store=None if store.lower() == "none" else store,
        max_body=args.max_body,
        max_event_bytes=args.max_event_bytes,
        spool=None if spool.lower() == "none" else spool,
        page_queue=args.page_queue,
        page_overflow=args.page_overflow,
    )
    try:
        config.check()
    except ValueError as err:
        raise CliError(str(err)) from None

    async def serve() -> None:
        server = RxbusServer(config)
        try:
            await server.start()
        except OSError as err:
            await server.stop()
            raise CliError(
                f"cannot listen on {config.host}:{config.port}: {err.strerror}"
            ) from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        page = f"{server.url}/" + ("?token=TOKEN" if config.token else "")
        print(f"rxbus serve: listening on {server.url} (dashboard: {page})", flush=True)
        try:
            await stop.wait()
        finally:
            await server.stop()
            print("rxbus serve: stopped", flush=True)

    asyncio.run(serve())
    return 0
