"""Which constructor arguments are positional, and the errors for PyTorch-style positional calls.

A PyTorch call such as ``Conv2d(1, 32, 3)`` (1 input channel, 32 output channels, a 3x3 kernel)
must not be read with jaxnn's arguments (1 feature, a 32x32 kernel, stride 3): every constructor
takes only its leading arguments positionally, and a call with more is a ``TypeError`` naming the
jaxnn call. The translations are checked against the shapes PyTorch documents for its weights and
outputs (``Conv2d.weight`` is ``(out, in / groups, kh, kw)``, ``Linear.weight`` ``(out, in)``, ...).
"""

import inspect
import re

import jax
import numpy as np
import pytest

import jaxnn.layers
from jaxnn.layers import (
    AvgPool1D,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    LayerNorm,
    LeakyRelu,
    MaxPool1D,
    MaxPool2D,
    MultiHeadAttention,
)

CONSTRUCTORS = {name: value for name, value in vars(jaxnn.layers).items()
                if name[0].isupper() and inspect.isfunction(value)}

# constructor -> the arguments it takes positionally; everything else is keyword-only.
POSITIONAL = {
    "Dense": ("features",),
    "Embedding": ("vocab_size", "features"),
    "Conv1D": ("features", "kernel_size"),
    "Conv2D": ("features", "kernel_size"),
    "GroupNorm": ("groups",),
    "RMSNorm": (),
    "ConvTranspose1D": ("features", "kernel_size"),
    "ConvTranspose2D": ("features", "kernel_size"),
    "Upsample": ("scale_factor",),
    "MaxPool1D": ("window",),
    "MaxPool2D": ("window",),
    "AvgPool1D": ("window",),
    "AvgPool2D": ("window",),
    "Dropout": ("rate",),
    "BatchNorm": (),
    "LayerNorm": (),
    # One positional argument meaning what PyTorch's first argument means (negative_slope, alpha,
    # dim, approximate); PyTorch's second, inplace, has no counterpart.
    "LeakyRelu": ("negative_slope",),
    "Elu": ("alpha",),
    "Softmax": ("axis",),
    "LogSoftmax": ("axis",),
    "Gelu": ("approximate",),
    "Relu": (),
    "Sigmoid": (),
    "Tanh": (),
    "Swish": (),
    "Flatten": (),
    "Reshape": ("shape",),
    "GlobalAvgPool": (),
    "SimpleRNN": ("hidden",),
    "LSTM": ("hidden",),
    "GRU": ("hidden",),
    "Bidirectional": ("forward", "backward"),
    "MultiHeadAttention": ("heads",),
    "TransformerEncoderBlock": ("heads",),
    "SinusoidalPositionalEmbedding": (),
    "LearnedPositionalEmbedding": ("max_length",),
}


def test_every_layer_constructor_is_listed():
    assert set(CONSTRUCTORS) == set(POSITIONAL)


@pytest.mark.parametrize("name", sorted(POSITIONAL))
def test_only_the_leading_arguments_are_positional(name):
    parameters = inspect.signature(CONSTRUCTORS[name]).parameters.values()
    positional = tuple(p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD)
    assert positional == POSITIONAL[name]
    assert all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in parameters)


@pytest.mark.parametrize("name", sorted(POSITIONAL))
def test_one_positional_argument_too_many_is_a_type_error_naming_the_constructor(name):
    count = len(POSITIONAL[name]) + 1
    with pytest.raises(TypeError, match=rf"^{name} takes .*, got {count} positional argument"):
        CONSTRUCTORS[name](*[1] * count)


def _translation(error: Exception) -> str:
    """The jaxnn call the message gives for the PyTorch call: the text between "is " and " here"."""
    match = re.search(r"PyTorch's \w+\(.*?\) is (\w+\(.*?\)) here", str(error))
    assert match, str(error)
    return match.group(1)


