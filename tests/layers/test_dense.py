"""Tests for Dense, Flatten, Reshape and Embedding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxnn import init as initializers
from jaxnn.layers.dense import Dense, Embedding, Flatten, Reshape


def init_apply(layer, input_shape, x, **kwargs):
    output_shape, params, state = layer.init(jax.random.key(0), input_shape)
    y, _ = layer.apply(params, state, x, **kwargs)
    return output_shape, params, y


@pytest.mark.parametrize("input_shape", [(4,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("batch_shape", [(), (5,), (2, 5)])
def test_dense_shapes(input_shape, batch_shape):
    layer = Dense(7)
    x = jnp.ones(batch_shape + input_shape)
    output_shape, params, y = init_apply(layer, input_shape, x)
    assert output_shape == input_shape[:-1] + (7,)
    assert y.shape == batch_shape + output_shape
    assert params["w"].shape == (4, 7) and params["b"].shape == (7,)


def test_dense_values_by_hand():
    layer = Dense(2, w_init=initializers.ones(), b_init=initializers.constant(0.5))
    _, _, y = init_apply(layer, (3,), jnp.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 1.0]]))
    np.testing.assert_allclose(y, [[6.5, 6.5], [0.5, 0.5]])


def test_dense_matches_pytorch_linear_formula_with_transposed_weight():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(5, 3)).astype(np.float32)  # PyTorch layout (out, in)
    bias = rng.normal(size=(5,)).astype(np.float32)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    y, _ = Dense(5).apply({"w": jnp.asarray(weight.T), "b": jnp.asarray(bias)}, {}, jnp.asarray(x))
    np.testing.assert_allclose(y, x.astype(np.float64) @ weight.T + bias, rtol=1e-5, atol=1e-5)


def test_dense_without_bias():
    _, params, y = init_apply(Dense(2, use_bias=False, w_init=initializers.ones()), (3,), jnp.ones(3))
    assert set(params) == {"w"}
    np.testing.assert_allclose(y, [3.0, 3.0])


def test_dense_gradients_against_finite_differences():
    layer = Dense(3)
    _, params, state = layer.init(jax.random.key(0), (4,))
    x = jax.random.normal(jax.random.key(1), (2, 4))

    def f(w, b, x):
        return layer.apply({"w": w, "b": b}, state, x)[0]

    check_grads(f, (params["w"], params["b"], x), order=2, modes=["fwd", "rev"], atol=1e-2, rtol=1e-2)


def test_dense_vmap_over_examples_and_per_example_gradients():
    layer = Dense(3)
    _, params, state = layer.init(jax.random.key(0), (4,))
    x = jax.random.normal(jax.random.key(1), (6, 4))
    batched, _ = layer.apply(params, state, x)
    single = jax.vmap(lambda example: layer.apply(params, state, example)[0])(x)
    np.testing.assert_allclose(single, batched, rtol=1e-6)
    grads = jax.vmap(jax.grad(lambda p, example: layer.apply(p, state, example)[0].sum()),
                     in_axes=(None, 0))(params, x)
    # d(sum_j (x @ w + b)_j)/dw[i, j] = x_i for every j: the per-example gradient is x outer ones.
    np.testing.assert_allclose(grads["w"], np.asarray(x)[:, :, None] * np.ones((1, 1, 3)), rtol=1e-6)
    np.testing.assert_allclose(grads["b"], np.ones((6, 3)))


def test_dense_mixed_precision_promotes():
    _, params, state = Dense(2).init(jax.random.key(0), (3,))
    y, _ = Dense(2).apply(params, state, jnp.ones((1, 3), jnp.bfloat16))
    assert y.dtype == jnp.float32
    _, params16, _ = Dense(2, param_dtype=jnp.bfloat16).init(jax.random.key(0), (3,))
    y16, _ = Dense(2).apply(params16, state, jnp.ones((1, 3), jnp.bfloat16))
    assert y16.dtype == jnp.bfloat16


def test_dense_bad_inputs():
    _, params, state = Dense(2).init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match="^dense: expected last axis 3, got 4"):
        Dense(2).apply(params, state, jnp.ones((5, 4)))
    with pytest.raises(TypeError, match="^dense: expected a floating-point input, got dtype int32"):
        Dense(2).apply(params, state, jnp.ones((5, 3), jnp.int32))
    with pytest.raises(TypeError, match="dense: expected an array input, got list"):
        Dense(2).apply(params, state, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"dense: expected an input of shape \(\.\.\., in_features\)"):
        Dense(2).init(jax.random.key(0), ())
    for features in (0, -3):
        with pytest.raises(ValueError, match=r"^Dense: `features` \(=-?\d+\) must be a positive int"):
            Dense(features)
    for features in (2.5, "8", True, None):
        with pytest.raises(TypeError, match=r"^Dense: `features` must be a positive int, got"):
            Dense(features)


@pytest.mark.parametrize("input_shape", [(6,), (2, 3), (2, 3, 4)])
@pytest.mark.parametrize("batch_shape", [(), (5,), (2, 5)])
def test_flatten_shapes_and_order(input_shape, batch_shape):
    x = jnp.arange(np.prod(batch_shape + input_shape), dtype=jnp.float32).reshape(batch_shape + input_shape)
    output_shape, _, y = init_apply(Flatten(), input_shape, x)
    assert output_shape == (int(np.prod(input_shape)),)
    # Row-major order, as torch.flatten(x, start_dim=1) on a channels-last array.
    np.testing.assert_array_equal(y, np.asarray(x).reshape(batch_shape + (-1,)))


def test_flatten_vmap_equals_batched():
    layer = Flatten()
    _, params, state = layer.init(jax.random.key(0), (2, 3))
    x = jnp.arange(24.0).reshape(4, 2, 3)
    single = jax.vmap(lambda example: layer.apply(params, state, example)[0])(x)
    np.testing.assert_array_equal(single, layer.apply(params, state, x)[0])


def test_flatten_bad_inputs():
    _, params, state = Flatten().init(jax.random.key(0), (2, 3))
    with pytest.raises(ValueError, match=r"flatten: expected input of shape \(\*batch, 2, 3\), got \(4, 3, 2\)"):
        Flatten().apply(params, state, jnp.ones((4, 3, 2)))


@pytest.mark.parametrize("target,expected", [((3, 4), (3, 4)), ((-1, 2), (6, 2)), ((12,), (12,)),
                                             ((2, -1, 3), (2, 2, 3))])
def test_reshape(target, expected):
    x = jnp.arange(2 * 12.0).reshape(2, 4, 3)
    output_shape, _, y = init_apply(Reshape(target), (4, 3), x)
    assert output_shape == expected
    np.testing.assert_array_equal(y, np.arange(24.0).reshape((2,) + expected))


def test_reshape_bad_arguments():
    with pytest.raises(ValueError, match=r"reshape: cannot reshape \(4, 3\) \(12 values\) to \(5,\)"):
        Reshape((5,)).init(jax.random.key(0), (4, 3))
    with pytest.raises(ValueError, match="at most one -1"):
        Reshape((-1, -1))
    with pytest.raises(ValueError, match=r"cannot reshape \(4, 3\) \(12 values\) to \(-1, 5\)"):
        Reshape((-1, 5)).init(jax.random.key(0), (4, 3))


def test_embedding_looks_up_rows():
    table = jnp.arange(12.0).reshape(4, 3)
    layer = Embedding(4, 3)
    output_shape, params, state = layer.init(jax.random.key(0), (2,))
    assert output_shape == (2, 3) and params["table"].shape == (4, 3)
    ids = jnp.array([[0, 3], [2, 2]])
    y, _ = layer.apply({"table": table}, state, ids)
    np.testing.assert_array_equal(y, [[[0, 1, 2], [9, 10, 11]], [[6, 7, 8], [6, 7, 8]]])


def test_embedding_gradient_accumulates_repeated_ids():
    table = jnp.zeros((4, 2))
    grads = jax.grad(lambda t: Embedding(4, 2).apply({"table": t}, {}, jnp.array([1, 1, 3]))[0].sum())(table)
    np.testing.assert_array_equal(grads, [[0, 0], [2, 2], [0, 0], [1, 1]])


def test_embedding_default_init_is_standard_normal():
    _, params, _ = Embedding(1000, 100).init(jax.random.key(0), ())
    values = np.asarray(params["table"])
    assert abs(values.mean()) < 5 / np.sqrt(values.size)
    assert abs(values.var() - 1.0) < 5 * np.sqrt(2 / values.size)


def test_embedding_bad_inputs():
    _, params, state = Embedding(5, 2).init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"embedding: id 7 at index \(1, 2\) is outside \[0, 5\)"):
        Embedding(5, 2).apply(params, state, jnp.array([[0, 1, 2], [3, 4, 7]]))
    with pytest.raises(ValueError, match=r"id -1 at index \(0,\)"):
        Embedding(5, 2).apply(params, state, jnp.array([-1, 0, 0]))
    with pytest.raises(TypeError, match="embedding: expected an integer input .token ids., got dtype float32"):
        Embedding(5, 2).apply(params, state, jnp.zeros(3))
    with pytest.raises(ValueError, match=r"Embedding: `vocab_size` \(=0\)"):
        Embedding(0, 2)


def test_params_that_do_not_fit_the_layer_are_named():
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match=r"^dense: params has no 'b'; expected \['w', 'b'\], got \['w'\]"):
        Dense(2).apply({"w": jnp.ones((3, 2))}, {}, x)
    with pytest.raises(ValueError, match=r"^dense: params\['b'\] has shape \(5,\), expected \(2,\)"):
        Dense(2).apply({"w": jnp.ones((3, 2)), "b": jnp.ones(5)}, {}, x)
    with pytest.raises(TypeError, match="^dense: expected params to be a dict"):
        Dense(2).apply([jnp.ones((3, 2))], {}, x)
    with pytest.raises(ValueError, match=r"^embedding: params\['table'\] has shape \(3, 2\), expected \(5, 2\)"):
        Embedding(5, 2).apply({"table": jnp.ones((3, 2))}, {}, jnp.array([0]))


def test_numpy_float64_input_is_computed_in_the_canonical_dtype_without_warnings():
    import warnings

    layer = Dense(2)
    _, params, state = layer.init(jax.random.key(0), (3,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, _ = layer.apply(params, state, np.ones((4, 3), np.float64))
    assert y.dtype == jax.dtypes.canonicalize_dtype(np.float64)


def test_constructor_arguments_are_checked_early():
    with pytest.raises(TypeError, match=r"^Dense: `w_init` must be an initializer .*call it: "
                                        r"w_init=jaxnn.init.glorot_uniform\(\)"):
        Dense(3, w_init=initializers.glorot_uniform)
    with pytest.raises(TypeError, match=r"^Dense: `b_init` must be an initializer init\(key, shape, dtype\), got 'zeros'"):
        Dense(3, b_init="zeros")
    with pytest.raises(TypeError, match=r"^Dense: `param_dtype` must be floating-point, got int32"):
        Dense(3, param_dtype=jnp.int32)
    with pytest.raises(TypeError, match=r"^Dense: `use_bias` must be True or False, got 'no'"):
        Dense(3, use_bias="no")
    with pytest.raises(TypeError, match=r"^Embedding: `table_init` must be an initializer"):
        Embedding(3, 2, table_init=initializers.normal)
    with pytest.raises(TypeError, match=r"^Reshape: `shape` must be a tuple of ints, got None"):
        Reshape(None)
    with pytest.raises(TypeError, match=r"^Reshape: `shape` must be a tuple of ints, got \(2, True\)"):
        Reshape((2, True))


def test_reshape_with_inferred_axis_handles_an_empty_batch():
    layer = Reshape((-1, 2))
    _, params, state = layer.init(jax.random.key(0), (6,))
    y, _ = layer.apply(params, state, jnp.ones((0, 6)))
    assert y.shape == (0, 3, 2)


def test_hand_built_empty_state_treats_the_first_axis_as_the_batch():
    # PyTorch's nn.Flatten() and x.view(x.size(0), *shape): the fallback when init's record is absent.
    x = jnp.arange(24.0).reshape(2, 3, 4)
    flat, _ = Flatten().apply({}, {}, x)
    np.testing.assert_array_equal(flat, np.arange(24.0).reshape(2, 12))
    reshaped, _ = Reshape((4, 3)).apply({}, {}, x)
    np.testing.assert_array_equal(reshaped, np.arange(24.0).reshape(2, 4, 3))
    with pytest.raises(ValueError, match="^flatten: state lacks the input shape recorded by init"):
        Flatten().apply({}, {}, jnp.float32(1.0))
