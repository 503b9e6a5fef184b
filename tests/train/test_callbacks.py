"""Tests for ``jaxnn.train.callbacks``: early stopping, checkpoints, learning-rate logging and
the progress bar, on made-up sequences of epoch metrics and inside real ``fit`` runs.
"""

import io
import re
import sys
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_equal, classification_data

import jaxnn
from jaxnn.train import (
    Callback,
    Checkpoint,
    EarlyStopping,
    LearningRateLogger,
    ProgressBar,
    TrainState,
    create_train_state,
    fit,
    read_metadata,
    restore_checkpoint,
)


# One model, optimizer and data set for every fit here, so that they share compiled steps.
MODEL = jaxnn.Sequential([jaxnn.Dense(16), jaxnn.Relu(), jaxnn.Dense(3)])
ADAM = jaxnn.optim.adam(1e-2)
STEPS_PER_EPOCH = 4  # 60 examples in batches of 16: 3 full and one of 12


TRAIN = classification_data(60)


def train(callbacks, epochs):
    train_state = create_train_state(MODEL, ADAM, jax.random.key(0), (4,))
    return fit(MODEL, ADAM, train_state, TRAIN, epochs=epochs, batch_size=16, callbacks=callbacks,
               progress=False)


class RecordParams(Callback):
    """Keeps a host copy of the params at the end of each epoch (a copy survives donation)."""

    def __init__(self):
        self.params = []

    def on_epoch_end(self, epoch, logs, train_state):
        self.params.append(jax.tree.map(lambda leaf: np.array(leaf, copy=True), train_state.params))


def marked_state(epoch):
    """A train state whose params say which epoch they come from."""
    return TrainState(params={"w": jnp.full((2,), float(epoch), jnp.float32)}, state={}, opt_state=(),
                      step=jnp.asarray(10 * epoch, jnp.int32), key=jax.random.key(0))


def feed(callback, values, monitor="val_loss"):
    """Calls ``on_epoch_end`` once per value, as fit would, until the callback asks to stop."""
    callback.on_train_begin(marked_state(0))
    epochs_run = 0
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {monitor: value}, marked_state(epoch + 1))
        epochs_run += 1
        if callback.stop_training:
            break
    return epochs_run


# --------------------------------------------------------------------------------------------
# EarlyStopping on made-up metrics.


def test_patience_zero_stops_at_the_first_epoch_without_improvement():
    stopper = EarlyStopping(patience=0)
    assert feed(stopper, [1.0, 0.8, 0.6, 0.7, 0.5]) == 4
    assert (stopper.best_epoch, stopper.stopped_epoch, stopper.best) == (3, 4, 0.6)


def test_improving_every_epoch_never_stops():
    stopper = EarlyStopping(patience=0)
    assert feed(stopper, [1.0, 0.9, 0.8, 0.7]) == 4
    assert stopper.stopped_epoch is None and stopper.best_epoch == 4


def test_patience_counts_epochs_without_improvement():
    # "Stop when monitor has not improved for patience epochs": the best is epoch 2, epochs 3 and
    # 4 do not improve, so with patience 2 training ends after epoch 4.
    stopper = EarlyStopping(patience=2)
    assert feed(stopper, [1.0, 0.8, 0.9, 0.85, 0.95, 0.7]) == 4
    assert (stopper.best_epoch, stopper.stopped_epoch) == (2, 4)


def test_an_improvement_resets_the_wait():
    # With patience 2 the wait never reaches 2: each run of non-improving epochs is one long.
    stopper = EarlyStopping(patience=2)
    assert feed(stopper, [1.0, 1.1, 0.9, 1.0, 0.8, 0.85, 0.7]) == 7
    assert stopper.stopped_epoch is None and stopper.best_epoch == 7


def test_min_delta_is_the_improvement_needed():
    stopper = EarlyStopping(patience=10, min_delta=0.1)
    # 0.95 is not below 1.0 - 0.1; 0.85 is; 0.8 is not below 0.85 - 0.1.
    feed(stopper, [1.0, 0.95, 0.85, 0.8])
    assert (stopper.best_epoch, stopper.best) == (3, 0.85)
    assert stopper.wait == 1