def _run_translation(error: Exception):
    return eval(_translation(error), {"__builtins__": {}}, dict(CONSTRUCTORS))  # noqa: S307


def test_pytorch_conv2d_call_names_the_jaxnn_call():
    # The example of the documentation, word for word.
    with pytest.raises(TypeError) as error:
        Conv2D(1, 32, 3)
    assert str(error.value).startswith(
        "Conv2D takes (features, kernel_size) positionally and stride, padding, dilation, groups, ... by "
        "keyword, got 3 positional arguments (1, 32, 3); PyTorch's Conv2d(1, 32, 3) is Conv2D(32, 3) here "
        "(input channels are inferred)")
    # PyTorch's Conv2d(1, 32, 3).weight is (32, 1, 3, 3): ported with permute(2, 3, 1, 0), (3, 3, 1, 32).
    layer = _run_translation(error.value)
    output_shape, params, _ = layer.init(jax.random.key(0), (28, 28, 1))
    assert params["w"].shape == (3, 3, 1, 32)
    assert output_shape == (26, 26, 32)  # floor((28 - 3) / 1) + 1, PyTorch's formula


@pytest.mark.parametrize("torch_call, input_shape, weight_shape, output_shape", [
    # PyTorch's documented shapes: weight (out, in / groups, k...),
    # output floor((n + 2p - d(k - 1) - 1) / s) + 1.
    ("Conv2D(3, 16, 5, 2, 1)", (32, 32, 3), (16, 3, 5, 5), (15, 15, 16)),
    ("Conv2D(4, 8, (3, 1), 1, (1, 0), 2, 2)", (10, 7, 4), (8, 2, 3, 1), (8, 7, 8)),
    ("Conv1D(8, 16, 3, 1, 1, bias=False)", (20, 8), (16, 8, 3), (20, 16)),
])
def test_pytorch_conv_calls_translate_to_the_same_layer(torch_call, input_shape, weight_shape, output_shape):
    with pytest.raises(TypeError) as error:
        eval(torch_call, {"__builtins__": {}}, dict(CONSTRUCTORS))  # noqa: S307
    layer = _run_translation(error.value)
    shape, params, _ = layer.init(jax.random.key(0), input_shape)
    ndim = len(input_shape) - 1
    permutation = tuple(range(2, 2 + ndim)) + (1, 0)  # (out, in, k...) -> (k..., in, out)
    assert params["w"].shape == tuple(np.transpose(np.zeros(weight_shape), permutation).shape)
    assert shape == output_shape
    assert ("b" in params) == ("bias=False" not in torch_call)


def test_former_jaxnn_order_is_offered_as_well():
    # Conv2D(32, 3, 1, "SAME") cannot be PyTorch's (its fourth argument, stride, is no string).
    with pytest.raises(TypeError, match=r"\(32, 3, 1, 'SAME'\); write "
                                        r"Conv2D\(32, 3, stride=1, padding='SAME'\)$"):
        Conv2D(32, 3, 1, "SAME")
    with pytest.raises(TypeError, match=r"or, if \(32, 3, 2\) meant \(features, kernel_size, stride\), "
                                        r"Conv2D\(32, 3, stride=2\)$"):
        Conv2D(32, 3, 2)


@pytest.mark.parametrize("pool, torch_call, input_shape, output_shape", [
    # PyTorch: floor((n + 2p - k) / s) + 1, stride defaulting to the kernel size.
    (MaxPool2D, (3, 2), (7, 7, 4), (3, 3, 4)),
    (MaxPool2D, (3, 2, 1), (7, 7, 4), (4, 4, 4)),
    (AvgPool2D, (2, 1), (5, 5, 1), (4, 4, 1)),
    (MaxPool1D, (4, 4, 2), (9, 3), (3, 3)),
    (AvgPool1D, (3, 2, 1), (7, 2), (4, 2)),
])
def test_pytorch_pool_calls_translate_to_the_same_layer(pool, torch_call, input_shape, output_shape):
    with pytest.raises(TypeError, match=rf"^{pool.__name__} takes window positionally and stride, "
                                        "padding by keyword") as error:
        pool(*torch_call)
    layer = _run_translation(error.value)
    assert layer.init(jax.random.key(0), input_shape)[0] == output_shape


