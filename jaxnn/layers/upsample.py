"""Upsample: nearest-neighbour and (bi)linear resizing of channels-last inputs, as PyTorch's
``nn.Upsample`` with ``align_corners=False``.

Each spatial axis is resized on its own, by a fixed gather (nearest) or a fixed interpolation
matrix (linear) built in NumPy from the sizes, so the layer has no params and its derivative is
the transposed gather or matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from jaxnn._checks import check_choice, check_real, is_int, is_real
from jaxnn.core import (
    Layer,
    LayerTypeError,
    LayerValueError,
    Static,
    as_shape,
    batch_shape,
    check_array,
    check_floating,
    compute_dtype,
    make_layer,
)
from jaxnn.layers._arguments import positional_limit, upsample_hint

__all__ = ["Upsample"]

# mode -> the number of spatial axes it takes (None: any).
_MODES = {"nearest": None, "linear": 1, "bilinear": 2}


def _per_axis(value, argument: str, kind: str) -> tuple | None:
    """``value`` (a number or a tuple of numbers) as a tuple; None stays None."""
    if value is None:
        return None
    check = is_int if kind == "int" else is_real
    if check(value):
        return (value,)
    if isinstance(value, (tuple, list)) and value and all(map(check, value)):
        return tuple(value)
    expected = "a positive int or a tuple of positive ints" if kind == "int" else \
        "a positive number or a tuple of positive numbers"
    raise LayerTypeError(f"Upsample: `{argument}` must be {expected}, got {value!r}")


def _source_scales(sizes, out_sizes, scale_factors) -> tuple[float, ...]:
    """PyTorch's source step per output step: ``1 / scale_factor`` when given, else ``in / out``."""
    if scale_factors is not None:
        return tuple(1.0 / f for f in scale_factors)
    return tuple(n / m for n, m in zip(sizes, out_sizes))


def nearest_indices(size: int, out_size: int, scale: float) -> np.ndarray:
    """``min(floor(j * scale), size - 1)`` for output positions ``j``, in float32 as PyTorch."""
    positions = np.arange(out_size, dtype=np.float32) * np.float32(scale)
    return np.minimum(np.floor(positions).astype(np.int64), size - 1)


def linear_matrix(size: int, out_size: int, scale: float) -> np.ndarray:
    """The ``(out_size, size)`` matrix of linear interpolation with ``align_corners=False``.

    Output position ``j`` samples source ``s = max((j + 0.5) * scale - 0.5, 0)``, between
    ``i0 = floor(s)`` and ``i1 = min(i0 + 1, size - 1)`` with weights ``1 - (s - i0)`` and
    ``s - i0``.
    """
    source = np.maximum((np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * np.float32(scale)
                        - np.float32(0.5), np.float32(0))
    low = np.minimum(np.floor(source).astype(np.int64), size - 1)
    high = np.minimum(low + 1, size - 1)
    fraction = (source - low).astype(np.float64)
    matrix = np.zeros((out_size, size), np.float64)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, low), 1.0 - fraction)
    np.add.at(matrix, (rows, high), fraction)
    return matrix


