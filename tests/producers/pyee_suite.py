"""Run pyee's own test cases against :mod:`rxbus.compat`.

pyee's source distribution ships its tests. This module loads ``tests/test_sync.py`` and
``tests/test_asyncio.py`` straight from the sdist archive (nothing of pyee is copied into this
repository), swaps ``from pyee import EventEmitter`` and ``from pyee.asyncio import
AsyncIOEventEmitter`` for ``rxbus.compat``, and runs every ``test_*`` function: plain ones
called, ``async def`` ones under ``asyncio.run`` (pyee marks them for pytest-asyncio, which this
runner replaces). Used by ``test_pyee_suite.py``; run it alone for a table:

    python -m tests.producers.pyee_suite [path/to/pyee-X.Y.Z.tar.gz]

Without a path it looks at ``$PYEE_SDIST``, then downloads the sdist of the installed pyee
version with ``pip download --no-binary :all: --no-deps`` (needs the package index).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import tarfile
import traceback
import types
from importlib.metadata import version
from pathlib import Path

MODULES = ("test_sync.py", "test_asyncio.py")
SWAPS = (
    ("from pyee import EventEmitter", "from rxbus.compat import EventEmitter"),
    (
        "from pyee.asyncio import AsyncIOEventEmitter",
        "from rxbus.compat import AsyncIOEventEmitter",
    ),
    ("import pytest_asyncio.plugin  # noqa", "pass  # pytest-asyncio: this runner awaits itself"),
    ("@pytest.mark.asyncio\n", ""),
)


class SdistUnavailable(RuntimeError):
    """The pyee sdist could not be found or downloaded."""


def find_sdist(directory: Path) -> Path:
    """``$PYEE_SDIST``, else the installed pyee version's sdist downloaded into ``directory``."""
    explicit = os.environ.get("PYEE_SDIST")
    if explicit:
        return Path(explicit)
    wanted = f"pyee=={version('pyee')}"
    found = sorted(directory.glob("pyee-*.tar.gz"))
    if found:
        return found[-1]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:"]
    cmd += ["--no-deps", wanted, "-d", str(directory)]
    # pip prepares an sdist's metadata even for a download; in an isolated build environment
    # that means installing pyee's build backend first (most of a minute on a loaded machine).
    # This interpreter's setuptools does it in a second; isolation is the fallback.
    for extra in (["--no-build-isolation"], []):
        try:
            done = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise SdistUnavailable(f"pip download {wanted} timed out (no package index?)") from None
        if done.returncode == 0:
            break
    found = sorted(directory.glob("pyee-*.tar.gz"))
    if done.returncode or not found:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SdistUnavailable(f"pip download {wanted} failed (no package index?): {last}")
    return found[-1]


def load_cases(sdist: Path) -> dict[str, dict[str, types.FunctionType]]:
    """Each module's ``test_*`` functions, compiled from the archive with the imports swapped."""
    cases: dict[str, dict[str, types.FunctionType]] = {}
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if "/tests/" not in member.name or name not in MODULES:
                continue
            source = archive.extractfile(member).read().decode()  # type: ignore[union-attr]
            for old, new in SWAPS:
                source = source.replace(old, new)
            if "from pyee" in source or "import pyee" in source:
                raise AssertionError(f"{name}: a pyee import was not swapped")
            module = types.ModuleType(f"pyee_suite.{name[:-3]}")
            exec(compile(source, f"{sdist.name}/tests/{name}", "exec"), module.__dict__)
            cases[name] = {
                key: fn
                for key, fn in vars(module).items()
                if key.startswith("test_") and inspect.isfunction(fn)
            }
    missing = set(MODULES) - set(cases)
    if missing:
        raise AssertionError(f"{sdist} has no {sorted(missing)}")
    return cases


def run_case(fn: types.FunctionType) -> str | None:
    """Run one case; None when it passed, else the failure's last traceback line."""
    try:
        if inspect.iscoroutinefunction(fn):
            asyncio.run(fn())
        else:
            fn()
    except Exception:
        return traceback.format_exc().strip().splitlines()[-1]
    return None


def main(argv: list[str]) -> int:
    import tempfile

    sdist = Path(argv[0]) if argv else find_sdist(Path(tempfile.mkdtemp()))
    total = passed = 0
    for module, functions in load_cases(sdist).items():
        for name, fn in functions.items():
            failure = run_case(fn)
            total += 1
            passed += failure is None
            print(f"{'PASS' if failure is None else 'FAIL'}  {module}::{name}  {failure or ''}")
    print(f"{passed}/{total} of pyee's test cases pass against rxbus.compat ({sdist.name})")
    return 0 if passed == total else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
