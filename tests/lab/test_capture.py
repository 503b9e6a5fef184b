"""jaxnn.lab.capture: every layer's output by path, against the layers' formulas in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn import lab


def nested_model():
    block = jaxnn.Residual(jaxnn.Sequential([jaxnn.Dense(4), jaxnn.Tanh()]))
    return jaxnn.Sequential([jaxnn.Dense(4), jaxnn.Relu(), block, jaxnn.Dense(2)])


def numpy_outputs(params, x):
    """The nested model's outputs, written out in float64 NumPy."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    x = np.asarray(x, np.float64)
    dense_0 = x @ p["dense_0"]["w"] + p["dense_0"]["b"]
    relu_1 = np.maximum(dense_0, 0)
    inner = p["residual_2"]["dense_0"]
    inner_dense = relu_1 @ inner["w"] + inner["b"]
    inner_tanh = np.tanh(inner_dense)
    residual = relu_1 + inner_tanh
    dense_3 = residual @ p["dense_3"]["w"] + p["dense_3"]["b"]
    return {"dense_0": dense_0, "relu_1": relu_1, "residual_2/dense_0": inner_dense,
            "residual_2/tanh_1": inner_tanh, "residual_2": residual, "dense_3": dense_3}


def test_every_output_by_path_in_computed_order_under_jit_vmap_and_batch_axes():
    model = nested_model()
    _, params, state = model.init(jax.random.key(0), (3,))
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    expected = numpy_outputs(params, x)
    order = list(expected)

    def both(params, x):
        # With two batch axes, and one example at a time (no batch axes) inside vmap.
        one = jax.vmap(jax.vmap(lambda example: lab.capture(model, params, state, example)))
        return lab.capture(model, params, state, x), one(x)

    jitted, mapped = jax.jit(both)(params, x)
    y = numpy_outputs(params, x)["dense_3"]
    for outputs in (jitted, mapped):
        assert list(outputs) == order
        for path in order:
            np.testing.assert_allclose(outputs[path], expected[path], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(outputs[order[-1]], y, rtol=1e-6, atol=1e-6)


def test_paths_index_params_and_match_summary_with_options_routed():
    model = jaxnn.Sequential({"encoder": jaxnn.Sequential([jaxnn.MultiHeadAttention(1), jaxnn.Tanh()]),
                              "pool": jaxnn.GlobalAvgPool()})
    _, params, state = model.init(jax.random.key(1), (3, 2))
    x = np.random.default_rng(1).standard_normal((2, 3, 2)).astype(np.float32)
    run = jax.jit(lambda x, mask: lab.capture(model, params, state, x, mask=mask))
    masked = run(x, np.array([[True, True, False], [True, True, True]]))
    unmasked = run(x, np.ones((2, 3), bool))
    order = ["encoder/multi_head_attention_0/q", "encoder/multi_head_attention_0/k",
             "encoder/multi_head_attention_0/v", "encoder/multi_head_attention_0/o",
             "encoder/multi_head_attention_0", "encoder/tanh_1", "encoder", "pool"]
    assert list(masked) == order
    # Every leaf of jaxnn.summary is captured under the same path.
    rows = [line.split()[0] for line in jaxnn.summary(model, (3, 2)).splitlines()[4:-4]]
    assert rows and set(rows) <= set(masked)
    # Paths index the parameter tree: the query projection is x @ w + b with those params.
    q = jax.tree.map(np.asarray, params["encoder"]["multi_head_attention_0"]["q"])
    np.testing.assert_allclose(masked["encoder/multi_head_attention_0/q"], x @ q["w"] + q["b"], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(masked["pool"], np.mean(masked["encoder"], axis=-2), rtol=1e-5, atol=1e-6)
    # The mask reaches the attention: the first example (a key masked) changes, the second not.
    attention = "encoder/multi_head_attention_0"
    assert not np.allclose(masked[attention][0], unmasked[attention][0])
    np.testing.assert_allclose(masked[attention][1], unmasked[attention][1], rtol=1e-6)


def test_a_model_that_is_not_sequential_ends_with_its_own_output():
    model = jaxnn.Residual(jaxnn.Dense(3))
    _, params, state = model.init(jax.random.key(2), (3,))
    x = np.ones((2, 3), np.float32)
    outputs = lab.capture(model, params, state, x)
    assert list(outputs) == ["residual"]
    w, b = np.asarray(params["w"]), np.asarray(params["b"])
    np.testing.assert_allclose(outputs["residual"], x + x @ w + b, rtol=1e-6)


def test_bad_arguments_are_named():
    model = jaxnn.Sequential([jaxnn.Dense(2)])
    _, params, state = model.init(jax.random.key(0), (3,))
    with pytest.raises(TypeError, match="capture: `model` must be a jaxnn Layer"):
        lab.capture(jaxnn.Dense, params, state, jnp.ones((1, 3)))
    with pytest.raises(TypeError, match="'mask'"):
        lab.capture(model, params, state, jnp.ones((1, 3)), mask=None)
    with pytest.raises(ValueError, match="dense_0"):
        lab.capture(model, params, state, jnp.ones((1, 4)))
