"""Tests for ``jaxnn.train.step``: compiled train and eval steps against hand-written JAX and optax.

Compiled steps are built once per module and every batch has the same shape, so each step
compiles once; that keeps the file fast on a small machine.
"""

import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_trees_close

import jaxnn
from jaxnn.train import TrainState, averages, create_train_state, make_eval_step, make_train_step
from jaxnn.train.step import DROPOUT_STREAM, batch_size_on_device, step_key


INT32_MAX = int(np.iinfo(np.int32).max)
BATCH = 8


def mlp():
    return jaxnn.Sequential([jaxnn.Dense(8), jaxnn.Relu(), jaxnn.Dense(3)])


def dropout_mlp():
    return jaxnn.Sequential([jaxnn.Dense(16), jaxnn.Relu(), jaxnn.Dropout(0.5), jaxnn.Dense(3)])


MODEL = mlp()
DROPOUT_MODEL = dropout_mlp()
ADAM = jaxnn.optim.adam(1e-2)


@pytest.fixture(scope="module")
def adam_step():
    return make_train_step(MODEL, "cross_entropy", ADAM, donate=False)


@pytest.fixture(scope="module")
def dropout_step():
    return make_train_step(DROPOUT_MODEL, "cross_entropy", ADAM, donate=False)


def hand_logits(params, x):
    """The forward pass of ``mlp()`` written out: relu(x w0 + b0) w2 + b2."""
    hidden = jnp.maximum(x @ params["dense_0"]["w"] + params["dense_0"]["b"][None], 0.0)
    return hidden @ params["dense_2"]["w"] + params["dense_2"]["b"][None]


def hand_losses(params, x, y):
    return -jnp.take_along_axis(jax.nn.log_softmax(hand_logits(params, x)), y[:, None], axis=1)[:, 0]


