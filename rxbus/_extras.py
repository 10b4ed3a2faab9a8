"""The distribution's name on the package index, and the one way to say "install extra X"."""

from __future__ import annotations

DIST_NAME = "rxbus-events"
"""``pip install rxbus-events``; the import name stays ``rxbus``."""


def install_hint(extra: str) -> str:
    """The pip command that installs ``extra``, e.g. ``pip install 'rxbus-events[redis]'``.

    >>> install_hint("redis")
    "pip install 'rxbus-events[redis]'"
    """
    return f"pip install '{DIST_NAME}[{extra}]'"
