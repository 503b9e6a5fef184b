"""Sweeps: every member equals a separate ``fit`` of its configuration, seed and fold; the result's
tables agree with the histories; bad input is refused before anything compiles."""

import csv
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_close, classification_data, reproducible

import jaxnn
from jaxnn import optim
from jaxnn.train import NonFiniteLossError, create_train_state, fit, make_optimizer, sweep

EPOCHS, BATCH, STEPS_PER_CALL = 3, 8, 2


def sgd_fn(learning_rate, momentum):
    return optim.sgd(learning_rate, momentum=momentum)


@pytest.fixture(scope="module")
def data():
    # 30 examples in 3 folds: 20 to train on, so batches of 8 in pairs leave a partial batch of 4.
    return classification_data(30, features=4, classes=3)


@pytest.fixture(scope="module")
def model():
    # Dropout, so that the members' dropout keys must be those of separate runs too.
    return jaxnn.Sequential([jaxnn.layers.Dense(8), jaxnn.layers.Relu(), jaxnn.layers.Dropout(0.25),
                             jaxnn.layers.Dense(3)])


@pytest.fixture(scope="module")
def result(data, model):
    # A learning rate of 1e30 diverges: the sweep goes on with the other members.
    grid = {"learning_rate": [0.05, 0.3, 1e30], "momentum": [0.0, 0.9], "l2": [1e-3]}
    # Two calls of 18 members each, the same compiled program.
    return sweep(model, sgd_fn, data, grid=grid, seeds=[0, 7], folds=3, epochs=EPOCHS, batch_size=BATCH,
                 steps_per_call=STEPS_PER_CALL, members_per_call=18, progress=False)


def separate_fit(model, data, result, index, optimizer=None, train_state=None):
    """Member ``index`` trained by ``fit``; given the ``train_state`` of its last epoch, one epoch more."""
    member = result.members[index]
    optimizer = optimizer or make_optimizer(sgd_fn, member.hyperparameters)
    initial_epoch, epochs = (0, EPOCHS) if train_state is None else (EPOCHS, EPOCHS + 1)
    if train_state is None:
        train_state = create_train_state(model, optimizer, jax.random.key(member.seed), (4,))
    train_idx, val_idx = result.folds[member.fold]
    x, y = data
    return fit(model, optimizer, train_state, (x[train_idx], y[train_idx]),
               validation_data=(x[val_idx], y[val_idx]), epochs=epochs, initial_epoch=initial_epoch,
               batch_size=BATCH, steps_per_call=STEPS_PER_CALL, progress=False)


def find(result, learning_rate, momentum, seed, fold):
    return next(i for i, m in enumerate(result.members)
                if m.hyperparameters["learning_rate"] == learning_rate
                and m.hyperparameters["momentum"] == momentum and m.seed == seed and m.fold == fold)


def test_members_equal_separate_fits(data, model, result):
    assert len(result) == 3 * 2 * 2 * 3
    # Stratified folds: every example validated once, every class in every fold.
    held_out = np.concatenate([val for _, val in result.folds])
    assert sorted(held_out.tolist()) == list(range(30))
    for train_idx, val_idx in result.folds:
        assert set(data[1][val_idx]) == set(data[1]) and not set(train_idx) & set(val_idx)
    # Traced learning rate and momentum (with momentum 0 traced too), seeds and folds all differ.
    # The member with momentum 0 is the best one of the slowest learner, trained by best.optimizer.
    best = result.best("loss", mode="max")
    assert best.hyperparameters["momentum"] == 0.0
    separate = {}
    for index, optimizer in ((best.member, best.optimizer), (find(result, 0.3, 0.9, 7, 2), None)):
        train_state, history = separate_fit(model, data, result, index, optimizer)
        separate[index] = train_state
        swept = result.train_state(index)
        assert_trees_close(train_state.params, swept.params, atol=2e-6, rtol=2e-5)
        assert int(swept.step) == int(train_state.step) == EPOCHS * 3
        np.testing.assert_array_equal(jax.random.key_data(swept.key), jax.random.key_data(train_state.key))
        expected, got = reproducible(history), reproducible(result.histories[index])
        assert sorted(expected) == sorted(got) == ["accuracy", "loss", "val_accuracy", "val_loss"]
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], rtol=2e-5, atol=1e-6)
        assert result.diverged_at_step[index] is None

    # Momentum 0: best.optimizer keeps no momentum buffer, where the swept optimizer (momentum traced)
    # did; best.train_state is laid out for best.optimizer all the same, and fit continues it as it
    # continues the separate run.
    separate = separate[best.member]
    assert jax.tree.structure(best.train_state.opt_state) == jax.tree.structure(separate.opt_state)
    continued, history = separate_fit(model, data, result, best.member, best.optimizer, best.train_state)
    expected, expected_history = separate_fit(model, data, result, best.member, best.optimizer, separate)
    assert_trees_close(continued.params, expected.params, atol=2e-6, rtol=2e-5)
    assert_trees_close(continued.opt_state, expected.opt_state, atol=2e-6, rtol=2e-5)
    assert int(continued.step) == (EPOCHS + 1) * 3
    expected_history, history = reproducible(expected_history), reproducible(history)
    for name in expected_history:
        np.testing.assert_allclose(history[name], expected_history[name], rtol=2e-5, atol=1e-6)


