"""Pooling layers: MaxPool1D/2D, AvgPool1D/2D over windows of the spatial axes, and GlobalAvgPool.

As for convolutions, the windows are reduced by ``jaxnn.layers._conv_kernels`` in the formulation
that is fastest on the backend in use: ``lax.reduce_window`` on accelerators, reshapes or strided
slices that XLA's CPU backend fuses into single loops on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from jaxnn.core import (
    Layer,
    LayerValueError,
    Static,
    as_shape,
    batch_shape,
    check_array,
    check_floating,
    check_min_ndim,
    compute_dtype,
    make_layer,
)
from jaxnn.layers._arguments import pool_hint, positional_limit
from jaxnn.layers._conv_kernels import max_pool, real_counts, window_sum
from jaxnn.layers._spatial import (
    check_spatial_fit,
    flatten_batch,
    output_sizes,
    padding_spec,
    positive_tuple,
    resolve_padding,
    spatial_input,
)

__all__ = ["AvgPool1D", "AvgPool2D", "GlobalAvgPool", "MaxPool1D", "MaxPool2D"]


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
        flat, batch_axes = flatten_batch(x, ndim)
        if kind == "max":
            y = max_pool(flat, window, strides, pads)
        else:
            # Sums in at least float32, so that half-precision averages do not lose digits.
            summed = window_sum(flat.astype(compute_dtype(x.dtype, jnp.float32)), window, strides, pads)
            if padding == "SAME":
                divisor = real_counts(sizes, window, strides, pads)
            else:
                divisor = np.full((1,) * (ndim + 1), math.prod(window))
            y = (summed / jnp.asarray(divisor, summed.dtype)[None]).astype(x.dtype)
        return y.reshape(batch_axes + y.shape[1:]), state

    return make_layer(f"{kind}_pool{ndim}d", init, apply)


@positional_limit(pool_hint("Max", 1))
def MaxPool1D(window: int | Sequence[int], *, stride: int | Sequence[int] | None = None,
              padding: str | int | Sequence = "VALID") -> Layer:
    """Max pooling along the second-to-last axis: ``(*batch, L, C) -> (*batch, L_out, C)``.

    ``y[n, i, c] = max_{a < k} x_padded[n, i*s + a, c]``, as :func:`MaxPool2D` over one axis; the
    arguments are an int or a tuple of one int (``padding``: also ``((low, high),)``).
    """
    return _pool(1, "max", window, stride, padding)


@positional_limit(pool_hint("Max", 2))
def MaxPool2D(window: int | Sequence[int], *, stride: int | Sequence[int] | None = None,
              padding: str | int | Sequence = "VALID") -> Layer:
    """Max pooling over windows: ``(*batch, H, W, C) -> (*batch, H_out, W_out, C)``.

    Any number of leading batch axes, channels last, each channel pooled separately; no params, no
    state. ``y[n, i, j, c] = max_{a < k_h, b < k_w} x_padded[n, i*s_h + a, j*s_w + b, c]``, where
    padded positions hold ``-inf`` and so never win. Along each spatial axis the output size is
    ``floor((n + low + high - k) / s) + 1`` (PyTorch's, ``ceil_mode=False``). The derivative goes
    to the first maximum of each window in row-major order when several elements tie, as in
    PyTorch (on accelerators, XLA's forward-mode derivative may pick another of tied maxima in
    padded windows; reverse mode agrees). The input must be floating-point.

    ``window`` is the only positional argument; ``stride`` and ``padding`` are keywords
    (``MaxPool2D(2, stride=1)``), so that no positional value is read in an order it was not
    written for.

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


@positional_limit(pool_hint("Avg", 1))
def AvgPool1D(window: int | Sequence[int], *, stride: int | Sequence[int] | None = None,
              padding: str | int | Sequence = "VALID") -> Layer:
    """Average pooling along the second-to-last axis: ``(*batch, L, C) -> (*batch, L_out, C)``.

    As :func:`AvgPool2D` over one axis, padding counted in the same way; the arguments are an int
    or a tuple of one int (``padding``: also ``((low, high),)``).
    """
    return _pool(1, "avg", window, stride, padding)


@positional_limit(pool_hint("Avg", 2))
def AvgPool2D(window: int | Sequence[int], *, stride: int | Sequence[int] | None = None,
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


@positional_limit()
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
        batch_axes = batch_shape(x, state)
        if x.ndim - len(batch_axes) < 2:
            raise LayerValueError(
                f"expected an input of shape (*batch, *spatial, C) with at least one spatial axis, "
                f"got {x.shape}"
            )
        spatial_axes = tuple(range(len(batch_axes), x.ndim - 1))
        y = jnp.mean(x.astype(compute_dtype(x.dtype, jnp.float32)), axis=spatial_axes)
        return y.astype(x.dtype), state

    return make_layer("global_avg_pool", init, apply)