def batch(seed, size=BATCH, features=4, classes=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((size, features)).astype(np.float32)
    y = rng.integers(0, classes, size).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


def host_copy(tree):
    """A NumPy copy that outlives the donation of the device buffers (keys as their key data)."""
    def copy(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        return np.array(leaf, copy=True)

    return jax.tree.map(copy, tree)


def key_bits(key):
    return np.asarray(jax.random.key_data(key))


def test_one_step_equals_hand_written_grad_and_optax_adam(adam_step):
    # The oracle is jax.grad of the forward pass written by hand, updated by optax's Adam.
    train_state = create_train_state(MODEL, ADAM, jax.random.key(0), (4,))
    before = host_copy(train_state.params)
    x, y = batch(1)

    new_state, sums = adam_step(train_state, (x, y))

    oracle = optax.adam(1e-2)
    grads = jax.grad(lambda p: jnp.mean(hand_losses(p, x, y)))(before)
    # optax mixes int32 counts with float hyperparameters, which strict promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        updates, _ = oracle.update(grads, oracle.init(before), before)
    assert_trees_close(optax.apply_updates(before, updates), new_state.params)
    assert int(new_state.step) == 1
    assert int(sums["count"]) == BATCH
    # The step draws from a key folded from the key and the step, and leaves the key as it was.
    np.testing.assert_array_equal(key_bits(new_state.key), key_bits(train_state.key))
    # Without donation the caller's train state is untouched.
    assert not any(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves(train_state))
    assert int(train_state.step) == 0


def test_optax_optimizer_state_matches_optax():
    # An optax transformation works as the optimizer: params and its own state match optax's.
    optimizer = optax.sgd(0.1, momentum=0.9)
    train_state = create_train_state(MODEL, optimizer, jax.random.key(1), (4,))
    before = host_copy(train_state.params)
    batches = [batch(2), batch(3)]
    step = make_train_step(MODEL, "cross_entropy", optimizer)
    for x, y in batches:
        train_state, _ = step(train_state, (x, y))

    params, opt_state = before, optimizer.init(before)
    for x, y in batches:
        grads = jax.grad(lambda p, x=x, y=y: jnp.mean(hand_losses(p, x, y)))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    assert_trees_close(params, train_state.params)
    assert_trees_close(opt_state, train_state.opt_state)
    assert int(train_state.step) == 2


def test_metric_sums_are_sums_over_the_batch(adam_step):
    train_state = create_train_state(MODEL, ADAM, jax.random.key(2), (4,))
    params = host_copy(train_state.params)
    x, y = batch(3)

    _, sums = adam_step(train_state, (x, y))

    # Metrics are of the outputs the step differentiated, i.e. of the params before the update.
    losses = np.asarray(hand_losses(params, x, y))
    correct = np.sum(np.argmax(np.asarray(hand_logits(params, x)), axis=1) == np.asarray(y))
    assert int(sums["count"]) == BATCH
    np.testing.assert_allclose(float(sums["loss"]), losses.mean() * BATCH, rtol=1e-5)
    assert float(sums["accuracy"]) == correct
    assert int(sums["first_bad_step"]) == INT32_MAX
    assert averages(sums) == pytest.approx({"loss": losses.mean(), "accuracy": correct / BATCH}, rel=1e-5)


def test_regression_loss_and_custom_metric():
    # mse comes per output element: each example's loss is the mean over its elements. A metric
    # given by the caller replaces the default accuracy.
    def largest_output(outputs, targets):
        return jnp.max(outputs, axis=-1)

    model = jaxnn.Dense(3)
    train_state = create_train_state(model, optax.sgd(0.0), jax.random.key(4), (4,))
    x, _ = batch(5)
    targets = jnp.asarray(np.random.default_rng(6).standard_normal((BATCH, 3)).astype(np.float32))
    step = make_train_step(model, "mse", optax.sgd(0.0), metrics={"largest": largest_output}, donate=False)

    _, sums = step(train_state, (x, targets))

    outputs = np.asarray(x) @ np.asarray(train_state.params["w"]) + np.asarray(train_state.params["b"])
    per_example = ((outputs - np.asarray(targets)) ** 2).mean(axis=1)
    np.testing.assert_allclose(float(sums["loss"]), per_example.sum(), rtol=1e-5)
    np.testing.assert_allclose(float(sums["largest"]), outputs.max(axis=1).sum(), rtol=1e-5)
    assert set(sums) == {"loss", "largest", "count", "first_bad_step"}


def test_steps_per_call_with_dropout_matches_single_calls(dropout_step):
    # N steps in one lax.scan must be the N single steps: same keys (dropout masks), same params.
    calls = 3
    train_state = create_train_state(DROPOUT_MODEL, ADAM, jax.random.key(7), (4,))
    batches = [batch(10 + i) for i in range(calls)]
    scanned = make_train_step(DROPOUT_MODEL, "cross_entropy", ADAM, steps_per_call=calls, donate=False)

    one_by_one, total_loss, total_correct = train_state, 0.0, 0.0
    for x, y in batches:
        one_by_one, sums = dropout_step(one_by_one, (x, y))
        total_loss += float(sums["loss"])
        total_correct += float(sums["accuracy"])
    stacked = (jnp.stack([x for x, _ in batches]), jnp.stack([y for _, y in batches]))
    together, sums = scanned(train_state, stacked)

    assert_trees_close(one_by_one.params, together.params, atol=1e-6, rtol=0)
    assert_trees_close(one_by_one.opt_state, together.opt_state, atol=1e-6, rtol=0)
    assert int(together.step) == int(one_by_one.step) == calls
    np.testing.assert_array_equal(key_bits(together.key), key_bits(one_by_one.key))
    assert int(sums["count"]) == calls * BATCH
    np.testing.assert_allclose(float(sums["loss"]), total_loss, rtol=1e-5)
    assert float(sums["accuracy"]) == total_correct

    # A leading axis of another length is refused with a message saying what is expected.
    with pytest.raises(ValueError, match="steps_per_call=3"):
        scanned(train_state, (stacked[0][:2], stacked[1][:2]))


def test_dropout_result_depends_on_the_key(dropout_step):
    # Guards the test above: with dropout the params depend on the key, so matching keys matter.
    train_state = create_train_state(DROPOUT_MODEL, ADAM, jax.random.key(7), (4,))
    x, y = batch(20)
    with_own_key, _ = dropout_step(train_state, (x, y))
    with_other_key, _ = dropout_step(train_state._replace(key=jax.random.key(99)), (x, y))
    own, other = with_own_key.params["dense_0"]["w"], with_other_key.params["dense_0"]["w"]
    assert np.abs(np.asarray(own) - np.asarray(other)).max() > 1e-4


def test_dropout_keys_are_apart_from_the_keys_fit_splits_for_each_epoch():
    # fit splits the train state's key for each epoch (shuffle key, next key). No step may draw
    # its masks from either: jax.random.split hashes the counters 0 and 1, as fold_in(key, 0) and
    # fold_in(key, 1) do, so a plain fold_in(key, step) would.
    key = jax.random.key(11)
    split = {tuple(np.asarray(bits)) for bits in key_bits(jax.random.split(key))}
    steps = {tuple(np.asarray(jax.random.key_data(step_key(key, t)))) for t in range(64)}
    assert len(steps) == 64 and not steps & split
    assert {tuple(np.asarray(jax.random.key_data(jax.random.fold_in(key, t)))) for t in (0, 1)} == split


@pytest.mark.parametrize("steps_per_call", [0, -1])
def test_steps_per_call_below_one_is_a_value_error(steps_per_call):
    with pytest.raises(ValueError, match=re.escape(f"make_train_step: `steps_per_call` (={steps_per_call}) "
                                                   "must be a positive int")):
        make_train_step(MODEL, "cross_entropy", ADAM, steps_per_call=steps_per_call)


@pytest.mark.parametrize("argument, value", [
    ("steps_per_call", 1.0), ("steps_per_call", True), ("steps_per_call", None), ("donate", 1),
    ("loss_fn", 3), ("metrics", ("accuracy",)), ("metrics", {"accuracy": None}), ("metrics", {1: jnp.max}),
])
def test_make_train_step_arguments_of_the_wrong_type_are_type_errors(argument, value):
    options = {"loss_fn": "cross_entropy", argument: value}
    with pytest.raises(TypeError, match=re.escape(f"make_train_step: `{argument}")):
        make_train_step(MODEL, optimizer=ADAM, **options)


def test_make_eval_step_and_create_train_state_arguments_of_the_wrong_type_are_type_errors():
    with pytest.raises(TypeError, match=re.escape("make_eval_step: `loss_fn` must be a name in")):
        make_eval_step(MODEL, None)
    with pytest.raises(TypeError, match=re.escape("make_eval_step: `metrics` must be a dict")):
        make_eval_step(MODEL, "cross_entropy", metrics=[jnp.max])
    with pytest.raises(TypeError, match=re.escape("make_eval_step: `model` must be a jaxnn.Layer")):
        make_eval_step(MODEL.apply, "cross_entropy")
    with pytest.raises(TypeError, match=re.escape("make_train_step: `optimizer` must be a gradient")):
        make_train_step(MODEL, "cross_entropy", "adam")
    with pytest.raises(TypeError, match=re.escape("create_train_state: `model` must be a jaxnn.Layer")):
        create_train_state([jaxnn.Dense(3)], ADAM, jax.random.key(0), (4,))
    with pytest.raises(TypeError, match=re.escape("create_train_state: `optimizer` must be a gradient")):
        create_train_state(MODEL, jaxnn.optim.adam, jax.random.key(0), (4,))
    with pytest.raises(TypeError, match=re.escape("create_train_state: `key` must be a PRNG key")):
        create_train_state(MODEL, ADAM, 0, (4,))
    with pytest.raises(TypeError):  # checked by the model's init
        create_train_state(MODEL, ADAM, jax.random.key(0), (4.0,))


@pytest.mark.parametrize("steps_per_call", [1, 2])
def test_repeated_calls_do_not_retrace_and_donate_the_state(steps_per_call):
    traces = []

    def counting_loss(outputs, labels):
        traces.append(None)  # runs once per trace, never when the compiled step runs
        return jaxnn.losses.cross_entropy(outputs, labels, reduction="none")

    train_state = create_train_state(MODEL, ADAM, jax.random.key(0), (4,))
    step = make_train_step(MODEL, counting_loss, ADAM, steps_per_call=steps_per_call)
    x, y = batch(1)
    if steps_per_call > 1:
        x, y = jnp.stack([x] * steps_per_call), jnp.stack([y] * steps_per_call)

    train_state, _ = step(train_state, (x, y))
    after_first = len(traces)
    for _ in range(3):
        previous = train_state
        train_state, _ = step(train_state, (x, y))
        # The old state's buffers were donated to the step: they are gone.
        assert all(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves(previous))
        assert not any(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves(train_state))

    assert after_first >= 1
    assert len(traces) == after_first
    assert int(train_state.step) == 4 * steps_per_call


def test_eval_step_has_no_dropout_and_uses_running_batchnorm_statistics():
    model = jaxnn.Sequential({"hidden": jaxnn.Dense(4), "norm": jaxnn.BatchNorm(),
                              "dropout": jaxnn.Dropout(0.5), "head": jaxnn.Dense(3)})
    train_state = create_train_state(model, ADAM, jax.random.key(3), (4,))
    # Running statistics far from the batch's, so that batch statistics would change the answer.
    state = {**train_state.state, "norm": {"mean": jnp.full((4,), 0.3, jnp.float32),
                                           "var": jnp.full((4,), 2.5, jnp.float32)}}
    train_state = train_state._replace(state=state)
    before = host_copy(train_state)
    eval_step = make_eval_step(model, "cross_entropy")
    x, y = batch(8)

    sums = eval_step(train_state, (x, y))

    p = before.params
    hidden = np.asarray(x) @ p["hidden"]["w"] + p["hidden"]["b"]
    normalized = (hidden - 0.3) / np.sqrt(2.5 + 1e-5) * p["norm"]["scale"] + p["norm"]["bias"]
    logits = normalized @ p["head"]["w"] + p["head"]["b"]
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    losses = -log_probs[np.arange(BATCH), np.asarray(y)]
    np.testing.assert_allclose(float(sums["loss"]), losses.sum(), rtol=1e-5)
    assert float(sums["accuracy"]) == np.sum(np.argmax(logits, axis=1) == np.asarray(y))
    assert int(sums["count"]) == BATCH
    # Evaluation neither donates nor changes the train state.
    assert not any(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves(train_state))
    after = host_copy(train_state)
    for want, have in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(after)):
        np.testing.assert_array_equal(have, want)

    # Sums add across batches of any size: two halves give the sums of the whole.
    halves = [eval_step(train_state, (x[:4], y[:4])), eval_step(train_state, (x[4:], y[4:]))]
    assert sum(int(half["count"]) for half in halves) == BATCH
    np.testing.assert_allclose(sum(float(half["loss"]) for half in halves), losses.sum(), rtol=1e-5)
    assert sum(float(half["accuracy"]) for half in halves) == float(sums["accuracy"])


def test_scalar_loss_is_a_clear_error():
    def mean_loss(outputs, labels):
        return jaxnn.losses.cross_entropy(outputs, labels)  # reduction="mean": a scalar

    train_state = create_train_state(MODEL, ADAM, jax.random.key(0), (4,))
    with pytest.raises(ValueError, match=r"loss_fn returned a scalar.*reduction='none'"):
        make_train_step(MODEL, mean_loss, ADAM, donate=False)(train_state, batch(1))
    with pytest.raises(ValueError, match="loss_fn returned a scalar"):
        make_eval_step(MODEL, mean_loss)(train_state, batch(1))


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="make_train_step: unknown loss 'hinge' for `loss_fn`"):
        make_train_step(MODEL, "hinge", ADAM)
    with pytest.raises(ValueError, match="make_eval_step: unknown loss 'hinge' for `loss_fn`"):
        make_eval_step(MODEL, "hinge")


