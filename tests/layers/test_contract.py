"""The layer contract, checked for every layer jaxnn exports.

For each layer and several per-example shapes: ``init`` predicts the shape ``apply`` returns,
with zero, one and two batch axes; ``jit`` gives the eager result; ``vmap`` over single examples
equals the batched call; and gradients flow. A layer added to ``jaxnn.layers`` without an entry
in ``CASES`` fails ``test_every_exported_layer_is_covered``.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn.layers
from jaxnn.core import Concat, Layer, Residual, Sequential

# constructor name -> (layer factory, per-example input shapes, integer input?)
CASES = {
    "Dense": (lambda: jaxnn.layers.Dense(5), [(3,), (4, 3)], False),
    "Flatten": (jaxnn.layers.Flatten, [(6,), (2, 3), (2, 3, 2)], False),
    "Reshape": (lambda: jaxnn.layers.Reshape((-1, 2)), [(6,), (2, 3, 2)], False),
    "Embedding": (lambda: jaxnn.layers.Embedding(7, 3), [(), (4,), (2, 4)], True),
    "Dropout": (lambda: jaxnn.layers.Dropout(0.3), [(5,), (2, 5)], False),
    "BatchNorm": (jaxnn.layers.BatchNorm, [(5,), (4, 5), (3, 3, 2)], False),
    "LayerNorm": (jaxnn.layers.LayerNorm, [(5,), (4, 5)], False),
    "Relu": (jaxnn.layers.Relu, [(5,), (2, 5)], False),
    "Sigmoid": (jaxnn.layers.Sigmoid, [(5,)], False),
    "Tanh": (jaxnn.layers.Tanh, [(5,)], False),
    "LeakyRelu": (lambda: jaxnn.layers.LeakyRelu(0.2), [(5,)], False),
    "Softmax": (jaxnn.layers.Softmax, [(5,), (2, 5)], False),
    "LogSoftmax": (jaxnn.layers.LogSoftmax, [(5,)], False),
    "Gelu": (jaxnn.layers.Gelu, [(5,)], False),
    "Elu": (jaxnn.layers.Elu, [(5,)], False),
    "Swish": (jaxnn.layers.Swish, [(5,)], False),
    "Conv1D": (lambda: jaxnn.layers.Conv1D(4, 3, padding="SAME"), [(6, 2), (5, 3)], False),
    "Conv2D": (lambda: jaxnn.layers.Conv2D(4, (3, 2), stride=2, padding=1, dilation=(1, 2), groups=2),
               [(7, 6, 4), (5, 5, 2)], False),
    "MaxPool1D": (lambda: jaxnn.layers.MaxPool1D(2), [(6, 3)], False),
    "MaxPool2D": (lambda: jaxnn.layers.MaxPool2D(2, padding="SAME"), [(5, 4, 2)], False),
    "AvgPool1D": (lambda: jaxnn.layers.AvgPool1D(3, 2, padding=1), [(7, 2)], False),
    "AvgPool2D": (lambda: jaxnn.layers.AvgPool2D(2), [(4, 4, 2)], False),
    "GlobalAvgPool": (jaxnn.layers.GlobalAvgPool, [(4, 3), (4, 4, 2)], False),
    "SimpleRNN": (lambda: jaxnn.layers.SimpleRNN(4), [(5, 3)], False),
    "LSTM": (lambda: jaxnn.layers.LSTM(4, return_sequences=True), [(5, 3)], False),
    "GRU": (lambda: jaxnn.layers.GRU(4, reverse=True), [(5, 3)], False),
    "Bidirectional": (lambda: jaxnn.layers.Bidirectional(jaxnn.layers.GRU(3, return_sequences=True)), [(4, 2)], False),
    "MultiHeadAttention": (lambda: jaxnn.layers.MultiHeadAttention(2, causal=True), [(5, 4)], False),
    "SinusoidalPositionalEmbedding": (jaxnn.layers.SinusoidalPositionalEmbedding, [(5, 4), (3, 5)], False),
    "LearnedPositionalEmbedding": (lambda: jaxnn.layers.LearnedPositionalEmbedding(8), [(5, 4)], False),
    "TransformerEncoderBlock": (lambda: jaxnn.layers.TransformerEncoderBlock(2, dropout=0.1), [(5, 4)], False),
    "Sequential": (lambda: Sequential([jaxnn.layers.Dense(4), jaxnn.layers.Relu()]), [(3,)], False),
    "Residual": (lambda: Residual(jaxnn.layers.Dense(3)), [(3,), (2, 3)], False),
    "Concat": (lambda: Concat([jaxnn.layers.Dense(2), jaxnn.layers.Flatten()]), [(3,)], False),
}

PARAMS = [(name, shape) for name, (_, shapes, _) in CASES.items() for shape in shapes]


def test_every_exported_layer_is_covered():
    constructors = {name for name, value in vars(jaxnn.layers).items()
                    if name[0].isupper() and inspect.isfunction(value)}
    assert constructors <= set(CASES), f"layers without a contract test: {constructors - set(CASES)}"


def make_input(shape, integer, seed=0):
    if integer:
        return jax.random.randint(jax.random.key(seed), shape, 0, 7)
    return jax.random.normal(jax.random.key(seed), shape)


@pytest.mark.parametrize("name,input_shape", PARAMS)
@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)])
def test_init_predicts_apply_shape(name, input_shape, batch_shape):
    factory, _, integer = CASES[name]
    layer = factory()
    assert isinstance(layer, Layer)
    output_shape, params, state = layer.init(jax.random.key(0), input_shape)
    x = make_input(batch_shape + input_shape, integer)
    y, new_state = layer.apply(params, state, x)
    assert y.shape == batch_shape + tuple(output_shape)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    if batch_shape:
        y_train, _ = layer.apply(params, state, x, key=jax.random.key(1), train=True)
        assert y_train.shape == y.shape


@pytest.mark.parametrize("name,input_shape", PARAMS)
def test_jit_and_vmap_agree_with_the_batched_call(name, input_shape):
    factory, _, integer = CASES[name]
    layer = factory()
    _, params, state = layer.init(jax.random.key(0), input_shape)
    x = make_input((4,) + input_shape, integer)
    batched, _ = layer.apply(params, state, x)
    jitted, _ = jax.jit(lambda p, s, x: layer.apply(p, s, x))(params, state, x)
    single = jax.vmap(lambda example: layer.apply(params, state, example)[0])(x)
    np.testing.assert_allclose(jitted, batched, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(single, batched, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,input_shape", PARAMS)
def test_gradients_are_finite_and_flow_to_every_parameter(name, input_shape):
    factory, _, integer = CASES[name]
    layer = factory()
    _, params, state = layer.init(jax.random.key(0), input_shape)
    x = make_input((4,) + input_shape, integer)
    weights = jax.random.normal(jax.random.key(2), layer.apply(params, state, x)[0].shape)

    def loss(params, x):
        y, _ = layer.apply(params, state, x, key=jax.random.key(3), train=True)
        return jnp.sum(y.astype(jnp.float32) * weights)

    grads = jax.grad(loss)(params, x)
    for leaf in jax.tree_util.tree_leaves(grads):
        assert np.all(np.isfinite(leaf)) and np.any(leaf != 0)
    if not integer:
        assert np.all(np.isfinite(jax.grad(loss, argnums=1)(params, x)))
