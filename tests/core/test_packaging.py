"""The wheel installs only ``rxbus``, with operators and sinks mapped inside it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (whl,) = out.glob("rxbus-*.whl")
    return whl


def test_wheel_holds_only_the_rxbus_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"rxbus"}
    for required in (
        "rxbus/py.typed",
        "rxbus/operators/__init__.py",
        "rxbus/sinks/__init__.py",
        "rxbus/sources/__init__.py",
        "rxbus/cli/__init__.py",
    ):
        assert required in names, required
    assert not any(n.startswith(("operators/", "sinks/", "tests/")) for n in names)
    entry_points = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith("entry_points.txt")))
        .decode()
    )
    assert "rxbus = rxbus.cli:main" in entry_points


def test_installed_wheel_imports_the_mapped_packages(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import rxbus, rxbus.operators, rxbus.sinks;"
        "assert rxbus.operators.__file__.startswith(sys.argv[1]), rxbus.operators.__file__;"
        "assert rxbus.sinks.__file__.startswith(sys.argv[1]);"
        "import importlib.util as u;"
        "assert u.find_spec('operators') is None and u.find_spec('sinks') is None;"
        "print('ok')"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(target)], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


def test_editable_install_maps_operators_and_sinks() -> None:
    code = "import rxbus.operators as o, rxbus.sinks as s; print(o.__file__); print(s.__file__)"
    run = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    ops_file, sinks_file = run.stdout.split()
    assert ops_file == str(ROOT / "operators" / "__init__.py")
    assert sinks_file == str(ROOT / "sinks" / "__init__.py")
