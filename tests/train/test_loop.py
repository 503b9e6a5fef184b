"""Tests for ``jaxnn.train.loop``: ``fit`` end to end on every bundled dataset, its bookkeeping
(each example once per epoch, fresh permutations, bit-exact resume, non-finite losses), the checks
on its input, and ``evaluate`` against a hand computation.
"""

import contextlib
import re
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TIMING, assert_bit_equal, bits, classification_data, reproducible

import jaxnn
from jaxnn import data
from jaxnn.models import mlp
from jaxnn.train import (
    Callback,
    Checkpoint,
    History,
    NonFiniteLossError,
    create_train_state,
    evaluate,
    fit,
    read_metadata,
    restore_checkpoint,
    save_checkpoint,
)


class RecordParams(Callback):
    """Keeps a host copy of the params at the end of each epoch (a copy survives donation)."""

    def __init__(self):
        self.params = []

    def on_epoch_end(self, epoch, logs, train_state):
        self.params.append(jax.tree.map(lambda leaf: np.array(leaf, copy=True), train_state.params))


# --------------------------------------------------------------------------------------------
# End to end on each dataset.


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def idx_directory(directory):
    """MNIST-format files, 200 train and 50 test 28x28 images: class k brightens quadrant k."""
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 200), ("t10k", 50)):
        labels = rng.integers(0, 4, count).astype(np.uint8)
        images = rng.integers(0, 60, (count, 28, 28)).astype(np.uint8)
        for image, label in zip(images, labels):
            row, column = divmod(int(label), 2)
            image[14 * row:14 * (row + 1), 14 * column:14 * (column + 1)] += 150
        write_idx(directory / f"{prefix}-images-idx3-ubyte", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels)
    return directory


