"""Tests for the ``jaxnn`` command: run folders written by ``train``, ``--resume``, ``evaluate``,
``summary``, what ``train`` prints, Ctrl-C, and one-line errors for mistakes on the command line.

Commands run in-process through ``jaxnn.cli.main`` (a subprocess would import JAX again); the
tests of Ctrl-C and of the installed console script run a subprocess.
"""

import io
import json
import math
import os
import re
import signal
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import TIMING, reproducible
from jax.experimental.compilation_cache import compilation_cache

import jaxnn
from jaxnn import data, optim
from jaxnn.cli import main
from jaxnn.models import mlp
from jaxnn.train import History, create_train_state, read_metadata, restore_checkpoint

pytestmark = pytest.mark.usefixtures("compilation_cache_on_disk")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# digits: 1797 images, 359 for testing, 10% of the other 1438 for validation: 1294 to train on,
# in batches of 64.
STEPS_PER_EPOCH = math.ceil(1294 / 64)


CACHE_SETTINGS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")


@pytest.fixture(scope="module")
def compilation_cache_on_disk(tmp_path_factory):
    """Each command builds its model anew and compiles the same programs as the last one: a disk
    cache lets it read them back instead."""
    saved = {name: getattr(jax.config, name) for name in CACHE_SETTINGS}
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax-cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    yield
    for name, value in saved.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


def read_json(path):
    with open(path) as file:
        return json.load(file)