def test_first_bad_step_names_the_step_of_the_first_non_finite_loss():
    def infinite_for_label_two(outputs, labels):
        losses = jaxnn.losses.cross_entropy(outputs, labels, reduction="none")
        return jnp.where(labels == 2, jnp.inf, losses)

    optimizer = optax.sgd(0.1)
    train_state = create_train_state(MODEL, optimizer, jax.random.key(0), (4,))
    train_state = train_state._replace(step=jnp.asarray(5, jnp.int32))
    x, _ = batch(1)
    clean = jnp.zeros((BATCH,), jnp.int32)
    poisoned = clean.at[3].set(2)
    scanned = make_train_step(MODEL, infinite_for_label_two, optimizer, steps_per_call=3, donate=False)

    # Steps 5, 6, 7; the loss first goes infinite in the second batch, at step 6.
    _, sums = scanned(train_state, (jnp.stack([x, x, x]), jnp.stack([clean, poisoned, poisoned])))
    assert int(sums["first_bad_step"]) == 6
    _, sums = scanned(train_state, (jnp.stack([x, x, x]), jnp.stack([clean, clean, clean])))
    assert int(sums["first_bad_step"]) == INT32_MAX


def test_a_nan_loss_or_an_overflowing_loss_sum_makes_the_step_bad():
    # One NaN among finite losses, and finite losses whose float32 sum (and so their mean, the
    # loss minimized) overflows: both steps are bad; finite losses of an ordinary size are not.
    def loss_from_labels(outputs, labels):
        losses = jaxnn.losses.cross_entropy(outputs, labels, reduction="none")
        return jnp.select([labels == 1, labels == 2], [jnp.nan, 3e38], losses)

    optimizer = optax.sgd(0.0)
    train_state = create_train_state(MODEL, optimizer, jax.random.key(0), (4,))
    step = make_train_step(MODEL, loss_from_labels, optimizer, donate=False)
    x, _ = batch(1)
    clean = jnp.zeros((BATCH,), jnp.int32)
    for labels, bad in ((clean, False), (clean.at[4].set(1), True), (clean.at[:2].set(2), True),
                        (clean.at[0].set(2), False)):
        _, sums = step(train_state, (x, labels))
        assert int(sums["first_bad_step"]) == (0 if bad else INT32_MAX), labels
        assert int(sums["count"]) == BATCH


