"""Tests for jaxnn.layers.activations: hand-worked values, float64 closed forms, jax.nn, and finite
differences; stability at |x| = 1000; and the layer contract for every activation layer."""

import decimal
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxnn.layers.activations import (
    Elu,
    Gelu,
    LeakyRelu,
    LogSoftmax,
    Relu,
    Sigmoid,
    Softmax,
    Swish,
    Tanh,
    elu,
    gelu,
    leaky_relu,
    log_softmax,
    relu,
    sigmoid,
    softmax,
    swish,
    tanh,
)

SLOPE = 0.2
ALPHA = 1.5

# --------------------------------------------------------------------------------------------
# Float64 references, written from the formulas one element at a time. exp and log are taken in
# Decimal with an unbounded exponent, so the references need no overflow trick of their own.

_DECIMAL = decimal.Context(prec=40, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def _in_decimal(function):
    def wrapped(*args):
        with decimal.localcontext(_DECIMAL):
            return function(*args)

    return wrapped


def _exp(x):
    return decimal.Decimal(float(x)).exp()


@_in_decimal
def _sigmoid(x):
    return float(1 / (1 + _exp(-x)))


@_in_decimal
def _tanh(x):
    return float((_exp(x) - _exp(-x)) / (_exp(x) + _exp(-x)))


def _gelu(x):
    return 0.5 * x * (1 + math.erf(x / math.sqrt(2)))


def _gelu_tanh(x):
    return 0.5 * x * (1 + _tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


@_in_decimal
def _elu(x):
    return x if x > 0 else ALPHA * float(_exp(x) - 1)


@_in_decimal
def _softmax_row(row):
    exponentials = [_exp(value) for value in row]
    total = sum(exponentials)
    return [float(value / total) for value in exponentials]


@_in_decimal
def _log_softmax_row(row):
    log_total = sum(_exp(value) for value in row).ln()
    return [float(decimal.Decimal(float(value)) - log_total) for value in row]


def _elementwise(scalar_reference):
    vectorized = np.vectorize(lambda x: scalar_reference(float(x)), otypes=[np.float64])
    return lambda x: vectorized(np.asarray(x, np.float64))


def _along(axis, row_reference):
    return lambda x: np.apply_along_axis(row_reference, axis, np.asarray(x, np.float64))


# id -> (function under test, float64 reference, jax.nn equivalent or None)
CASES = {
    "relu": (relu, _elementwise(lambda x: max(x, 0.0)), jax.nn.relu),
    "sigmoid": (sigmoid, _elementwise(_sigmoid), jax.nn.sigmoid),
    "tanh": (tanh, _elementwise(_tanh), None),
    "leaky_relu": (
        lambda x: leaky_relu(x, SLOPE),
        _elementwise(lambda x: max(0.0, x) + SLOPE * min(0.0, x)),
        lambda x: jax.nn.leaky_relu(x, SLOPE),
    ),
    "softmax": (softmax, _along(-1, _softmax_row), jax.nn.softmax),
    "softmax_axis-2": (
        lambda x: softmax(x, axis=-2),
        _along(-2, _softmax_row),
        lambda x: jax.nn.softmax(x, axis=-2),
    ),
    "log_softmax": (log_softmax, _along(-1, _log_softmax_row), jax.nn.log_softmax),
    "log_softmax_axis-2": (
        lambda x: log_softmax(x, axis=-2),
        _along(-2, _log_softmax_row),
        lambda x: jax.nn.log_softmax(x, axis=-2),
    ),
    "gelu": (gelu, _elementwise(_gelu), lambda x: jax.nn.gelu(x, approximate=False)),
    "gelu_tanh": (
        lambda x: gelu(x, approximate=True),
        _elementwise(_gelu_tanh),
        lambda x: jax.nn.gelu(x, approximate=True),
    ),
    "elu": (lambda x: elu(x, ALPHA), _elementwise(_elu), lambda x: jax.nn.elu(x, ALPHA)),
    "swish": (swish, _elementwise(lambda x: x * _sigmoid(x)), jax.nn.silu),
}
JAX_NN_CASES = [case for case, (_, _, jax_nn) in CASES.items() if jax_nn is not None]
ELEMENTWISE_CASES = [case for case in CASES if "softmax" not in case]


def _random(shape, seed=0, scale=4.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Values.


@pytest.mark.parametrize(
    "function, x, expected",
    [
        (relu, -2.0, 0.0),
        (relu, 3.0, 3.0),
        (sigmoid, 0.0, 0.5),
        (sigmoid, math.log(3), 0.75),  # 1 / (1 + 1/3)
        (tanh, math.log(2), 0.6),  # (2 - 1/2) / (2 + 1/2)
        (lambda x: leaky_relu(x, 0.1), -2.0, -0.2),
        (leaky_relu, -3.0, -0.03),
        (leaky_relu, 3.0, 3.0),
        (elu, -1.0, math.exp(-1) - 1),
        (lambda x: elu(x, alpha=2.0), -1.0, 2 * (math.exp(-1) - 1)),
        (elu, 2.0, 2.0),
        (gelu, 0.0, 0.0),
        (gelu, 1.0, 0.8413447460685429),  # the standard normal CDF at 1
        (gelu, -1.0, -0.15865525393145707),  # -(1 - CDF(1))
        (lambda x: gelu(x, approximate=True), 1.0, 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * 1.044715))),
        (swish, 0.0, 0.0),
        (swish, math.log(3), 0.75 * math.log(3)),
        (softmax, [0.0, math.log(3)], [0.25, 0.75]),
        (log_softmax, [0.0, math.log(3)], [math.log(0.25), math.log(0.75)]),
        (lambda x: softmax(x, axis=0), [[0.0, 0.0], [math.log(3), 0.0]], [[0.25, 0.5], [0.75, 0.5]]),
    ],
)
def test_hand_worked_values(function, x, expected):
    np.testing.assert_allclose(function(jnp.asarray(x, jnp.float32)), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", CASES)
def test_matches_float64_reference(case):
    function, reference, _ = CASES[case]
    x = _random((3, 4, 5))
    y = function(x)
    assert y.shape == x.shape and y.dtype == jnp.float32
    np.testing.assert_allclose(y, reference(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", JAX_NN_CASES)
def test_matches_jax_nn(case):
    function, _, jax_nn = CASES[case]
    x = _random((3, 4, 5), seed=1)
    np.testing.assert_allclose(function(x), jax_nn(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
@pytest.mark.parametrize("case", CASES)
def test_keeps_dtype(case, dtype):
    function, reference, _ = CASES[case]
    x = jnp.asarray(_random((4, 5), scale=2.0), dtype)
    y = function(x)
    assert y.dtype == dtype
    np.testing.assert_allclose(np.asarray(y, np.float64), reference(x), rtol=2e-2, atol=2e-2)


# --------------------------------------------------------------------------------------------
# Stability.

EXTREMES = np.array([-1000.0, -100.0, 0.0, 100.0, 1000.0], np.float32)
# Each column holds the extremes in a different order, so softmax along either axis meets them.
EXTREMES_2D = np.stack([EXTREMES, EXTREMES[::-1]], axis=-1)


@pytest.mark.parametrize("case", CASES)
def test_stable_at_extremes(case):
    function, reference, _ = CASES[case]
    y = function(EXTREMES_2D)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, reference(EXTREMES_2D), rtol=1e-6, atol=1e-6)
    weights = jnp.arange(EXTREMES_2D.size, dtype=jnp.float32).reshape(EXTREMES_2D.shape)
    gradient = jax.grad(lambda x: jnp.sum(weights * function(x)))(EXTREMES_2D)
    assert np.all(np.isfinite(gradient))


@pytest.mark.parametrize(
    "function, x, expected",
    [
        (sigmoid, [-1000.0, 1000.0], [0.0, 1.0]),
        (tanh, [-1000.0, 1000.0], [-1.0, 1.0]),
        (softmax, [1000.0, -1000.0], [1.0, 0.0]),
        (log_softmax, [1000.0, 0.0], [0.0, -1000.0]),
        (elu, [-1000.0, 1000.0], [-1.0, 1000.0]),
        (gelu, [-1000.0, 1000.0], [0.0, 1000.0]),
        (swish, [-1000.0, 1000.0], [0.0, 1000.0]),
    ],
)
def test_hand_worked_extremes(function, x, expected):
    np.testing.assert_allclose(function(jnp.asarray(x, jnp.float32)), expected, rtol=1e-7, atol=0)


# The derivative far out in each tail: (at -inf, at +inf).
SATURATED_DERIVATIVES = {
    "relu": (0.0, 1.0),
    "sigmoid": (0.0, 0.0),
    "tanh": (0.0, 0.0),
    "leaky_relu": (SLOPE, 1.0),
    "gelu": (0.0, 1.0),
    "gelu_tanh": (0.0, 1.0),
    "elu": (0.0, 1.0),
    "swish": (0.0, 1.0),
}


@pytest.mark.parametrize("case", ELEMENTWISE_CASES)
def test_gradient_saturates_at_extremes(case):
    function = CASES[case][0]
    x = jnp.array([-1000.0, -100.0, 100.0, 1000.0], jnp.float32)
    gradient = jax.grad(lambda x: jnp.sum(function(x)))(x)
    negative, positive = SATURATED_DERIVATIVES[case]
    np.testing.assert_allclose(gradient, [negative, negative, positive, positive], atol=1e-6)


# The derivative at 0, worked out by hand; at the kinks, PyTorch's one-sided choice.
DERIVATIVES_AT_ZERO = {
    "relu": 0.0,
    "sigmoid": 0.25,
    "tanh": 1.0,
    "leaky_relu": SLOPE,
    "gelu": 0.5,
    "gelu_tanh": 0.5,
    "elu": ALPHA,
    "swish": 0.5,
}


@pytest.mark.parametrize("case", ELEMENTWISE_CASES)
def test_derivative_at_zero(case):
    function = CASES[case][0]
    np.testing.assert_allclose(jax.grad(function)(jnp.float32(0.0)), DERIVATIVES_AT_ZERO[case], rtol=1e-7)


def test_log_softmax_gradient_at_extremes():
    # d/dx_j sum_i w_i log_softmax(x)_i = w_j - sum(w) softmax(x)_j, and softmax([1000, -1000]) = [1, 0].
    weights = jnp.array([1.0, 2.0])
    gradient = jax.grad(lambda x: jnp.sum(weights * log_softmax(x)))(jnp.array([1000.0, -1000.0]))
    np.testing.assert_allclose(gradient, [1.0 - 3.0, 2.0 - 0.0], atol=1e-6)


def test_gelu_tanh_half_precision_is_finite_with_finite_gradient_at_extremes():
    # In float16, x**3 overflows from |x| of about 40 and its derivative 3 x**2 from about 150.
    x = jnp.array([-1000.0, -100.0, 100.0, 1000.0], jnp.float16)
    y = gelu(x, approximate=True)
    assert y.dtype == jnp.float16
    np.testing.assert_array_equal(np.asarray(y, np.float32), [0.0, 0.0, 100.0, 1000.0])
    gradient = jax.grad(lambda x: jnp.sum(gelu(x, approximate=True)))(x)
    assert gradient.dtype == jnp.float16
    np.testing.assert_array_equal(np.asarray(gradient, np.float32), [0.0, 0.0, 1.0, 1.0])


# --------------------------------------------------------------------------------------------
# Integer and boolean inputs.

FLOATING_CASES = [case for case in CASES if case != "relu"]
INTEGER_INPUTS = {
    "int32": np.array([[-3, 0, 2], [1, -1, 4]], np.int32),
    "uint8": np.array([[3, 0, 2], [1, 5, 4]], np.uint8),
    "bool": np.array([[True, False, True], [False, False, True]]),
}


@pytest.mark.parametrize("input_dtype", list(INTEGER_INPUTS))
@pytest.mark.parametrize("case", FLOATING_CASES)
def test_integer_and_bool_inputs_compute_in_the_default_float(case, input_dtype):
    function, reference, _ = CASES[case]
    x = INTEGER_INPUTS[input_dtype]
    y = function(jnp.asarray(x))
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, reference(x.astype(np.float64)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "function, x, expected",
    [
        (sigmoid, [-2, 3], [1 / (1 + math.exp(2)), 1 / (1 + math.exp(-3))]),
        (leaky_relu, [-200, 3], [-2.0, 3.0]),  # an integer computation rounds the slope 0.01 to 0
        (lambda x: elu(x, alpha=2.0), [-1, 2], [2 * (math.exp(-1) - 1), 2.0]),
        (softmax, [0, 0], [0.5, 0.5]),
    ],
)
def test_integer_hand_worked_values(function, x, expected):
    y = function(jnp.asarray(x, jnp.int32))
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, expected, rtol=1e-6)


@pytest.mark.parametrize("input_dtype", list(INTEGER_INPUTS))
def test_relu_keeps_integer_and_bool_dtypes(input_dtype):
    x = INTEGER_INPUTS[input_dtype]
    y = relu(jnp.asarray(x))
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(y, np.maximum(x, np.zeros_like(x)))


def test_integer_inputs_follow_x64():
    with jax.enable_x64(True):
        x = jnp.array([-2, 3], jnp.int64)
        assert sigmoid(x).dtype == jnp.float64
        np.testing.assert_allclose(leaky_relu(x), [-0.02, 3.0], rtol=1e-15)
        assert relu(x).dtype == jnp.int64


# --------------------------------------------------------------------------------------------
# NaN inputs. IEEE arithmetic, and PyTorch (torch.relu(nan) is nan), give NaN for a NaN input; a
# comparison such as x > 0 is False for NaN and must not pick a finite branch.


def _nan_input():
    x = _random((3, 4))
    x[1, 2] = np.nan
    return x


def _nan_positions(case, x):
    """Where the value must be NaN: the NaN itself, or its whole row along a (log-)softmax's axis."""
    if "softmax" not in case:
        return np.isnan(x)
    axis = -2 if "axis-2" in case else -1
    return np.broadcast_to(np.isnan(x).any(axis=axis, keepdims=True), x.shape)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
@pytest.mark.parametrize("case", CASES)
def test_nan_input_gives_nan_value(case, dtype):
    function, reference, _ = CASES[case]
    x = _nan_input()
    y = np.asarray(function(jnp.asarray(x, dtype)), np.float32)
    expected_nan = _nan_positions(case, x)
    np.testing.assert_array_equal(np.isnan(y), expected_nan)
    if dtype == jnp.float32:
        expected = reference(np.nan_to_num(x))  # the NaN's own entries are not compared
        np.testing.assert_allclose(y[~expected_nan], expected[~expected_nan], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_nan_input_gives_nan_gradient_where_the_value_is_nan(case):
    function = CASES[case][0]
    x = _nan_input()
    weights = _random((3, 4), seed=1)
    gradient = np.asarray(jax.grad(lambda x: jnp.sum(function(x) * weights))(jnp.asarray(x)))
    np.testing.assert_array_equal(np.isnan(gradient), _nan_positions(case, x))
    # Forward mode and the second derivative as well: no order of derivative turns the NaN finite.
    tangent = np.asarray(jax.jvp(function, (jnp.asarray(x),), (jnp.ones((3, 4)),))[1])
    assert np.all(np.isnan(tangent[_nan_positions(case, x)]))
    if case in ELEMENTWISE_CASES:
        second = jax.vmap(jax.grad(jax.grad(lambda v: function(v[None])[0])))(jnp.asarray(x).ravel())
        assert np.isnan(np.asarray(second).reshape(3, 4)[1, 2])


def test_relu_and_leaky_relu_propagate_nan_but_keep_infinities():
    x = jnp.array([np.nan, np.inf, -np.inf, 0.0, -2.0, 3.0])
    np.testing.assert_array_equal(relu(x), [np.nan, np.inf, 0.0, 0.0, 0.0, 3.0])
    np.testing.assert_array_equal(leaky_relu(x, 0.5), [np.nan, np.inf, -np.inf, 0.0, -1.0, 3.0])
    # Derivatives away from NaN are the usual ones, infinities included (no 0 * inf = NaN).
    np.testing.assert_array_equal(jax.vmap(jax.grad(relu))(x), [np.nan, 1.0, 0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(jax.vmap(jax.grad(lambda v: leaky_relu(v, 0.5)))(x),
                                  [np.nan, 1.0, 0.5, 0.5, 0.5, 1.0])


# --------------------------------------------------------------------------------------------
# Gradients against finite differences.


@pytest.mark.parametrize("case", CASES)
def test_gradients_match_finite_differences(case):
    function = CASES[case][0]
    rng = np.random.default_rng(2)
    # Magnitudes of at least 0.2 keep the finite differences away from the kinks at 0.
    x = rng.uniform(0.2, 3.0, (3, 4)) * rng.choice([-1.0, 1.0], (3, 4))
    with jax.enable_x64(True):
        # Jitted, so that each derivative compiles once rather than running op by op.
        check_grads(jax.jit(function), (jnp.asarray(x, jnp.float64),), order=2, modes=["fwd", "rev"])


# --------------------------------------------------------------------------------------------
# Layers.

# id (as in CASES) -> (constructor call, layer name)
LAYERS = {
    "relu": (Relu, "relu"),
    "sigmoid": (Sigmoid, "sigmoid"),
    "tanh": (Tanh, "tanh"),
    "leaky_relu": (lambda: LeakyRelu(SLOPE), "leaky_relu"),
    "softmax": (Softmax, "softmax"),
    "softmax_axis-2": (lambda: Softmax(axis=-2), "softmax"),
    "log_softmax": (LogSoftmax, "log_softmax"),
    "log_softmax_axis-2": (lambda: LogSoftmax(axis=-2), "log_softmax"),
    "gelu": (Gelu, "gelu"),
    "gelu_tanh": (lambda: Gelu(approximate=True), "gelu"),
    "elu": (lambda: Elu(ALPHA), "elu"),
    "swish": (Swish, "swish"),
}
assert LAYERS.keys() == CASES.keys()

INPUT_SHAPES = [(6,), (4, 5), (2, 3, 4)]
BATCH_SHAPES = [(), (2,), (2, 3)]


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize(
    "case, input_shape",
    [(case, shape) for case in LAYERS for shape in INPUT_SHAPES if not ("axis-2" in case and len(shape) < 2)],
)
def test_layer_shapes_and_values(case, input_shape, batch_shape):
    make, name = LAYERS[case]
    layer = make()
    assert layer.name == name
    output_shape, params, state = layer.init(jax.random.key(0), input_shape)
    assert output_shape == input_shape and params == {} and state == {}
    x = _random(batch_shape + input_shape)
    y, new_state = layer.apply(params, state, x)
    assert y.shape == batch_shape + tuple(output_shape) and y.dtype == jnp.float32
    assert new_state == {}
    np.testing.assert_allclose(y, CASES[case][1](x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", LAYERS)
def test_layer_vmap_and_jit(case):
    layer = LAYERS[case][0]()
    _, params, state = layer.init(jax.random.key(0), (4, 5))
    x = _random((3, 4, 5))
    expected = CASES[case][1](x)

    def apply(x):
        return layer.apply(params, state, x)[0]

    np.testing.assert_allclose(jax.vmap(apply)(x), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jax.jit(apply)(x), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.vmap(apply))(x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", LAYERS)
def test_layer_propagates_nan(case):
    layer = LAYERS[case][0]()
    _, params, state = layer.init(jax.random.key(0), (3, 4))
    x = _nan_input()
    expected_nan = _nan_positions(case, x)
    y, _ = layer.apply(params, state, x)
    np.testing.assert_array_equal(np.isnan(y), expected_nan)
    y_jit, _ = jax.jit(lambda x: layer.apply(params, state, x))(x)
    np.testing.assert_array_equal(np.isnan(y_jit), expected_nan)
    gradient = jax.grad(lambda x: jnp.sum(layer.apply(params, state, x)[0]))(jnp.asarray(x))
    np.testing.assert_array_equal(np.isnan(gradient), expected_nan)


@pytest.mark.parametrize("case", LAYERS)
def test_layer_rejects_integer_input(case):
    make, name = LAYERS[case]
    with pytest.raises(TypeError, match=rf"^{name}: .*dtype int32"):
        make().apply({}, {}, jnp.arange(20, dtype=jnp.int32).reshape(4, 5))


@pytest.mark.parametrize("case", LAYERS)
def test_layer_rejects_non_array(case):
    make, name = LAYERS[case]
    with pytest.raises(TypeError, match=rf"^{name}: expected an array"):
        make().apply({}, {}, [[1.0, 2.0], [3.0, 4.0]])


@pytest.mark.parametrize("case", LAYERS)
def test_layer_rejects_bad_input_shape(case):
    make, name = LAYERS[case]
    with pytest.raises(ValueError, match=rf"^{name}: .*negative"):
        make().init(jax.random.key(0), (4, -1))


@pytest.mark.parametrize("make", [lambda: Softmax(axis=-2), lambda: LogSoftmax(axis=-2)])
def test_softmax_axis_out_of_range(make):
    layer = make()
    with pytest.raises(ValueError, match=r"axis -2 .*\(5,\)"):
        layer.init(jax.random.key(0), (5,))
    with pytest.raises(ValueError, match=r"axis -2 .*\(5,\)"):
        layer.apply({}, {}, jnp.zeros((5,), jnp.float32))


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: LeakyRelu("0.1"), TypeError, "`negative_slope` must be a real number, got '0.1'"),
        (lambda: LeakyRelu(True), TypeError, "`negative_slope` must be a real number"),
        (lambda: LeakyRelu(float("nan")), ValueError, r"`negative_slope` \(=nan\) must be a finite number"),
        (lambda: Elu(0.0), ValueError, r"`alpha` \(=0.0\) must be positive"),
        (lambda: Elu(-1), ValueError, r"`alpha` \(=-1\) must be positive"),
        (lambda: Elu(float("inf")), ValueError, r"`alpha` \(=inf\) must be a finite number"),
        (lambda: Elu(None), TypeError, "`alpha` must be a real number, got None"),
        (lambda: Softmax(0), ValueError, r"`axis` \(=0\) must be negative"),
        (lambda: Softmax(axis=1), ValueError, r"`axis` \(=1\) must be negative"),
        (lambda: Softmax(-1.0), TypeError, "`axis` must be an int, got -1.0"),
        (lambda: LogSoftmax(2), ValueError, r"`axis` \(=2\) must be negative"),
        (lambda: Gelu("tanh"), TypeError, "`approximate` must be True or False, got 'tanh'"),
    ],
)
def test_bad_constructor_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_leaky_relu_accepts_any_finite_slope():
    # PyTorch allows a negative or integer slope; only the formula's value matters.
    y, _ = LeakyRelu(-2).apply({}, {}, jnp.array([-1.0, 3.0]))
    np.testing.assert_allclose(y, [2.0, 3.0])
