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


def separate_fit(model, data, result, index):
    member = result.members[index]
    optimizer = make_optimizer(sgd_fn, member.hyperparameters)
    train_state = create_train_state(model, optimizer, jax.random.key(member.seed), (4,))
    train_idx, val_idx = result.folds[member.fold]
    x, y = data
    return fit(model, optimizer, train_state, (x[train_idx], y[train_idx]),
               validation_data=(x[val_idx], y[val_idx]), epochs=EPOCHS, batch_size=BATCH,
               steps_per_call=STEPS_PER_CALL, progress=False)


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
    for index in (find(result, 0.05, 0.0, 0, 0), find(result, 0.3, 0.9, 7, 2)):
        train_state, history = separate_fit(model, data, result, index)
        swept = result.train_state(index)
        assert_trees_close(train_state.params, swept.params, atol=2e-6, rtol=2e-5)
        assert int(swept.step) == int(train_state.step) == EPOCHS * 3
        np.testing.assert_array_equal(jax.random.key_data(swept.key), jax.random.key_data(train_state.key))
        expected, got = reproducible(history), reproducible(result.histories[index])
        assert sorted(expected) == sorted(got) == ["accuracy", "loss", "val_accuracy", "val_loss"]
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], rtol=2e-5, atol=1e-6)
        assert result.diverged_at_step[index] is None


def test_a_diverged_member_is_recorded_where_fit_stops(data, model, result):
    index = find(result, 1e30, 0.9, 0, 1)
    with pytest.raises(NonFiniteLossError) as error:
        separate_fit(model, data, result, index)
    assert result.diverged_at_step[index] == error.value.step
    assert math.isnan(result.table[index]["final_loss"])
    assert result.best("val_accuracy").hyperparameters["learning_rate"] != 1e30


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
