"""End-to-end runs of the example scripts: they train, and reach the accuracy they promise."""

import importlib.util
from pathlib import Path

import pytest
from conftest import most_optimizations_disabled

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def compiled_as_the_run_needs(request):
    """The full runs (marked slow) compile as a user's would, with every XLA optimization; the
    short runs of the default test run spend most of their time compiling, so they skip most
    optimizations, as the other test modules do."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    with most_optimizations_disabled():
        yield


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


def test_digits_cnn_learns_in_a_few_epochs():
    assert load_example("digits_cnn").main(["--epochs", "3", "--no-progress"]) >= 0.85


@pytest.mark.slow
def test_digits_cnn_default_run_reaches_98_percent():
    assert load_example("digits_cnn").main(["--no-progress"]) >= 0.98


def test_mnist1d_models_beat_chance_in_a_few_epochs():
    # Chance is 10%; the table's ordering (CNN far above logistic regression) already shows.
    results = load_example("mnist1d_models").main(
        ["--epochs", "5", "--only", "logistic regression", "1-D CNN", "--no-progress"])
    assert results["logistic regression"] > 0.2
    assert results["1-D CNN"] > results["logistic regression"] + 0.1


@pytest.mark.slow
def test_mnist1d_models_reach_the_published_accuracies():
    # Greydanus (2020): logistic regression 32%, MLP 68%, CNN 94%, GRU 91%; within a few points.
    results = load_example("mnist1d_models").main(["--no-progress"])
    assert results["logistic regression"] >= 0.29
    assert results["MLP"] >= 0.62
    assert results["1-D CNN"] >= 0.90
    assert results["GRU"] >= 0.88


@pytest.mark.slow  # the Transformer block's own tests and test_models train it in the default run
def test_transformer_sequence_trains_above_chance():
    # A short run only gets above chance (1/10 per token); exact reversal needs the full run
    # (marked slow below), whose learning curve turns sharply after a few thousand steps.
    test = load_example("transformer_sequence").main(
        ["--epochs", "3", "--train-size", "2000", "--length", "6", "--no-progress"])
    assert test["token_accuracy"] >= 0.25


@pytest.mark.slow
def test_transformer_sequence_reverses_exactly():
    assert load_example("transformer_sequence").main(["--no-progress"])["exact_match"] >= 0.95


def test_lstm_timeseries_beats_the_naive_forecast():
    rmse = load_example("lstm_timeseries").main(["--epochs", "3", "--length", "2000", "--no-progress"])
    series = load_example("lstm_timeseries").make_series(2000, 0.1, 0)
    naive = float(((series[1:] - series[:-1]) ** 2).mean() ** 0.5)
    assert rmse < naive


@pytest.mark.slow
def test_lstm_timeseries_approaches_the_noise_floor():
    assert load_example("lstm_timeseries").main(["--no-progress"]) < 0.13


def test_fine_tune_digits_transfers_in_a_few_epochs():
    results = load_example("fine_tune_digits").main(["--epochs", "4", "--no-progress"])
    assert results["pre-trained on 0-4"] >= 0.9 and results["fine-tuned head on 5-9"] >= 0.6


@pytest.mark.slow
def test_fine_tune_digits_pretrained_body_beats_a_random_one():
    results = load_example("fine_tune_digits").main(["--no-progress"])
    assert results["fine-tuned head on 5-9"] > results["head on a random body, 5-9"]


def test_port_from_pytorch_matches_and_fine_tunes():
    pytest.importorskip("torch")
    results = load_example("port_from_pytorch").main(["--torch-steps", "100", "--epochs", "1", "--no-progress"])
    assert results["report"].passed and results["ported"] == results["pytorch"]
    assert results["fine-tuned, back in pytorch"] == pytest.approx(results["fine-tuned in jaxnn"], abs=0.01)
