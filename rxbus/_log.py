"""The library's logger: loguru, disabled for ``rxbus`` until the application enables it.

Following loguru's advice for libraries, rxbus logs under its package name and turns that off
when this module is first imported (with the bus, not with ``import rxbus``, so a shell hook
running ``rxbus publish`` does not pay for importing loguru). To see rxbus's own logs::

    from loguru import logger
    from rxbus import EventBus  # imports the bus, and this module

    logger.enable("rxbus")
"""

from __future__ import annotations

from loguru import logger

__all__ = ["logger"]

logger.disable("rxbus")
