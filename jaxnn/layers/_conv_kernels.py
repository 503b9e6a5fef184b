"""The kernels behind the convolution and pooling layers, in two formulations of the same result.

The one used is picked when a function is traced (:func:`use_cpu_formulation`):

- on accelerators, ``lax.conv_general_dilated`` and ``lax.reduce_window``;
- on CPU, convolutions as matrix products of patches (im2col): of the whole batch where its
  patches are small enough, else XLA's forward pass with derivatives from patches built in
  cache-sized blocks of examples; and pooling by reshapes (non-overlapping windows) or strided
  slices (overlapping ones) with a max-pooling derivative rule of the same kind. On CPU, XLA
  computes the derivatives of ``lax.conv_general_dilated`` with generic convolution kernels
  several times slower than its forward pass (over ten times slower inside ``lax.scan``), and the
  derivative of ``reduce_window`` max is a ``select_and_scatter`` several times slower than the
  forward pass, while matrix products and fused elementwise loops are fast everywhere; see
  ``bench/layers_vs_pytorch.py``.

Every kernel takes ``x (N, *spatial, C)`` with one batch axis and explicit ``(low, high)`` padding.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnn.layers._spatial import Pairs, output_sizes

# --------------------------------------------------------------------------------------------
# Convolution.


def use_cpu_formulation() -> bool:
    """Whether the CPU formulations are used: decided when a function is traced."""
    return jax.default_backend() == "cpu"


def conv_xla(x, w, strides, pads: Pairs, dilations, groups: int) -> jax.Array:
    """``lax.conv_general_dilated`` on channels-last arrays: the formulation for accelerators."""
    spatial = "DHW"[3 - len(strides):]
    return lax.conv_general_dilated(
        x, w, window_strides=strides, padding=pads, rhs_dilation=dilations,
        dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"),
        feature_group_count=groups,
    )


def conv_cpu(x, w, strides, pads: Pairs, dilations, groups: int) -> jax.Array:
    """The CPU formulation of :func:`conv_xla`: the same sum, computed as described below.

    Padding is applied first, so that the convolution itself is ``VALID``. Where the whole
    batch's patches take at most :data:`WHOLE_BATCH_PATCH_BYTES`, the convolution is one matrix
    product of them, differentiated by JAX's own rules. Otherwise the forward pass is
    ``lax.conv_general_dilated`` (XLA's fast CPU kernel takes only paddings smaller than the
    kernel) and the derivatives come from :func:`_valid_conv_cpu`'s JVP rule, which is linear in
    the tangents and made of matrix products of patches built in blocks, so that reverse mode
    (its transpose) is made of matrix products too. 1D convolutions run as 2D ones over a unit
    axis.
    """
    if len(strides) == 1:
        y = conv_cpu(x[:, None], w[None], (1,) + tuple(strides), ((0, 0),) + tuple(pads),
                     (1,) + tuple(dilations), groups)
        return y[:, 0]
    if any(low or high for low, high in pads):
        x = jnp.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),))
    strides, dilations = tuple(strides), tuple(dilations)
    if _whole_batch_patches_fit(x, w, strides, dilations):
        return _patch_product(x, w, strides, dilations, groups)
    return _valid_conv_cpu(x, w, strides, dilations, groups)


# Up to this size, the whole batch's patches are built at once, and the convolution and its
# derivatives are single matrix products. A LeNet training step (batch 128, the second layer's
# patches 17.8 MB) took 16.5 ms this way inside lax.scan, against 25 ms with XLA's forward
# convolution and 512 KB blocks, on a 2-core Intel Xeon. Far larger patch matrices (265 MB for 64
# channels on 32x32 images, batch 128) were twice as slow as blocks.
WHOLE_BATCH_PATCH_BYTES = 32 << 20


def _whole_batch_patches_fit(x, w, strides, dilations) -> bool:
    """Whether the whole batch's patches take at most :data:`WHOLE_BATCH_PATCH_BYTES`.

    Symbolic sizes (``jax.export``) have no size to compare, and an empty output has no patches
    to build: both take XLA's forward pass.
    """
    if not all(isinstance(size, (int, np.integer)) for size in x.shape + w.shape):
        return False
    per_example = _patch_bytes_per_example(x, w, strides, dilations)
    return per_example > 0 and x.shape[0] * per_example <= WHOLE_BATCH_PATCH_BYTES


def _patch_bytes_per_example(x, w, strides, dilations) -> int:
    window = w.shape[:2]
    out_h, out_w = output_sizes(x.shape[1:3], window, strides, dilations, ((0, 0), (0, 0)))
    return max(out_h, 0) * max(out_w, 0) * math.prod(window) * x.shape[3] * jnp.dtype(x.dtype).itemsize


# Past WHOLE_BATCH_PATCH_BYTES, examples per block of patches are chosen so that a block's
# patches take about this many bytes and stay in cache between being built and being
# multiplied. On a 2-core AMD EPYC, 256 KB to 1 MB blocks trained a LeNet-sized CNN fastest of
# the block sizes.
BLOCK_BYTES = 1 << 19


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _valid_conv_cpu(x, w, strides, dilations, groups):
    # For patches past WHOLE_BATCH_PATCH_BYTES, XLA's forward convolution: built whole, they no
    # longer fit in memory well, and built in blocks, they were slower than XLA's forward pass.
    # Its derivatives are the slow part.
    return conv_xla(x, w, strides, ((0, 0),) * len(strides), dilations, groups)


def _valid_conv_cpu_jvp(strides, dilations, groups, primals, tangents):
    """``y_dot = conv(x_dot, w) + conv(x, w_dot)``, each term a blocked patch product.

    A tangent that is symbolically zero (the input of a first layer, which is data) costs nothing.
    """
    x, w = primals
    x_dot, w_dot = tangents
    y = _valid_conv_cpu(x, w, strides, dilations, groups)
    y_dot = None
    if not isinstance(x_dot, jax.custom_derivatives.SymbolicZero):
        y_dot = _blocked_patch_product(x_dot, w, strides, dilations, groups)
    if not isinstance(w_dot, jax.custom_derivatives.SymbolicZero):
        term = _blocked_patch_product(x, w_dot, strides, dilations, groups)
        y_dot = term if y_dot is None else y_dot + term
    return y, jnp.zeros_like(y) if y_dot is None else y_dot


_valid_conv_cpu.defjvp(_valid_conv_cpu_jvp, symbolic_zeros=True)


def _patch_product(x, w, strides, dilations, groups):
    """The VALID convolution as one matrix product of patches: im2col.

    ``patches[n, i, j, (a, b, c)] = x[n, i*s + a*d, j*s + b*d, c]`` for kernel offsets ``(a, b)``,
    and ``y = patches @ w.reshape(-1, out)``, per group. Linear in ``x`` and in ``w``; the
    transpose in ``x`` scatters back by padding and adding slices (col2im).
    """
    n, height, width, channels = x.shape
    kh, kw, group_channels, features = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    out_h = (height - dh * (kh - 1) - 1) // sh + 1
    out_w = (width - dw * (kw - 1) - 1) // sw + 1
    taps = [
        lax.slice(x, (0, a * dh, b * dw, 0),
                  (n, a * dh + (out_h - 1) * sh + 1, b * dw + (out_w - 1) * sw + 1, channels),
                  (1, sh, sw, 1))
        for a in range(kh) for b in range(kw)
    ]
    patches = jnp.stack(taps, axis=3)  # (n, out_h, out_w, taps, channels)
    rows = n * out_h * out_w
    if groups == 1:
        y = jnp.dot(patches.reshape(rows, kh * kw * channels), w.reshape(kh * kw * channels, features))
    else:
        patches = patches.reshape(rows, kh * kw, groups, group_channels)
        kernel = w.reshape(kh * kw, group_channels, groups, features // groups)
        y = lax.dot_general(patches, kernel, (((1, 3), (0, 1)), ((2,), (2,))))  # (groups, rows, out)
        y = jnp.moveaxis(y, 0, 1)
    return y.reshape(n, out_h, out_w, features)


def _blocked_patch_product(x, w, strides, dilations, groups):
    """:func:`_patch_product` over blocks of examples in a ``lax.scan``.

    Whole-batch patches are ``prod(kernel)`` times the input; built in blocks, and rebuilt in the
    backward pass rather than saved (``jax.checkpoint``), they never leave the cache. The transpose
    of the scan accumulates the kernel's gradient over blocks in its carry.
    """
    n = x.shape[0]
    example_bytes = _patch_bytes_per_example(x, w, strides, dilations)
    block = int(max(1, min(n, BLOCK_BYTES // max(example_bytes, 1))))
    product = jax.checkpoint(lambda xs: _patch_product(xs, w, strides, dilations, groups))
    full = n - n % block
    parts = []
    if full:
        blocks = x[:full].reshape((full // block, block) + x.shape[1:])
        _, ys = lax.scan(lambda carry, xs: (carry, product(xs)), None, blocks)
        parts.append(ys.reshape((full,) + ys.shape[2:]))
    if full < n or not parts:
        parts.append(product(x[full:]))
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=0)


def convolve(x, w, strides, pads: Pairs, dilations, groups: int) -> jax.Array:
    """The formulation for the default backend, on ``x (N, *spatial, C)`` with explicit padding."""
    if use_cpu_formulation():
        return conv_cpu(x, w, strides, pads, dilations, groups)
    return conv_xla(x, w, strides, pads, dilations, groups)


# --------------------------------------------------------------------------------------------
# Pooling.


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
    ``reduce_window`` max (and PyTorch's ``max_pool``) picks it when several elements tie.

    The winner is found by a running comparison of the window's elements, never by comparing
    them with the maximum for equality: XLA may compute the input of the pooling twice, in two
    fusions that round differently (a fused multiply-add in one and not in the other), and an
    element would then not equal the maximum computed from its twin, losing the gradient of the
    whole window.
    """
    (x,), (x_dot,) = primals, tangents
    count = math.prod(window)
    out = output_sizes(x.shape[1:-1], window, strides, (1,) * len(window), ((0, 0),) * len(window))
    # The winning position is kept for the backward pass; in the narrowest integer that holds it,
    # as memory traffic dominates here (int8 over int32 halves the time of a LeNet pooling layer).
    index_dtype = np.int8 if count < 2**7 else np.int16 if count < 2**15 else np.int32
    taps, tangent_taps = _window_elements(x, window, strides, out), _window_elements(x_dot, window, strides, out)
    largest, first = taps[0], jnp.zeros(taps[0].shape, index_dtype)
    for position, tap in enumerate(taps[1:], start=1):
        later_is_larger = tap > largest
        largest = jnp.where(later_is_larger, tap, largest)
        first = jnp.where(later_is_larger, np.array(position, index_dtype), first)
    y = _max_pool_cpu_valid(x, window, strides)  # as computed without derivatives, NaN kept
    y_dot = sum(jnp.where(first == position, tap, 0) for position, tap in enumerate(tangent_taps))
    return y, y_dot


def _window_elements(x, window, strides, out) -> list[jax.Array]:
    """One ``(N, *out, C)`` array per window offset in row-major order: views of the reshaped
    windows when they tile the input, strided slices otherwise."""
    if tuple(window) != tuple(strides):
        return _taps(x, window, strides, out)
    windows = _as_windows(x, window, out)
    elements = []
    for offset in np.ndindex(*window):
        index = [slice(None)] * windows.ndim
        for axis, o in zip(_window_axes(len(window)), offset):
            index[axis] = o
        elements.append(windows[tuple(index)])
    return elements


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


def max_pool(x, window, strides, pads: Pairs) -> jax.Array:
    """Max pooling in the formulation for the default backend."""
    return (max_pool_cpu if use_cpu_formulation() else max_pool_xla)(x, window, strides, pads)


def window_sum(x, window, strides, pads: Pairs) -> jax.Array:
    """Window sums in the formulation for the default backend."""
    return (window_sum_cpu if use_cpu_formulation() else window_sum_xla)(x, window, strides, pads)