def test_a_diverged_member_is_recorded_where_fit_stops(data, model, result):
    index = find(result, 1e30, 0.9, 0, 1)
    with pytest.raises(NonFiniteLossError) as error:
        separate_fit(model, data, result, index)
    assert result.diverged_at_step[index] == error.value.step
    assert math.isnan(result.table[index]["final_loss"])
    assert result.best("val_accuracy").hyperparameters["learning_rate"] != 1e30


def test_a_diverged_member_is_nan_from_its_epoch_on_and_never_best():
    # 90% of the examples are class 0: a diverged member's NaN parameters (NaN logits predict class
    # 0) scored 0.92 accuracy and 0.87 val_accuracy, and best() chose the learning rate 1e7.
    rng = np.random.RandomState(0)
    x = (rng.randn(60, 4) * 50).astype(np.float32)
    y = (rng.rand(60) < 0.1).astype(np.int32)
    x_val = (rng.randn(30, 4) * 50).astype(np.float32)
    y_val = (rng.rand(30) < 0.1).astype(np.int32)
    model = jaxnn.Sequential([jaxnn.layers.Dense(8), jaxnn.layers.Relu(), jaxnn.layers.Dense(2)])
    settings = {"epochs": 3, "batch_size": 8, "validation_data": (x_val, y_val), "progress": False}
    result = sweep(model, optim.sgd, (x, y), grid={"learning_rate": [1e-4, 1e7]}, **settings)
    assert result.diverged_at_step[0] is None and result.diverged_at_step[1] is not None
    names = result.metric_names()
    assert sorted(names) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    first = result.diverged_at_step[1] // math.ceil(60 / 8)  # the epoch of the diverged step
    for name in names:
        assert np.isnan(result.histories[1][name][first:]).all()
        assert np.isfinite(result.histories[1][name][:first]).all()
        assert np.isfinite(result.histories[0][name]).all()
    sane, diverged = result.summary()
    assert all(math.isnan(diverged[f"{name}_{kind}"]) for name in names for kind in ("mean", "std"))
    assert all(math.isfinite(sane[f"{name}_mean"]) for name in names)
    for metric in names:
        best = result.best(metric)
        assert best.hyperparameters == {"learning_rate": 1e-4} and best.member == 0
    assert result.best("val_accuracy").score == sane["val_accuracy_mean"]

    # The same compiled program: every configuration diverges, and nothing is best.
    result = sweep(model, optim.sgd, (x, y), grid={"learning_rate": [1e6, 1e7]}, **{**settings, "epochs": 1})
    assert None not in result.diverged_at_step
    with pytest.raises(ValueError, match="every configuration has a diverged member"):
        result.best("val_accuracy")


def test_table_summary_and_best_agree_with_the_histories(tmp_path, result):
    table = result.table
    assert len(table) == len(result)
    row = table[5]
    history = result.histories[5]
    assert row["final_val_accuracy"] == history["val_accuracy"][-1]
    assert row["best_val_loss"] == min(history["val_loss"])
    assert row["best_accuracy"] == max(history["accuracy"])

    summary = result.summary()
    assert len(summary) == 6
    for configuration in summary:
        finals = [h["val_accuracy"][-1] for m, h in zip(result.members, result.histories)
                  if m.hyperparameters["learning_rate"] == configuration["learning_rate"]
                  and m.hyperparameters["momentum"] == configuration["momentum"]]
        assert configuration["members"] == len(finals) == 6
        np.testing.assert_allclose(configuration["val_accuracy_mean"], np.mean(finals))
        np.testing.assert_allclose(configuration["val_accuracy_std"], np.std(finals, ddof=1))

    best = result.best("val_accuracy")
    finite = [c for c in summary if not math.isnan(c["val_accuracy_mean"])]
    assert best.score == max(c["val_accuracy_mean"] for c in finite)
    mine = [i for i, m in enumerate(result.members) if m.hyperparameters == best.hyperparameters]
    assert best.member in mine
    assert result.histories[best.member]["val_accuracy"][-1] == max(result.histories[i]["val_accuracy"][-1]
                                                                    for i in mine)
    assert_trees_close(result.train_state(best.member).params, best.train_state.params, atol=0, rtol=0)
    lowest = result.best("val_loss")
    assert lowest.score == min(c["val_loss_mean"] for c in finite)

    path = tmp_path / "table.csv"
    result.to_csv(path)
    with open(path) as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == len(table)
    assert float(rows[5]["final_val_loss"]) == pytest.approx(table[5]["final_val_loss"], rel=1e-12)
    assert rows[5]["seed"] == str(table[5]["seed"]) and rows[0]["diverged_at_step"] == ""