def test_mode_auto_maximizes_accuracies_and_minimizes_the_rest():
    assert EarlyStopping(monitor="val_accuracy").mode == "max"
    assert EarlyStopping(monitor="accuracy").mode == "max"
    assert EarlyStopping(monitor="val_loss").mode == "min"
    stopper = EarlyStopping(monitor="val_accuracy", patience=10, min_delta=0.1)
    feed(stopper, [0.5, 0.55, 0.7, 0.65], monitor="val_accuracy")
    assert (stopper.best_epoch, stopper.best) == (3, 0.7)
    minimizing = EarlyStopping(monitor="val_accuracy", mode="min", patience=10)
    feed(minimizing, [0.5, 0.55, 0.7, 0.45], monitor="val_accuracy")
    assert minimizing.best_epoch == 4


def test_nan_is_never_an_improvement():
    stopper = EarlyStopping(patience=0)
    assert feed(stopper, [1.0, float("nan"), 0.5]) == 2
    assert stopper.best_epoch == 1


def test_restores_the_best_epochs_params_at_the_end():
    stopper = EarlyStopping(patience=10)
    feed(stopper, [1.0, 0.5, 0.7, 0.9])
    restored = stopper.on_train_end(marked_state(4))
    np.testing.assert_array_equal(np.asarray(restored.params["w"]), [2.0, 2.0])
    assert int(restored.step) == 40  # only params and layer state go back, not the step count
    keeper = EarlyStopping(patience=10, restore_best=False)
    feed(keeper, [1.0, 0.5, 0.7, 0.9])
    assert keeper.on_train_end(marked_state(4)) is None


def test_missing_monitored_metric_is_a_clear_error():
    stopper = EarlyStopping(monitor="val_loss")
    with pytest.raises(ValueError, match=r"monitored metric 'val_loss' is not in .*pass validation data"):
        stopper.on_epoch_end(0, {"loss": 1.0, "accuracy": 0.5}, marked_state(1))


@pytest.mark.parametrize("arguments, message", [
    ({"patience": -1}, "EarlyStopping: `patience` (=-1) must be a non-negative int"),
    ({"min_delta": -0.1}, "EarlyStopping: `min_delta` (=-0.1) must be non-negative"),
    ({"mode": "sideways"}, "EarlyStopping: `mode` must be one of 'min', 'max', 'auto', got 'sideways'"),
])
def test_early_stopping_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        EarlyStopping(**arguments)


@pytest.mark.parametrize("argument, value", [
    ("patience", 1.5), ("patience", "3"), ("min_delta", "0.1"), ("monitor", None), ("restore_best", "yes"),
])
def test_early_stopping_arguments_of_the_wrong_type(argument, value):
    with pytest.raises(TypeError, match=re.escape(f"EarlyStopping: `{argument}` must be")):
        EarlyStopping(**{argument: value})


# --------------------------------------------------------------------------------------------
# EarlyStopping in real runs.


def test_early_stopping_in_fit_stops_and_restores_the_best_params():
    # A min_delta no loss can meet: only the first epoch (which improves on infinity) counts.
    recorder = RecordParams()
    stopper = EarlyStopping(monitor="loss", patience=0, min_delta=100.0)
    train_state, history = train([recorder, stopper], epochs=10)
    assert history.epochs == 2 and stopper.stopped_epoch == 2 and stopper.best_epoch == 1
    assert_trees_equal(recorder.params[0], train_state.params)
    assert int(train_state.step) == 2 * STEPS_PER_EPOCH


def test_early_stopping_restores_the_best_params_without_stopping_early():
    # The training loss falls, so maximizing it makes an early epoch the best one.
    recorder = RecordParams()
    stopper = EarlyStopping(monitor="loss", mode="max", patience=10)
    train_state, history = train([recorder, stopper], epochs=4)
    best = int(np.argmax(history["loss"])) + 1
    assert stopper.stopped_epoch is None and history.epochs == 4
    assert stopper.best_epoch == best < 4
    assert_trees_equal(recorder.params[best - 1], train_state.params)
    last, restored = recorder.params[-1]["dense_0"]["w"], train_state.params["dense_0"]["w"]
    assert (np.asarray(last) != np.asarray(restored)).any()


def test_missing_monitored_metric_in_fit():
    with pytest.raises(ValueError, match="monitored metric 'val_loss'"):
        train([EarlyStopping()], epochs=1)


# --------------------------------------------------------------------------------------------
# Checkpoint.


