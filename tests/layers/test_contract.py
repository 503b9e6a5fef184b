"""The layer contract, checked for every layer jaxnn exports.

For each layer and several per-example shapes: ``init`` predicts the shape ``apply`` returns,
with zero, one and two batch axes; ``jit`` gives the eager result; ``vmap`` over single examples
equals the batched call; and gradients flow. A layer added to ``jaxnn.layers`` without an entry
in ``CASES`` fails ``test_every_exported_layer_is_covered``.
"""

import inspect
import math
import re

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
    "GroupNorm": (lambda: jaxnn.layers.GroupNorm(2), [(3, 4)], False),
    "RMSNorm": (jaxnn.layers.RMSNorm, [(5,)], False),
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
    "ConvTranspose1D": (lambda: jaxnn.layers.ConvTranspose1D(3, 3, stride=2, padding=1, output_padding=1),
                        [(4, 2)], False),
    "ConvTranspose2D": (lambda: jaxnn.layers.ConvTranspose2D(4, (3, 2), stride=(2, 1), dilation=(1, 2), groups=2),
                        [(3, 2, 4)], False),
    "Upsample": (lambda: jaxnn.layers.Upsample(2, mode="bilinear"), [(2, 3, 2)], False),
    "MaxPool1D": (lambda: jaxnn.layers.MaxPool1D(2), [(6, 3)], False),
    "MaxPool2D": (lambda: jaxnn.layers.MaxPool2D(2, padding="SAME"), [(5, 4, 2)], False),
    "AvgPool1D": (lambda: jaxnn.layers.AvgPool1D(3, stride=2, padding=1), [(7, 2)], False),
    "AvgPool2D": (lambda: jaxnn.layers.AvgPool2D(2), [(4, 4, 2)], False),
    "GlobalAvgPool": (jaxnn.layers.GlobalAvgPool, [(4, 3), (4, 4, 2)], False),
    "SimpleRNN": (lambda: jaxnn.layers.SimpleRNN(4), [(5, 3)], False),
    "LSTM": (lambda: jaxnn.layers.LSTM(4, return_sequences=True), [(5, 3)], False),
    "GRU": (lambda: jaxnn.layers.GRU(4, reverse=True), [(5, 3)], False),
    "SimpleRNN(num_layers=2)": (lambda: jaxnn.layers.SimpleRNN(4, num_layers=2, dropout=0.2), [(5, 3)], False),
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
# Cases whose compiled checks run only with `-m slow`: each also has a PyTorch parity test in the
# default run (tests/layers/test_torch_parity.py), which checks its outputs and gradients.
SLOW_CASES = {"GroupNorm", "RMSNorm", "ConvTranspose1D", "ConvTranspose2D", "SimpleRNN(num_layers=2)"}


# Activations whose jit, vmap and gradient checks (by finite differences) are in
# tests/layers/test_activations.py: here those two compiled checks run only with `-m slow`.
ACTIVATION_CASES = {"Relu", "Sigmoid", "Tanh", "LeakyRelu", "Softmax", "LogSoftmax", "Gelu", "Elu", "Swish"}


def marked(params, slow=frozenset(SLOW_CASES)):
    """``params`` for ``parametrize``, the ones named in ``slow`` marked slow."""
    return [pytest.param(*entry, marks=pytest.mark.slow) if entry[0] in slow else entry
            for entry in params]


def test_every_exported_layer_is_covered():
    constructors = {name for name, value in vars(jaxnn.layers).items()
                    if name[0].isupper() and inspect.isfunction(value)}
    assert constructors <= set(CASES), f"layers without a contract test: {constructors - set(CASES)}"


def make_input(shape, integer, seed=0):
    if integer:
        return jax.random.randint(jax.random.key(seed), shape, 0, 7)
    return jax.random.normal(jax.random.key(seed), shape)


@pytest.mark.parametrize("name,input_shape", marked(PARAMS))
# One batch axis is what every other test here uses; no axes and two axes are the cases a layer
# can get wrong, so the default run keeps those.
@pytest.mark.parametrize("batch_shape", [(), pytest.param((3,), marks=pytest.mark.slow), (2, 3)])
def test_init_predicts_apply_shape(name, input_shape, batch_shape):
    factory, _, integer = CASES[name]
    layer = factory()
    assert isinstance(layer, Layer)
    output_shape, params, state = layer.init(jax.random.key(0), input_shape)
    x = make_input(batch_shape + input_shape, integer)
    # Compiled: run op by op, compiling each operation on its own took longer than the whole.
    y, new_state = jax.jit(lambda params, state, x: layer.apply(params, state, x))(params, state, x)
    assert y.shape == batch_shape + tuple(output_shape)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    if batch_shape:
        y_train, _ = jax.jit(lambda params, state, x, key: layer.apply(params, state, x, key=key, train=True))(
            params, state, x, jax.random.key(1))
        assert y_train.shape == y.shape


