"""Convolution layers, Conv1D and Conv2D: PyTorch's cross-correlation on channels-last arrays.

Two formulations of the same sum are kept, and the one used is picked when a function is traced:
``lax.conv_general_dilated`` on accelerators; on CPU, the same forward pass with derivatives
computed as matrix products of patches (im2col) built in cache-sized blocks of examples. On CPU,
XLA computes the derivatives of ``lax.conv_general_dilated`` with generic convolution kernels
several times slower than its forward pass (over ten times slower inside ``lax.scan``), while its
matrix products are fast everywhere; see ``bench/layers_vs_pytorch.py``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnn import init as initializers
from jaxnn.core import (
    Layer,
    LayerTypeError,
    LayerValueError,
    as_shape,
    check_array,
    check_bool,
    check_entries,
    check_entry,
    check_floating,
    check_initializer,
    check_param_dtype,
    compute_dtype,
    expand_to,
    make_layer,
)

Pairs = tuple[tuple[int, int], ...]


# --------------------------------------------------------------------------------------------
# Argument checks shared with the pooling layers.


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def positive_tuple(value, ndim: int, argument: str, constructor: str) -> tuple[int, ...]:
    """``value`` (an int, or a tuple of ``ndim`` ints) as a tuple of ``ndim`` positive ints."""
    expected = "a positive int" + (f" or a tuple of {ndim} positive ints" if ndim > 1 else "")
    if _is_int(value):
        values = (int(value),) * ndim
    elif isinstance(value, (tuple, list)) and len(value) == ndim and all(map(_is_int, value)):
        values = tuple(int(v) for v in value)
    else:
        raise LayerTypeError(f"{constructor}: `{argument}` must be {expected}, got {value!r}")
    if any(v <= 0 for v in values):
        raise LayerValueError(f"{constructor}: `{argument}` (={value!r}) must be {expected}")
    return values


def padding_spec(padding, ndim: int, constructor: str) -> str | Pairs:
    """Normalizes ``padding`` to ``"VALID"``, ``"SAME"`` or ``ndim`` ``(low, high)`` pairs."""
    if isinstance(padding, str):
        if padding.upper() in ("VALID", "SAME"):
            return padding.upper()
        raise LayerValueError(
            f"{constructor}: `padding` must be 'VALID', 'SAME', an int, a tuple of {ndim} ints or "
            f"{ndim} (low, high) pairs, got {padding!r}"
        )
    if _is_int(padding):
        pairs = ((int(padding), int(padding)),) * ndim
    elif isinstance(padding, (tuple, list)) and len(padding) == ndim and all(map(_is_int, padding)):
        pairs = tuple((int(p), int(p)) for p in padding)
    elif isinstance(padding, (tuple, list)) and len(padding) == ndim and all(
        isinstance(pair, (tuple, list)) and len(pair) == 2 and all(map(_is_int, pair)) for pair in padding
    ):
        pairs = tuple((int(low), int(high)) for low, high in padding)
    else:
        hint = (f"; (low, high) padding of one axis is written (({padding[0]}, {padding[1]}),)"
                if ndim == 1 and isinstance(padding, (tuple, list)) and len(padding) == 2 else "")
        raise LayerTypeError(
            f"{constructor}: `padding` must be 'VALID', 'SAME', an int, a tuple of {ndim} ints or "
            f"{ndim} (low, high) pairs, got {padding!r}{hint}"
        )
    if any(p < 0 for pair in pairs for p in pair):
        raise LayerValueError(f"{constructor}: `padding` (={padding!r}) must not be negative")
    return pairs


def resolve_padding(padding: str | Pairs, sizes, windows, strides, dilations=None) -> Pairs:
    """``(low, high)`` pairs for each spatial axis of the given ``sizes``.

    ``"SAME"`` is XLA's: the output has ``ceil(n / stride)`` positions and the total padding
    ``max((out - 1) * stride + dilated_window - n, 0)`` is split with the extra element, if any,
    at the high end (as PyTorch's ``padding="same"`` does).
    """
    if dilations is None:
        dilations = (1,) * len(sizes)
    if padding == "VALID":
        return ((0, 0),) * len(sizes)
    if padding == "SAME":
        pairs = []
        for n, k, s, d in zip(sizes, windows, strides, dilations):
            out = -(-n // s)
            total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
            pairs.append((total // 2, total - total // 2))
        return tuple(pairs)
    return padding


def output_sizes(sizes, windows, strides, dilations, pads: Pairs) -> tuple[int, ...]:
    """``floor((n + low + high - dilation * (k - 1) - 1) / stride) + 1`` per axis (PyTorch's)."""
    return tuple((n + low + high - d * (k - 1) - 1) // s + 1
                 for n, k, s, d, (low, high) in zip(sizes, windows, strides, dilations, pads))


def check_spatial_fit(sizes, windows, dilations, pads: Pairs, what: str = "kernel") -> None:
    """Raises unless every padded spatial size holds at least one (dilated) window."""
    for axis, (n, k, d, (low, high)) in enumerate(zip(sizes, windows, dilations, pads)):
        span = d * (k - 1) + 1
        if n + low + high < span:
            padded = f" (padded to {n + low + high})" if low or high else ""
            dilated = f"dilated {what} spans {span}" if d > 1 else f"{what} is {k}"
            raise LayerValueError(
                f"spatial axis {axis} of the input has size {n}{padded}, but the {dilated}; "
                f"the input spatial shape is {tuple(sizes)}"
            )


def spatial_input(x, ndim: int, layout: str) -> jax.Array:
    """Checks that ``x`` has at least ``ndim`` spatial axes and a channel axis; returns it as an array."""
    x = check_array(x)
    check_floating(x)
    if x.ndim < ndim + 1:
        raise LayerValueError(f"expected an input of shape (*batch, {layout}), got {x.shape}")
    return x


def flatten_batch(x: jax.Array, ndim: int) -> tuple[jax.Array, tuple[int, ...]]:
    """Reshapes ``(*batch, *spatial, C)`` to ``(prod(batch), *spatial, C)``; returns the batch shape."""
    batch_shape = x.shape[: x.ndim - ndim - 1]
    return x.reshape((math.prod(batch_shape),) + x.shape[x.ndim - ndim - 1:]), batch_shape


def use_cpu_formulation() -> bool:
    """Whether the CPU formulations are used: decided when a function is traced."""
    return jax.default_backend() == "cpu"


# --------------------------------------------------------------------------------------------
# The two formulations. Both take x (N, *spatial, C) with one batch axis and explicit padding.


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

    Padding is applied first, so that the convolution itself is ``VALID``: XLA's fast CPU
    convolution kernel takes only paddings smaller than the kernel. The forward pass is
    ``lax.conv_general_dilated``; the derivatives come from :func:`_valid_conv_cpu`'s JVP rule,
    which is linear in the tangents and made of matrix products of patches, so that reverse mode
    (its transpose) is made of matrix products too. 1D convolutions run as 2D ones over a unit
    axis, since XLA's fast kernel is 2D only.
    """
    if len(strides) == 1:
        y = conv_cpu(x[:, None], w[None], (1,) + tuple(strides), ((0, 0),) + tuple(pads),
                     (1,) + tuple(dilations), groups)
        return y[:, 0]
    if any(low or high for low, high in pads):
        x = jnp.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),))
    return _valid_conv_cpu(x, w, tuple(strides), tuple(dilations), groups)


# Examples per block of patches are chosen so that a block's patches take about this many bytes
# and stay in cache between being built and being multiplied. On a 2-core AMD EPYC, 256 KB to
# 1 MB blocks trained a LeNet-sized CNN fastest; 4 MB blocks were slower on a loaded machine, and
# whole-batch patches (no blocks) made the training step 1.7 times as slow.
_BLOCK_BYTES = 1 << 19


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _valid_conv_cpu(x, w, strides, dilations, groups):
    # XLA's convolution is its fastest forward pass on CPU, faster than the patch product on a
    # loaded machine (it runs on one thread); only its derivatives are slow.
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
    n, height, width, channels = x.shape
    kh, kw = w.shape[:2]
    out_h = (height - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    out_w = (width - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    example_bytes = out_h * out_w * kh * kw * channels * jnp.dtype(x.dtype).itemsize
    block = int(max(1, min(n, _BLOCK_BYTES // max(example_bytes, 1))))
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
# Layers.


def _conv(ndim: int, name: str, constructor: str, features, kernel_size, stride, padding, dilation,
          groups, use_bias, w_init, b_init, param_dtype) -> Layer:
    if not _is_int(features):
        raise LayerTypeError(f"{constructor}: `features` must be a positive int, got {features!r}")
    if features <= 0:
        raise LayerValueError(f"{constructor}: `features` (={features}) must be a positive int")
    features = int(features)
    kernel = positive_tuple(kernel_size, ndim, "kernel_size", constructor)
    strides = positive_tuple(stride, ndim, "stride", constructor)
    dilations = positive_tuple(dilation, ndim, "dilation", constructor)
    if not _is_int(groups):
        raise LayerTypeError(f"{constructor}: `groups` must be a positive int, got {groups!r}")
    if groups <= 0:
        raise LayerValueError(f"{constructor}: `groups` (={groups}) must be a positive int")
    groups = int(groups)
    if features % groups:
        raise LayerValueError(
            f"{constructor}: `features` (={features}) must be divisible by `groups` (={groups})"
        )
    padding = padding_spec(padding, ndim, constructor)
    use_bias = check_bool(use_bias, "use_bias", constructor)
    check_initializer(w_init, "w_init", constructor)
    check_initializer(b_init, "b_init", constructor)
    param_dtype = check_param_dtype(param_dtype, constructor)
    layout = ("L", "H, W")[ndim - 1] + ", C"

    def geometry(sizes):
        pads = resolve_padding(padding, sizes, kernel, strides, dilations)
        check_spatial_fit(sizes, kernel, dilations, pads)
        return pads, output_sizes(sizes, kernel, strides, dilations, pads)

    def init(key, input_shape):
        shape = as_shape(input_shape)
        if len(shape) != ndim + 1:
            raise LayerValueError(
                f"expected a per-example input_shape ({layout}) with {ndim} spatial "
                f"ax{'i' if ndim == 1 else 'e'}s and channels last, got {shape}"
            )
        channels = shape[-1]
        if channels % groups:
            raise LayerValueError(
                f"input channels (={channels}) must be divisible by `groups` (={groups})"
            )
        _, out = geometry(shape[:-1])
        w_key, b_key = jax.random.split(key)
        params = {"w": w_init(w_key, kernel + (channels // groups, features), param_dtype)}
        if use_bias:
            params["b"] = b_init(b_key, (features,), param_dtype)
        return out + (features,), params, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        x = spatial_input(x, ndim, layout)
        w, *maybe_b = check_entries(params, ("w", "b") if use_bias else ("w",))
        w = check_entry(w, "params['w']", kernel + ("in / groups", features))
        channels = x.shape[-1]
        if channels != w.shape[-2] * groups:
            raise LayerValueError(
                f"expected {w.shape[-2] * groups} input channels (params['w'] has {w.shape[-2]} per "
                f"group, groups={groups}) in the last axis of an input (*batch, {layout}), "
                f"got shape {x.shape}"
            )
        pads, _ = geometry(x.shape[x.ndim - ndim - 1:-1])
        dtype = compute_dtype(x.dtype, w.dtype)
        flat, batch_shape = flatten_batch(x.astype(dtype), ndim)
        y = convolve(flat, w.astype(dtype), strides, pads, dilations, groups)
        y = y.reshape(batch_shape + y.shape[1:])
        if use_bias:
            b = check_entry(maybe_b[0], "params['b']", (features,))
            y = y + expand_to(b.astype(dtype), y.ndim)
        return y, state

    return make_layer(name, init, apply)


def Conv1D(
    features: int,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence = "VALID",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    *,
    use_bias: bool = True,
    w_init=initializers.he_normal(),
    b_init=initializers.zeros(),
    param_dtype=jnp.float32,
) -> Layer:
    """A 1D convolution along the second-to-last axis: ``(*batch, L, C) -> (*batch, L_out, features)``.

    Any number of leading batch axes, channels last. Params ``w (k, C / groups, features)`` and
    ``b (features,)``. PyTorch's cross-correlation (``nn.Conv1d``)::

        y[n, i, o] = b[o] + sum_{a, c} x_padded[n, i*s + a*d, g*(C/groups) + c] * w[a, c, o]

    with ``g = o // (features / groups)`` the group of output channel ``o``, ``s`` the stride and
    ``d`` the dilation; ``L_out = floor((L + low + high - d*(k - 1) - 1) / s) + 1``. A PyTorch
    weight ``(out, in / groups, k)`` ports as ``w = weight.permute(2, 1, 0)``, with ``b = bias``.
    The arguments are those of :func:`Conv2D`, each an int or a tuple of one int (``padding``:
    ``"VALID"``, ``"SAME"``, an int, ``(p,)`` or ``((low, high),)``).

    Example::

        layer = Conv1D(32, 5, padding="SAME")
        output_shape, params, state = layer.init(jax.random.key(0), (100, 8))   # (100, 32)
    """
    return _conv(1, "conv1d", "Conv1D", features, kernel_size, stride, padding, dilation, groups,
                 use_bias, w_init, b_init, param_dtype)


def Conv2D(
    features: int,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence = "VALID",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    *,
    use_bias: bool = True,
    w_init=initializers.he_normal(),
    b_init=initializers.zeros(),
    param_dtype=jnp.float32,
) -> Layer:
    """A 2D convolution over ``(*batch, H, W, C) -> (*batch, H_out, W_out, features)``.

    Any number of leading batch axes, channels last. Params ``w (kh, kw, C / groups, features)``
    and ``b (features,)``. PyTorch's cross-correlation (``nn.Conv2d``)::

        y[n, i, j, o] = b[o] + sum_{a, b, c}
            x_padded[n, i*s_h + a*d_h, j*s_w + b*d_w, g*(C/groups) + c] * w[a, b, c, o]

    with ``g = o // (features / groups)`` the group of output channel ``o``, ``s`` the stride and
    ``d`` the dilation. Along each spatial axis of size ``n`` padded by ``(low, high)``, the
    output size is ``floor((n + low + high - d*(k - 1) - 1) / s) + 1``, as PyTorch computes it. A
    PyTorch weight ``(out, in / groups, kh, kw)`` ports as ``w = weight.permute(2, 3, 1, 0)``,
    with ``b = bias``.

    Args:
      features: number of output channels.
      kernel_size: an int (the same in both spatial axes) or a tuple of 2 ints.
      stride: an int or a tuple of 2 ints.
      padding: ``"VALID"`` (none); ``"SAME"`` (XLA's: ``ceil(n / s)`` outputs, the odd element of
        padding at the high end); an int (both sides of both axes); a tuple of 2 ints (both sides,
        per axis); or 2 ``(low, high)`` pairs. Padded values are zeros.
      dilation: spacing between kernel taps, an int or a tuple of 2 ints.
      groups: input and output channels are split into ``groups`` groups, each output group
        seeing only its input group; both channel counts must be divisible by it.
      use_bias: whether to add ``b``.
      w_init: kernel initializer. The default, He (Kaiming) normal ``N(0, 2 / fan_in)``, takes
        ``fan_in = kh * kw * C / groups``, as PyTorch's ``kaiming_normal_`` does.
      b_init: bias initializer (zeros).
      param_dtype: dtype of the parameters. The input is computed in the promoted dtype of the
        input and the parameters.

    Example::

        layer = Conv2D(32, 3, padding="SAME")
        output_shape, params, state = layer.init(jax.random.key(0), (28, 28, 1))   # (28, 28, 32)
        y, state = layer.apply(params, state, images)   # images (batch, 28, 28, 1)
    """
    return _conv(2, "conv2d", "Conv2D", features, kernel_size, stride, padding, dilation, groups,
                 use_bias, w_init, b_init, param_dtype)
