"""The notebooks in examples/notebooks run from top to bottom, without Jupyter.

Each notebook's code cells are executed in order in one namespace, in a temporary working
directory, with matplotlib's Agg backend (``plt.show()`` draws nothing). The notebooks assert
their own claims (capture equals a NumPy forward pass, backprop equals ``jax.grad``, ...), so a
notebook that runs is one whose claims hold. The notebooks are kept without outputs. The quick
ones run by default; ``-m slow`` runs all of them.
"""

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "examples" / "notebooks"
QUICK = ("backpropagation_step_by_step", "activation_functions")
SLOW = ("nn_from_scratch", "loss_functions", "mnist_nn")


def code_cells(name):
    notebook = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    assert notebook["nbformat"] == 4
    cells = notebook["cells"]
    assert cells[0]["cell_type"] == "markdown"  # each notebook starts by saying what it shows
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None, f"{name}: outputs not stripped"
    return ["".join(cell["source"]) for cell in code]


def run_notebook(name, directory, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(directory)
    namespace = {"__name__": "__main__"}
    try:
        for index, source in enumerate(code_cells(name)):
            exec(compile(source, f"{name}.ipynb[cell {index}]", "exec"), namespace)
    finally:
        plt.close("all")
    return namespace


def test_the_notebooks_are_the_ones_tested():
    assert sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb")) == sorted(QUICK + SLOW)


@pytest.mark.parametrize("name", QUICK)
def test_quick_notebook_runs(name, tmp_path, monkeypatch):
    run_notebook(name, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("name", QUICK + SLOW)
def test_notebook_runs(name, tmp_path, monkeypatch):
    run_notebook(name, tmp_path, monkeypatch)