def test_float64_losses_past_the_float32_range_are_finite_and_a_nan_among_them_is_not():
    # With x64 on, float64 losses of 1e39 are finite, though float32 cannot hold them.
    def float64_losses(outputs, labels):
        losses = jaxnn.losses.cross_entropy(outputs, labels, reduction="none").astype(jnp.float64)
        return jnp.where(labels == 1, jnp.nan, losses + 1e39)

    with jax.enable_x64(True):
        optimizer = optax.sgd(0.0)
        train_state = create_train_state(MODEL, optimizer, jax.random.key(0), (4,))
        step = make_train_step(MODEL, float64_losses, optimizer, donate=False)
        x, _ = batch(1)
        clean = jnp.zeros((BATCH,), jnp.int32)
        _, sums = step(train_state, (x, clean))
        assert int(sums["first_bad_step"]) == INT32_MAX and sums["loss"].dtype == jnp.float32
        _, sums = step(train_state, (x, clean.at[3].set(1)))
        assert int(sums["first_bad_step"]) == 0


@pytest.mark.parametrize("step", [0, 7, -3, INT32_MAX, -INT32_MAX - 1])
def test_batch_size_on_device_is_the_batch_size_at_any_step(step):
    count = jax.jit(batch_size_on_device, static_argnums=0)(BATCH, jnp.asarray(step, jnp.int32))
    assert count.dtype == jnp.int32 and int(count) == BATCH