DATASETS = {
    # name: (loader, hidden widths, learning rate, epochs, batch size, test accuracy to reach).
    # Batch sizes divide the training sets where they can, so that no partial batch compiles.
    "digits": (lambda tmp: data.digits(), (32,), 1e-2, 3, 64, 0.85),                     # chance 0.10
    "mnist1d": (lambda tmp: data.mnist1d(num_samples=1000), (64,), 1e-2, 12, 50, 0.3),   # chance 0.10
    "moons": (lambda tmp: data.moons(), (16,), 3e-2, 5, 32, 0.85),                       # chance 0.50
    "spirals": (lambda tmp: data.spirals(), (64, 64), 1e-2, 30, 32, 0.8),                # chance 0.33
    "idx": (lambda tmp: data.idx_dataset(idx_directory(tmp)), (16,), 1e-2, 3, 40, 0.9),  # chance 0.25
}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_fit_learns_each_dataset(name, tmp_path):
    load, hidden, learning_rate, epochs, batch_size, target = DATASETS[name]
    dataset = load(tmp_path)
    model = mlp(dataset.num_classes, hidden=hidden)
    optimizer = jaxnn.optim.adam(learning_rate)
    train_state = create_train_state(model, optimizer, jax.random.key(0), dataset.input_shape)

    train_state, history = fit(model, optimizer, train_state, (dataset.x_train, dataset.y_train),
                               epochs=epochs, batch_size=batch_size, progress=False)

    results = evaluate(model, train_state, (dataset.x_test, dataset.y_test))
    assert results["accuracy"] >= target, results
    assert np.isfinite(results["loss"])
    assert history.epochs == epochs
    assert history["loss"][-1] < history["loss"][0]
    steps_per_epoch = -(-dataset.x_train.shape[0] // batch_size)
    assert int(train_state.step) == epochs * steps_per_epoch


# --------------------------------------------------------------------------------------------
# Bookkeeping: examples, permutations, reproducibility, resume.


COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def count_compiles(function_name):
    """Collects the XLA compilations of the jitted function of that name while the block runs."""
    compiled = []

    def record(event, duration, **details):
        if event == COMPILE_EVENT and details.get("fun_name") == f"jit({function_name})":
            compiled.append(duration)

    jax.monitoring.register_event_duration_secs_listener(record)
    try:
        yield compiled
    finally:
        jax.monitoring.unregister_event_duration_listener(record)


def linear_loss(outputs, targets):
    """The output itself: its gradient with respect to ``w`` is the example's input."""
    return outputs[:, 0]


def test_each_example_is_seen_once_per_epoch_in_a_fresh_order():
    # x_i is the i-th one-hot vector and the loss is x_i . w + b, so one SGD step with lr 1 on a
    # batch of B examples lowers w_i by exactly 1/B for each example i in it. After an epoch of
    # 14 examples in batches of 4, each w_i has dropped by 1/4 (full batch) or 1/2 (the final
    # batch of 2): an example missed or seen twice would show as 0 or an extra drop.
    n, batch_size = 14, 4
    model = jaxnn.Dense(1)
    optimizer = jaxnn.optim.sgd(1.0)
    train_state = create_train_state(model, optimizer, jax.random.key(3), (n,))
    start = np.array(train_state.params["w"][:, 0])
    recorder = RecordParams()
    # steps_per_call=2 runs one scanned call of 2 batches, one single full batch and the remainder:
    # three shapes, each compiled once for all epochs.
    with count_compiles("run_steps") as compiled:
        fit(model, optimizer, train_state, (np.eye(n, dtype=np.float32), np.zeros((n,), np.float32)),
            epochs=3, batch_size=batch_size, loss=linear_loss, steps_per_call=2, callbacks=[recorder],
            progress=False)
    assert len(compiled) == 3

    last_batches, previous = [], start
    for params in recorder.params:
        drop = previous - params["w"][:, 0]
        np.testing.assert_allclose(np.sort(drop), [0.25] * 12 + [0.5] * 2, atol=1e-5)
        last_batches.append(frozenset(np.flatnonzero(drop > 0.4)))
        previous = params["w"][:, 0]
    np.testing.assert_allclose(-recorder.params[-1]["b"], [12.0], atol=1e-5)  # 4 steps per epoch
    # Each epoch draws its own permutation, so the final batch is not the same pair every time.
    assert len(set(last_batches)) > 1


# One model, optimizer and data set for the tests below: fits of the same model on arrays of the
# same shapes reuse each other's compiled steps.
MODEL = jaxnn.Sequential([jaxnn.Dense(16), jaxnn.Relu(), jaxnn.Dropout(0.3), jaxnn.Dense(3)])
ADAM = jaxnn.optim.adam(1e-2)
TRAIN = classification_data(60)  # batches of 16: 3 full batches and one of 12 per epoch
VALIDATION = classification_data(20, seed=1)


def fresh_state(seed):
    # Committed to the device, as a state restored from a checkpoint is: a committed and an
    # uncommitted state compile separately, and sharing one compilation keeps the tests fast.
    return jax.device_put(create_train_state(MODEL, ADAM, jax.random.key(seed), (4,)), jax.devices()[0])


def test_same_key_same_history_and_the_callers_state_stays_usable():
    train_state = fresh_state(1)
    initial = jax.tree.map(bits, train_state)
    options = {"epochs": 3, "batch_size": 16, "validation_data": VALIDATION, "progress": False}

    first_state, first = fit(MODEL, ADAM, train_state, TRAIN, **options)

    # fit trains a copy: the state passed in is neither donated nor changed, and can train again.
    assert not any(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves(train_state))
    assert_bit_equal(initial, jax.tree.map(bits, train_state))
    second_state, second = fit(MODEL, ADAM, train_state, TRAIN, **options)
    assert reproducible(first) == reproducible(second)
    assert_bit_equal(first_state, second_state)

    assert set(first) == {"loss", "accuracy", "val_loss", "val_accuracy", *TIMING}
    assert first.epochs == 3 and all(len(values) == 3 for values in first.values())
    final = evaluate(MODEL, first_state, VALIDATION)
    assert first["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-6)
    assert first["val_accuracy"][-1] == pytest.approx(final["accuracy"])
    # Another key gives another run (the check above is not vacuous).
    _, other = fit(MODEL, ADAM, fresh_state(2), TRAIN, **options)
    assert other["loss"] != first["loss"]


@pytest.mark.parametrize("steps_per_call", [1, 3])
def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(steps_per_call, tmp_path):
    # The model has dropout, so the resumed run must also draw the same masks.
    options = {"batch_size": 16, "steps_per_call": steps_per_call, "validation_data": VALIDATION,
               "progress": False}
    whole_state, whole = fit(MODEL, ADAM, fresh_state(0), TRAIN, epochs=6, **options)

    half_state, half = fit(MODEL, ADAM, fresh_state(0), TRAIN, epochs=3, **options)
    save_checkpoint(tmp_path / "checkpoint.npz", half_state, {"epoch": 3})
    half.save(tmp_path / "history.json")
    # A template with other values: everything must come from the file.
    restored, metadata = restore_checkpoint(tmp_path / "checkpoint.npz", fresh_state(42))
    resumed_state, resumed = fit(MODEL, ADAM, restored, TRAIN, epochs=6, initial_epoch=metadata["epoch"],
                                 history=History.load(tmp_path / "history.json"), **options)

    assert_bit_equal(whole_state, resumed_state)
    assert int(resumed_state.step) == 6 * 4
    assert resumed.epochs == 6
    assert reproducible(resumed) == reproducible(whole)


def test_a_committed_train_state_compiles_each_call_shape_once():
    # As test_each_example_is_seen_once_per_epoch_in_a_fresh_order checks for a fresh state: full
    # batches and the final partial batch are two shapes, so two compilations. A model built here,
    # so that nothing is compiled for it yet.
    model = jaxnn.Sequential([jaxnn.Dense(3)])
    optimizer = jaxnn.optim.sgd(0.1)
    train_state = create_train_state(model, optimizer, jax.random.key(0), (4,))
    with count_compiles("run_steps") as compiled:
        fit(model, optimizer, jax.device_put(train_state, jax.devices()[0]), TRAIN, epochs=3, batch_size=16,
            progress=False)
    assert len(compiled) == 2


# --------------------------------------------------------------------------------------------
# Non-finite losses.


def test_non_finite_loss_stops_training_and_the_checkpoint_keeps_the_last_good_epoch(tmp_path):
    # Every example is x = 1, y = 0, so every batch is the same. With out = w + b, the mse loss is
    # s^2 for s = w + b, and one SGD step (lr 100) maps s to s - 4 * 100 * s = -399 s. From s = 1
    # the loss before step k is 399^(2k): finite (1e36.4) at k = 7, beyond float32 (1e41.6) at
    # k = 8. Two steps per epoch put step 8 in epoch 5.
    model = jaxnn.Dense(1)
    optimizer = jaxnn.optim.sgd(100.0)
    params = {"w": jnp.ones((1, 1), jnp.float32), "b": jnp.zeros((1,), jnp.float32)}
    train_state = create_train_state(model, optimizer, jax.random.key(0), (1,))
    train_state = train_state._replace(params=params, opt_state=optimizer.init(params))
    path = tmp_path / "checkpoint.npz"
    x, y = np.ones((4, 1), np.float32), np.zeros((4, 1), np.float32)

    with pytest.raises(NonFiniteLossError, match="at step 8 ") as caught:
        fit(model, optimizer, train_state, (x, y), epochs=20, batch_size=2, loss="mse",
            callbacks=[Checkpoint(path)], progress=False)

    assert (caught.value.step, caught.value.epoch) == (8, 5)
    assert isinstance(caught.value, FloatingPointError)
    metadata = read_metadata(path)
    assert (metadata["epoch"], metadata["step"]) == (4, 8)
    assert np.isfinite(metadata["metrics"]["loss"])
    saved, _ = restore_checkpoint(path, train_state)
    s = float(saved.params["w"][0, 0] + saved.params["b"][0])
    assert np.isfinite(s)
    assert s == pytest.approx(399.0 ** 8, rel=1e-3)


# --------------------------------------------------------------------------------------------
# Checks at entry.


@pytest.fixture(scope="module")
def initial_state():
    return fresh_state(0)


def bad_data_cases():
    x, y = classification_data(10)
    with_nan, with_inf = x.copy(), x.copy()
    with_nan[3, 2] = np.nan
    with_inf[5, 1] = -np.inf
    too_high, negative = y.copy(), y.copy()
    too_high[7] = 3
    negative[2] = -1
    return {
        "nan": ((with_nan, y), ValueError, "train x contains NaN at index (3, 2)"),
        "inf": ((with_inf, y), ValueError, "train x contains -inf at index (5, 1)"),
        "label-too-high": ((x, too_high), ValueError, "train y: label 3 at index 7 is outside [0, 3)"),
        "label-negative": ((x, negative), ValueError, "train y: label -1 at index 2 is outside [0, 3)"),
        "empty": ((x[:0], y[:0]), ValueError, "train x is empty"),
        "length-mismatch": ((x, y[:9]), ValueError, "train x and y differ in length: x has 10 examples"),
        "wrong-features": ((x[:, :3], y), ValueError, "dense_0: expected last axis 4, got 3"),
        "wrong-ndim": ((x[:, :, None], y), ValueError, "dense_0: expected last axis 4, got 1"),
        "not-a-pair": (x, TypeError, "train data must be a pair (x, y)"),
    }


@pytest.mark.parametrize("case", sorted(bad_data_cases()))
def test_bad_training_data_is_refused_at_entry(case, initial_state):
    train_data, error, message = bad_data_cases()[case]
    with pytest.raises(error, match=re.escape(message)):
        fit(MODEL, ADAM, initial_state, train_data, epochs=1, batch_size=4, progress=False)


def test_bad_validation_data_is_named_as_such(initial_state):
    x, y = classification_data(10)
    with pytest.raises(ValueError, match=re.escape("validation y: label 5 at index 0")):
        fit(MODEL, ADAM, initial_state, (x, y), epochs=1, validation_data=(x, np.full(10, 5, np.int32)),
            progress=False)


def test_float_labels_for_cross_entropy_are_a_type_error_at_entry(initial_state):
    x, y = classification_data(10)
    with pytest.raises(TypeError, match=re.escape("train y must hold integer class ids, got dtype float32")):
        fit(MODEL, ADAM, initial_state, (x, y.astype(np.float32)), epochs=1, progress=False)


@pytest.mark.parametrize("argument, value, kind", [
    ("epochs", -1, "a non-negative int"), ("batch_size", 0, "a positive int"),
    ("steps_per_call", 0, "a positive int"), ("initial_epoch", -1, "a non-negative int"),
    ("log_every_seconds", -0.5, "non-negative"),
])
def test_bad_argument_values_are_value_errors(argument, value, kind, initial_state):
    options = {"epochs": 1, argument: value}
    with pytest.raises(ValueError, match=re.escape(f"fit: `{argument}` (={value}) must be {kind}")):
        fit(MODEL, ADAM, initial_state, classification_data(10), progress=False, **options)


@pytest.mark.parametrize("argument, value", [
    ("epochs", "3"), ("epochs", 1.5), ("epochs", True), ("batch_size", 2.5), ("batch_size", 2.0),
    ("steps_per_call", None), ("initial_epoch", 0.0), ("progress", "yes"), ("log_every_seconds", "1"),
    ("callbacks", [object()]), ("callbacks", Checkpoint("unused.npz")), ("loss", 3),
    ("metrics", ["accuracy"]),
    ("metrics", {"accuracy": 3}), ("history", {"loss": [1.0]}),
])
def test_arguments_of_the_wrong_type_are_type_errors_naming_the_argument(argument, value, initial_state):
    options = {"epochs": 1, "progress": False, argument: value}
    with pytest.raises(TypeError, match=re.escape(f"fit: `{argument}")):
        fit(MODEL, ADAM, initial_state, classification_data(10), **options)


def test_model_optimizer_and_train_state_of_the_wrong_type_are_type_errors(initial_state):
    data_ = classification_data(10)
    with pytest.raises(TypeError, match="fit: `model` must be a jaxnn.Layer"):
        fit(MODEL.apply, ADAM, initial_state, data_, epochs=1, progress=False)
    with pytest.raises(TypeError, match="fit: `optimizer` must be a gradient transformation"):
        fit(MODEL, ADAM.update, initial_state, data_, epochs=1, progress=False)
    with pytest.raises(TypeError, match="fit: `train_state` must be a TrainState"):
        fit(MODEL, ADAM, initial_state.params, data_, epochs=1, progress=False)


def test_unknown_loss_name_and_a_metric_named_like_a_sum_are_value_errors(initial_state):
    with pytest.raises(ValueError, match="fit: unknown loss 'hinge' for `loss`"):
        fit(MODEL, ADAM, initial_state, classification_data(10), epochs=1, loss="hinge", progress=False)
    with pytest.raises(ValueError, match="fit: `metrics` may not name a metric 'count'"):
        fit(MODEL, ADAM, initial_state, classification_data(10), epochs=1, progress=False,
            metrics={"count": lambda outputs, labels: labels})


# --------------------------------------------------------------------------------------------
# Callback hooks and the progress bar.


class RecordHooks(Callback):
    """Records every hook call, with what the hook was given."""

    def __init__(self):
        self.calls = []

    def on_train_begin(self, train_state):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, epoch):
        self.calls.append(("epoch_begin", epoch))

    def on_steps_end(self, examples, totals):
        self.calls.append(("steps_end", examples, sorted(totals)))

    def on_epoch_end(self, epoch, logs, train_state):
        self.calls.append(("epoch_end", epoch, int(train_state.step)))

    def on_train_end(self, train_state):
        self.calls.append(("train_end",))

    def on_train_error(self, error):
        self.calls.append(("train_error", type(error).__name__))


def test_hooks_are_called_in_order_with_the_examples_seen_so_far():
    # 60 examples in batches of 16 with 3 steps per call: one scanned call of 48, then 12.
    recorder = RecordHooks()
    fit(MODEL, ADAM, fresh_state(0), TRAIN, epochs=3, initial_epoch=1, batch_size=16, steps_per_call=3,
        callbacks=[recorder], progress=False)
    sums = ["accuracy", "count", "first_bad_step", "loss"]
    epoch = [("steps_end", 48, sums), ("steps_end", 60, sums)]
    assert recorder.calls == [("train_begin",),
                              ("epoch_begin", 1), *epoch, ("epoch_end", 1, 4),
                              ("epoch_begin", 2), *epoch, ("epoch_end", 2, 8),
                              ("train_end",)]


def test_a_non_finite_loss_reaches_callbacks_as_an_error_not_as_an_epoch():
    recorder = RecordHooks()
    x, y = classification_data(8)
    with pytest.raises(NonFiniteLossError):
        fit(MODEL, ADAM, fresh_state(0), (x, y), epochs=2, batch_size=4, callbacks=[recorder], progress=False,
            loss=lambda outputs, labels: jnp.full(labels.shape, jnp.nan))
    sums = ["count", "first_bad_step", "loss"]  # no metrics by default for a loss function
    assert recorder.calls == [("train_begin",), ("epoch_begin", 0), ("steps_end", 4, sums),
                              ("steps_end", 8, sums), ("train_error", "NonFiniteLossError")]


def test_progress_prints_one_line_per_epoch_with_what_callbacks_added(capsys):
    fit(MODEL, ADAM, fresh_state(0), TRAIN, epochs=2, batch_size=16, validation_data=VALIDATION,
        callbacks=[jaxnn.train.LearningRateLogger(0.01)], progress=True)
    value = r"\d\.\d{4}"
    lines = [line.split("\r")[-1] for line in capsys.readouterr().err.splitlines()]
    epoch_lines = [line.strip() for line in lines if re.match(r"\s*epoch \d/2  ", line)]
    assert len(epoch_lines) == 2
    for number, line in enumerate(epoch_lines, start=1):
        assert re.fullmatch(rf"epoch {number}/2  loss {value}  accuracy {value}  lr 0\.0100  val_loss {value}  "
                            rf"val_accuracy {value}  \d+\.\d\d s  [\d,]+ ex/s", line), line


# --------------------------------------------------------------------------------------------
# evaluate.


def test_evaluate_is_the_mean_over_all_examples_whatever_the_batch_size():
    model = jaxnn.Dense(3)
    train_state = create_train_state(model, jaxnn.optim.sgd(0.1), jax.random.key(5), (4,))
    x, y = classification_data(20, seed=7)
    logits = x @ np.asarray(train_state.params["w"]) + np.asarray(train_state.params["b"])
    shifted = logits - logits.max(axis=1, keepdims=True)
    losses = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(20), y]
    accuracy = np.mean(np.argmax(logits, axis=1) == y)
    assert 0 < accuracy < 1  # a random model: both right and wrong predictions are counted

    for batch_size in (1, 7, 1024):
        results = evaluate(model, train_state, (x, y), batch_size=batch_size)
        assert results["loss"] == pytest.approx(losses.mean(), rel=1e-5)
        assert results["accuracy"] == pytest.approx(accuracy)
    with pytest.raises(ValueError, match=re.escape("evaluate: `batch_size` (=0) must be a positive int")):
        evaluate(model, train_state, (x, y), batch_size=0)
    with pytest.raises(ValueError, match=re.escape("evaluation y: label 3 at index 0")):
        evaluate(model, train_state, (x, np.full(20, 3, np.int32)))


@pytest.mark.parametrize("examples", [1, 7, 16384])
def test_epoch_order_is_jax_random_permutation_bit_for_bit(examples):
    # fit sorts the shuffle's random keys on the host; the order must be jax.random.permutation's.
    from jaxnn.train.loop import _epoch_order, _start_epoch

    key = jax.random.key(examples)
    run_key, sort_keys, _ = _start_epoch(key, examples, ("accuracy",))
    shuffle_key, expected_run_key = jax.random.split(key)
    np.testing.assert_array_equal(_epoch_order(np.asarray(sort_keys)),
                                  np.asarray(jax.random.permutation(shuffle_key, examples)))
    np.testing.assert_array_equal(np.asarray(jax.random.key_data(run_key)),
                                  np.asarray(jax.random.key_data(expected_run_key)))
