"""Pooling layers: MaxPool1D/2D, AvgPool1D/2D over windows of the spatial axes, and GlobalAvgPool.

As for convolutions (``jaxnn.layers.conv``), two formulations of the same result are kept and the
one used is picked when a function is traced: ``lax.reduce_window`` on accelerators, and on CPU
reshapes (non-overlapping windows) or strided slices (overlapping ones) that XLA's CPU backend
fuses into single loops, with a max-pooling derivative rule of the same kind; the derivative of
``reduce_window`` max on CPU is a ``select_and_scatter`` several times slower than the forward pass.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnn.core import (
    Layer,
    LayerValueError,
    Static,
    as_shape,
    check_array,
    check_floating,
    check_min_ndim,
    compute_dtype,
    make_layer,
)
from jaxnn.layers.conv import (
    Pairs,
    check_spatial_fit,
    flatten_batch,
    output_sizes,
    padding_spec,
    positive_tuple,
    resolve_padding,
    spatial_input,
    use_cpu_formulation,
)
from jaxnn.layers.dense import _batch_shape

# --------------------------------------------------------------------------------------------
# Formulations, on x (N, *spatial, C) with one batch axis.


def _pad(x, pads: Pairs, value) -> jax.Array:
    if not any(low or high for low, high in pads):
        return x
    return jnp.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),), constant_values=value)


def _reduce_window_xla(x, window, strides, pads: Pairs, init, op) -> jax.Array:
    # A NumPy init value stays concrete under jit, which lets JAX recognize the max and add
    # monoids and differentiate the reduction.
    return lax.reduce_window(x, np.array(init, x.dtype), op, (1,) + tuple(window) + (1,),
                             (1,) + tuple(strides) + (1,), ((0, 0),) + tuple(pads) + ((0, 0),))


def _as_windows(x, window, out) -> jax.Array:
    """Non-overlapping windows as axes: ``(N, o1, k1, o2, k2, ..., C)`` (the input is cropped)."""
    crop = tuple(o * k for o, k in zip(out, window))
    x = x[(slice(None),) + tuple(slice(0, c) for c in crop)]
    return x.reshape((x.shape[0],) + sum(((o, k) for o, k in zip(out, window)), ()) + (x.shape[-1],))


def _window_axes(ndim: int) -> tuple[int, ...]:
    return tuple(2 + 2 * axis for axis in range(ndim))


def _taps(x, window, strides, out) -> list[jax.Array]:
    """Strided slices of ``x``, one per window offset in row-major order, each ``(N, *out, C)``."""
    taps = []
    for offset in np.ndindex(*window):
        start = (0,) + tuple(offset) + (0,)
        ends = tuple(o + (n - 1) * s + 1 for o, n, s in zip(offset, out, strides))
        limit = (x.shape[0],) + ends + (x.shape[-1],)
        taps.append(lax.slice(x, start, limit, (1,) + tuple(strides) + (1,)))
    return taps


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _max_pool_cpu_valid(x, window, strides):
    out = output_sizes(x.shape[1:-1], window, strides, (1,) * len(window), ((0, 0),) * len(window))
    if tuple(window) == tuple(strides):
        return jnp.max(_as_windows(x, window, out), axis=_window_axes(len(window)))
    return functools.reduce(jnp.maximum, _taps(x, window, strides, out))


@_max_pool_cpu_valid.defjvp
def _max_pool_cpu_valid_jvp(window, strides, primals, tangents):
    """The tangent of the first maximum of each window in row-major order, as XLA's derivative of
    ``reduce_window`` max (and PyTorch's ``max_pool``) picks it when several elements tie."""
    (x,), (x_dot,) = primals, tangents
    y = _max_pool_cpu_valid(x, window, strides)
    count = math.prod(window)
    # The winning position is kept for the backward pass; in the narrowest integer that holds it,
    # as memory traffic dominates here (int8 over int32 halves the time of a LeNet pooling layer).
    index_dtype = np.int8 if count < 2**7 else np.int16 if count < 2**15 else np.int32
    if tuple(window) == tuple(strides):
        out = y.shape[1:-1]
        axes = _window_axes(len(window))
        windows, tangent_windows = _as_windows(x, window, out), _as_windows(x_dot, window, out)
        position_shape = [1] * windows.ndim
        for axis, k in zip(axes, window):
            position_shape[axis] = k
        position = jnp.arange(count, dtype=index_dtype).reshape(position_shape)
        first = jnp.min(jnp.where(windows == jnp.expand_dims(y, axes), position, count), axis=axes,
                        keepdims=True)
        y_dot = jnp.sum(jnp.where(position == first, tangent_windows, 0), axis=axes)
        return y, y_dot
    taps = _taps(x, window, strides, y.shape[1:-1])
    first = jnp.full(y.shape, count, index_dtype)
    for position in reversed(range(count)):
        first = jnp.where(taps[position] == y, np.array(position, index_dtype), first)
    tangent_taps = _taps(x_dot, window, strides, y.shape[1:-1])
    y_dot = sum(jnp.where(first == position, tap, 0) for position, tap in enumerate(tangent_taps))
    return y, y_dot


def max_pool_cpu(x, window, strides, pads: Pairs) -> jax.Array:
    """Max pooling by reshapes or strided slices; padded positions hold ``-inf``."""
    return _max_pool_cpu_valid(_pad(x, pads, -jnp.inf), tuple(window), tuple(strides))


def max_pool_xla(x, window, strides, pads: Pairs) -> jax.Array:
    """Max pooling by ``lax.reduce_window``; padded positions hold ``-inf``."""
    return _reduce_window_xla(x, window, strides, pads, -jnp.inf, lax.max)


def window_sum_cpu(x, window, strides, pads: Pairs) -> jax.Array:
    """Window sums by reshapes or strided slices; padded positions hold 0."""
    x = _pad(x, pads, 0)
    out = output_sizes(x.shape[1:-1], window, strides, (1,) * len(window), ((0, 0),) * len(window))
    if tuple(window) == tuple(strides):
        return jnp.sum(_as_windows(x, window, out), axis=_window_axes(len(window)))
    return sum(_taps(x, window, strides, out))


def window_sum_xla(x, window, strides, pads: Pairs) -> jax.Array:
    """Window sums by ``lax.reduce_window``; padded positions hold 0."""
    return _reduce_window_xla(x, window, strides, pads, 0, lax.add)


def real_counts(sizes, window, strides, pads: Pairs) -> np.ndarray:
    """How many unpadded elements each window holds, shape ``(*out, 1)``."""
    counts = np.ones((), np.int64)
    for n, k, s, (low, high) in zip(sizes, window, strides, pads):
        out = (n + low + high - k) // s + 1
        start = np.arange(out) * s - low
        per_axis = np.minimum(start + k, n) - np.maximum(start, 0)
        counts = np.multiply.outer(counts, per_axis)
    return counts[..., None]


# --------------------------------------------------------------------------------------------
# Layers.


def _pool_geometry(padding, window, strides, sizes):
    pads = resolve_padding(padding, sizes, window, strides)
    check_spatial_fit(sizes, window, (1,) * len(window), pads, what="window")
    return pads, output_sizes(sizes, window, strides, (1,) * len(window), pads)


def _pool(ndim: int, kind: str, window, stride, padding) -> Layer:
    constructor = f"{'Max' if kind == 'max' else 'Avg'}Pool{ndim}D"
    window = positive_tuple(window, ndim, "window", constructor)
    strides = window if stride is None else positive_tuple(stride, ndim, "stride", constructor)
    padding = padding_spec(padding, ndim, constructor)
    if not isinstance(padding, str) and any(p >= k for pair, k in zip(padding, window) for p in pair):
        raise LayerValueError(
            f"{constructor}: `padding` (={padding}) must be smaller than the window (={window}) in "
            "every axis, so that every window holds an element of the input"
        )
    layout = ("L", "H, W")[ndim - 1] + ", C"

    def init(key, input_shape):
        del key
        shape = as_shape(input_shape)
        if len(shape) != ndim + 1:
            raise LayerValueError(
                f"expected a per-example input_shape ({layout}) with {ndim} spatial "
                f"ax{'i' if ndim == 1 else 'e'}s and channels last, got {shape}"
            )
        _, out = _pool_geometry(padding, window, strides, shape[:-1])
        return out + shape[-1:], {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del params, key, train
        x = spatial_input(x, ndim, layout)
        sizes = x.shape[x.ndim - ndim - 1:-1]
        pads, _ = _pool_geometry(padding, window, strides, sizes)
        flat, batch_shape = flatten_batch(x, ndim)
        cpu = use_cpu_formulation()
        if kind == "max":
            y = (max_pool_cpu if cpu else max_pool_xla)(flat, window, strides, pads)
        else:
            # Sums in at least float32, so that half-precision averages do not lose digits.
            summed = (window_sum_cpu if cpu else window_sum_xla)(
                flat.astype(compute_dtype(x.dtype, jnp.float32)), window, strides, pads)
            if padding == "SAME":
                divisor = real_counts(sizes, window, strides, pads)
            else:
                divisor = np.full((1,) * (ndim + 1), math.prod(window))
            y = (summed / jnp.asarray(divisor, summed.dtype)[None]).astype(x.dtype)
        return y.reshape(batch_shape + y.shape[1:]), state

    return make_layer(f"{kind}_pool{ndim}d", init, apply)


def MaxPool1D(window: int | Sequence[int], stride: int | Sequence[int] | None = None,
              padding: str | int | Sequence = "VALID") -> Layer:
    """Max pooling along the second-to-last axis: ``(*batch, L, C) -> (*batch, L_out, C)``.

    ``y[n, i, c] = max_{a < k} x_padded[n, i*s + a, c]``, as :func:`MaxPool2D` over one axis; the
    arguments are an int or a tuple of one int (``padding``: also ``((low, high),)``).
    """
    return _pool(1, "max", window, stride, padding)


def MaxPool2D(window: int | Sequence[int], stride: int | Sequence[int] | None = None,
              padding: str | int | Sequence = "VALID") -> Layer:
    """Max pooling over windows: ``(*batch, H, W, C) -> (*batch, H_out, W_out, C)``.

    Any number of leading batch axes, channels last, each channel pooled separately; no params, no
    state. ``y[n, i, j, c] = max_{a < k_h, b < k_w} x_padded[n, i*s_h + a, j*s_w + b, c]``, where
    padded positions hold ``-inf`` and so never win. Along each spatial axis the output size is
    ``floor((n + low + high - k) / s) + 1`` (PyTorch's, ``ceil_mode=False``). The derivative goes
    to the first maximum of each window in row-major order when several elements tie, as in
    PyTorch (on accelerators, XLA's forward-mode derivative may pick another of tied maxima in
    padded windows; reverse mode agrees). The input must be floating-point.

    Args:
      window: window size ``k``, an int (the same in both axes) or a tuple of 2 ints.
      stride: step ``s`` between windows, as ``window``; ``None`` (the default) means ``window``.
      padding: ``"VALID"`` (none); ``"SAME"`` (XLA's: ``ceil(n / s)`` outputs); an int (both
        sides of both axes); a tuple of 2 ints; or 2 ``(low, high)`` pairs. Explicit padding must
        be smaller than the window, so that every window holds an input element.

    Example::

        layer = MaxPool2D(2)
        output_shape, params, state = layer.init(jax.random.key(0), (28, 28, 32))   # (14, 14, 32)
    """
    return _pool(2, "max", window, stride, padding)


def AvgPool1D(window: int | Sequence[int], stride: int | Sequence[int] | None = None,
              padding: str | int | Sequence = "VALID") -> Layer:
    """Average pooling along the second-to-last axis: ``(*batch, L, C) -> (*batch, L_out, C)``.

    As :func:`AvgPool2D` over one axis, padding counted in the same way; the arguments are an int
    or a tuple of one int (``padding``: also ``((low, high),)``).
    """
    return _pool(1, "avg", window, stride, padding)


def AvgPool2D(window: int | Sequence[int], stride: int | Sequence[int] | None = None,
              padding: str | int | Sequence = "VALID") -> Layer:
    """Average pooling over windows: ``(*batch, H, W, C) -> (*batch, H_out, W_out, C)``.

    Any number of leading batch axes, channels last, each channel pooled separately; no params, no
    state. ``y[n, i, j, c] = sum_{a < k_h, b < k_w} x_padded[n, i*s_h + a, j*s_w + b, c] /
    divisor``, summed in at least float32 and returned in the input's dtype; padded positions hold
    zeros. The divisor depends on the padding:

    - ``"VALID"``, an int, a tuple or pairs: ``k_h * k_w``, padded zeros included, as PyTorch's
      default ``count_include_pad=True``;
    - ``"SAME"``: the number of input (unpadded) elements in the window, as TensorFlow and Flax
      compute it, so that the border is not darkened.

    Output sizes, arguments and their checks are those of :func:`MaxPool2D`.

    Example::

        layer = AvgPool2D(2, padding="SAME")
        output_shape, params, state = layer.init(jax.random.key(0), (7, 7, 16))   # (4, 4, 16)
    """
    return _pool(2, "avg", window, stride, padding)


def GlobalAvgPool() -> Layer:
    """The mean over all spatial axes: ``(*batch, *spatial, C) -> (*batch, C)``.

    ``y[..., c] = mean(x[..., :, c])`` over every per-example axis but the last, computed in at
    least float32 and returned in the input's dtype. Works for any number of spatial axes (1D
    sequences, 2D images, 3D volumes), so ``init`` records the per-example input shape in
    ``state`` as a static value (no arrays), as :func:`jaxnn.layers.Flatten` does, to tell batch
    axes from spatial ones. Given a state without it (``{}`` built by hand), ``apply`` takes the
    first axis alone as the batch axis, as PyTorch's ``x.mean(dim=(2, 3))`` on ``(N, C, H, W)``.
    """

    def init(key, input_shape):
        del key
        shape = as_shape(input_shape)
        check_min_ndim(shape, 2, "(*spatial, C) with at least one spatial axis")
        return shape[-1:], {}, {"input_shape": Static(shape)}

    def apply(params, state, x, *, key=None, train=False):
        del params, key, train
        x = check_array(x)
        check_floating(x)
        batch_shape = _batch_shape(x, state)
        if x.ndim - len(batch_shape) < 2:
            raise LayerValueError(
                f"expected an input of shape (*batch, *spatial, C) with at least one spatial axis, "
                f"got {x.shape}"
            )
        spatial_axes = tuple(range(len(batch_shape), x.ndim - 1))
        y = jnp.mean(x.astype(compute_dtype(x.dtype, jnp.float32)), axis=spatial_axes)
        return y.astype(x.dtype), state

    return make_layer("global_avg_pool", init, apply)
