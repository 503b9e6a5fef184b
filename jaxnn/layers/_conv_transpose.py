"""The kernel behind ConvTranspose1D/2D: PyTorch's transposed convolution on channels-last arrays.

A transposed convolution is the convolution of the input dilated by the stride (``stride - 1``
zeros between elements), padded by ``dilation * (k - 1) - padding`` at the low end and that plus
``output_padding`` at the high end (a negative amount crops), with the kernel flipped and its
input and output channels swapped within each group.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxnn.layers._conv_kernels import convolve, use_cpu_formulation
from jaxnn.layers._spatial import Pairs


def transposed_output_sizes(sizes, kernel, strides, paddings, output_paddings, dilations) -> tuple[int, ...]:
    """``(n - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1`` per axis (PyTorch's)."""
    return tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1
                 for n, k, s, p, op, d in zip(sizes, kernel, strides, paddings, output_paddings, dilations))


def forward_kernel(w: jax.Array, groups: int) -> jax.Array:
    """The kernel of the equivalent convolution, ``(*k, in, out / groups)`` -> ``(*k, in / groups, out)``.

    Spatially flipped, and within each group the input and output channel axes swapped.
    """
    ndim = w.ndim - 2
    *kernel, channels, group_out = w.shape
    grouped = w.reshape(tuple(kernel) + (groups, channels // groups, group_out))
    swapped = jnp.moveaxis(grouped, ndim, ndim + 1)  # (*k, in / groups, groups, out / groups)
    flipped = jnp.flip(swapped, axis=tuple(range(ndim)))
    return flipped.reshape(tuple(kernel) + (channels // groups, groups * group_out))


def dilated_padding(kernel, paddings, output_paddings, dilations) -> Pairs:
    """The ``(low, high)`` padding of the stride-dilated input, negative where it crops."""
    return tuple((d * (k - 1) - p, d * (k - 1) - p + op)
                 for k, p, op, d in zip(kernel, paddings, output_paddings, dilations))


def conv_transpose_xla(x, w, strides, paddings, output_paddings, dilations, groups: int) -> jax.Array:
    """``lax.conv_general_dilated`` with input dilation: the formulation for accelerators."""
    ndim = len(strides)
    spatial = "DHW"[3 - ndim:]
    return lax.conv_general_dilated(
        x, forward_kernel(w, groups), window_strides=(1,) * ndim,
        padding=dilated_padding(w.shape[:ndim], paddings, output_paddings, dilations),
        lhs_dilation=strides, rhs_dilation=dilations,
        dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"), feature_group_count=groups,
    )


def conv_transpose_cpu(x, w, strides, paddings, output_paddings, dilations, groups: int) -> jax.Array:
    """The same sum, with the dilation and padding done by ``lax.pad`` first, so that the
    convolution is a stride-1 ``VALID`` one whose derivatives are the fast matrix products of the
    CPU convolution kernel (XLA's own derivatives of a dilated convolution are slow on CPU)."""
    ndim = len(strides)
    pads = dilated_padding(w.shape[:ndim], paddings, output_paddings, dilations)
    config = ((0, 0, 0),) + tuple((low, high, s - 1) for (low, high), s in zip(pads, strides)) + ((0, 0, 0),)
    dilated = lax.pad(x, jnp.zeros((), x.dtype), config)
    return convolve(dilated, forward_kernel(w, groups), (1,) * ndim, ((0, 0),) * ndim, dilations, groups)


def conv_transpose(x, w, strides, paddings, output_paddings, dilations, groups: int) -> jax.Array:
    """The formulation for the default backend, on ``x (N, *spatial, C)``."""
    if use_cpu_formulation():
        return conv_transpose_cpu(x, w, strides, paddings, output_paddings, dilations, groups)
    return conv_transpose_xla(x, w, strides, paddings, output_paddings, dilations, groups)
