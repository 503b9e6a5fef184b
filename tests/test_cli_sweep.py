"""``jaxnn sweep``: the table, summary and plots it writes, and one-line errors for mistakes on its
command line. Run in-process through ``jaxnn.cli.main``."""

import csv
import json

import numpy as np
import pytest

from jaxnn.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_sweep_writes_table_summary_and_plots(tmp_path, capsys):
    out = tmp_path / "sweep"
    # spirals: numpy alone, where moons would import scikit-learn (most of a second).
    status = main(["sweep", "--dataset", "spirals", "--model", "mlp", "--optimizer", "sgd",
                   "--lr", "0.01,0.5", "--momentum", "0,0.9", "--seeds", "1", "--folds", "2", "--epochs", "1",
                   "--batch-size", "400", "--out", str(out), "--no-progress"])
    assert status == 0
    with open(out / "table.csv") as file:
        rows = list(csv.DictReader(file))
    members = {(row["learning_rate"], row["momentum"], row["seed"], row["fold"]) for row in rows}
    assert members == {(lr, momentum, "0", fold)
                       for lr in ("0.01", "0.5") for momentum in ("0.0", "0.9") for fold in ("0", "1")}
    with open(out / "summary.json") as file:
        summary = json.load(file)
    assert summary["members"] == len(rows) == 8
    for configuration in summary["configurations"]:
        finals = [float(row["final_val_accuracy"]) for row in rows
                  if float(row["learning_rate"]) == configuration["learning_rate"]
                  and float(row["momentum"]) == configuration["momentum"]]
        assert configuration["members"] == 2
        np.testing.assert_allclose(configuration["val_accuracy_mean"], np.mean(finals), rtol=1e-12)
        np.testing.assert_allclose(configuration["val_accuracy_std"], np.std(finals, ddof=1), rtol=1e-9)
    best = summary["best"]
    assert best["metric"] == "val_accuracy"
    assert best["mean"] == max(c["val_accuracy_mean"] for c in summary["configurations"])
    for name in ("val_accuracy_vs_learning_rate.png", "val_accuracy_vs_momentum.png", "curves_loss.png",
                 "curves_val_accuracy.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert "best val_accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--optimizer", "adam", "--momentum", "0.9"], "--momentum applies to --optimizer sgd or momentum"),
    (["--lr", "0.1,fast"], "--lr must be a comma-separated list of numbers"),
    (["--folds", "1"], "--folds must be at least 2"),
    (["--epochs", "0"], "--epochs must be at least 1"),
])
def test_sweep_command_line_mistakes_are_one_line_errors(tmp_path, capsys, flags, message):
    assert main(["sweep", "--out", str(tmp_path / "sweep"), *flags]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