def snapshot(directory):
    """Every file's bytes and modification time."""
    return {name: ((directory / name).read_bytes(), (directory / name).stat().st_mtime_ns)
            for name in sorted(os.listdir(directory))}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A 3-epoch run on digits. Tests that change a run work on a copy of this folder."""
    out = tmp_path_factory.mktemp("runs") / "digits-mlp"
    assert main(["train", "--epochs", "3", "--out", str(out), "--no-progress"]) == 0
    return out, snapshot(out)


def copy_of(run, tmp_path, name="copy"):
    destination = tmp_path / name
    shutil.copytree(run, destination)
    return destination


# --------------------------------------------------------------------------------------------
# train and evaluate.


def test_train_writes_a_complete_run_folder(digits_run):
    out, _ = digits_run
    assert {"checkpoint.npz", "config.json", "history.json", "metrics.json", "loss.png", "accuracy.png",
            "confusion_matrix.png"} <= set(os.listdir(out))
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]

    config = read_json(out / "config.json")
    assert config == {"dataset": "digits", "model": "mlp", "epochs": 3, "batch_size": 64, "optimizer": "adam",
                      "lr": 0.001, "seed": 0, "val_fraction": 0.1}

    history = read_json(out / "history.json")
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", *TIMING}
    assert all(len(values) == 3 for values in history.values())
    assert history["lr"] == [0.001] * 3
    assert history["loss"][2] < history["loss"][0]
    assert all(0 <= value <= 1 for value in history["accuracy"] + history["val_accuracy"])

    metrics = read_json(out / "metrics.json")
    assert 0.8 <= metrics["test_accuracy"] <= 1  # chance is 0.1
    assert math.isfinite(metrics["test_loss"]) and metrics["test_loss"] > 0
    assert metrics["epochs"] == 3
    assert metrics["steps"] == 3 * STEPS_PER_EPOCH
    assert metrics["parameters"] == 64 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10

    for name in ("loss.png", "accuracy.png", "confusion_matrix.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC

    metadata = read_metadata(out / "checkpoint.npz")
    assert (metadata["epoch"], metadata["step"]) == (3, 3 * STEPS_PER_EPOCH)
    assert metadata["config"] == {name: value for name, value in config.items() if name != "epochs"}
    assert metadata["metrics"]["val_loss"] == history["val_loss"][2]


def test_test_metrics_match_the_checkpoint_by_hand(digits_run):
    # The checkpoint's weights, run through the MLP written out in NumPy, give metrics.json's numbers.
    out, _ = digits_run
    dataset = data.digits()
    template = create_train_state(mlp(10, (64,)), optim.adam(1e-3), jax.random.key(5), (64,))
    train_state, _ = restore_checkpoint(out / "checkpoint.npz", template)
    # Layers in order of their index: dense_1, dense_3, dense_5.
    names = sorted(train_state.params, key=lambda name: int(name.split("_")[-1]))
    dense = [train_state.params[name] for name in names if name.startswith("dense")]
    activations = dataset.x_test
    for layer in dense[:-1]:
        activations = np.maximum(activations @ np.asarray(layer["w"]) + np.asarray(layer["b"]), 0)
    logits = activations @ np.asarray(dense[-1]["w"]) + np.asarray(dense[-1]["b"])
    shifted = logits - logits.max(axis=1, keepdims=True)
    losses = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(logits)), dataset.y_test]

    metrics = read_json(out / "metrics.json")
    assert metrics["test_accuracy"] == pytest.approx(np.mean(np.argmax(logits, axis=1) == dataset.y_test))
    assert metrics["test_loss"] == pytest.approx(losses.mean(), rel=1e-4)


def test_confusion_matrix_comes_from_the_pass_that_gives_the_test_accuracy(tmp_path, monkeypatch):
    from jaxnn import viz

    plotted, evaluations = [], []
    plot_confusion_matrix, evaluate = viz.plot_confusion_matrix, jaxnn.cli.evaluate

    def record_plot(confusion, path, **options):
        plotted.append(np.asarray(confusion))
        return plot_confusion_matrix(confusion, path, **options)

    def record_evaluation(*args, **options):
        evaluations.append(options)
        return evaluate(*args, **options)

    monkeypatch.setattr(viz, "plot_confusion_matrix", record_plot)
    monkeypatch.setattr(jaxnn.cli, "evaluate", record_evaluation)
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), "--quiet"]) == 0

    assert len(evaluations) == 1  # the test set is evaluated once
    (confusion,) = plotted
    assert confusion.shape == (10, 10) and confusion.sum() == 359
    # Predictions and accuracy from one pass agree exactly, not just to rounding.
    assert np.trace(confusion) / 359 == read_json(out / "metrics.json")["test_accuracy"]


def test_evaluate_reproduces_the_test_metrics(digits_run, capsys):
    out, _ = digits_run
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    printed = capsys.readouterr().out
    metrics = read_json(out / "metrics.json")
    assert f"test accuracy {metrics['test_accuracy']:.4f}" in printed
    assert f"test loss {metrics['test_loss']:.4f}" in printed
    assert f"epoch 3, step {3 * STEPS_PER_EPOCH}" in printed


def test_evaluate_takes_the_checkpoint_file_as_well_as_the_folder(digits_run, capsys):
    out, _ = digits_run
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    from_folder = capsys.readouterr().out
    assert main(["evaluate", str(out / "checkpoint.npz")]) == 0
    assert capsys.readouterr().out == from_folder


def test_json_files_have_the_permissions_of_the_other_files(digits_run):
    out, _ = digits_run
    umask = os.umask(0)
    os.umask(umask)
    for name in os.listdir(out):
        # 0o644 under the usual umask 022.
        assert os.stat(out / name).st_mode & 0o777 == 0o666 & ~umask, name


def test_resume_gives_the_same_run_as_training_without_a_break(digits_run, tmp_path):
    resumed = copy_of(digits_run[0], tmp_path, "resumed")
    fresh = tmp_path / "fresh"
    assert main(["train", "--out", str(resumed), "--epochs", "5", "--resume", "--no-progress"]) == 0
    assert main(["train", "--out", str(fresh), "--epochs", "5", "--no-progress"]) == 0

    resumed_history, fresh_history = read_json(resumed / "history.json"), read_json(fresh / "history.json")
    assert len(resumed_history["loss"]) == 5
    assert reproducible(resumed_history) == reproducible(fresh_history)
    resumed_metrics, fresh_metrics = read_json(resumed / "metrics.json"), read_json(fresh / "metrics.json")
    for name in ("test_accuracy", "test_loss", "epochs", "steps"):
        assert resumed_metrics[name] == fresh_metrics[name], name
    assert resumed_metrics["steps"] == 5 * STEPS_PER_EPOCH
    assert read_json(resumed / "config.json")["epochs"] == 5


class SimulatedCrash(Exception):
    """Stands for the process dying: nothing in jaxnn catches it."""


def test_resume_after_a_crash_between_checkpoint_and_history(digits_run, tmp_path, monkeypatch):
    out = tmp_path / "crashed"
    write_history = History.save
    writes = []

    def crash_on_third_write(self, path):
        writes.append(path)
        if len(writes) == 3:  # epoch 3's history.json
            raise SimulatedCrash
        write_history(self, path)

    monkeypatch.setattr(History, "save", crash_on_third_write)
    with pytest.raises(SimulatedCrash):
        main(["train", "--out", str(out), "--epochs", "3", "--quiet"])
    monkeypatch.undo()

    assert main(["train", "--out", str(out), "--epochs", "3", "--resume", "--quiet"]) == 0
    uninterrupted = json.loads(digits_run[1]["history.json"][0])
    assert reproducible(read_json(out / "history.json")) == reproducible(uninterrupted)


def test_resume_refuses_flags_that_differ_from_the_saved_settings(digits_run, capsys):
    out, _ = digits_run
    before = snapshot(out)
    assert main(["train", "--out", str(out), "--resume", "--epochs", "4", "--dataset", "moons",
                 "--model", "cnn", "--batch-size", "32", "--optimizer", "sgd", "--lr", "0.01", "--seed", "1",
                 "--val-fraction", "0.2"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"jaxnn train: error: --resume continues {out} with its saved settings")
    assert error.count("\n") == 1
    for given in ("--dataset moons (saved: digits)", "--model cnn (saved: mlp)",
                  "--batch-size 32 (saved: 64)", "--optimizer sgd (saved: adam)", "--lr 0.01 (saved: 0.001)",
                  "--seed 1 (saved: 0)", "--val-fraction 0.2 (saved: 0.1)"):
        assert given in error
    assert snapshot(out) == before


def test_resume_takes_flags_equal_to_the_saved_settings_and_new_counts(digits_run, tmp_path):
    out = copy_of(digits_run[0], tmp_path)
    assert main(["train", "--out", str(out), "--resume", "--epochs", "4", "--steps-per-call", "4", "--quiet",
                 "--dataset", "digits", "--model", "mlp", "--batch-size", "64", "--optimizer", "adam",
                 "--lr", "1e-3", "--seed", "0", "--val-fraction", "0.1"]) == 0
    assert read_metadata(out / "checkpoint.npz")["epoch"] == 4
    assert read_json(out / "config.json")["epochs"] == 4


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    for default in ("(default: digits", "network (default: mlp)", "examples per step (default: 64)",
                    "default: adam", "adam 0.001", "(default: 0)", "(default: 0.1)", "(default: 30)"):
        assert default in shown


def test_steps_per_call_gives_the_same_history_and_quiet_prints_nothing(digits_run, tmp_path, capsys):
    out = tmp_path / "scanned"
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--epochs", "3", "--steps-per-call", "4", "--quiet"]) == 0
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err == ""

    single = json.loads(digits_run[1]["history.json"][0])
    scanned = read_json(out / "history.json")
    assert set(scanned) == set(single)
    for name in reproducible(single):
        np.testing.assert_allclose(scanned[name], single[name], rtol=1e-6, atol=1e-7, err_msg=name)
    assert read_json(out / "metrics.json")["steps"] == 3 * STEPS_PER_EPOCH


def test_quiet_prints_errors(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), "--quiet", "--lr", "-1"]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err == "jaxnn train: error: --lr must be a positive finite number, got -1.0\n"


# --------------------------------------------------------------------------------------------
# What train prints, and Ctrl-C.


def epoch_lines(text):
    """The lines of the epochs' metrics ("epoch 2/30  loss ..."; the bar's is "epoch 2/30: 40%|...")."""
    return [line for line in text.splitlines() if re.match(r"epoch \d+/\d+  ", line)]


@pytest.mark.parametrize("flags", [[], ["--no-progress"]])
def test_without_a_terminal_each_epoch_is_one_line_and_there_is_no_bar(flags, tmp_path, capsys):
    # capsys's stderr is no terminal, as a log file or a pipe.
    assert main(["train", "--out", str(tmp_path / "run"), "--epochs", "2", *flags]) == 0
    printed = capsys.readouterr()
    assert "%|" not in printed.err and "\r" not in printed.err
    lines = printed.err.splitlines()
    assert lines[0].startswith("training mlp on digits")
    assert lines[1:] == epoch_lines(printed.err)
    assert [line.split("  ")[0] for line in lines[1:]] == ["epoch 1/2", "epoch 2/2"]
    for line in lines[1:]:
        # epoch i/N, the loss and metrics, the validation ones, then the seconds.
        assert line.index(" loss ") < line.index(" accuracy ") < line.index(" val_loss ") < line.index(" s ")
        assert " val_accuracy " in line and " lr 0.0010 " in line
    assert printed.out.startswith("test accuracy ")


class Terminal(io.StringIO):
    """Stands for stderr on a terminal."""

    def isatty(self):
        return True


def test_on_a_terminal_train_draws_the_bar_and_a_line_per_epoch(tmp_path, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["train", "--out", str(tmp_path / "run"), "--epochs", "2"]) == 0
    shown = terminal.getvalue()
    assert "epoch 1/2:   0%|" in shown
    assert [line.split("  ")[0] for line in epoch_lines(shown)] == ["epoch 1/2", "epoch 2/2"]


def test_ctrl_c_keeps_the_last_checkpoint_and_prints_the_command_that_resumes(tmp_path):
    environment = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(jaxnn.__file__))}
    process = subprocess.Popen(
        [sys.executable, "-m", "jaxnn.cli", "train", "--out", "run", "--epochs", "1000", "--quiet"],
        cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "run" / "checkpoint.npz"
    try:
        deadline = time.monotonic() + 600  # the first epoch compiles; shared machines are slow
        while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if not checkpoint.exists():
            process.kill()
            pytest.fail(f"no checkpoint; the command printed: {process.communicate()[1]}")
        process.send_signal(signal.SIGINT)
        out, error = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 130, error
    assert out == "" and "Traceback" not in error
    assert error.count("\n") == 1  # one line
    assert error.startswith("jaxnn train: interrupted; run keeps the checkpoint of epoch ")
    assert error.rstrip().endswith("resume with: jaxnn train --out run --resume --epochs 1000")
    epoch = read_metadata(checkpoint)["epoch"]
    assert f"epoch {epoch};" in error
    assert not [name for name in os.listdir(tmp_path / "run") if name.endswith(".tmp")]
    # The command it prints resumes the run (here for one more epoch).
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "--epochs", str(epoch + 1),
                 "--quiet"]) == 0
    assert read_metadata(checkpoint)["epoch"] == epoch + 1


# --------------------------------------------------------------------------------------------
# Mistakes on the command line.


def test_training_into_an_existing_run_is_refused_and_touches_nothing(digits_run, capsys):
    out, _ = digits_run
    before = snapshot(out)
    assert main(["train", "--out", str(out), "--epochs", "4", "--no-progress"]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert snapshot(out) == before


def test_resume_without_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "nothing-here"
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("jaxnn train: error: --resume: no checkpoint at")
    assert str(out / "checkpoint.npz") in error
    assert not out.exists()


@pytest.mark.parametrize("arguments, status, message", [
    (["--dataset", "cifar10"], 2, "unknown dataset 'cifar10'; choose from digits"),
    (["--dataset", "idx:"], 2, "--dataset idx:PATH needs a directory"),
    (["--dataset", "idx:/no/such/directory"], 1, "/no/such/directory is not a directory"),
    (["--dataset", "moons", "--model", "cnn"], 2, "--model cnn needs image data"),
    (["--epochs", "0"], 2, "--epochs must be at least 1, got 0"),
    (["--batch-size", "-3"], 2, "--batch-size must be at least 1, got -3"),
    (["--steps-per-call", "0"], 2, "--steps-per-call must be at least 1, got 0"),
    (["--seed", str(2**70)], 2, f"--seed must be from 0 to 2**63 - 1, got {2**70}"),
    (["--seed", "-1"], 2, "--seed must be from 0 to 2**63 - 1, got -1"),
    (["--lr", "inf"], 2, "--lr must be a positive finite number, got inf"),
    (["--lr", "nan"], 2, "--lr must be a positive finite number, got nan"),
    (["--lr", "-1"], 2, "--lr must be a positive finite number, got -1.0"),
    (["--lr", "0"], 2, "--lr must be a positive finite number, got 0.0"),
    (["--val-fraction", "1.5"], 2, "--val-fraction must be at least 0 and below 1, got 1.5"),
    (["--val-fraction", "-0.1"], 2, "--val-fraction must be at least 0 and below 1, got -0.1"),
])
def test_bad_train_arguments_are_one_line_errors(arguments, status, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress", *arguments]) == status
    error = capsys.readouterr().err
    assert error.startswith("jaxnn train: error: ")
    assert message in error
    assert error.count("\n") == 1  # one line, no traceback
    assert not out.exists()


@pytest.mark.parametrize("out, message", [
    ("file", "--out {tmp}/file is a file; the run folder must be a folder"),
    ("file/run", "--out {tmp}/file/run lies under the file {tmp}/file; the run folder must be a folder"),
])
def test_out_that_is_a_file_or_under_one_is_a_one_line_error(out, message, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    for resume in ([], ["--resume"]):
        assert main(["train", "--out", str(tmp_path / out), "--no-progress", *resume]) == 2
        assert capsys.readouterr().err == f"jaxnn train: error: {message.format(tmp=tmp_path)}\n"
    assert (tmp_path / "file").read_text() == "not a folder"


@pytest.mark.parametrize("out", ["", "run"])
def test_out_in_a_read_only_folder_is_refused_before_training(out, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        # Root writes in read-only folders: answer as the system answers anyone else.
        access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **options:
                            access(path, mode, **options) and not (mode & os.W_OK and path == str(folder)))
    try:
        assert main(["train", "--out", str(folder / out), "--no-progress"]) == 2
        assert capsys.readouterr().err == (f"jaxnn train: error: --out {folder / out}: cannot write in the "
                                           f"folder {folder} (permission denied)\n")
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o755)


def test_evaluate_a_folder_without_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_unknown_model_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "resnet152"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'resnet152'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# summary and the console script.


def test_summary_prints_the_layers_and_the_parameter_count(capsys):
    assert main(["summary", "--model", "mlp", "--dataset", "digits"]) == 0
    printed = capsys.readouterr().out
    # Dense 64->128, Dense 128->128, Dense 128->10, each with its bias.
    total = 64 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10
    assert f"total params: {total:,}" in printed
    assert "(64,)" in printed and "(10,)" in printed
    for row in ("dense_1", "dense_3", "dense_5"):
        assert row in printed


def test_console_script_help():
    script = os.path.join(os.path.dirname(sys.executable), "jaxnn")
    command = [script] if os.path.exists(script) else [sys.executable, "-m", "jaxnn.cli"]
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    for word in ("train", "evaluate", "summary"):
        assert word in result.stdout


@pytest.mark.slow
def test_default_run_reaches_97_percent(tmp_path, monkeypatch):
    # `jaxnn train` with no flags: 30 epochs of an MLP on digits, into runs/digits-mlp.
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--no-progress"]) == 0
    metrics = read_json(tmp_path / "runs" / "digits-mlp" / "metrics.json")
    assert metrics["test_accuracy"] >= 0.97
    assert metrics["epochs"] == 30
