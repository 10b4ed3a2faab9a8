"""The examples in the operators' docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "rxbus.operators",
    "rxbus.operators._routing",
    "rxbus.operators._transform",
    "rxbus.operators._batch",
    "rxbus.operators._backpressure",
    "rxbus.operators._retry",
    "rxbus.operators._circuit",
    "rxbus.operators._dedupe",
    "rxbus.operators._rate",
    "rxbus.operators._measure",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    """Every docstring example in the module passes as a doctest."""
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0
    assert result.attempted > 0


def test_every_public_operator_documents_a_marble_and_an_example() -> None:
    """Each exported operator's docstring has a marble diagram (``---``) and an example."""
    import rxbus.operators as ops

    for name in (
        "topic", "of_type", "where", "transform", "enrich", "batch", "backpressure",
        "retry", "dedupe", "circuit_breaker", "rate_limit", "measure",
    ):  # fmt: skip
        doc = getattr(ops, name).__doc__ or ""
        assert "---" in doc and "Examples:" in doc and ">>>" in doc, name
