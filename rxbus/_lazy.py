"""Lazy re-exports (PEP 562) for package ``__init__`` modules.

Importing ``rxbus`` or ``rxbus.sinks`` must not import the bus, reactivex or an optional
dependency: a shell hook running ``rxbus publish`` pays only for what it uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

TYPE_CHECKING = False  # typing is not imported at run time: see rxbus/__init__.py
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, names: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, importing ``names[attr]`` on first access.

    Args:
        package: the package's ``__name__``, for error messages.
        names: attribute name -> module that defines it.
        namespace: the package's ``globals()``; a loaded attribute is cached there.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace.get("__all__", ())) | set(names))

    return __getattr__, __dir__