def test_averages_divides_sums_by_count():
    totals = {"loss": jnp.asarray(3.0), "accuracy": jnp.asarray(6.0), "count": jnp.asarray(8, jnp.int32),
              "first_bad_step": jnp.asarray(INT32_MAX, jnp.int32)}
    assert averages(totals) == {"loss": 0.375, "accuracy": 0.75}
    empty = {"loss": jnp.asarray(0.0), "count": jnp.asarray(0, jnp.int32),
             "first_bad_step": jnp.asarray(INT32_MAX, jnp.int32)}
    assert averages(empty) == {"loss": 0.0}


def test_train_state_is_one_pytree():
    # A TrainState flattens to its leaves, so jit, scan and checkpoints see every part of it.
    train_state = create_train_state(MODEL, ADAM, jax.random.key(0), (4,))
    leaves = jax.tree_util.tree_leaves(train_state)
    param_count = len(jax.tree_util.tree_leaves(train_state.params))
    opt_count = len(jax.tree_util.tree_leaves(train_state.opt_state))
    assert len(leaves) == param_count + opt_count + 2
    assert isinstance(train_state, TrainState)
    assert train_state.step.dtype == jnp.int32 and int(train_state.step) == 0
    assert jax.dtypes.issubdtype(train_state.key.dtype, jax.dtypes.prng_key)