def test_traced_hyperparameters_keep_their_type_check():
    def build(learning_rate):
        return optim.adam(learning_rate).init({"w": jnp.zeros(2)})

    jax.vmap(build)(jnp.asarray([1e-3, 1e-2]))  # traced floats are accepted
    with pytest.raises(TypeError, match="learning_rate"):
        jax.vmap(build)(jnp.asarray([True, False]))
    with pytest.raises(ValueError, match="scalar"):
        jax.jit(build)(jnp.ones(3))


@pytest.mark.parametrize("arguments, error, message", [
    ({"grid": {"learning_rate": []}}, ValueError, r"grid\['learning_rate'\] is empty"),
    ({"grid": {"lr": [0.1]}}, TypeError, "'lr', which optimizer_fn does not take"),
    ({"grid": {"learning_rate": [0.1, math.inf]}}, ValueError, "must be finite"),
    ({"grid": {"learning_rate": [0.1, "0.2"]}}, TypeError, "real numbers"),
    ({"grid": {"learning_rate": [0.1, 0.1]}}, ValueError, "repeats"),
    ({"grid": {"learning_rate": [0.1, -0.1]}}, ValueError, r"configuration \{'learning_rate': -0.1\}"),
    ({"grid": {"learning_rate": [0.1], "l2": [-1.0]}}, ValueError, "non-negative"),
    ({"folds": 1}, ValueError, "folds"),
    ({"folds": 6}, ValueError, "smallest class's count"),
    ({"folds": 2, "validation_data": "data"}, ValueError, "conflict"),
    ({"seeds": []}, ValueError, "seeds"),
    ({"seeds": [1, 1]}, ValueError, "repeats"),
    ({"seeds": 1.5}, TypeError, "seeds"),
    ({"members_per_call": 0}, ValueError, "members_per_call"),
])
def test_bad_input_is_refused_before_training(model, arguments, error, message):
    x, _ = classification_data(30, features=4, classes=3)
    y = np.asarray([0] * 20 + [1] * 6 + [2] * 4, np.int32)  # the smallest class has 4 examples
    if arguments.get("validation_data") == "data":
        arguments = {**arguments, "validation_data": (x, y)}
    arguments = {"grid": {"learning_rate": [0.1]}, **arguments}
    with pytest.raises(error, match=message):
        sweep(model, optim.sgd, (x, y), epochs=1, progress=False, **arguments)


@pytest.mark.slow
def test_members_with_shared_validation_data_and_layer_state_equal_separate_fits():
    # BatchNorm's running statistics are layer state; six members in calls of four leave a last
    # call of two; b1, with one value, is passed as a number, not traced.
    x, y = classification_data(45, features=5, classes=3, seed=1)
    x_val, y_val = classification_data(17, features=5, classes=3, seed=2)
    # BatchNorm after the ReLU: a bias just before it would have a gradient of zero in exact
    # arithmetic, which Adam turns from rounding noise into steps of the learning rate's size.
    model = jaxnn.Sequential([jaxnn.layers.Dense(6), jaxnn.layers.Relu(), jaxnn.layers.BatchNorm(),
                              jaxnn.layers.Dense(3)])
    grid = {"learning_rate": [1e-2, 3e-2, 1e-1], "b1": [0.8]}
    result = sweep(model, optim.adam, (x, y), grid=grid, seeds=2, validation_data=(x_val, y_val), epochs=2,
                   batch_size=16, members_per_call=4, progress=False)
    assert result.folds is None and len(result) == 6
    for index, member in enumerate(result.members):
        optimizer = optim.adam(**member.hyperparameters)
        train_state = create_train_state(model, optimizer, jax.random.key(member.seed), (5,))
        train_state, history = fit(model, optimizer, train_state, (x, y), validation_data=(x_val, y_val),
                                   epochs=2, batch_size=16, progress=False)
        swept = result.train_state(index)
        assert_trees_close(train_state.params, swept.params, atol=2e-6, rtol=2e-5)
        assert_trees_close(train_state.state, swept.state, atol=2e-6, rtol=2e-5)
        expected, got = reproducible(history), reproducible(result.histories[index])
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], rtol=2e-5, atol=1e-6)
