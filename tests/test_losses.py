"""Tests for jaxnn.losses against optax, NumPy float64 closed forms, hand-worked values and finite differences."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from jaxnn.losses import binary_cross_entropy, cross_entropy, l1_penalty, l2_penalty, mae, mse

REDUCTIONS = ["mean", "sum", "none"]


def rng(seed=0):
    return np.random.default_rng(seed)


def reduce_np(loss, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": np.asarray}[reduction](loss)


def log_softmax_np(x):
    x = np.asarray(x, np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def one_hot_np(labels, classes):
    return np.eye(classes)[labels]


# --------------------------------------------------------------------------------------------
# Values worked out by hand.


def test_hand_values():
    log2 = math.log(2.0)
    assert float(cross_entropy(jnp.array([0.0, 0.0]), jnp.array(0))) == pytest.approx(log2, rel=1e-6)
    assert float(cross_entropy([[0.0, 0.0, 0.0, 0.0]], [3])) == pytest.approx(math.log(4.0), rel=1e-6)
    assert float(cross_entropy(jnp.array([[0.0, 0.0]]), jnp.array([[0.0, 1.0]]))) == pytest.approx(log2, rel=1e-6)
    for target in (0.0, 0.5, 1.0):
        assert float(binary_cross_entropy(jnp.array([0.0]), jnp.array([target]))) == pytest.approx(log2, rel=1e-6)
    assert float(mse(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0]))) == pytest.approx(2.0)
    assert float(mae(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0]))) == pytest.approx(1.0)
    assert float(mse(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0]), reduction="sum")) == pytest.approx(4.0)
    np.testing.assert_allclose(mae(jnp.array([1.0, 2.0]), jnp.array([4.0, 1.0]), reduction="none"), [3.0, 1.0])


def test_bce_gradient_at_zero_logit_is_sigmoid_minus_target():
    # d/dx at x = 0 is sigmoid(0) - t = 0.5 - t; a naive max(x,0) + log1p(exp(-|x|)) gets this wrong.
    targets = jnp.array([0.0, 0.25, 1.0])
    grad = jax.grad(lambda x: binary_cross_entropy(x, targets, reduction="sum"))(jnp.zeros(3))
    np.testing.assert_allclose(grad, [0.5, 0.25, -0.5], atol=1e-7)


# --------------------------------------------------------------------------------------------
# Regression losses against NumPy float64.


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(), (7,), (3, 4, 5)])
@pytest.mark.parametrize("loss, closed_form", [(mse, lambda d: d**2), (mae, np.abs)])
def test_regression_against_numpy(loss, closed_form, shape, reduction):
    r = rng(1)
    p = r.normal(size=shape).astype(np.float32)
    t = r.normal(size=shape).astype(np.float32)
    expected = reduce_np(closed_form(p.astype(np.float64) - t.astype(np.float64)), reduction)
    result = loss(jnp.asarray(p), jnp.asarray(t), reduction=reduction)
    assert result.shape == np.shape(expected)
    assert result.dtype == jnp.float32
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


def test_regression_integer_targets_cast_to_float():
    result = mse(jnp.array([0.5, 1.5]), jnp.array([1, 2], jnp.int32))
    assert result.dtype == jnp.float32
    assert float(result) == pytest.approx(0.25)


# --------------------------------------------------------------------------------------------
# Binary cross-entropy.


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_against_optax_and_numpy(reduction):
    r = rng(2)
    logits = r.normal(scale=3.0, size=(6, 5)).astype(np.float32)
    targets = r.uniform(size=(6, 5)).astype(np.float32)
    x, t = logits.astype(np.float64), targets.astype(np.float64)
    sigmoid = 1.0 / (1.0 + np.exp(-x))
    closed_form = -(t * np.log(sigmoid) + (1.0 - t) * np.log(1.0 - sigmoid))
    result = binary_cross_entropy(jnp.asarray(logits), jnp.asarray(targets), reduction=reduction)
    np.testing.assert_allclose(result, reduce_np(closed_form, reduction), rtol=1e-5, atol=1e-6)
    oracle = optax.sigmoid_binary_cross_entropy(jnp.asarray(logits), jnp.asarray(targets))
    np.testing.assert_allclose(result, reduce_np(np.asarray(oracle), reduction), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("magnitude", [1000.0, 1e4])
def test_bce_extreme_logits(magnitude):
    logits = jnp.array([magnitude, -magnitude, magnitude, -magnitude, magnitude], jnp.float32)
    targets = jnp.array([1.0, 0.0, 0.0, 1.0, 0.25], jnp.float32)
    loss = binary_cross_entropy(logits, targets, reduction="none")
    # max(x,0) - x t: exact for |x| this large, where log1p(exp(-|x|)) underflows to 0.
    np.testing.assert_allclose(loss, [0.0, 0.0, magnitude, magnitude, 0.75 * magnitude], rtol=1e-6)
    grad = jax.grad(lambda x: binary_cross_entropy(x, targets, reduction="sum"))(logits)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, [0.0, 0.0, 1.0, -1.0, 0.75], atol=1e-7)


def test_bce_integer_and_bool_targets():
    logits = jnp.array([2.0, -1.0])
    expected = np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))
    assert float(binary_cross_entropy(logits, jnp.array([1, 0]), reduction="sum")) == pytest.approx(expected, rel=1e-6)
    assert float(binary_cross_entropy(logits, jnp.array([True, False]), reduction="sum")) == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------------------------
# Cross-entropy.


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("batch_shape", [(), (8,), (2, 3)])
def test_cross_entropy_integer_labels_against_optax(batch_shape, reduction):
    r = rng(3)
    classes = 5
    logits = r.normal(scale=2.0, size=batch_shape + (classes,)).astype(np.float32)
    labels = r.integers(0, classes, size=batch_shape).astype(np.int32)
    oracle = optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(logits), jnp.asarray(labels))
    closed_form = -np.take_along_axis(log_softmax_np(logits), labels[..., None], axis=-1)[..., 0]
    result = cross_entropy(jnp.asarray(logits), jnp.asarray(labels), reduction=reduction)
    assert result.shape == np.shape(reduce_np(closed_form, reduction))
    np.testing.assert_allclose(result, reduce_np(np.asarray(oracle), reduction), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result, reduce_np(closed_form, reduction), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probability_targets_against_optax(reduction):
    r = rng(4)
    logits = r.normal(scale=2.0, size=(4, 6)).astype(np.float32)
    targets = r.dirichlet(np.ones(6), size=4).astype(np.float32)
    oracle = optax.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(targets))
    result = cross_entropy(jnp.asarray(logits), jnp.asarray(targets), reduction=reduction)
    np.testing.assert_allclose(result, reduce_np(np.asarray(oracle), reduction), rtol=1e-5, atol=1e-6)
    closed_form = -(targets.astype(np.float64) * log_softmax_np(logits)).sum(-1)
    np.testing.assert_allclose(result, reduce_np(closed_form, reduction), rtol=1e-5, atol=1e-6)


def test_cross_entropy_one_hot_equals_integer_labels_value():
    r = rng(5)
    logits = r.normal(size=(10, 4)).astype(np.float32)
    labels = r.integers(0, 4, size=10)
    expected = np.mean(-np.take_along_axis(log_softmax_np(logits), labels[:, None], axis=-1))
    result = cross_entropy(jnp.asarray(logits), jnp.asarray(one_hot_np(labels, 4), jnp.float32))
    assert float(result) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("magnitude", [1000.0, 1e4])
def test_cross_entropy_extreme_logits(magnitude):
    logits = jnp.array([[magnitude, 0.0], [magnitude, 0.0], [-magnitude, magnitude]], jnp.float32)
    labels = jnp.array([0, 1, 0])
    loss = cross_entropy(logits, labels, reduction="none")
    np.testing.assert_allclose(loss, [0.0, magnitude, 2 * magnitude], rtol=1e-6, atol=0)
    grad = jax.grad(lambda x: cross_entropy(x, labels, reduction="sum"))(logits)
    # softmax(x) - onehot(y), with softmax saturated to one-hot.
    np.testing.assert_array_equal(np.asarray(grad), [[0.0, 0.0], [1.0, -1.0], [-1.0, 1.0]])
    soft_loss = cross_entropy(logits, jax.nn.one_hot(labels, 2), reduction="none")
    np.testing.assert_allclose(soft_loss, [0.0, magnitude, 2 * magnitude], rtol=1e-6, atol=0)


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.4, 1.0])
def test_label_smoothing_against_pytorch_formula(epsilon):
    r = rng(6)
    classes = 7
    logits = r.normal(scale=2.0, size=(5, classes)).astype(np.float32)
    labels = r.integers(0, classes, size=5)
    # PyTorch: targets (1 - eps) * t + eps / C, then the usual cross-entropy.
    smoothed = (1.0 - epsilon) * one_hot_np(labels, classes) + epsilon / classes
    expected = -(smoothed * log_softmax_np(logits)).sum(-1)
    from_ids = cross_entropy(jnp.asarray(logits), jnp.asarray(labels), reduction="none", label_smoothing=epsilon)
    np.testing.assert_allclose(from_ids, expected, rtol=1e-5)
    probabilities = r.dirichlet(np.ones(classes), size=5)
    expected_soft = -(((1.0 - epsilon) * probabilities + epsilon / classes) * log_softmax_np(logits)).sum(-1)
    from_probabilities = cross_entropy(
        jnp.asarray(logits), jnp.asarray(probabilities, jnp.float32), reduction="none", label_smoothing=epsilon
    )
    np.testing.assert_allclose(from_probabilities, expected_soft, rtol=1e-5)


def test_label_smoothing_hand_value():
    # log_softmax([0, 0]) = [-log 2, -log 2], so any smoothing of any target gives log 2;
    # with logits [0, log 3], softmax = [1/4, 3/4]: eps=0.5, label 0 -> t = [0.75, 0.25].
    assert float(cross_entropy(jnp.zeros((1, 2)), jnp.array([1]), label_smoothing=0.3)) == pytest.approx(math.log(2.0), rel=1e-6)
    expected = 0.75 * math.log(4.0) + 0.25 * math.log(4.0 / 3.0)
    result = cross_entropy(jnp.array([[0.0, math.log(3.0)]]), jnp.array([0]), label_smoothing=0.5)
    assert float(result) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_computes_in_float32(dtype):
    logits = jnp.array([[30.0, -30.0, 10.0], [0.5, 0.25, -2.0]], dtype)
    labels = jnp.array([1, 2])
    result = cross_entropy(logits, labels, reduction="none")
    assert result.dtype == jnp.float32
    expected = -np.take_along_axis(log_softmax_np(np.asarray(logits, np.float64)), labels[:, None], axis=-1)[:, 0]
    np.testing.assert_allclose(result, expected, rtol=1e-6)
    bce = binary_cross_entropy(jnp.array([20.0], dtype), jnp.array([0.0], dtype))
    assert bce.dtype == jnp.float32 and float(bce) == pytest.approx(20.0, rel=1e-6)
    assert mse(jnp.array([300.0], dtype), jnp.array([0.0], dtype)).dtype == jnp.float32
    # 300^2 = 90000 overflows float16 (max 65504); float32 computation does not.
    assert float(mse(jnp.array([300.0], dtype), jnp.array([0.0], dtype))) == pytest.approx(90000.0)


# --------------------------------------------------------------------------------------------
# Gradients against finite differences, in float64.


GRAD_CASES = {
    "mse": lambda p, t, ids: mse(p, t),
    "mae": lambda p, t, ids: mae(p, t, reduction="sum"),
    "bce": lambda p, t, ids: binary_cross_entropy(p, jax.nn.sigmoid(t)),
    "ce_ids": lambda p, t, ids: cross_entropy(p, ids, reduction="sum"),
    "ce_probabilities": lambda p, t, ids: cross_entropy(p, jax.nn.softmax(t, axis=-1)),
    "ce_smoothed": lambda p, t, ids: cross_entropy(p, ids, label_smoothing=0.2),
}


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_gradients_against_finite_differences(name):
    loss = GRAD_CASES[name]
    r = rng(7)
    with jax.enable_x64(True):
        p = jnp.asarray(r.normal(size=(4, 3)), jnp.float64)
        t = jnp.asarray(r.normal(size=(4, 3)), jnp.float64)
        ids = jnp.asarray(r.integers(0, 3, size=4), jnp.int32)
        order = 1 if name == "mae" else 2
        # Jitted, so that each derivative compiles once rather than running op by op.
        check_grads(jax.jit(lambda p: loss(p, t, ids)), (p,), order=order, modes=("fwd", "rev"), atol=1e-6,
                    rtol=1e-6)
        assert loss(p, t, ids).dtype == jnp.float64


def test_cross_entropy_gradient_is_softmax_minus_targets():
    r = rng(8)
    logits = r.normal(size=(3, 4)).astype(np.float32)
    labels = np.array([0, 3, 1])
    grad = jax.grad(lambda x: cross_entropy(x, jnp.asarray(labels), reduction="sum"))(jnp.asarray(logits))
    expected = np.exp(log_softmax_np(logits)) - one_hot_np(labels, 4)
    np.testing.assert_allclose(grad, expected, atol=1e-6)


# --------------------------------------------------------------------------------------------
# jit and vmap.


def test_jit_and_vmap_compose():
    r = rng(9)
    logits = jnp.asarray(r.normal(size=(6, 4)), jnp.float32)
    labels = jnp.asarray(r.integers(0, 4, size=6), jnp.int32)
    oracle = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    np.testing.assert_allclose(jax.jit(cross_entropy)(logits, labels), np.mean(oracle), rtol=1e-6)
    per_example = jax.vmap(cross_entropy)(logits, labels)
    np.testing.assert_allclose(per_example, oracle, rtol=1e-6)
    per_example_grads = jax.jit(jax.vmap(jax.grad(cross_entropy)))(logits, labels)
    np.testing.assert_allclose(per_example_grads, jax.nn.softmax(logits) - jax.nn.one_hot(labels, 4), atol=1e-6)

    predictions = jnp.asarray(r.normal(size=(6, 2)), jnp.float32)
    targets = jnp.asarray(r.normal(size=(6, 2)), jnp.float32)
    per_row = jax.jit(jax.vmap(lambda p, t: mse(p, t, reduction="sum")))(predictions, targets)
    np.testing.assert_allclose(per_row, np.sum((np.asarray(predictions) - np.asarray(targets)) ** 2, axis=1), rtol=1e-6)

    probabilities = jax.nn.sigmoid(targets)
    bce = jax.jit(jax.vmap(binary_cross_entropy))(predictions, probabilities)
    oracle_bce = np.mean(optax.sigmoid_binary_cross_entropy(predictions, probabilities), axis=1)
    np.testing.assert_allclose(bce, oracle_bce, rtol=1e-6)


def test_bad_label_under_jit_is_not_checked_and_gives_nan():
    logits = jnp.zeros((3, 4))
    result = jax.jit(lambda x, y: cross_entropy(x, y, reduction="none"))(logits, jnp.array([0, -1, 4]))
    assert float(result[0]) == pytest.approx(math.log(4.0), rel=1e-6)
    assert np.isnan(result[1]) and np.isnan(result[2])


# --------------------------------------------------------------------------------------------
# Probability targets: each example's targets must be a distribution over the classes.


@pytest.mark.parametrize("targets, message", [
    # Rows of a (3, 2) batch; the first bad row is named with what is wrong in it.
    ([[0.5, 0.5], [0.2, 0.7], [1.0, 0.0]], r"the targets of example \(1,\) sum to 0\.9, not 1"),
    ([[0.5, 0.5], [1.0, 1.0], [1.0, 0.0]], r"the targets of example \(1,\) sum to 2, not 1"),
    ([[0.5, 0.5], [1.2, -0.2], [-1.0, 2.0]], r"target -0\.2 at index \(1, 1\) \(example \(1,\)\) is negative"),
    ([[0.5, 0.5], [0.5, 0.5], [np.nan, 1.0]], r"target nan at index \(2, 0\) \(example \(2,\)\) is NaN"),
    ([[0.0, 0.0], [0.5, 0.5], [0.5, 0.5]], r"the targets of example \(0,\) sum to 0, not 1"),
])
def test_cross_entropy_rejects_probability_targets_that_are_not_distributions(targets, message):
    with pytest.raises(ValueError, match=r"^cross_entropy: " + message):
        cross_entropy(jnp.zeros((3, 2)), jnp.asarray(targets, jnp.float32))
    for reduction in ("sum", "none"):
        with pytest.raises(ValueError, match=message):
            cross_entropy(jnp.zeros((3, 2)), np.asarray(targets, np.float32), reduction=reduction)


def test_cross_entropy_names_the_example_index_over_several_batch_axes():
    targets = np.full((2, 3, 4), 0.25, np.float32)
    targets[1, 2] = [0.25, 0.25, 0.25, 0.5]
    # NumPy's sum of the bad example, the oracle for the number in the message.
    assert targets[1, 2].astype(np.float64).sum() == 1.25
    with pytest.raises(ValueError, match=r"example \(1, 2\) sum to 1\.25, not 1"):
        cross_entropy(jnp.zeros((2, 3, 4)), targets)
    with pytest.raises(ValueError, match=r"example \(\) sum to 0\.5"):
        cross_entropy(jnp.zeros(2), jnp.array([0.25, 0.25]))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
def test_cross_entropy_accepts_distributions_rounded_in_their_dtype(dtype):
    r = rng(11)
    for classes in (2, 10, 1000):
        logits = jnp.asarray(r.normal(scale=3.0, size=(8, classes)), dtype)
        # A softmax and normalized counts, each rounded to dtype: sums differ from 1 by rounding only.
        for targets in (jax.nn.softmax(logits, axis=-1),
                        (lambda counts: counts / counts.sum(-1, keepdims=True))(
                            jnp.asarray(r.integers(1, 50, size=(8, classes)), dtype))):
            loss = cross_entropy(logits, targets.astype(dtype))
            assert np.isfinite(float(loss))


def test_cross_entropy_under_jit_does_not_check_probability_targets():
    logits = rng(12).normal(size=(2, 3)).astype(np.float32)
    targets = np.array([[0.5, 0.5, 0.5], [1.0, 0.0, 0.0]], np.float32)  # example 0 sums to 1.5
    result = jax.jit(lambda x, t: cross_entropy(x, t, reduction="none"))(logits, targets)
    np.testing.assert_allclose(result, -(targets * log_softmax_np(logits)).sum(-1), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# No examples: the mean of nothing is 0 / 0, the sum of nothing is 0.


EMPTY_CASES = {
    "mse": lambda reduction: mse(jnp.zeros((0, 3)), jnp.zeros((0, 3)), reduction=reduction),
    "mae": lambda reduction: mae(jnp.zeros((0,)), jnp.zeros((0,)), reduction=reduction),
    "binary_cross_entropy": lambda reduction: binary_cross_entropy(jnp.zeros((2, 0)), jnp.zeros((2, 0)),
                                                                   reduction=reduction),
    "cross_entropy": lambda reduction: cross_entropy(jnp.zeros((0, 4)), jnp.zeros((0,), jnp.int32),
                                                     reduction=reduction),
    "cross_entropy probabilities": lambda reduction: cross_entropy(jnp.zeros((3, 0, 4)), jnp.zeros((3, 0, 4)),
                                                                   reduction=reduction),
}
EMPTY_SHAPES = {"mse": (0, 3), "mae": (0,), "binary_cross_entropy": (2, 0), "cross_entropy": (0,),
                "cross_entropy probabilities": (3, 0)}


@pytest.mark.parametrize("case", sorted(EMPTY_CASES))
def test_mean_over_no_examples_is_an_error(case):
    call = EMPTY_CASES[case]
    name = case.split()[0]
    with pytest.raises(ValueError, match=rf"^{name}: the mean over zero examples \(.*shape .*\) is undefined"):
        call("mean")
    # Shapes are static, so jit raises the same error instead of returning NaN.
    with pytest.raises(ValueError, match=rf"^{name}: the mean over zero examples"):
        jax.jit(lambda: call("mean"))()
    # The sum of nothing is 0 and "none" is empty, as NumPy's sum and PyTorch's reduction="none" give.
    assert float(call("sum")) == np.sum(np.zeros((0,))) == 0.0
    assert call("none").shape == EMPTY_SHAPES[case]


def test_an_empty_batch_under_vmap_is_not_an_empty_mean():
    # vmap over zero examples: each mapped call sees one example, so nothing is undefined.
    result = jax.vmap(cross_entropy)(jnp.zeros((0, 3)), jnp.zeros((0,), jnp.int32))
    assert result.shape == (0,)


# --------------------------------------------------------------------------------------------
# Penalties.


def params_tree():
    return {
        "dense_0": {"w": jnp.array([[1.0, -2.0], [3.0, -4.0]]), "b": jnp.array([0.5, -0.5])},
        "dense_1": {"w": jnp.array([[-1.0], [2.0]]), "b": jnp.array([3.0])},
    }


def test_penalties_without_mask():
    params = params_tree()
    # |w|: 1+2+3+4 + 0.5+0.5 + 1+2 + 3 = 17; w^2: 1+4+9+16 + 0.25+0.25 + 1+4 + 9 = 44.5
    assert float(l1_penalty(params)) == pytest.approx(17.0)
    assert float(l2_penalty(params)) == pytest.approx(22.25)
    optax_sum = sum(float(jnp.sum(optax.l2_loss(leaf))) for leaf in jax.tree_util.tree_leaves(params))
    assert float(l2_penalty(params)) == pytest.approx(optax_sum)


def test_penalties_with_tree_and_callable_mask():
    params = params_tree()
    tree_mask = {"dense_0": {"w": True, "b": False}, "dense_1": {"w": True, "b": False}}
    weights_only = lambda p: jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "w", p)
    for mask in (tree_mask, weights_only):
        # weights only: |w| = 1+2+3+4+1+2 = 13, w^2 = 1+4+9+16+1+4 = 35
        assert float(l1_penalty(params, mask=mask)) == pytest.approx(13.0)
        assert float(l2_penalty(params, mask=mask)) == pytest.approx(17.5)
    nothing = jax.tree_util.tree_map(lambda _: False, params)
    assert float(l1_penalty(params, mask=nothing)) == 0.0
    assert float(l2_penalty({})) == 0.0


def test_l2_penalty_gradient_is_weight_decay():
    params = params_tree()
    mask = {"dense_0": {"w": True, "b": False}, "dense_1": {"w": True, "b": False}}
    grads = jax.grad(lambda p: 0.1 * l2_penalty(p, mask=mask))(params)
    np.testing.assert_allclose(grads["dense_0"]["w"], 0.1 * params["dense_0"]["w"], rtol=1e-6)
    np.testing.assert_array_equal(grads["dense_0"]["b"], [0.0, 0.0])
    l1_grads = jax.grad(l1_penalty)(params)
    np.testing.assert_array_equal(l1_grads["dense_1"]["w"], [[-1.0], [1.0]])


def test_penalties_under_jit():
    params = params_tree()
    assert float(jax.jit(l2_penalty)(params)) == pytest.approx(22.25)
    mean = jax.jit(lambda p: l1_penalty(p, reduction="mean"))(params)
    assert float(mean) == pytest.approx(17.0 / 9)


def test_penalty_mean_divides_by_the_number_of_counted_scalars():
    params = params_tree()
    # 9 scalars in all; the weights alone are 4 + 2 = 6 (sums as in the tests above).
    assert float(l1_penalty(params, reduction="mean")) == pytest.approx(17.0 / 9)
    assert float(l2_penalty(params, reduction="mean")) == pytest.approx(22.25 / 9)
    weights = {"dense_0": {"w": True, "b": False}, "dense_1": {"w": True, "b": False}}
    assert float(l1_penalty(params, weights, reduction="mean")) == pytest.approx(13.0 / 6)
    assert float(l2_penalty(params, weights, reduction="mean")) == pytest.approx(17.5 / 6)
    assert float(l2_penalty(params, reduction="sum")) == pytest.approx(22.25)
    nothing = jax.tree_util.tree_map(lambda _: False, params)
    assert float(l1_penalty(params, nothing, reduction="mean")) == 0.0
    assert float(l2_penalty({}, reduction="mean")) == 0.0
    # The gradient of the mean of w^2 / 2 is w / N.
    grads = jax.grad(lambda p: l2_penalty(p, reduction="mean"))(params)
    np.testing.assert_allclose(grads["dense_1"]["w"], np.array([[-1.0], [2.0]]) / 9, rtol=1e-6)


def test_penalty_none_gives_the_terms_in_the_params_structure():
    params = {
        "w": jnp.array([[1.0, -2.0], [0.0, 3.0]]),
        "step": jnp.array(7, jnp.int32),  # not a parameter to penalize, and not floating-point
        "b": jnp.array([-0.5]),
    }
    mask = {"w": True, "step": False, "b": True}
    l1_terms = l1_penalty(params, mask, reduction="none")
    l2_terms = l2_penalty(params, mask, reduction="none")
    for terms in (l1_terms, l2_terms):
        assert jax.tree_util.tree_structure(terms) == jax.tree_util.tree_structure(params)
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(terms))
        np.testing.assert_array_equal(terms["step"], np.zeros((), np.float32))
    np.testing.assert_array_equal(l1_terms["w"], [[1.0, 2.0], [0.0, 3.0]])
    np.testing.assert_array_equal(l1_terms["b"], [0.5])
    np.testing.assert_array_equal(l2_terms["w"], [[0.5, 2.0], [0.0, 4.5]])
    np.testing.assert_array_equal(l2_terms["b"], [0.125])
    unmasked = l2_penalty(params_tree(), reduction="none")
    np.testing.assert_array_equal(unmasked["dense_1"]["b"], [4.5])
    np.testing.assert_array_equal(unmasked["dense_0"]["w"], [[0.5, 2.0], [4.5, 8.0]])


# --------------------------------------------------------------------------------------------
# Bad input: exception type and the words its message must carry.


def _ce(logits_shape, labels):
    return lambda: cross_entropy(jnp.zeros(logits_shape), labels)


BAD_INPUTS = {
    "mse shapes": (lambda: mse(jnp.zeros((32, 1)), jnp.zeros(32)), ValueError, ["mse", "(32, 1)", "(32,)", "differ"]),
    "mae shapes": (lambda: mae(jnp.zeros((2, 3)), jnp.zeros((3, 2))), ValueError, ["mae", "(2, 3)", "(3, 2)"]),
    "mse bool": (lambda: mse(jnp.zeros(2, bool), jnp.zeros(2)), TypeError, ["mse", "predictions", "bool"]),
    "mse reduction": (lambda: mse(jnp.zeros(2), jnp.zeros(2), reduction="avg"), ValueError,
                      ["mse", "'mean'", "'sum'", "'none'", "'avg'"]),
    "bce shapes": (lambda: binary_cross_entropy(jnp.zeros((4, 1)), jnp.zeros(4)), ValueError,
                   ["binary_cross_entropy", "logits", "(4, 1)", "(4,)"]),
    "bce target range": (lambda: binary_cross_entropy(jnp.zeros(3), jnp.array([0.0, 1.5, 0.5])), ValueError,
                         ["binary_cross_entropy", "1.5", "(1,)", "[0, 1]"]),
    "bce negative target": (lambda: binary_cross_entropy(jnp.zeros((2, 2)), np.array([[0.0, 0.0], [-0.25, 1.0]])),
                            ValueError, ["binary_cross_entropy", "-0.25", "(1, 0)"]),
    "bce integer logits": (lambda: binary_cross_entropy(jnp.zeros(2, jnp.int32), jnp.zeros(2)), TypeError,
                           ["binary_cross_entropy", "logits", "int32"]),
    "bce reduction": (lambda: binary_cross_entropy(jnp.zeros(2), jnp.zeros(2), reduction=None), ValueError,
                      ["binary_cross_entropy", "reduction", "None"]),
    "ce integer logits": (lambda: cross_entropy(jnp.zeros((2, 3), jnp.int32), jnp.array([0, 1])), TypeError,
                          ["cross_entropy", "logits", "int32"]),
    "ce scalar logits": (lambda: cross_entropy(jnp.zeros(()), jnp.array(0)), ValueError, ["cross_entropy", "logits"]),
    "ce no classes": (lambda: cross_entropy(jnp.zeros((3, 0)), jnp.zeros((3, 0))), ValueError,
                      ["cross_entropy: logits must have at least one class (the last axis), got shape (3, 0)"]),
    "ce label shape": (_ce((4, 3), jnp.zeros((4, 1), jnp.int32)), ValueError, ["cross_entropy", "labels", "(4, 1)", "(4,)"]),
    "ce integer one-hot": (_ce((4, 3), jnp.zeros((4, 3), jnp.int32)), ValueError, ["cross_entropy", "(4, 3)", "floating"]),
    "ce target shape": (_ce((4, 3), jnp.zeros((4, 2))), ValueError, ["cross_entropy", "labels", "(4, 2)", "(4, 3)"]),
    "ce bool labels": (_ce((4, 3), jnp.zeros(4, bool)), TypeError, ["cross_entropy", "labels", "bool"]),
    "ce complex labels": (_ce((4, 3), jnp.zeros((4, 3), jnp.complex64)), TypeError, ["cross_entropy", "labels", "complex64"]),
    "ce label range": (_ce((5, 10), jnp.array([0, 1, 2, 12, 3])), ValueError,
                       ["cross_entropy: label 12 at index (3,) is outside [0, 10)"]),
    "ce negative label": (_ce((2, 3, 4), np.array([[0, 1, 2], [3, 0, -1]])), ValueError,
                          ["cross_entropy", "label -1", "(1, 2)", "[0, 4)"]),
    "ce reduction": (lambda: cross_entropy(jnp.zeros((1, 2)), jnp.array([0]), reduction="mean "), ValueError,
                     ["cross_entropy", "'mean'", "'none'"]),
    "ce smoothing range": (lambda: cross_entropy(jnp.zeros((1, 2)), jnp.array([0]), label_smoothing=1.5), ValueError,
                           ["cross_entropy", "label_smoothing", "1.5"]),
    "l2 mask structure": (lambda: l2_penalty(params_tree(), mask={"dense_0": True, "dense_1": True}), ValueError,
                          ["l2_penalty", "mask", "structure"]),
    "l1 mask callable structure": (lambda: l1_penalty(params_tree(), mask=lambda p: [True, False]), ValueError,
                                   ["l1_penalty", "mask", "structure"]),
    "l1 mask not bool": (lambda: l1_penalty({"w": jnp.ones(2)}, mask={"w": jnp.ones(2)}), TypeError,
                         ["l1_penalty", "mask", "bool"]),
    "l1 reduction": (lambda: l1_penalty(params_tree(), reduction="avg"), ValueError,
                     ["l1_penalty", "'mean'", "'sum'", "'none'", "'avg'"]),
    "l2 reduction": (lambda: l2_penalty(params_tree(), reduction=None), ValueError, ["l2_penalty", "reduction", "None"]),
    "mse None": (lambda: mse(None, jnp.zeros(2)), TypeError, ["mse: predictions must be an array, got NoneType"]),
    "mae ragged targets": (lambda: mae(jnp.zeros(2), [[1.0], [1.0, 2.0]]), TypeError,
                           ["mae: targets must be an array, got list"]),
    "ce None labels": (lambda: cross_entropy(jnp.zeros((2, 3)), None), TypeError,
                       ["cross_entropy: labels must be an array, got NoneType"]),
    "mse string array": (lambda: mse(np.array(["1.0", "2.0"]), jnp.zeros(2)), TypeError,
                         ["mse: predictions must be an array of numbers, got dtype <U3"]),
    "bce object targets": (lambda: binary_cross_entropy(jnp.zeros(2), np.array([0.5, None], dtype=object)), TypeError,
                           ["binary_cross_entropy: targets must be an array of numbers, got dtype object"]),
    "l2 string leaf": (lambda: l2_penalty({"w": np.array(["a"])}), TypeError,
                       ["l2_penalty: params leaf must be an array of numbers, got dtype <U1"]),
    "bce NaN target": (lambda: binary_cross_entropy(jnp.zeros(3), jnp.array([0.5, 1.0, np.nan])), ValueError,
                       ["binary_cross_entropy: target nan at index (2,) is outside [0, 1]; targets are probabilities"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_with_message(case):
    call, error, words = BAD_INPUTS[case]
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {str(info.value)!r}"


def test_absolute_value_terms_have_zero_subgradient_at_zero():
    # PyTorch's L1Loss and abs differentiate |d| as sign(d), which is 0 at d = 0; jnp.abs gives 1.
    predictions = jnp.array([1.0, 2.0, 3.0])
    targets = jnp.array([1.0, 0.0, 5.0])
    grad = jax.grad(lambda p: mae(p, targets, reduction="sum"))(predictions)
    np.testing.assert_array_equal(grad, [0.0, 1.0, -1.0])
    penalty_grad = jax.grad(l1_penalty)({"b": jnp.array([0.0, -2.0, 3.0])})
    np.testing.assert_array_equal(penalty_grad["b"], [0.0, -1.0, 1.0])