@positional_limit(upsample_hint)
def Upsample(
    scale_factor: float | Sequence[float] | None = None,
    *,
    size: int | Sequence[int] | None = None,
    mode: str = "nearest",
) -> Layer:
    """Resizes the spatial axes of ``(*batch, H, W, C)`` or ``(*batch, L, C)``, as PyTorch's ``nn.Upsample``.

    Give exactly one of ``scale_factor`` (output size ``floor(n * scale_factor)`` per axis) and
    ``size`` (the output spatial size). With ``scale = 1 / scale_factor`` when a scale factor is
    given, ``scale = n / out`` otherwise, output position ``j`` of an axis of size ``n`` takes:

    - ``mode="nearest"``: ``x[min(floor(j * scale), n - 1)]``;
    - ``mode="linear"`` (1 spatial axis) or ``"bilinear"`` (2 spatial axes), PyTorch's
      ``align_corners=False``: with ``s = max((j + 0.5) * scale - 0.5, 0)``, ``i0 = floor(s)``,
      ``i1 = min(i0 + 1, n - 1)`` and ``t = s - i0``, ``(1 - t) * x[i0] + t * x[i1]``, one axis
      after the other.

    No params. ``state`` records the per-example input shape (no arrays), to tell batch axes from
    spatial ones. The output has the dtype of ``x``; interpolation runs in at least float32.

    ``scale_factor`` is the one positional argument: PyTorch's ``Upsample(size, scale_factor,
    mode)`` takes the size first, so write ``Upsample(2)`` for PyTorch's
    ``Upsample(scale_factor=2)`` and ``Upsample(size=(32, 32))`` for its ``Upsample((32, 32))``.

    Args:
      scale_factor: a positive number, or one per spatial axis.
      size: the output spatial size, an int (every axis) or one int per spatial axis.
      mode: ``"nearest"``, ``"linear"`` or ``"bilinear"``.

    Example::

        layer = Upsample(2, mode="bilinear")
        output_shape, params, state = layer.init(jax.random.key(0), (16, 16, 8))   # (32, 32, 8)
    """
    check_choice(mode, "mode", "Upsample", tuple(_MODES))
    scale_factors = _per_axis(scale_factor, "scale_factor", "real")
    sizes_given = _per_axis(size, "size", "int")
    if (scale_factors is None) == (sizes_given is None):
        raise LayerValueError("Upsample: give exactly one of `scale_factor` and `size`, got "
                              f"scale_factor={scale_factor!r}, size={size!r}")
    if scale_factors is not None:
        scale_factors = tuple(check_real(f, "scale_factor", "Upsample", low=0.0, low_open=True)
                              for f in scale_factors)
    if sizes_given is not None and any(s <= 0 for s in sizes_given):
        raise LayerValueError(f"Upsample: `size` (={size!r}) must be positive")
    spatial_axes = _MODES[mode]

    def geometry(shape):
        """The output spatial sizes of a per-example shape ``(*spatial, C)``, and the scale factors."""
        ndim = len(shape) - 1
        if ndim < 1 or (spatial_axes is not None and ndim != spatial_axes):
            layout = {None: "(*spatial, C)", 1: "(L, C)", 2: "(H, W, C)"}[spatial_axes]
            raise LayerValueError(
                f"mode={mode!r} takes a per-example input {layout}, got input_shape {shape}")
        given = scale_factors if scale_factors is not None else sizes_given
        if len(given) == 1:
            given = given * ndim
        elif len(given) != ndim:
            argument = "scale_factor" if scale_factors is not None else "size"
            raise LayerValueError(f"`{argument}` has {len(given)} entries for {ndim} spatial axes "
                                  f"of input_shape {shape}")
        if scale_factors is not None:
            factors = given
            out = tuple(math.floor(n * f) for n, f in zip(shape[:-1], factors))
        else:
            factors, out = None, tuple(int(s) for s in given)
        if any(o <= 0 for o in out):
            raise LayerValueError(
                f"scale_factor={scale_factor!r} gives an empty output for input_shape {shape}")
        return out, factors

    def init(key, input_shape):
        del key
        shape = as_shape(input_shape)
        out, _ = geometry(shape)
        return out + shape[-1:], {}, {"input_shape": Static(shape)}

    def apply(params, state, x, *, key=None, train=False):
        del params, key, train
        x = check_array(x)
        check_floating(x)
        batch_axes = batch_shape(x, state)
        shape = x.shape[len(batch_axes):]
        out, factors = geometry(shape)
        scales = _source_scales(shape[:-1], out, factors)
        dtype = compute_dtype(x.dtype, jnp.float32)
        y = x.astype(dtype)
        for axis, (n, m, scale) in enumerate(zip(shape[:-1], out, scales)):
            position = len(batch_axes) + axis
            if mode == "nearest":
                y = jnp.take(y, jnp.asarray(nearest_indices(n, m, scale)), axis=position)
            else:
                matrix = jnp.asarray(linear_matrix(n, m, scale), dtype)
                y = jnp.moveaxis(jnp.tensordot(matrix, y, axes=((1,), (position,))), 0, position)
        return y.astype(x.dtype), state

    return make_layer("upsample", init, apply)
