"""Typed payloads: cost per event against a plain dict (issue 13, point 4).

Each round publishes ``BATCH`` events to one ``sync`` subscriber, on three paths:

- floor: ``publish(topic, dict)`` to a plain sink (the untyped bus);
- publish side: ``publish(topic, model)`` (the model turned into its dict) to a plain sink;
- subscribe side: ``publish(topic, dict)`` to a sink subscribed with ``model=`` (each event
  validated into the model);
- both: a model published, a model received.

for a pydantic v2 model, a msgspec Struct and a dataclass, each compared with the floor measured
in the same run. Every test checks that the sink received exactly the events published. Nothing
is asserted about time.

Run measured: ``python -m pytest tests/benchmarks/test_typed.py --benchmark-only``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import msgspec
import pydantic
import pytest

from rxbus import EventBus
from tests.benchmarks.conftest import Recorder

BATCH = 1_000
TOPIC = "orders.placed"
DATA = {"id": 1, "sku": "A-1", "qty": 2, "price": 9.5}


class PydOrder(pydantic.BaseModel):
    id: int
    sku: str
    qty: int
    price: float


class MsgOrder(msgspec.Struct):
    id: int
    sku: str
    qty: int
    price: float


@dataclasses.dataclass
class DcOrder:
    id: int
    sku: str
    qty: int
    price: float


MODELS: dict[str, type] = {"pydantic": PydOrder, "msgspec": MsgOrder, "dataclass": DcOrder}


def run(bench: Recorder, key: str, model: type | None, payload: Any) -> None:
    bus = EventBus(name=key, history=0)
    got: list[Any] = []
    bus.subscribe(got.append, topic=TOPIC, model=model)
    publish = bus.publish

    def round_() -> None:
        got.clear()
        for _ in range(BATCH):
            publish(TOPIC, payload)

    bench.measure(key, round_, ops=BATCH, group="typed")
    assert len(got) == BATCH  # every event reached the sink, typed when asked
    if model is not None:
        assert isinstance(got[-1], model)
    assert bus.close() == [] and bus.metrics()["failed"] == 0


def test_floor_plain_dict(bench: Recorder) -> None:
    run(bench, "typed.floor", None, DATA)


@pytest.mark.parametrize("kind", list(MODELS))
def test_publish_a_model(bench: Recorder, kind: str) -> None:
    run(bench, f"typed.publish.{kind}", None, MODELS[kind](**DATA))
    bench.compare(
        f"publish a {kind} model (vs dict)", subject=f"typed.publish.{kind}", floor="typed.floor"
    )


@pytest.mark.parametrize("kind", list(MODELS))
def test_subscribe_with_model(bench: Recorder, kind: str) -> None:
    run(bench, f"typed.subscribe.{kind}", MODELS[kind], DATA)
    bench.compare(
        f"subscribe model={kind} (vs dict)", subject=f"typed.subscribe.{kind}", floor="typed.floor"
    )


@pytest.mark.parametrize("kind", list(MODELS))
def test_model_in_model_out(bench: Recorder, kind: str) -> None:
    model: Callable[..., Any] = MODELS[kind]
    run(bench, f"typed.both.{kind}", MODELS[kind], model(**DATA))
    bench.compare(
        f"{kind} in, {kind} out (vs dict)", subject=f"typed.both.{kind}", floor="typed.floor"
    )