def test_checkpoint_every_k_epochs(tmp_path):
    path = tmp_path / "run" / "checkpoint.npz"
    recorder = RecordParams()
    saver = Checkpoint(path, every=2, metadata={"model": "dense 4-16-3"})
    _, history = train([recorder, saver], epochs=5)

    assert saver.saved_epochs == [2, 4]
    metadata = read_metadata(path)
    assert metadata["model"] == "dense 4-16-3"
    assert (metadata["epoch"], metadata["step"]) == (4, 4 * STEPS_PER_EPOCH)
    assert metadata["metrics"]["loss"] == history["loss"][3]
    assert metadata["metrics"]["accuracy"] == history["accuracy"][3]
    template = create_train_state(MODEL, ADAM, jax.random.key(9), (4,))
    restored, _ = restore_checkpoint(path, template)
    assert_trees_equal(recorder.params[3], restored.params)
    assert int(restored.step) == 4 * STEPS_PER_EPOCH


def test_checkpoint_best_only_saves_on_improvement(tmp_path):
    path = tmp_path / "best.npz"
    saver = Checkpoint(path, best_only=True, monitor="val_loss")
    saved = []
    for epoch, value in enumerate([1.0, 0.5, 0.7, 0.4, 0.6]):
        saver.on_epoch_end(epoch, {"val_loss": value, "loss": 2.0}, marked_state(epoch + 1))
        saved.append(read_metadata(path)["epoch"])
    assert saved == [1, 2, 2, 4, 4]
    assert saver.saved_epochs == [1, 2, 4]
    metadata = read_metadata(path)
    assert metadata["metrics"] == {"val_loss": 0.4, "loss": 2.0}
    assert metadata["step"] == 40
    restored, _ = restore_checkpoint(path, marked_state(0))
    np.testing.assert_array_equal(np.asarray(restored.params["w"]), [4.0, 4.0])


def test_checkpoint_best_only_maximizes_accuracy(tmp_path):
    saver = Checkpoint(tmp_path / "best.npz", best_only=True, monitor="val_accuracy")
    for epoch, value in enumerate([0.5, 0.7, 0.6, 0.9]):
        saver.on_epoch_end(epoch, {"val_accuracy": value}, marked_state(epoch + 1))
    assert saver.saved_epochs == [1, 2, 4]


def test_checkpoint_best_only_needs_the_monitored_metric(tmp_path):
    saver = Checkpoint(tmp_path / "best.npz", best_only=True)
    with pytest.raises(ValueError, match="Checkpoint: monitored metric 'val_loss'"):
        saver.on_epoch_end(0, {"loss": 1.0}, marked_state(1))
    assert not (tmp_path / "best.npz").exists()


@pytest.mark.parametrize("arguments, message", [
    ({"every": 0}, "Checkpoint: `every` (=0) must be a positive int"),
    ({"mode": "up"}, "Checkpoint: `mode` must be one of 'min', 'max', 'auto', got 'up'"),
])
def test_checkpoint_bad_arguments(arguments, message, tmp_path):
    with pytest.raises(ValueError, match=re.escape(message)):
        Checkpoint(tmp_path / "checkpoint.npz", **arguments)


@pytest.mark.parametrize("argument, value", [
    ("every", 1.0), ("best_only", 1), ("monitor", ["val_loss"]), ("metadata", ["model", "mlp"]), ("path", 3),
])
def test_checkpoint_arguments_of_the_wrong_type(argument, value, tmp_path):
    arguments = {"path": tmp_path / "checkpoint.npz", argument: value}
    with pytest.raises(TypeError, match=re.escape(f"Checkpoint: `{argument}` must be")):
        Checkpoint(**arguments)


# --------------------------------------------------------------------------------------------
# LearningRateLogger.


def halving_every_four_steps(count):
    return 0.05 * 0.5 ** jnp.floor(jnp.asarray(count, jnp.float32) / 4.0)


def test_learning_rate_logger_logs_the_schedule_after_each_epoch():
    # The logger reads only the step count, so the run's own optimizer (one already compiled here)
    # serves as well as one built with this schedule.
    _, history = train([LearningRateLogger(halving_every_four_steps)], epochs=3)
    # Four steps per epoch: after epoch e the next step is 4e, and the rate is 0.05 / 2^e.
    assert history["lr"] == pytest.approx([0.025, 0.0125, 0.00625], rel=1e-6)


