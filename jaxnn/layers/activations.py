"""Activation functions, as plain functions (``relu(x)``) and as layers (``Relu()``).

The formulas are PyTorch's. Each function stays finite, with finite gradients, for inputs as large
as ``|x| = 1000`` in float32. A NaN input gives a NaN output (for :func:`softmax` and
:func:`log_softmax`, along its whole axis), as in PyTorch, and a NaN derivative there too, so that
a NaN cannot turn into finite logits or finite gradients on its way through an activation. The
functions take integer and boolean inputs too: :func:`relu` keeps their dtype, every other function
computes in JAX's default float dtype (float32, or float64 with x64 on). The layers accept
floating-point inputs only.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from jaxnn._checks import check_real
from jaxnn.core import (
    Layer,
    LayerTypeError,
    LayerValueError,
    as_shape,
    check_array,
    check_floating,
    compute_dtype,
    make_layer,
)
from jaxnn.layers._arguments import activation_hint, positional_limit

__all__ = [
    "Elu",
    "Gelu",
    "LeakyRelu",
    "LogSoftmax",
    "Relu",
    "Sigmoid",
    "Softmax",
    "Swish",
    "Tanh",
    "elu",
    "gelu",
    "leaky_relu",
    "log_softmax",
    "relu",
    "sigmoid",
    "softmax",
    "swish",
    "tanh",
]

# --------------------------------------------------------------------------------------------
# Functions.


def _as_float(x) -> jax.Array:
    """``x`` as an array, integer and boolean inputs converted to the default float dtype.

    Computing in the input's integer dtype would round ``leaky_relu``'s slope to 0, and ``lax``'s
    functions reject integers outright.
    """
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.bool_):
        return x.astype(jax.dtypes.canonicalize_dtype(jnp.float64))
    return x


@jax.custom_jvp
def _nan_or_zero(x: jax.Array) -> jax.Array:
    """NaN where ``x`` is NaN, 0 elsewhere; its derivative is ``_nan_or_zero(x) * t``, so that
    derivatives of every order are NaN there too, and 0 elsewhere."""
    return jnp.where(jnp.isnan(x), x, jnp.zeros_like(x))


@_nan_or_zero.defjvp
def _nan_or_zero_jvp(primals, tangents):
    (x,), (tangent,) = primals, tangents
    nan_or_zero = _nan_or_zero(x)
    return nan_or_zero, nan_or_zero * tangent


def _nan_where_nan(x: jax.Array, y: jax.Array) -> jax.Array:
    """``y``, except NaN wherever ``x`` is NaN, in the value and in the derivative with respect to ``x``.

    For activations whose formula is a comparison (``x > 0``), which is False for NaN and so picks
    a finite branch. A rule of its own for the NaN term keeps the derivative elementwise and cheap
    (a multiply), where a differentiable NaN-propagating function (``expm1``) would add a
    transcendental to every forward and backward pass through the activation.
    """
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return y
    return jnp.where(jnp.isnan(x), _nan_or_zero(x).astype(y.dtype), y)


def relu(x: jax.Array) -> jax.Array:
    """Rectified linear unit: ``relu(x) = max(0, x)``, with gradient 0 at ``x = 0`` (as PyTorch).

    Exact in any dtype, so integer and boolean inputs keep their dtype. ``relu(NaN) = NaN``, as in
    PyTorch, with a NaN derivative (PyTorch's is 1 there).
    """
    x = jnp.asarray(x)
    zeros = jnp.zeros_like(x)
    return _nan_where_nan(x, jnp.where(x > zeros, x, zeros))


def sigmoid(x: jax.Array) -> jax.Array:
    """Logistic sigmoid: ``sigmoid(x) = 1 / (1 + exp(-x))``."""
    # lax.logistic is accurate in both tails, where 1 / (1 + exp(-x)) overflows or rounds to 1.
    return lax.logistic(_as_float(x))


def tanh(x: jax.Array) -> jax.Array:
    """Hyperbolic tangent: ``tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x))``."""
    return jnp.tanh(_as_float(x))


def leaky_relu(x: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """Leaky ReLU: ``leaky_relu(x) = max(0, x) + negative_slope * min(0, x)``.

    As in PyTorch, the gradient at ``x = 0`` is ``negative_slope``. At ``x = NaN`` the value is
    NaN, as in PyTorch, and so is the derivative (PyTorch's is ``negative_slope`` there).
    """
    x = _as_float(x)
    return _nan_where_nan(x, jnp.where(x > 0, x, jnp.asarray(negative_slope, x.dtype) * x))


def softmax(x: jax.Array, axis: int = -1) -> jax.Array:
    """Softmax along ``axis``: ``softmax(x)_i = exp(x_i) / sum_j exp(x_j)``.

    Computed as ``exp(x_i - m) / sum_j exp(x_j - m)`` with ``m = max_j x_j``, which is the same
    value without overflow.
    """
    exponentials = jnp.exp(_shift_by_max(_as_float(x), axis))
    return exponentials / jnp.sum(exponentials, axis=axis, keepdims=True)


def log_softmax(x: jax.Array, axis: int = -1) -> jax.Array:
    """Log-softmax along ``axis``: ``log_softmax(x)_i = x_i - log(sum_j exp(x_j))``.

    Computed as ``(x_i - m) - log(sum_j exp(x_j - m))`` with ``m = max_j x_j``.
    """
    shifted = _shift_by_max(_as_float(x), axis)
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=axis, keepdims=True))


def _shift_by_max(x: jax.Array, axis: int) -> jax.Array:
    # Any shift gives the same (log-)softmax, so the max needs no gradient; leaving it out of the
    # graph also avoids splitting the gradient between tied maxima.
    return x - lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))


def gelu(x: jax.Array, approximate: bool = False) -> jax.Array:
    """Gaussian error linear unit, ``x`` times the standard normal CDF of ``x``.

    ``gelu(x) = 0.5 * x * (1 + erf(x / sqrt(2)))``, or with ``approximate=True`` PyTorch's tanh form
    ``gelu(x) = 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3)))``.
    """
    x = _as_float(x)
    # Both are evaluated through identities, 1 + erf(z) = erfc(-z) and 1 + tanh(u) = 2 sigmoid(2u),
    # that avoid cancellation for negative x, where 1 + erf or 1 + tanh is close to 0.
    if approximate:
        # In at least float32: x**3 and its derivative 3 x**2 overflow float16 from |x| of about 40
        # and 150, and inf times the saturated sigmoid's zero derivative makes a NaN gradient.
        wide = x.astype(compute_dtype(x.dtype, jnp.float32))
        inner = math.sqrt(2 / math.pi) * (wide + 0.044715 * wide**3)
        return (wide * lax.logistic(2 * inner)).astype(x.dtype)
    return 0.5 * x * lax.erfc(-x / math.sqrt(2))


def elu(x: jax.Array, alpha: float = 1.0) -> jax.Array:
    """Exponential linear unit: ``elu(x) = max(0, x) + min(0, alpha * (exp(x) - 1))``.

    That is ``x`` for ``x > 0`` and ``alpha * (exp(x) - 1)`` otherwise.
    """
    x = _as_float(x)
    # Zeroing the positive inputs keeps exp from overflowing in the branch that is not taken: an inf
    # there would make the gradient of jnp.where NaN even though its value is discarded.
    safe_x = jnp.where(x > 0, jnp.zeros_like(x), x)
    return jnp.where(x > 0, x, jnp.asarray(alpha, x.dtype) * jnp.expm1(safe_x))


def swish(x: jax.Array) -> jax.Array:
    """Swish, also called SiLU: ``swish(x) = x * sigmoid(x)``."""
    x = _as_float(x)
    return x * lax.logistic(x)


# --------------------------------------------------------------------------------------------
# Layers.


def _activation_layer(name: str, function: Callable, axis: int | None = None) -> Layer:
    """A layer without params or state that applies ``function`` to its input.

    ``axis``, when given, is a negative axis the function works along, so the input needs at least
    ``-axis`` axes besides the batch axes.
    """

    def check_rank(shape, what):
        if axis is not None and len(shape) < -axis:
            raise LayerValueError(f"axis {axis} is out of range for {what} {shape}")

    def init(key, input_shape):
        del key
        shape = as_shape(input_shape)
        check_rank(shape, "input_shape")
        return shape, {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del params, key, train
        x = check_array(x)
        check_floating(x)
        check_rank(x.shape, "an input of shape")
        return function(x), state

    return make_layer(name, init, apply)


def _check_negative_axis(constructor: str, axis) -> None:
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise LayerTypeError(f"{constructor}: `axis` must be an int, got {axis!r} ({type(axis).__name__})")
    if axis >= 0:
        raise LayerValueError(
            f"{constructor}: `axis` (={axis}) must be negative, counted from the end of the input, "
            "since the input may have any number of leading batch axes"
        )


@positional_limit(activation_hint("Relu", "ReLU", 0))
def Relu() -> Layer:
    """Layer applying :func:`relu`: ``y = max(0, x)``."""
    return _activation_layer("relu", relu)


@positional_limit()
def Sigmoid() -> Layer:
    """Layer applying :func:`sigmoid`: ``y = 1 / (1 + exp(-x))``."""
    return _activation_layer("sigmoid", sigmoid)


@positional_limit()
def Tanh() -> Layer:
    """Layer applying :func:`tanh`: ``y = tanh(x)``."""
    return _activation_layer("tanh", tanh)


@positional_limit(activation_hint("LeakyRelu", "LeakyReLU", 1))
def LeakyRelu(negative_slope: float = 0.01) -> Layer:
    """Layer applying :func:`leaky_relu`: ``y = max(0, x) + negative_slope * min(0, x)``."""
    check_real(negative_slope, "negative_slope", "LeakyRelu")
    return _activation_layer("leaky_relu", lambda x: leaky_relu(x, negative_slope))


@positional_limit()
def Softmax(axis: int = -1) -> Layer:
    """Layer applying :func:`softmax` along ``axis``: ``y_i = exp(x_i) / sum_j exp(x_j)``.

    ``axis`` is negative, counted from the end of the input, so that it means the same with any
    number of leading batch axes.
    """
    _check_negative_axis("Softmax", axis)
    return _activation_layer("softmax", lambda x: softmax(x, axis), axis)


@positional_limit()
def LogSoftmax(axis: int = -1) -> Layer:
    """Layer applying :func:`log_softmax` along ``axis``: ``y_i = x_i - log(sum_j exp(x_j))``.

    ``axis`` is negative, as in :func:`Softmax`.
    """
    _check_negative_axis("LogSoftmax", axis)
    return _activation_layer("log_softmax", lambda x: log_softmax(x, axis), axis)


@positional_limit()
def Gelu(approximate: bool = False) -> Layer:
    """Layer applying :func:`gelu`: ``y = 0.5 * x * (1 + erf(x / sqrt(2)))``, or its tanh form."""
    if not isinstance(approximate, bool):
        raise LayerTypeError(
            f"Gelu: `approximate` must be True or False, got {approximate!r} ({type(approximate).__name__})"
        )
    return _activation_layer("gelu", lambda x: gelu(x, approximate))


@positional_limit(activation_hint("Elu", "ELU", 1))
def Elu(alpha: float = 1.0) -> Layer:
    """Layer applying :func:`elu`: ``y = x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise."""
    check_real(alpha, "alpha", "Elu")
    if alpha <= 0:
        raise LayerValueError(f"Elu: `alpha` (={alpha}) must be positive")
    return _activation_layer("elu", lambda x: elu(x, alpha))


@positional_limit(activation_hint("Swish", "SiLU", 0))
def Swish() -> Layer:
    """Layer applying :func:`swish` (SiLU): ``y = x * sigmoid(x)``."""
    return _activation_layer("swish", swish)