@pytest.mark.parametrize("name,input_shape", marked(PARAMS, SLOW_CASES | ACTIVATION_CASES))
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


@pytest.mark.parametrize("name,input_shape", marked(PARAMS, SLOW_CASES | ACTIVATION_CASES))
def test_gradients_are_finite_and_flow_to_every_parameter(name, input_shape):
    factory, _, integer = CASES[name]
    layer = factory()
    _, params, state = layer.init(jax.random.key(0), input_shape)
    x = make_input((4,) + input_shape, integer)
    output = jax.eval_shape(lambda: layer.apply(params, state, x)[0])
    weights = jax.random.normal(jax.random.key(2), output.shape)

    def loss(params, x):
        y, _ = layer.apply(params, state, x, key=jax.random.key(3), train=True)
        return jnp.sum(y.astype(jnp.float32) * weights)

    # Both gradients in one compiled call: run op by op, the test took twice as long, compiling
    # each operation on its own.
    grads = jax.jit(jax.grad(loss, argnums=0 if integer else (0, 1)))(params, x)
    grads, input_grads = (grads, None) if integer else grads
    for leaf in jax.tree_util.tree_leaves(grads):
        assert np.all(np.isfinite(leaf)) and np.any(leaf != 0)
    if input_grads is not None:
        assert np.all(np.isfinite(input_grads))


# Every per-example shape above with a zero put in each of its axes in turn.
ZERO_SIZE_PARAMS = [(name, shape[:axis] + (0,) + shape[axis + 1:])
                    for name, shape in PARAMS for axis in range(len(shape))]


@pytest.mark.parametrize("name,input_shape", ZERO_SIZE_PARAMS)
def test_init_refuses_a_zero_size_axis_naming_the_shape(name, input_shape):
    # An example with a zero-size axis has no elements: params for nothing, empty or NaN outputs.
    layer = CASES[name][0]()
    with pytest.raises(ValueError, match=rf"^{layer.name}: input_shape must not have zero sizes, "
                                         rf"got {re.escape(str(input_shape))}"):
        layer.init(jax.random.key(0), input_shape)


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_empty_batch_is_still_fine(name):
    # Batch axes are not part of input_shape: zero examples give zero outputs of the predicted shape.
    factory, shapes, integer = CASES[name]
    layer = factory()
    output_shape, params, state = layer.init(jax.random.key(0), shapes[0])
    y, _ = layer.apply(params, state, make_input((0,) + shapes[0], integer))
    assert y.shape == (0,) + tuple(output_shape)


# --------------------------------------------------------------------------------------------
# Options: declared by layers, routed by combinators, refused when no layer takes them.


def _hidden(batch, size, value):
    return jnp.full(batch + (size,), value)


# constructor name -> {option: value for a batch of shape `batch`}, for the layers that take options
OPTION_VALUES = {
    "SimpleRNN": lambda batch: {"initial_state": _hidden(batch, 4, 0.5)},
    "LSTM": lambda batch: {"initial_state": (_hidden(batch, 4, 0.5), _hidden(batch, 4, -0.5))},
    "GRU": lambda batch: {"initial_state": _hidden(batch, 4, 0.5)},
    "Bidirectional": lambda batch: {"initial_state": {"forward": _hidden(batch, 3, 0.5),
                                                      "backward": _hidden(batch, 3, -0.5)}},
    "SimpleRNN(num_layers=2)": lambda batch: {"initial_state": [_hidden(batch, 4, 0.5), _hidden(batch, 4, -0.5)]},
    # Cross-attention: 6 keys from a context, 3 of them real.
    "MultiHeadAttention": lambda batch: {"mask": jnp.broadcast_to(jnp.arange(6) < 3, batch + (6,)),
                                         "context": jnp.linspace(-1, 1, 24 * math.prod(batch)).reshape(batch + (6, 4))},
    "TransformerEncoderBlock": lambda batch: {"mask": jnp.broadcast_to(jnp.arange(5) < 3, batch + (5,))},
}
COMBINATORS = {"Sequential", "Residual", "Concat"}


def test_layers_declare_exactly_the_options_listed_here():
    for name, (factory, _, _) in CASES.items():
        if name in COMBINATORS:
            continue
        expected = tuple(sorted(OPTION_VALUES[name]((2,)))) if name in OPTION_VALUES else ()
        assert factory().options == expected, name


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_option_no_layer_takes_is_a_type_error_naming_it(name):
    factory, shapes, integer = CASES[name]
    layer = factory()
    _, params, state = layer.init(jax.random.key(0), shapes[0])
    x = make_input((2,) + shapes[0], integer)
    takes = ", ".join(layer.options) if layer.options else "none"
    with pytest.raises(TypeError, match=rf"^{layer.name}: no layer of this model takes the option 'maks'; "
                                        rf"it takes {takes}$"):
        layer.apply(params, state, x, maks=1)