def test_learning_rate_logger_logs_a_constant_rate():
    logs = {"loss": 1.0}
    LearningRateLogger(0.01).on_epoch_end(0, logs, marked_state(1))
    assert logs == {"loss": 1.0, "lr": 0.01}


def test_learning_rate_logger_needs_a_rate_or_a_schedule():
    with pytest.raises(TypeError, match=re.escape("LearningRateLogger: `schedule` must be a learning rate")):
        LearningRateLogger("0.01")


# --------------------------------------------------------------------------------------------
# ProgressBar.


class CountedReads(Mapping):
    """Metric sums that count how often they are read whole, as ``averages`` reads them."""

    def __init__(self, **sums):
        self.sums, self.reads = sums, 0

    def keys(self):
        self.reads += 1
        return self.sums.keys()

    def __getitem__(self, name):
        return self.sums[name]

    def __iter__(self):
        return iter(self.sums)

    def __len__(self):
        return len(self.sums)


def test_progress_bar_reads_the_metrics_once_per_interval_and_at_the_end_of_the_epoch(monkeypatch):
    pytest.importorskip("tqdm")
    now = [0.0]
    monkeypatch.setattr("time.perf_counter", lambda: now[0])
    totals = CountedReads(loss=np.float32(6.0), accuracy=np.float32(3.0), count=np.int32(6),
                          first_bad_step=np.int32(2**31 - 1))
    bar = ProgressBar(epochs=1, examples_per_epoch=10, log_every_seconds=1.0, bar=True)
    bar.on_epoch_begin(0)
    reads = []
    for examples, seconds in [(2, 0.4), (4, 0.8), (6, 1.2), (8, 1.6), (10, 1.7)]:
        now[0] = seconds
        bar.on_steps_end(examples, totals)
        reads.append(totals.reads)
    bar.on_train_error(KeyboardInterrupt())
    # Read after 1.2 s (a second since the start) and at the last call; never in between.
    assert reads == [0, 0, 1, 1, 2]
    assert bar.bar is None


class Terminal(io.StringIO):
    """Stands for stderr on a terminal."""

    def isatty(self):
        return True


def fit_with_progress(epochs, **progress_bar):
    train_state = create_train_state(MODEL, ADAM, jax.random.key(0), (4,))
    callbacks = [ProgressBar(epochs, len(TRAIN[0]), **progress_bar)] if progress_bar else []
    fit(MODEL, ADAM, train_state, TRAIN, epochs=epochs, batch_size=16, validation_data=TRAIN,
        callbacks=callbacks, progress=not progress_bar)


def test_progress_without_a_terminal_is_one_line_per_epoch_and_no_bar(capsys):
    pytest.importorskip("tqdm")
    fit_with_progress(2)  # capsys's stderr is no terminal, as a log file or a pipe
    printed = capsys.readouterr().err
    assert "%|" not in printed and "\r" not in printed
    lines = printed.splitlines()
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    for line in lines:
        # The loss first, then the metrics, the validation ones, the seconds and the speed.
        assert re.fullmatch(r"epoch \d/2  loss \S+  accuracy \S+  val_loss \S+  val_accuracy \S+  "
                            r"\d+\.\d\d s  [\d,]+ ex/s", line), line


def test_progress_on_a_terminal_draws_a_bar_and_a_line_per_epoch(monkeypatch):
    pytest.importorskip("tqdm")
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    fit_with_progress(2)
    shown = terminal.getvalue()
    assert "epoch 1/2:   0%|" in shown and "epoch 2/2:   0%|" in shown
    lines = [line for line in shown.splitlines() if line.startswith("epoch ") and "%|" not in line]
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]


def test_progress_bar_false_leaves_the_bar_out_even_on_a_terminal(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    fit_with_progress(1, bar=False)
    shown = terminal.getvalue()
    assert shown.count("\n") == 1 and shown.startswith("epoch 1/1  loss ")
    assert "%|" not in shown and "\r" not in shown


@pytest.mark.parametrize("arguments, error", [
    ({"epochs": 1.0}, TypeError), ({"examples_per_epoch": 0}, ValueError),
    ({"log_every_seconds": "1"}, TypeError), ({"bar": "yes"}, TypeError),
])
def test_progress_bar_bad_arguments(arguments, error):
    with pytest.raises(error, match=f"ProgressBar: `{next(iter(arguments))}`"):
        ProgressBar(**{"epochs": 1, "examples_per_epoch": 10, **arguments})
