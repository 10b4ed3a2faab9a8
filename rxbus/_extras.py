"""Optional dependencies: which extra installs each, and the one message that says so.

The distribution's name on the package index lives here and nowhere else, so every "install
this extra" message stays right when the name changes.

    >>> install_command("redis")
    "pip install 'rxbus-events[redis]'"
"""

from __future__ import annotations

import importlib

from rxbus.errors import MissingExtraError

__all__ = ["DIST_NAME", "EXTRAS", "install_command", "require"]

DIST_NAME = "rxbus-events"
"""``pip install rxbus-events``; the import name stays ``rxbus`` (the name ``rxbus`` on the
package index belongs to an unrelated project)."""

EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": ("socketio", "aiohttp"),
    "redis": ("redis",),
    "nats": ("nats",),
    "prometheus": ("prometheus_client",),
    "otel": ("opentelemetry.sdk",),
    "notebook": ("IPython",),
}
"""Extra name -> the modules it provides, checked by :func:`require`."""


def install_command(extra: str) -> str:
    """The shell command installing ``extra``, e.g. ``pip install 'rxbus-events[redis]'``."""
    return f"pip install '{DIST_NAME}[{extra}]'"


def require(extra: str, feature: str) -> None:
    """Import the modules of ``extra`` now, so a missing one fails with the fix in one line.

    Args:
        extra: a key of :data:`EXTRAS`.
        feature: what needs it, as the user wrote it (``"rxbus serve"``, ``"RedisStreamSink"``).

    Raises:
        MissingExtraError: (an ``ImportError``) naming the missing module and the extra.
    """
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise MissingExtraError(
                f"{feature} needs the {extra!r} extra ({module} is not installed): "
                f"{install_command(extra)}",
                name=module,
            ) from err