def test_first_bad_step_names_the_step_whose_update_made_the_parameters_non_finite():
    # The second step's update is infinite while its loss, computed before the update, is finite:
    # that step is the first bad one.
    optimizer = optax.scale_by_schedule(lambda count: jnp.where(count == 1, jnp.inf, -0.1))
    train_state = create_train_state(MODEL, optimizer, jax.random.key(0), (4,))
    train_state = train_state._replace(step=jnp.asarray(5, jnp.int32))
    x, y = batch(2)
    scanned = make_train_step(MODEL, "cross_entropy", optimizer, steps_per_call=3, donate=False)
    _, sums = scanned(train_state, (jnp.stack([x, x, x]), jnp.stack([y, y, y])))
    # Step 6's loss came from step 5's finite parameters; a check of the losses alone would
    # have named step 7, the first whose loss the infinite parameters made NaN.
    assert int(sums["first_bad_step"]) == 6


def test_all_finite_over_leaves_of_several_dtypes_and_shapes():
    from jaxnn.train.step import all_finite

    tree = {"w": jnp.ones((3, 2), jnp.float32), "h": jnp.ones(4, jnp.bfloat16), "s": jnp.asarray(2.0),
            "n": jnp.arange(3)}
    assert bool(all_finite(tree))
    for name, bad in (("w", jnp.nan), ("h", jnp.inf), ("s", -jnp.inf)):
        poisoned = dict(tree, **{name: tree[name].at[...].set(bad) if tree[name].ndim == 0
                                 else tree[name].at[-1].set(bad)})
        assert not bool(jax.jit(all_finite)(poisoned)), name
    assert bool(all_finite({"n": jnp.arange(3)}))
    # Leaves past SMALL_LEAF are summed on their own; complex leaves are checked in both parts;
    # float16 and float64 as well.
    with jax.enable_x64(True):
        tree = {"big": jnp.ones(20000, jnp.float32), "c": jnp.ones(3, jnp.complex64),
                "f16": jnp.ones(5, jnp.float16), "f64": jnp.ones(2, jnp.float64), "empty": jnp.ones(0)}
        assert bool(jax.jit(all_finite)(tree))
        for name, index, bad in (("big", 12345, jnp.inf), ("c", 1, complex(1, jnp.nan)),
                                 ("c", 2, complex(jnp.inf, 0)), ("f16", 4, jnp.nan), ("f64", 0, -jnp.inf)):
            poisoned = dict(tree, **{name: tree[name].at[index].set(bad)})
            assert not bool(jax.jit(all_finite)(poisoned)), (name, bad)


def test_all_finite_still_sees_nan_and_infinity_with_xla_fast_math():
    # With fast math on, XLA folds value * 0 to 0; the check must not depend on that product.
    code = textwrap.dedent("""
        import jax, jax.numpy as jnp
        from jaxnn.train.step import all_finite
        tree = {"big": jnp.ones(20000).at[5].set(jnp.inf), "small": jnp.ones(10)}
        print(bool(jax.jit(all_finite)(tree)),
              bool(jax.jit(all_finite)({"big": jnp.ones(20000), "small": jnp.ones(10).at[2].set(jnp.nan)})),
              bool(jax.jit(all_finite)({"big": jnp.ones(20000), "small": jnp.ones(10)})))
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_cpu_enable_fast_math=true", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "True"]


def test_dropout_step_draws_from_its_step_key_like_a_hand_written_step(dropout_step):
    # Step t draws its dropout masks from fold_in(fold_in(key, DROPOUT_STREAM), t): a
    # hand-written Adam step (optax) that applies the model with that key gives the same
    # parameters, here at step 5 (a key from step 0, or from the key itself, would not).
    oracle = optax.adam(1e-2)
    train_state = create_train_state(DROPOUT_MODEL, ADAM, jax.random.key(3), (4,))
    train_state = train_state._replace(step=jnp.asarray(5, jnp.int32))
    params = host_copy(train_state.params)
    x, y = batch(35)
    key = jax.random.fold_in(jax.random.fold_in(train_state.key, DROPOUT_STREAM), 5)

    def loss(params):
        logits, _ = DROPOUT_MODEL.apply(params, train_state.state, x, key=key, train=True)
        return jnp.mean(jaxnn.losses.cross_entropy(logits, y, reduction="none"))

    with jax.numpy_dtype_promotion("standard"):
        updates, _ = oracle.update(jax.grad(loss)(params), oracle.init(params), params)
    new_state, _ = dropout_step(train_state, (x, y))
    assert_trees_close(optax.apply_updates(params, updates), new_state.params)
    np.testing.assert_array_equal(key_bits(new_state.key), key_bits(train_state.key))
