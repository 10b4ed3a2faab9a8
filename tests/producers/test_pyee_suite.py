"""pyee's own test cases, from its source distribution, pass against rxbus.compat.

The sdist is downloaded once per session (``pip download``; skipped with the reason when the
package index cannot be reached) or taken from ``$PYEE_SDIST``. See ``pyee_suite.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rxbus import compat
from tests.producers import pyee_suite


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    try:
        sdist = pyee_suite.find_sdist(Path(tmp_path_factory.mktemp("pyee-sdist")))
    except pyee_suite.SdistUnavailable as err:
        pytest.skip(f"pyee's sdist is needed to run its tests: {err}")
    return pyee_suite.load_cases(sdist)  # type: ignore[return-value]


@pytest.mark.parametrize("module", pyee_suite.MODULES)
def test_every_pyee_case_passes(cases: dict[str, dict[str, object]], module: str) -> None:
    """Each test_* function of pyee's module passes with the emitter swapped for rxbus's."""
    functions = cases[module]
    assert len(functions) >= 5, f"{module}: only {sorted(functions)} found"
    emitters = {
        getattr(fn, "__globals__", {}).get(n)
        for fn in functions.values()
        for n in ("EventEmitter", "AsyncIOEventEmitter")
    }
    assert emitters - {None} <= {compat.EventEmitter, compat.AsyncIOEventEmitter}
    failures = {name: pyee_suite.run_case(fn) for name, fn in functions.items()}  # type: ignore[arg-type]
    failed = {name: why for name, why in failures.items() if why is not None}
    assert not failed, f"{len(failed)}/{len(functions)} of pyee's {module} cases fail: {failed}"
