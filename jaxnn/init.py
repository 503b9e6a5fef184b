"""Parameter initializers.

Each function here is a factory: it takes the initializer's settings and returns
``init(key, shape, dtype=jnp.float32) -> array``. Fans follow jaxnn's kernel layouts: a dense
kernel is ``(in, out)``, a convolution kernel ``(k.., in, out)``, so that

    fan_in  = in  * prod(k..),    fan_out = out * prod(k..).

Distributions follow PyTorch's ``torch.nn.init`` (plain, not truncated, normals), so a network
initialized here has the statistics of the same network initialized there. Random values are drawn
in at least float32, and in the requested dtype when it is wider (float64 with x64 on), then cast.
Settings are checked when the factory is called: a setting that is not a real number raises a
``TypeError``, a NaN, infinite or out-of-range one a ``ValueError`` naming the factory and argument.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from jaxnn._checks import check_choice, check_real
from jaxnn.core import compute_dtype

Initializer = Callable[..., jax.Array]


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Returns ``(fan_in, fan_out)`` of a kernel of the given shape.

    ``(n,)`` vectors have ``fan_in = fan_out = n``; ``(in, out)`` and ``(k.., in, out)`` kernels
    multiply ``in`` and ``out`` by the receptive field ``prod(k..)``.
    """
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _check_floating(dtype, name: str) -> jnp.dtype:
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name}: initializers make floating-point arrays, got dtype {dtype}")
    return dtype


def _sampling_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """The dtype random values are drawn in: ``dtype`` if wider than float32, else float32.

    Half-precision draws would be coarse, and float32 draws cast to float64 would leave float64
    params with float32 resolution.
    """
    return compute_dtype(dtype, jnp.float32)


def constant(value: float) -> Initializer:
    """Fills the array with ``value``, a finite real number."""
    value = check_real(value, "value", "constant")

    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.full(shape, value, _check_floating(dtype, "constant"))

    return init


def zeros() -> Initializer:
    """Fills the array with 0."""
    return constant(0.0)


def ones() -> Initializer:
    """Fills the array with 1."""
    return constant(1.0)


def normal(stddev: float = 1.0, mean: float = 0.0) -> Initializer:
    """Draws from ``N(mean, stddev^2)``; ``stddev >= 0`` and ``mean`` are finite real numbers."""
    stddev = check_real(stddev, "stddev", "normal", low=0)
    mean = check_real(mean, "mean", "normal")

    def init(key, shape, dtype=jnp.float32):
        dtype = _check_floating(dtype, "normal")
        values = jax.random.normal(key, shape, _sampling_dtype(dtype))
        return (mean + stddev * values).astype(dtype)

    return init


def uniform(low: float = 0.0, high: float = 1.0) -> Initializer:
    """Draws from ``U(low, high)``; ``low <= high`` are finite real numbers."""
    low = check_real(low, "low", "uniform")
    high = check_real(high, "high", "uniform")
    if not low <= high:
        raise ValueError(f"uniform: `low` (={low}) must not exceed `high` (={high})")

    def init(key, shape, dtype=jnp.float32):
        dtype = _check_floating(dtype, "uniform")
        return jax.random.uniform(key, shape, _sampling_dtype(dtype), low, high).astype(dtype)

    return init


def variance_scaling(scale: float, mode: str, distribution: str) -> Initializer:
    """Draws with variance ``scale / n``, where ``n`` is ``fan_in``, ``fan_out`` or their mean.

    ``distribution="normal"`` draws ``N(0, scale / n)``; ``"uniform"`` draws ``U(-a, a)`` with
    ``a = sqrt(3 * scale / n)``, which has the same variance. All the named schemes below are this
    one function with particular settings. ``scale`` is a finite, positive real number.
    """
    scale = check_real(scale, "scale", "variance_scaling", low=0, low_open=True)
    check_choice(mode, "mode", "variance_scaling", ("fan_in", "fan_out", "fan_avg"))
    check_choice(distribution, "distribution", "variance_scaling", ("normal", "uniform"))

    def init(key, shape, dtype=jnp.float32):
        dtype = _check_floating(dtype, "variance_scaling")
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / max(n, 1)
        sampling_dtype = _sampling_dtype(dtype)
        if distribution == "normal":
            values = math.sqrt(variance) * jax.random.normal(key, shape, sampling_dtype)
        else:
            limit = math.sqrt(3.0 * variance)
            values = jax.random.uniform(key, shape, sampling_dtype, -limit, limit)
        return values.astype(dtype)

    return init


def glorot_uniform() -> Initializer:
    """Glorot/Xavier uniform: ``U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``."""
    return variance_scaling(1.0, "fan_avg", "uniform")


def glorot_normal() -> Initializer:
    """Glorot/Xavier normal: ``N(0, 2 / (fan_in + fan_out))``."""
    return variance_scaling(1.0, "fan_avg", "normal")


def he_uniform() -> Initializer:
    """He/Kaiming uniform for ReLU: ``U(-a, a)``, ``a = sqrt(6 / fan_in)``."""
    return variance_scaling(2.0, "fan_in", "uniform")


def he_normal() -> Initializer:
    """He/Kaiming normal for ReLU: ``N(0, 2 / fan_in)``."""
    return variance_scaling(2.0, "fan_in", "normal")


def lecun_uniform() -> Initializer:
    """LeCun uniform: ``U(-a, a)``, ``a = sqrt(3 / fan_in)``."""
    return variance_scaling(1.0, "fan_in", "uniform")


def lecun_normal() -> Initializer:
    """LeCun normal: ``N(0, 1 / fan_in)``."""
    return variance_scaling(1.0, "fan_in", "normal")


xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
kaiming_uniform = he_uniform
kaiming_normal = he_normal


def orthogonal(scale: float = 1.0) -> Initializer:
    """A (semi-)orthogonal matrix times ``scale`` (Saxe et al., 2014).

    The kernel is viewed as a matrix of ``prod(shape[:-1])`` rows and ``shape[-1]`` columns; its
    columns (or rows, if fewer) are orthonormal. It is the ``Q`` of the QR decomposition of a
    standard normal matrix, with signs fixed by ``diag(R)`` so that the distribution is uniform
    (Haar) over orthogonal matrices. ``scale`` is a finite real number.
    """
    scale = check_real(scale, "scale", "orthogonal")

    def init(key, shape, dtype=jnp.float32):
        dtype = _check_floating(dtype, "orthogonal")
        if len(shape) < 2:
            raise ValueError(f"orthogonal: needs a shape of at least 2 axes, got {tuple(shape)}")
        rows, columns = math.prod(shape[:-1]), shape[-1]
        matrix_shape = (max(rows, columns), min(rows, columns))
        matrix = jax.random.normal(key, matrix_shape, _sampling_dtype(dtype))
        q, r = jnp.linalg.qr(matrix)
        q = q * jnp.sign(jnp.diagonal(r))[None, :]
        if rows < columns:
            q = q.T
        return (scale * q).reshape(shape).astype(dtype)

    return init