# The layers taking options whose output shape equals their input shape, as a residual
# connection needs (the recurrent layers map (T, in) to a hidden size).
SHAPE_PRESERVING = {"MultiHeadAttention", "TransformerEncoderBlock"}
ROUTING_CASES = [(name, combinator) for name in sorted(OPTION_VALUES)
                 for combinator in ("nested_sequential", "concat", "residual")
                 if combinator != "residual" or name in SHAPE_PRESERVING]


@pytest.mark.parametrize("name,combinator", ROUTING_CASES)
def test_combinators_route_each_option_to_the_layers_that_take_it(name, combinator):
    factory, shapes, _ = CASES[name]
    input_shape = shapes[0]
    layer = factory()
    output_shape, _, _ = layer.init(jax.random.key(0), input_shape)
    assert (tuple(output_shape) == input_shape) == (name in SHAPE_PRESERVING)
    model = {
        # A Dense child that takes no options sits beside the layer: it must not be given them.
        "nested_sequential": lambda: Sequential({"outer": Sequential({"inner": layer}),
                                                 "head": jaxnn.layers.Dense(2)}),
        "concat": lambda: Concat({"a": layer, "b": factory()}),
        "residual": lambda: Residual(layer),
    }[combinator]()
    assert model.options == layer.options
    _, params, state = model.init(jax.random.key(0), input_shape)
    layer_params = {"nested_sequential": lambda p: p["outer"]["inner"], "concat": lambda p: p["a"],
                    "residual": lambda p: p}[combinator](params)
    layer_state = {"nested_sequential": lambda s: s["outer"]["inner"], "concat": lambda s: s["a"],
                   "residual": lambda s: s}[combinator](state)
    x = make_input((2,) + input_shape, False)
    options = OPTION_VALUES[name]((2,))
    routed, _ = model.apply(params, state, x, **options)
    direct, _ = layer.apply(layer_params, layer_state, x, **options)
    without, _ = layer.apply(layer_params, layer_state, x)
    assert not np.allclose(direct, without), "the option must change the output for this test to mean anything"
    if combinator == "nested_sequential":
        head = jaxnn.layers.Dense(2)
        expected, _ = head.apply(params["head"], state["head"], direct)
        np.testing.assert_allclose(routed, expected, rtol=1e-6, atol=1e-6)
    elif combinator == "concat":
        np.testing.assert_allclose(routed[..., : direct.shape[-1]], direct, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_allclose(routed, x + direct, rtol=1e-6, atol=1e-6)


def test_a_padding_mask_reaches_every_attention_in_a_stack_of_transformer_blocks():
    blocks = [jaxnn.layers.TransformerEncoderBlock(2) for _ in range(2)]
    model = Sequential([jaxnn.layers.Dense(4), *blocks, jaxnn.layers.GlobalAvgPool()])
    assert model.options == ("mask",)
    _, params, state = model.init(jax.random.key(0), (5, 3))
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))
    mask = jnp.asarray([[True] * 5, [True, True, True, False, False]])
    y, _ = model.apply(params, state, x, mask=mask)
    # By hand: each block gets the mask.
    h, _ = jaxnn.layers.Dense(4).apply(params["dense_0"], {}, x)
    for i, block in enumerate(blocks, start=1):
        h, _ = block.apply(params[f"transformer_encoder_block_{i}"], {}, h, mask=mask)
    pooled, _ = jaxnn.layers.GlobalAvgPool().apply({}, state["global_avg_pool_3"], h)
    np.testing.assert_allclose(y, pooled, rtol=1e-6, atol=1e-6)
    # Padding changes nothing for the real tokens of a padded sequence: padded positions are never attended to.
    garbage = x.at[1, 3:].set(100.0)
    y_garbage, _ = jax.jit(lambda x: Sequential([jaxnn.layers.Dense(4), *blocks]).apply(
        {k: v for k, v in params.items() if k != "global_avg_pool_3"},
        {k: v for k, v in state.items() if k != "global_avg_pool_3"}, x, mask=mask)[0])(garbage), None
    y_clean = jax.jit(lambda x: Sequential([jaxnn.layers.Dense(4), *blocks]).apply(
        {k: v for k, v in params.items() if k != "global_avg_pool_3"},
        {k: v for k, v in state.items() if k != "global_avg_pool_3"}, x, mask=mask)[0])(x)
    np.testing.assert_allclose(y_garbage[1, :3], y_clean[1, :3], rtol=1e-5, atol=1e-5)


def test_an_unknown_option_inside_a_model_lists_the_options_the_model_takes():
    model = Sequential([jaxnn.layers.LSTM(3, return_sequences=True), jaxnn.layers.MultiHeadAttention(1)])
    _, params, state = model.init(jax.random.key(0), (4, 2))
    with pytest.raises(TypeError, match=r"^sequential: no layer of this model takes the option 'masks'; "
                                        r"it takes context, initial_state, mask$"):
        model.apply(params, state, jnp.ones((4, 2)), masks=jnp.ones(4, bool))
