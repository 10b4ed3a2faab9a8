"""Every notebook runs with ``jupyter nbconvert --execute`` in a fresh kernel, and none is
committed with outputs.

The notebooks assert what they show, so a notebook that runs is a notebook whose story is true.
They run on a kernel spec written for the interpreter running the tests (the project's venv),
so a ``python3`` spec elsewhere on the machine cannot pick another Python; each in a fresh
kernel, in a temporary working directory.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

# Jupyter and its kernels unmeasured: the notebooks call what the unit tests measure, and
# coverage in a kernel costs its start-up and every cell.
pytestmark = pytest.mark.usefixtures("unmeasured_children")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = [
    "01-quickstart.ipynb",
    "02-operators.ipynb",
    "03-reliability.ipynb",
    "04-persistence-and-replay.ipynb",
    "05-benchmarking-chains.ipynb",
]


def test_the_five_notebooks_exist() -> None:
    """The Notebooks docs page lists these five; they must all be there."""
    assert [p.name for p in NOTEBOOKS] == EXPECTED


KERNEL = "rxbus-tests"


@pytest.fixture(scope="module")
def kernel_spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A kernel spec whose argv is this interpreter, found first through JUPYTER_PATH."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("kernel")
    install(kernel_name=KERNEL, display_name="rxbus tests", prefix=str(prefix))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
        yield KERNEL


@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path, kernel_spec: str) -> None:
    """``jupyter nbconvert --execute``, as a reader with the notebook extra runs it: every cell
    in a fresh kernel, in a temporary directory; any exception (a failed assert too) fails."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(kernel_spec)
    assert spec.argv[0] == sys.executable
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)
    jupyter = Path(sys.executable).with_name("jupyter")
    run = subprocess.run(
        [
            str(jupyter), "nbconvert", "--to", "notebook", "--execute", "--inplace",
            f"--ExecutePreprocessor.kernel_name={kernel_spec}",
            "--ExecutePreprocessor.timeout=180",
            str(copy),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=560,
    )  # fmt: skip
    assert run.returncode == 0, f"{path.name}:\n{run.stderr[-4000:]}"
    nb = nbformat.read(copy, as_version=4)
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert errors == []
    ran = [c for c in nb.cells if c.cell_type == "code"]
    assert ran and all(c.get("execution_count") for c in ran)
    # The figures a reader is promised are really displayed.
    kinds = {
        mime for cell in ran for out in cell.get("outputs", []) for mime in out.get("data", {})
    }
    assert "text/html" in kinds or "image/svg+xml" in kinds


def _committed_notebooks() -> list[str]:
    proc = subprocess.run(
        ["git", "ls-files", "--", "*.ipynb"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"not a git checkout: {proc.stderr.strip()}")
    return [line for line in proc.stdout.splitlines() if line]


def test_no_notebook_in_git_has_outputs() -> None:
    """Notebooks are committed stripped: no outputs, no execution counts (as in the index)."""
    committed = _committed_notebooks()
    assert committed, "no notebook is tracked by git"
    for name in committed:
        text = subprocess.run(
            ["git", "show", f":{name}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        nb = nbformat.reads(text, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            assert cell.get("outputs") == [], f"{name} cell {i} has outputs"
            assert cell.get("execution_count") is None, f"{name} cell {i} has an execution count"


def test_working_tree_notebooks_are_stripped_too() -> None:
    """The files on disk are stripped as well, so a commit cannot add outputs by accident."""
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.get("outputs") == [] and cell.get("execution_count") is None, path.name


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