def test_pytorch_linear_embedding_attention_and_norm_calls():
    with pytest.raises(TypeError) as error:
        Dense(64, 128, False)
    layer = _run_translation(error.value)  # nn.Linear(64, 128, bias=False).weight is (128, 64)
    _, params, _ = layer.init(jax.random.key(0), (64,))
    assert params == {"w": params["w"]} and params["w"].shape == (64, 128)

    with pytest.raises(TypeError, match=r"PyTorch's Embedding\(10, 3, 0\) is Embedding\(10, 3\) here; its "
                                        r"padding_idx, max_norm and later arguments have no counterpart"):
        Embedding(10, 3, 0)

    with pytest.raises(TypeError) as error:
        MultiHeadAttention(16, 4, 0.1)
    assert _translation(error.value) == "MultiHeadAttention(4, dropout=0.1)"

    with pytest.raises(TypeError) as error:
        BatchNorm(64, 1e-3, 0.01)
    # PyTorch: running = (1 - momentum) * running + momentum * batch; jaxnn's weighs the running value.
    assert _translation(error.value) == "BatchNorm(eps=0.001, momentum=0.99)"
    with pytest.raises(TypeError) as error:
        LayerNorm(64, 1e-6)
    assert _translation(error.value) == "LayerNorm(eps=1e-06)"


@pytest.mark.parametrize("call, expected", [
    (lambda: Dropout(0.5, True), "Dropout(0.5)"),
    (lambda: LeakyRelu(0.2, True), "LeakyRelu(0.2)"),
    (lambda: jaxnn.layers.Relu(True), "Relu()"),
    (lambda: jaxnn.layers.Elu(1.0, True), "Elu(1.0)"),
    (lambda: jaxnn.layers.Swish(True), "Swish()"),
])
def test_pytorch_inplace_argument_is_named(call, expected):
    with pytest.raises(TypeError, match=re.escape(f"is {expected} here (there is no in-place variant)")):
        call()


def test_recurrent_calls_name_the_hidden_size():
    with pytest.raises(TypeError) as error:
        jaxnn.layers.LSTM(64, 128)
    layer = _run_translation(error.value)
    _, params, _ = layer.init(jax.random.key(0), (5, 64))
    assert params["wh"].shape == (128, 4 * 128)  # nn.LSTM(64, 128).weight_hh_l0 is (4 * 128, 128)
    with pytest.raises(TypeError, match=r"PyTorch's GRU\(64, 128, 2\) is GRU\(128, num_layers=2\) here") as error:
        jaxnn.layers.GRU(64, 128, 2)
    _, params, _ = _run_translation(error.value).init(jax.random.key(0), (5, 64))
    # nn.GRU(64, 128, 2).weight_ih_l0 is (3 * 128, 64) and weight_ih_l1 (3 * 128, 128).
    assert params["layer_0"]["wi"].shape == (64, 384) and params["layer_1"]["wi"].shape == (128, 384)


def test_keywords_still_work_and_errors_inside_the_constructor_are_unchanged():
    assert Conv2D(4, 3, stride=2, padding="SAME").init(jax.random.key(0), (5, 5, 1))[0] == (3, 3, 4)
    assert MaxPool2D(2, stride=1).init(jax.random.key(0), (3, 3, 1))[0] == (2, 2, 1)
    assert Conv2D.__name__ == "Conv2D" and "2D convolution" in Conv2D.__doc__
    with pytest.raises(ValueError, match=r"^Conv2D: `features` \(=0\) must be a positive int"):
        Conv2D(0, 3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'strides'"):
        Conv2D(4, 3, strides=2)
