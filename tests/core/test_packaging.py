"""Release hygiene: ``python -m build`` makes a wheel and an sdist of ``rxbus-events`` that
install into a fresh virtualenv outside the repository and work there; the wheel installs only
``rxbus``, with operators and sinks mapped inside it; the version has one source.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import rxbus
from rxbus._extras import DIST_NAME

# pip, build and the fresh venvs run no code of this checkout: coverage in them is start-up cost.
pytestmark = pytest.mark.usefixtures("unmeasured_children")

ROOT = Path(__file__).resolve().parents[2]
PROJECT = DIST_NAME.replace("-", "_")


def copy_tracked(clone: Path) -> Path:
    """The files git tracks, copied to ``clone``: what a fresh clone holds, and a tree a build
    may write into (``build/``, ``*.egg-info``) while other tests read the checkout."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    return clone


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist, and the wheel built from it, as ``python -m build`` makes them for a release
    (from the tracked files, as a release is built from a clone)."""
    out = tmp_path_factory.mktemp("dist")
    source = copy_tracked(tmp_path_factory.mktemp("source"))
    run = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    warnings = [
        line
        for line in (run.stdout + run.stderr).splitlines()
        if re.search(r"warning", line, re.I) and "byte-compiling is disabled" not in line
    ]
    assert warnings == [], "setuptools warned while building:\n" + "\n".join(warnings[:20])
    (wheel,) = out.glob(f"{PROJECT}-{rxbus.__version__}-py3-none-any.whl")
    (sdist,) = out.glob(f"{PROJECT}-{rxbus.__version__}.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def wheel(dists: dict[str, Path]) -> Path:
    return dists["wheel"]


def test_wheel_metadata_names_the_distribution_and_its_version(wheel: Path) -> None:
    """Name ``rxbus-events`` (``rxbus`` on the index is another project), version from
    ``rxbus.__version__``, the extras by job, and at most a handful of core dependencies."""
    archive = zipfile.ZipFile(wheel)
    metadata = archive.read(next(n for n in archive.namelist() if n.endswith("METADATA")))
    text = metadata.decode()
    assert f"Name: {DIST_NAME}\n" in text
    assert f"Version: {rxbus.__version__}\n" in text
    extras = set(re.findall(r"^Provides-Extra: (\S+)$", text, flags=re.M))
    assert {"serve", "socketio", "redis", "prometheus", "notebook", "docs", "dev", "all"} <= extras
    core = [
        r for r in re.findall(r"^Requires-Dist: (.+)$", text, flags=re.M) if "extra ==" not in r
    ]
    assert len(core) <= 4, core


def test_sdist_holds_the_sources_to_rebuild(dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    for required in (
        "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "rxbus/__init__.py",
        "operators/__init__.py", "sinks/__init__.py", "rxbus/server/static/index.html",
    ):  # fmt: skip
        assert required in names, required


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_each_distribution_works_in_a_fresh_venv(
    kind: str, dists: dict[str, Path], tmp_path: Path
) -> None:
    """Install the wheel (or the sdist) with its dependencies into a new virtualenv, outside
    the repository, then import, publish, ask the version and run ``rxbus demo``.

    The venv is made without pip and installed into by this interpreter's pip (``--python``):
    the same install, without bootstrapping a pip per venv (half a minute on a loaded machine).
    """
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", str(dists[kind])],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    smoke = (
        "import rxbus, rxbus.operators as ops, rxbus.sinks\n"
        "assert rxbus.__file__.startswith(sys.argv[1]), rxbus.__file__\n"
        "from rxbus import EventBus\n"
        "seen = []\n"
        "with EventBus() as bus:\n"
        "    bus.subscribe(seen.append, ops.where(lambda e: e.data['n'] % 2), topic='smoke.*')\n"
        "    for n in range(10):\n"
        "        bus.publish('smoke.test', {'n': n})\n"
        "assert [e.data['n'] for e in seen] == [1, 3, 5, 7, 9], seen\n"
        "print(rxbus.__version__)\n"
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    run = subprocess.run(
        [str(python), "-c", "import sys\n" + smoke, site.stdout.strip()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == rxbus.__version__
    rxbus_cli = venv / "bin" / "rxbus"
    version = subprocess.run(
        [str(rxbus_cli), "--version"], capture_output=True, text=True, env=env, timeout=60
    )
    assert version.stdout.strip() == f"rxbus {rxbus.__version__} ({DIST_NAME})"
    demo = subprocess.run(
        [str(rxbus_cli), "demo", "--events", "500"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    assert "5 producer threads published 2,500 events" in demo.stdout


def test_the_version_has_one_source() -> None:
    """pyproject reads the version from ``rxbus.__version__``; nothing else spells it."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "rxbus.__version__" }' in pyproject
    assert not re.search(r"^version\s*=\s*\"", pyproject, flags=re.M)
    run = subprocess.run(
        [sys.executable, "-m", "rxbus", "--version"], capture_output=True, text=True, timeout=60
    )
    assert run.stdout.strip() == f"rxbus {rxbus.__version__} ({DIST_NAME})"


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


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_make_demo_on_a_fresh_copy_is_quiet_lean_and_says_what_next(tmp_path: Path) -> None:
    """The README's first Quick start command on the tracked files alone: it makes .venv with
    the core only (at most 15 distributions), prints no install noise and no warning, runs the
    demo, and ends with the one line that tells how to go on."""
    make = shutil.which("make")
    assert make, "make is needed: the README's Quick start runs it"
    clone = copy_tracked(tmp_path / "clone")
    # as a user's shell would run it: not inside the `make test` that may be running this
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MAKELEVEL", "MAKEFLAGS", "MFLAGS")
    }
    python = sys._base_executable  # the interpreter behind this venv, as on a fresh machine
    run = subprocess.run(
        [make, "demo", f"PYTHON={python}"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=560,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    output = run.stdout + run.stderr
    noisy = [
        line
        for line in output.splitlines()
        if re.search(r"warn|setuptools|Collecting|Successfully", line, re.I)
        and "Location 'file:" not in line  # this machine's pip index configuration, not ours
    ]
    assert noisy == []
    lines = run.stdout.splitlines()
    assert lines[0] == "Installing rxbus-events (core) into .venv ..."
    assert "5 producer threads published 100,000 events" in run.stdout
    assert (
        lines[-1] == "Next: '. .venv/bin/activate' puts rxbus on PATH; 'make test' runs the suite."
    )
    listed = subprocess.run(
        [str(clone / ".venv" / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(listed) <= 15, listed
    assert any(d.startswith("rxbus-events==") for d in listed)
    assert not any(d.lower().startswith(("aiohttp", "redis", "ipython", "pytest")) for d in listed)


def test_every_package_of_the_source_tree_is_listed_for_the_wheel() -> None:
    """A new subpackage under rxbus/ must be in [tool.setuptools] packages, or the wheel lacks it."""
    import tomllib

    root = Path(__file__).resolve().parents[2]
    listed = set(
        tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(root).parts)
        for init in (root / "rxbus").rglob("__init__.py")
    }
    assert found <= listed, f"not in pyproject packages: {sorted(found - listed)}"
