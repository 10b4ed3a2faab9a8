"""Typed payloads: publish a model, subscribe with ``model=``, invalid events dead-lettered."""

from __future__ import annotations

import dataclasses
import enum
from datetime import UTC, datetime
from typing import Any

import msgspec
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxbus import EventBus
from rxbus.errors import ModelValidationError, PayloadError
from rxbus.typed import parser, to_data


class Color(enum.Enum):
    RED = "red"


class PydOrder(pydantic.BaseModel):
    id: int
    qty: int
    at: datetime


class MsgOrder(msgspec.Struct):
    id: int
    qty: int
    at: datetime


@dataclasses.dataclass
class DcOrder:
    id: int
    qty: int
    at: str


AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
MODELS = [
    (PydOrder, PydOrder(id=1, qty=2, at=AT)),
    (MsgOrder, MsgOrder(id=1, qty=2, at=AT)),
    (DcOrder, DcOrder(id=1, qty=2, at=AT.isoformat())),
]


@pytest.mark.parametrize(("model", "instance"), MODELS, ids=lambda v: getattr(v, "__name__", ""))
def test_publish_a_model_stores_its_json_dict(model: type, instance: Any) -> None:
    with EventBus() as bus:
        event = bus.publish("orders.placed", instance)
        assert event.data["id"] == 1 and event.data["qty"] == 2
        assert event.data["at"].startswith("2026-01-02T03:04:05")
        assert type(event.data) is dict and event.payload_size > 0


@pytest.mark.parametrize(("model", "instance"), MODELS, ids=lambda v: getattr(v, "__name__", ""))
def test_subscribe_with_model_round_trips(model: type, instance: Any) -> None:
    with EventBus() as bus:
        got: list[Any] = []
        bus.subscribe(got.append, topic="orders.*", model=model)
        bus.publish("orders.placed", instance)
        assert got == [instance]


@pytest.mark.parametrize(("model", "instance"), MODELS, ids=lambda v: getattr(v, "__name__", ""))
def test_an_invalid_event_is_a_dead_letter_naming_the_field(model: type, instance: Any) -> None:
    with EventBus() as bus:
        got: list[Any] = []
        consumer = bus.subscribe(got.append, topic="orders.*", model=model, name="typed")
        bus.publish("orders.placed", {"id": 1, "qty": "many", "at": AT.isoformat()})
        bus.publish("orders.placed", instance)  # the consumer goes on
        [letter] = bus.recent_dead_letters()
        assert isinstance(letter.error, ModelValidationError)
        assert letter.error.fields == ("qty",) and letter.error.model is model
        assert "'qty'" in str(letter.error) and model.__name__ in str(letter.error)
        assert letter.consumer == "typed" and letter.event.data["qty"] == "many"
        assert got == [instance]
        stats = consumer.stats
        assert (stats.received, stats.delivered, stats.failed) == (2, 1, 1)


def test_the_payload_checks_still_hold_for_models() -> None:
    with EventBus(max_event_bytes=64) as bus, pytest.raises(PayloadError, match="max_event_bytes"):
        bus.publish("big", DcOrder(id=1, qty=2, at="x" * 100))


def test_a_model_that_is_not_an_object_is_refused() -> None:
    class Pair(msgspec.Struct, array_like=True):
        a: int
        b: int

    with EventBus() as bus, pytest.raises(PayloadError, match="Pair serialises to list"):
        bus.publish("p", Pair(1, 2))


def test_a_dataclass_that_orjson_cannot_serialise_is_a_payload_error() -> None:
    @dataclasses.dataclass
    class Bad:
        x: object

    with pytest.raises(PayloadError, match="Bad is not JSON-serialisable"):
        to_data(Bad(x={1, 2}))


def test_dataclass_check_names_unknown_missing_and_mistyped_fields() -> None:
    @dataclasses.dataclass
    class Shape:
        n: int
        ratio: float
        name: str = "x"

    parse = parser(Shape)
    assert parse({"n": 1, "ratio": 2}) == Shape(1, 2)
    with pytest.raises(ModelValidationError) as info:
        parse({"n": True, "extra": 1})
    assert info.value.fields == ("extra", "ratio", "n")


def test_model_must_be_a_model_class() -> None:
    with EventBus() as bus, pytest.raises(TypeError, match="model must be a pydantic"):
        bus.subscribe(print, model=dict)


def test_pydantic_nested_field_path_is_dotted() -> None:
    class Line(pydantic.BaseModel):
        sku: str

    class Order(pydantic.BaseModel):
        lines: list[Line]

    with pytest.raises(ModelValidationError) as info:
        parser(Order)({"lines": [{"sku": "a"}, {"sku": 3}]})
    assert info.value.fields == ("lines.1.sku",)


def test_msgspec_missing_field_is_named() -> None:
    with pytest.raises(ModelValidationError) as info:
        parser(MsgOrder)({"id": 1, "at": AT.isoformat()})
    assert info.value.fields == ("qty",)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["id", "qty", "at", "x"]), JSON, max_size=4), max_size=8
    )
)
def test_malformed_payloads_are_counted_never_lost(payloads: list[dict[str, Any]]) -> None:
    """Every event reaches each typed consumer as a model or as a dead letter, for all three."""
    with EventBus() as bus:
        consumers = [
            bus.subscribe(lambda m: None, topic="o", model=model, name=model.__name__)
            for model, _ in MODELS
        ]
        for data in payloads:
            bus.publish("o", data)
        for consumer in consumers:
            s = consumer.stats
            assert s.received == len(payloads) == s.delivered + s.failed
            assert s.dead_lettered == s.failed
        assert bus.metrics()["dead_lettered"] == sum(c.stats.failed for c in consumers)


def test_dataclass_generic_union_and_any_annotations_are_taken_as_they_come() -> None:
    @dataclasses.dataclass
    class Loose:
        xs: list[int]
        maybe: int | None = None
        anything: Any = None

    parse = parser(Loose)
    assert parse({"xs": ["not", "ints"], "maybe": "x", "anything": 3}) == Loose(
        ["not", "ints"], "x", 3
    )
    with pytest.raises(ModelValidationError, match="'xs': missing required field"):
        parse({})


def test_an_async_handler_gets_models_and_invalid_events_are_dead_letters() -> None:
    import asyncio

    async def main() -> tuple[list[Any], list[tuple[str, ...]]]:
        async with EventBus() as bus:
            got: list[Any] = []
            both = asyncio.Event()

            @bus.on("orders.*", model=MsgOrder, name="async-typed")
            async def handle(order: MsgOrder) -> None:
                got.append(order)
                if len(got) == 2:
                    both.set()

            bus.publish("orders.placed", MsgOrder(id=1, qty=1, at=AT))
            bus.publish("orders.placed", {"id": "x"})
            bus.publish("orders.placed", MsgOrder(id=2, qty=1, at=AT))
            await asyncio.wait_for(both.wait(), 5)
            fields = [d.error.fields for d in bus.recent_dead_letters()]  # type: ignore[attr-defined]
            return got, fields

    got, fields = asyncio.run(main())
    assert [o.id for o in got] == [1, 2]
    assert fields == [("id",)]
