"""Tests of BatchNorm and LayerNorm against hand-worked values, NumPy float64 references, closed
forms of the running statistics and finite differences."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxnn.core import LayerTypeError, LayerValueError
from jaxnn.layers.normalization import BatchNorm, LayerNorm

EPS = 1e-5
INPUT_SHAPES = [(4,), (5, 4), (3, 5, 4)]
BATCH_SHAPES = [(), (2,), (2, 3)]


def numpy_normalize(x, mean, variance, scale, bias, eps=EPS):
    """The documented formula in float64, on already-computed statistics."""
    x = np.asarray(x, np.float64)
    return (x - mean) / np.sqrt(variance + eps) * np.asarray(scale, np.float64) + np.asarray(bias, np.float64)


def numpy_batch_stats(x):
    """Per-feature mean, biased and unbiased variance over every axis but the last, in float64."""
    flat = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    return flat.mean(0), flat.var(0), flat.var(0, ddof=1)


def random_params(rng, features):
    return {
        "scale": jnp.asarray(rng.uniform(0.5, 2.0, features), jnp.float32),
        "bias": jnp.asarray(rng.normal(size=features), jnp.float32),
    }


# --------------------------------------------------------------------------------------------
# BatchNorm


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_batchnorm_init_names_shapes_and_dtypes(input_shape):
    output_shape, params, state = BatchNorm().init(jax.random.key(0), input_shape)
    assert output_shape == input_shape
    features = input_shape[-1]
    assert set(params) == {"scale", "bias"} and set(state) == {"mean", "var"}
    for leaf in (*params.values(), *state.values()):
        assert leaf.shape == (features,) and leaf.dtype == jnp.float32
    np.testing.assert_array_equal(params["scale"], np.ones(features))
    np.testing.assert_array_equal(params["bias"], np.zeros(features))
    np.testing.assert_array_equal(state["mean"], np.zeros(features))
    np.testing.assert_array_equal(state["var"], np.ones(features))


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
def test_batchnorm_predicted_shape_matches_apply(input_shape, batch_shape):
    layer = BatchNorm()
    output_shape, params, state = layer.init(jax.random.key(0), input_shape)
    x = jax.random.normal(jax.random.key(1), batch_shape + input_shape)
    y, _ = layer.apply(params, state, x)
    assert y.shape == batch_shape + output_shape
    if math.prod(x.shape[:-1]) > 1:
        y, new_state = layer.apply(params, state, x, train=True)
        assert y.shape == batch_shape + output_shape
        assert jax.tree.map(lambda a: (a.shape, a.dtype), new_state) == jax.tree.map(
            lambda a: (a.shape, a.dtype), state
        )


def test_batchnorm_train_by_hand():
    layer = BatchNorm()  # momentum 0.9
    _, params, state = layer.init(jax.random.key(0), (1,))
    x = jnp.array([[1.0], [3.0]])
    # mean 2, biased variance 1, unbiased variance 2
    y, new_state = layer.apply(params, state, x, train=True)
    np.testing.assert_allclose(y, np.array([[-1.0], [1.0]]) / np.sqrt(1 + EPS), rtol=1e-6)
    np.testing.assert_allclose(new_state["mean"], [0.9 * 0 + 0.1 * 2], rtol=1e-6)
    np.testing.assert_allclose(new_state["var"], [0.9 * 1 + 0.1 * 2], rtol=1e-6)


def test_batchnorm_train_by_hand_with_scale_and_bias_and_several_features():
    layer = BatchNorm(momentum=0.5)
    _, _, state = layer.init(jax.random.key(0), (2,))
    params = {"scale": jnp.array([2.0, 3.0]), "bias": jnp.array([0.5, -1.0])}
    # feature 0: 0, 4 -> mean 2, biased var 4, unbiased 8; feature 1: 1, 1 -> mean 1, var 0
    x = jnp.array([[0.0, 1.0], [4.0, 1.0]])
    y, new_state = layer.apply(params, state, x, train=True)
    expected = np.array([
        [-2 / np.sqrt(4 + EPS) * 2 + 0.5, -1.0],
        [2 / np.sqrt(4 + EPS) * 2 + 0.5, -1.0],
    ])
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    np.testing.assert_allclose(new_state["mean"], [0.5 * 2, 0.5 * 1], rtol=1e-6)
    np.testing.assert_allclose(new_state["var"], [0.5 + 0.5 * 8, 0.5 + 0.5 * 0], rtol=1e-6)


@pytest.mark.parametrize("input_shape", [(3,), (5, 3), (4, 2, 3)])
def test_batchnorm_running_statistics_closed_form(input_shape):
    momentum, steps = 0.8, 5
    layer = BatchNorm(momentum=momentum)
    _, params, state = layer.init(jax.random.key(0), input_shape)
    rng = np.random.default_rng(0)
    params = random_params(rng, input_shape[-1])
    batches = [
        (rng.normal(size=(6,) + input_shape) * rng.uniform(0.5, 3.0) + rng.normal() * 2).astype(np.float32)
        for _ in range(steps)
    ]
    for x in batches:
        y, state = layer.apply(params, state, jnp.asarray(x), train=True)
        mean, biased, _ = numpy_batch_stats(x)
        np.testing.assert_allclose(
            y, numpy_normalize(x, mean, biased, params["scale"], params["bias"]), rtol=1e-5, atol=1e-5
        )

    expected_mean = momentum**steps * 0.0
    expected_var = momentum**steps * 1.0
    for i, x in enumerate(batches):
        mean, _, unbiased = numpy_batch_stats(x)
        weight = momentum ** (steps - 1 - i) * (1 - momentum)
        expected_mean = expected_mean + weight * mean
        expected_var = expected_var + weight * unbiased
    np.testing.assert_allclose(state["mean"], expected_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state["var"], expected_var, rtol=1e-5, atol=1e-6)
    assert state["mean"].dtype == jnp.float32 and state["var"].dtype == jnp.float32


def test_batchnorm_momentum_one_freezes_and_zero_replaces():
    x = jnp.array([[1.0], [3.0], [8.0]])  # mean 4, unbiased var 13
    for momentum, mean, var in [(1.0, 0.0, 1.0), (0.0, 4.0, 13.0)]:
        layer = BatchNorm(momentum=momentum)
        _, params, state = layer.init(jax.random.key(0), (1,))
        _, state = layer.apply(params, state, x, train=True)
        np.testing.assert_allclose(state["mean"], [mean], rtol=1e-6)
        np.testing.assert_allclose(state["var"], [var], rtol=1e-6)


def test_batchnorm_eval_uses_running_stats_and_keeps_state():
    layer = BatchNorm()
    params = {"scale": jnp.array([1.0, 2.0]), "bias": jnp.array([0.0, 1.0])}
    state = {"mean": jnp.array([1.0, -2.0]), "var": jnp.array([4.0, 9.0])}
    x = jnp.array([[3.0, 1.0], [1.0, -5.0], [-1.0, 4.0]])
    y, new_state = layer.apply(params, state, x)
    expected = np.array([
        [2 / np.sqrt(4 + EPS), 3 / np.sqrt(9 + EPS) * 2 + 1],
        [0.0, -3 / np.sqrt(9 + EPS) * 2 + 1],
        [-2 / np.sqrt(4 + EPS), 6 / np.sqrt(9 + EPS) * 2 + 1],
    ])
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-7)
    assert new_state is state
    np.testing.assert_array_equal(new_state["mean"], [1.0, -2.0])
    np.testing.assert_array_equal(new_state["var"], [4.0, 9.0])


def test_batchnorm_eval_after_training_uses_the_trained_running_stats():
    layer = BatchNorm(momentum=0.0)  # running stats become the last batch's
    _, params, state = layer.init(jax.random.key(0), (3,))
    rng = np.random.default_rng(1)
    train_x = (rng.normal(size=(10, 3)) * 3 + 5).astype(np.float32)
    _, state = layer.apply(params, state, jnp.asarray(train_x), train=True)
    eval_x = rng.normal(size=(4, 3)).astype(np.float32)
    y, _ = layer.apply(params, state, jnp.asarray(eval_x))
    mean, _, unbiased = numpy_batch_stats(train_x)
    np.testing.assert_allclose(y, numpy_normalize(eval_x, mean, unbiased, 1.0, 0.0), rtol=1e-5, atol=1e-5)


def test_batchnorm_variance_of_data_far_from_zero():
    # E[x^2] - E[x]^2 in float32 loses every digit here; the layer must not.
    layer = BatchNorm()
    _, params, state = layer.init(jax.random.key(0), (2,))
    rng = np.random.default_rng(2)
    x = (1e4 + rng.normal(size=(64, 2))).astype(np.float32)
    y, state = layer.apply(params, state, jnp.asarray(x), train=True)
    mean, biased, unbiased = numpy_batch_stats(x)
    np.testing.assert_allclose(y, numpy_normalize(x, mean, biased, 1.0, 0.0), atol=2e-3)
    np.testing.assert_allclose(state["var"], 0.9 + 0.1 * unbiased, rtol=1e-3)


def test_batchnorm_gradients_by_finite_differences():
    layer = BatchNorm()
    _, _, state = layer.init(jax.random.key(0), (3,))
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(2, 4, 3)), jnp.float64)
        scale = jnp.asarray(rng.uniform(0.5, 2.0, 3), jnp.float64)
        bias = jnp.asarray(rng.normal(size=3), jnp.float64)

        def train(x, scale, bias):
            return layer.apply({"scale": scale, "bias": bias}, state, x, train=True)[0]

        def evaluate(x, scale, bias):
            return layer.apply({"scale": scale, "bias": bias}, state, x)[0]

        assert train(x, scale, bias).dtype == jnp.float64
        # Jitted, so that each derivative compiles once rather than running op by op.
        for function in (train, evaluate):
            check_grads(jax.jit(function), (x, scale, bias), order=2, modes=["fwd", "rev"], eps=1e-4, atol=1e-6,
                        rtol=1e-6)


def test_batchnorm_jit_of_grad_matches_analytic_gradients():
    layer = BatchNorm()
    _, _, state = layer.init(jax.random.key(0), (3,))
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(8, 3)) * 2 + 1, jnp.float32)
    params = random_params(rng, 3)

    def loss(params, x):
        y, new_state = layer.apply(params, state, x, train=True)
        return jnp.sum(y), new_state

    grads, new_state = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(params, x)
    param_grads, x_grad = grads
    # sum(y) = sum(normalized) * scale + n * bias, and sum(normalized) == 0 for every x.
    np.testing.assert_allclose(param_grads["bias"], np.full(3, 8.0), rtol=1e-6)
    np.testing.assert_allclose(param_grads["scale"], np.zeros(3), atol=1e-5)
    np.testing.assert_allclose(x_grad, np.zeros((8, 3)), atol=1e-5)
    mean, _, unbiased = numpy_batch_stats(np.asarray(x))
    np.testing.assert_allclose(new_state["mean"], 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(new_state["var"], 0.9 + 0.1 * unbiased, rtol=1e-5)

    def squared(params, x):
        return jnp.sum(layer.apply(params, state, x, train=True)[0] ** 2)

    # d/dscale sum((normalized * scale + bias)^2) = 2 * sum(normalized^2 * scale + normalized * bias)
    #                                             = 2 * scale * n * var / (var + eps)
    _, biased, _ = numpy_batch_stats(np.asarray(x))
    scale_grad = jax.jit(jax.grad(squared))(params, x)["scale"]
    expected = 2 * np.asarray(params["scale"], np.float64) * 8 * biased / (biased + EPS)
    np.testing.assert_allclose(scale_grad, expected, rtol=1e-5)


def test_batchnorm_vmap_over_examples_in_eval_mode():
    layer = BatchNorm()
    rng = np.random.default_rng(5)
    params = random_params(rng, 3)
    state = {"mean": jnp.asarray(rng.normal(size=3), jnp.float32),
             "var": jnp.asarray(rng.uniform(0.5, 2.0, 3), jnp.float32)}
    x = jnp.asarray(rng.normal(size=(4, 5, 3)), jnp.float32)
    per_example = jax.vmap(lambda example: layer.apply(params, state, example)[0])(x)
    expected = numpy_normalize(x, np.asarray(state["mean"]), np.asarray(state["var"]),
                               params["scale"], params["bias"])
    np.testing.assert_allclose(per_example, expected, rtol=1e-5, atol=1e-6)
    batched, _ = layer.apply(params, state, x)
    np.testing.assert_allclose(per_example, batched, rtol=1e-6, atol=1e-6)


def test_batchnorm_per_example_gradients_in_eval_mode():
    layer = BatchNorm()
    rng = np.random.default_rng(6)
    params = random_params(rng, 3)
    state = {"mean": jnp.asarray(rng.normal(size=3), jnp.float32),
             "var": jnp.asarray(rng.uniform(0.5, 2.0, 3), jnp.float32)}
    x = jnp.asarray(rng.normal(size=(4, 5, 3)), jnp.float32)

    def loss(params, example):
        return jnp.sum(layer.apply(params, state, example)[0])

    grads = jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(None, 0))(params, x)
    param_grads, x_grads = grads
    inverse_std = 1 / np.sqrt(np.asarray(state["var"], np.float64) + EPS)
    normalized = (np.asarray(x, np.float64) - np.asarray(state["mean"])) * inverse_std
    np.testing.assert_allclose(param_grads["bias"], np.full((4, 3), 5.0), rtol=1e-6)
    np.testing.assert_allclose(param_grads["scale"], normalized.sum(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        x_grads, np.broadcast_to(np.asarray(params["scale"]) * inverse_std, (4, 5, 3)), rtol=1e-5
    )


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_batchnorm_low_precision_input(dtype):
    layer = BatchNorm()
    _, params, state = layer.init(jax.random.key(0), (4,))
    rng = np.random.default_rng(7)
    x32 = (rng.normal(size=(16, 4)) * 3 + 2).astype(np.float32)
    x = jnp.asarray(x32, dtype)
    for train in (True, False):
        y, new_state = layer.apply(params, state, x, train=train)
        assert y.dtype == dtype
        assert bool(jnp.all(jnp.isfinite(y)))
        assert new_state["mean"].dtype == jnp.float32 and new_state["var"].dtype == jnp.float32
    y, _ = layer.apply(params, state, x, train=True)
    x_rounded = np.asarray(x.astype(jnp.float32))
    mean, biased, _ = numpy_batch_stats(x_rounded)
    np.testing.assert_allclose(
        np.asarray(y.astype(jnp.float32)), numpy_normalize(x_rounded, mean, biased, 1.0, 0.0), atol=3e-2
    )


@pytest.mark.parametrize("shape", [(1, 4), (4,), (1, 1, 4)])
def test_batchnorm_training_needs_more_than_one_value_per_channel(shape):
    layer = BatchNorm()
    _, params, state = layer.init(jax.random.key(0), (4,))
    x = jnp.ones(shape)
    with pytest.raises(LayerValueError) as error:
        layer.apply(params, state, x, train=True)
    assert str(error.value) == (
        f"batch_norm: expected more than 1 value per channel when training, got input shape {shape}"
    )
    y, _ = layer.apply(params, state, x)  # evaluation is fine
    assert y.shape == shape


def test_batchnorm_wrong_last_axis():
    layer = BatchNorm()
    _, params, state = layer.init(jax.random.key(0), (64,))
    with pytest.raises(ValueError) as error:
        layer.apply(params, state, jnp.ones((8, 32)), train=True)
    assert isinstance(error.value, LayerValueError)
    assert str(error.value) == "batch_norm: expected last axis 64, got 32"


def test_batchnorm_integer_input():
    layer = BatchNorm()
    _, params, state = layer.init(jax.random.key(0), (3,))
    with pytest.raises(TypeError) as error:
        layer.apply(params, state, jnp.ones((2, 3), jnp.int32))
    assert isinstance(error.value, LayerTypeError)
    assert "batch_norm" in str(error.value) and "int32" in str(error.value)


@pytest.mark.parametrize("momentum", [-0.1, 1.5, float("nan")])
def test_batchnorm_rejects_momentum(momentum):
    with pytest.raises(ValueError, match=r"^BatchNorm: `momentum` \(=.*\) must be in \[0, 1\]"):
        BatchNorm(momentum=momentum)


@pytest.mark.parametrize("eps", [0.0, -1e-5])
def test_norms_reject_eps(eps):
    for constructor in (BatchNorm, LayerNorm):
        with pytest.raises(ValueError, match=f"^{constructor.__name__}: `eps` \\(={eps}\\) must be positive"):
            constructor(eps=eps)


def test_norms_reject_input_shape_without_features():
    for layer in (BatchNorm(), LayerNorm()):
        with pytest.raises(LayerValueError, match=layer.name):
            layer.init(jax.random.key(0), ())


# --------------------------------------------------------------------------------------------
# LayerNorm


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
def test_layernorm_predicted_shape_matches_apply(input_shape, batch_shape):
    layer = LayerNorm()
    output_shape, params, state = layer.init(jax.random.key(0), input_shape)
    assert output_shape == input_shape and state == {}
    assert {name: (a.shape, a.dtype) for name, a in params.items()} == {
        "scale": ((input_shape[-1],), jnp.float32), "bias": ((input_shape[-1],), jnp.float32)
    }
    x = jax.random.normal(jax.random.key(1), batch_shape + input_shape)
    for train in (False, True):
        y, new_state = layer.apply(params, state, x, train=train)
        assert y.shape == batch_shape + output_shape
        assert new_state is state


def test_layernorm_by_hand():
    layer = LayerNorm()
    params = {"scale": jnp.array([1.0, 2.0, 3.0, 4.0]), "bias": jnp.array([0.0, 1.0, 0.0, -1.0])}
    # mean 2.5, biased variance 1.25
    x = jnp.array([1.0, 2.0, 3.0, 4.0])
    y, _ = layer.apply(params, {}, x)
    normalized = np.array([-1.5, -0.5, 0.5, 1.5]) / np.sqrt(1.25 + EPS)
    np.testing.assert_allclose(y, normalized * [1, 2, 3, 4] + [0, 1, 0, -1], rtol=1e-6)
    y, _ = layer.apply({"scale": jnp.ones(2), "bias": jnp.zeros(2)}, {}, jnp.array([[1.0, 3.0], [5.0, 5.0]]))
    np.testing.assert_allclose(y, [[-1 / np.sqrt(1 + EPS), 1 / np.sqrt(1 + EPS)], [0.0, 0.0]], rtol=1e-6)


def test_layernorm_against_numpy():
    layer = LayerNorm(eps=1e-3)
    rng = np.random.default_rng(8)
    params = random_params(rng, 8)
    x = (rng.normal(size=(3, 5, 8)) * rng.uniform(0.1, 10, size=(3, 5, 1)) + 100).astype(np.float32)
    y, _ = layer.apply(params, {}, jnp.asarray(x))
    x64 = x.astype(np.float64)
    mean = x64.mean(-1, keepdims=True)
    variance = x64.var(-1, keepdims=True)
    expected = numpy_normalize(x64, mean, variance, params["scale"], params["bias"], eps=1e-3)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_layernorm_gradients_by_finite_differences():
    layer = LayerNorm()
    rng = np.random.default_rng(9)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(2, 3, 5)), jnp.float64)
        scale = jnp.asarray(rng.uniform(0.5, 2.0, 5), jnp.float64)
        bias = jnp.asarray(rng.normal(size=5), jnp.float64)

        def f(x, scale, bias):
            return layer.apply({"scale": scale, "bias": bias}, {}, x)[0]

        assert f(x, scale, bias).dtype == jnp.float64
        # Jitted, so that each derivative compiles once rather than running op by op.
        check_grads(jax.jit(f), (x, scale, bias), order=2, modes=["fwd", "rev"], eps=1e-4, atol=1e-6, rtol=1e-6)


def test_layernorm_vmap_equals_batch():
    layer = LayerNorm()
    rng = np.random.default_rng(10)
    params = random_params(rng, 6)
    x = rng.normal(size=(4, 3, 6)).astype(np.float32)
    per_example = jax.vmap(lambda example: layer.apply(params, {}, example)[0])(jnp.asarray(x))
    x64 = x.astype(np.float64)
    expected = numpy_normalize(x64, x64.mean(-1, keepdims=True), x64.var(-1, keepdims=True),
                               params["scale"], params["bias"])
    np.testing.assert_allclose(per_example, expected, rtol=1e-5, atol=1e-5)
    batched, _ = layer.apply(params, {}, jnp.asarray(x))
    np.testing.assert_allclose(per_example, batched, rtol=1e-6, atol=1e-6)


def test_layernorm_bf16_and_errors():
    layer = LayerNorm()
    _, params, state = layer.init(jax.random.key(0), (64,))
    y, _ = layer.apply(params, state, jnp.ones((2, 64), jnp.bfloat16) * jnp.arange(64, dtype=jnp.bfloat16)[None])
    assert y.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(y)))
    with pytest.raises(LayerValueError) as error:
        layer.apply(params, state, jnp.ones((2, 32)))
    assert str(error.value) == "layer_norm: expected last axis 64, got 32"
    with pytest.raises(LayerTypeError, match="layer_norm.*int32"):
        layer.apply(params, state, jnp.ones((2, 64), jnp.int32))


@pytest.mark.parametrize("momentum", ["0.9", None, True])
def test_batchnorm_rejects_non_numeric_momentum(momentum):
    with pytest.raises(TypeError, match=r"^BatchNorm: `momentum` must be a real number in \[0, 1\], got"):
        BatchNorm(momentum=momentum)


def test_batchnorm_state_that_does_not_fit_is_named():
    layer = BatchNorm()
    _, params, state = layer.init(jax.random.key(0), (3,))
    x = jnp.ones((4, 3))
    with pytest.raises(ValueError, match=r"^batch_norm: state has no 'mean', 'var'"):
        layer.apply(params, {}, x, train=True)
    with pytest.raises(ValueError, match=r"^batch_norm: state\['var'\] has shape \(4,\), expected \(3,\)"):
        layer.apply(params, {"mean": state["mean"], "var": jnp.ones(4)}, x)
    with pytest.raises(ValueError, match=r"^layer_norm: params has no 'bias'"):
        LayerNorm().apply({"scale": jnp.ones(3)}, {}, x)


def test_numpy_float64_input_gives_the_canonical_dtype_without_warnings():
    import warnings

    model_input = np.random.default_rng(0).normal(size=(5, 3))
    for layer in (BatchNorm(), LayerNorm()):
        _, params, state = layer.init(jax.random.key(0), (3,))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            y, _ = layer.apply(params, state, model_input, train=True)
        assert y.dtype == jax.dtypes.canonicalize_dtype(np.float64)


def test_norm_params_of_the_wrong_rank_or_kind_are_named():
    x = jnp.ones((4, 3))
    with pytest.raises(ValueError, match=r"^layer_norm: params\['scale'\] has shape \(\), expected \(features,\)"):
        LayerNorm().apply({"scale": jnp.ones(()), "bias": jnp.zeros(())}, {}, x)
    layer = BatchNorm()
    _, params, state = layer.init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"^batch_norm: params\['bias'\] has shape \(3, 5\), expected \(3,\)"):
        layer.apply({"scale": params["scale"], "bias": jnp.zeros((3, 5))}, state, x)
    with pytest.raises(TypeError, match=r"^batch_norm: state\['mean'\] must be an array, got list"):
        layer.apply(params, {"mean": [0.0] * 3, "var": state["var"]}, x)


def test_norm_constructor_arguments_are_type_checked():
    with pytest.raises(TypeError, match=r"^BatchNorm: `eps` must be a positive real number, got 'a'"):
        BatchNorm(eps="a")
    with pytest.raises(ValueError, match=r"^LayerNorm: `eps` \(=inf\) must be a finite number"):
        LayerNorm(eps=float("inf"))
    with pytest.raises(TypeError, match=r"^BatchNorm: `scale_init` must be an initializer"):
        BatchNorm(scale_init=1.0)


# --------------------------------------------------------------------------------------------
# GroupNorm and RMSNorm (their parity with PyTorch, gradients included, is in test_torch_parity.py).


def test_groupnorm_against_numpy_for_any_number_of_batch_axes():
    from jaxnn.layers.normalization import GroupNorm

    layer = GroupNorm(2)
    output_shape, params, state = layer.init(jax.random.key(0), (3, 4))
    assert output_shape == (3, 4) and jax.tree_util.tree_map(jnp.shape, params) == {"scale": (4,), "bias": (4,)}
    params = {"scale": jnp.asarray([1.0, 2.0, 3.0, 4.0]), "bias": jnp.asarray([0.0, 1.0, 0.0, -1.0])}
    x = np.random.default_rng(0).normal(3.0, 2.0, (2, 5, 3, 4)).astype(np.float32)
    y, new_state = layer.apply(params, state, jnp.asarray(x))
    assert new_state == state
    # Per example and group of 2 channels: statistics over the 3 positions and the group's channels.
    groups = x.astype(np.float64).reshape(2, 5, 3, 2, 2)
    mean = groups.mean(axis=(2, 4), keepdims=True)
    variance = groups.var(axis=(2, 4), keepdims=True)
    expected = ((groups - mean) / np.sqrt(variance + 1e-5)).reshape(x.shape) * np.asarray(params["scale"])
    np.testing.assert_allclose(y, expected + np.asarray(params["bias"]), rtol=1e-5, atol=1e-5)
    single, _ = layer.apply(params, state, jnp.asarray(x[1, 2]))
    np.testing.assert_allclose(single, y[1, 2], rtol=1e-6, atol=1e-6)


def test_rmsnorm_default_eps_is_the_machine_epsilon_of_the_input_dtype():
    from jaxnn.layers.normalization import RMSNorm

    layer = RMSNorm()
    _, params, state = layer.init(jax.random.key(0), (3,))
    # Values so small that eps dominates the mean square: bfloat16's eps is 2^-7.
    x = np.full((2, 3), 2.0 ** -6)
    for dtype, eps in ((jnp.float32, 2.0 ** -23), (jnp.bfloat16, 2.0 ** -7)):
        y, _ = layer.apply(params, state, jnp.asarray(x, dtype))
        assert y.dtype == dtype
        np.testing.assert_allclose(np.asarray(y, np.float64), x / np.sqrt(x ** 2 + eps), rtol=1e-2)
    y, _ = RMSNorm(eps=1.0).apply(params, state, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(y, x / np.sqrt(x ** 2 + 1.0), rtol=1e-6)


def test_groupnorm_and_rmsnorm_errors():
    from jaxnn.layers.normalization import GroupNorm, RMSNorm

    with pytest.raises(ValueError, match=r"^group_norm: channels \(=5\) must be divisible by `groups` \(=2\)"):
        GroupNorm(2).init(jax.random.key(0), (3, 5))
    with pytest.raises(ValueError, match=r"^GroupNorm: `groups` \(=0\) must be a positive int"):
        GroupNorm(0)
    with pytest.raises(ValueError, match=r"^RMSNorm: `eps` \(=0\) must be positive"):
        RMSNorm(eps=0)
    with pytest.raises(TypeError, match=r"^GroupNorm takes groups positionally .* PyTorch's GroupNorm\(2, 64\) is "
                                        r"GroupNorm\(2\) here"):
        GroupNorm(2, 64)
    with pytest.raises(TypeError, match=r"^RMSNorm takes its arguments by keyword only .* PyTorch's "
                                        r"RMSNorm\(64, 1e-06\) is RMSNorm\(eps=1e-06\) here"):
        RMSNorm(64, 1e-6)
    _, params, state = RMSNorm().init(jax.random.key(0), (4,))
    with pytest.raises(ValueError, match=r"^rms_norm: expected last axis 4, got 3"):
        RMSNorm().apply(params, state, jnp.ones((2, 3)))
