"""Typed payloads: publish a model, receive a validated model.

``bus.publish(topic, model)`` accepts a pydantic v2 model, a msgspec ``Struct`` or a dataclass
instance and stores its JSON-able dict as ``data`` (:func:`to_data`), so every consumer, store
and server still sees a plain JSON event. ``bus.subscribe(handler, topic=..., model=Cls)`` hands
the handler a ``Cls`` built from ``event.data`` (:func:`parser`); an event that does not validate
becomes a dead letter whose :class:`~rxbus.errors.ModelValidationError` names the field.

pydantic and msgspec are optional (``pip install 'rxbus[typed]'``): neither is imported unless
the application already did. Dataclasses need nothing; their check is shallow (see
:func:`parser`).

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Order:
    ...     id: int
    ...     qty: int = 1
    >>> to_data(Order(id=7))
    {'id': 7, 'qty': 1}
    >>> parse = parser(Order)
    >>> parse({"id": 7, "qty": 2})
    Order(id=7, qty=2)
    >>> parse({"id": "7"})
    Traceback (most recent call last):
    ...
    rxbus.errors.ModelValidationError: data does not validate as Order: field 'id': expected int, got str '7'
"""

from __future__ import annotations

import dataclasses
import re
import sys
import typing
from collections.abc import Callable
from typing import Any

import orjson

from rxbus.errors import ModelValidationError, PayloadError

__all__ = ["parser", "to_data"]

_MAX_LISTED = 5
_MSGSPEC_PATH = re.compile(r"at `\$\.?([^`]*)`")
_MSGSPEC_MISSING = re.compile(r"missing required field `([^`]*)`")


def to_data(value: Any) -> Any:
    """The JSON-able dict of a pydantic v2 model, msgspec Struct or dataclass instance.

    Anything else is returned unchanged (``publish`` then checks it as usual: ``None`` and
    dicts pass, other values raise :class:`~rxbus.errors.PayloadError` naming them).

    Raises:
        PayloadError: if the model does not serialise to a JSON object (e.g. an
            ``array_like`` Struct).
    """
    kind = _kind(type(value))
    if kind is None:
        return value
    if kind == "pydantic":
        data = value.model_dump(mode="json")
    elif kind == "msgspec":
        data = sys.modules["msgspec"].to_builtins(value)
    else:
        try:
            data = orjson.loads(orjson.dumps(value))
        except TypeError as err:
            raise PayloadError(
                f"dataclass {type(value).__name__} is not JSON-serialisable: {err}"
            ) from None
    if not isinstance(data, dict):
        raise PayloadError(
            f"{type(value).__name__} serialises to {type(data).__name__}, not a JSON object; "
            "data must be a dict"
        )
    return data


def parser(model: type) -> Callable[[Any], Any]:
    """A function turning an event (or its ``data`` dict) into a validated ``model``.

    pydantic models use ``model_validate``, msgspec Structs ``msgspec.convert`` (both validate
    nested fields and convert ISO strings back to datetimes). A dataclass is checked shallowly,
    with no dependency: unknown and missing fields, and fields annotated with a plain class
    (``int``, ``str``, ``float``, ``bool``, ``list``, ``dict``, ...) by ``isinstance``; other
    annotations are taken as they come.

    Raises:
        TypeError: if ``model`` is none of the three kinds.
        ModelValidationError: (from the returned function) naming every failing field.
    """
    kind = _kind(model) if isinstance(model, type) else None
    if kind is None:
        raise TypeError(
            "model must be a pydantic v2 BaseModel subclass, a msgspec Struct type or a "
            f"dataclass, got {model!r:.80}"
        )
    if kind == "pydantic":
        validate = _pydantic_validator(model)
    elif kind == "msgspec":
        validate = _msgspec_validator(model)
    else:
        validate = _dataclass_validator(model)

    def parse(item: Any) -> Any:
        data = getattr(item, "data", item)
        problems = [("(root)", f"expected a dict, got {type(data).__name__}")]
        if isinstance(data, dict):
            try:
                return validate(data)
            except _Invalid as err:
                problems = err.problems
        where = f"event {item.id} on {item.topic!r}" if hasattr(item, "topic") else "data"
        listed = "; ".join(f"field {f!r}: {m}" for f, m in problems[:_MAX_LISTED])
        more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
        raise ModelValidationError(
            f"{where} does not validate as {model.__name__}: {listed}{more}",
            model=model,
            fields=tuple(f for f, _ in problems),
        )

    return parse


class _Invalid(Exception):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__(problems)
        self.problems = problems


def _kind(cls: type) -> str | None:
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(cls, pydantic.BaseModel):
        return "pydantic"
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and issubclass(cls, msgspec.Struct):
        return "msgspec"
    if dataclasses.is_dataclass(cls):
        return "dataclass"
    return None


def _pydantic_validator(model: Any) -> Callable[[dict[str, Any]], Any]:
    error_type = sys.modules["pydantic"].ValidationError

    def validate(data: dict[str, Any]) -> Any:
        try:
            return model.model_validate(data)
        except error_type as err:
            raise _Invalid(
                [(".".join(map(str, e["loc"])) or "(root)", e["msg"]) for e in err.errors()]
            ) from None

    return validate


def _msgspec_validator(model: type) -> Callable[[dict[str, Any]], Any]:
    msgspec = sys.modules["msgspec"]

    def validate(data: dict[str, Any]) -> Any:
        try:
            return msgspec.convert(data, model)
        except msgspec.ValidationError as err:
            text = str(err)
            at = _MSGSPEC_PATH.search(text)
            path = at.group(1) if at else ""
            missing = _MSGSPEC_MISSING.search(text)
            if missing:
                path = f"{path}.{missing.group(1)}" if path else missing.group(1)
            raise _Invalid([(path or "(root)", text)]) from None

    return validate


def _dataclass_validator(model: type) -> Callable[[dict[str, Any]], Any]:
    fields = [f for f in dataclasses.fields(model) if f.init]
    names = {f.name for f in fields}
    required = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    try:
        hints = typing.get_type_hints(model)
    except Exception:  # an annotation that cannot be resolved: check names only
        hints = {}
    plain = {n: t for n, t in hints.items() if n in names and _plain_class(t)}

    required_set = frozenset(required)
    checks = tuple(plain.items())

    def validate(data: dict[str, Any]) -> Any:
        keys = data.keys()
        if (
            keys <= names
            and required_set <= keys
            and all(_is_instance(data[n], cls) for n, cls in checks if n in data)
        ):
            return model(**data)
        problems = [(k, "unexpected field") for k in data if k not in names]
        problems += [(k, "missing required field") for k in required if k not in data]
        for name, cls in checks:
            if name in data and not _is_instance(data[name], cls):
                value = data[name]
                problems.append(
                    (name, f"expected {cls.__name__}, got {type(value).__name__} {value!r:.40}")
                )
        raise _Invalid(problems)

    return validate


def _plain_class(annotation: Any) -> bool:
    """True for an annotation ``isinstance`` can check (``int``, ``str``, a class), not for
    generics, unions or ``Any``."""
    if not isinstance(annotation, type) or annotation is Any:
        return False
    try:
        isinstance(None, annotation)
    except TypeError:
        return False
    return True


def _is_instance(value: Any, cls: type) -> bool:
    if isinstance(value, bool) and cls is not bool and cls is not object:
        return False  # JSON true is not a number
    if cls is float:
        return isinstance(value, int | float)
    return isinstance(value, cls)
