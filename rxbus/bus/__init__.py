"""The bus: ``_bus`` (publish, subscribe, the Observer side, close), ``_routing`` (topics to
consumers), ``_replay`` (history and the replay seam), ``_stream`` (hot streams),
``_lifecycle`` (the asyncio loop and interpreter exit)."""

from __future__ import annotations

from rxbus.bus._bus import EventBus
from rxbus.bus._replay import ReplayStore
from rxbus.bus._routing import OTHER_TOPICS, TOPIC_METRICS_LIMIT
from rxbus.bus._stream import BusStream

__all__ = ["OTHER_TOPICS", "TOPIC_METRICS_LIMIT", "BusStream", "EventBus", "ReplayStore"]
