"""End-to-end runs of the example scripts: they train, and reach the accuracy they promise."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mlp_digits_learns_in_a_few_epochs():
    # Chance is 10%; three epochs of the hand-written loop already classify most test digits.
    assert load_example("mlp_digits").main(["--epochs", "3"]) >= 0.85


@pytest.mark.slow
def test_mlp_digits_default_run_reaches_97_percent():
    assert load_example("mlp_digits").main([]) >= 0.97
