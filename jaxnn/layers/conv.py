"""Convolution layers, Conv1D and Conv2D: PyTorch's cross-correlation on channels-last arrays;
and their transposes, ConvTranspose1D and ConvTranspose2D (PyTorch's ``ConvTranspose1d/2d``).

The sum is computed by ``jaxnn.layers._conv_kernels`` in the formulation that is fastest on the
backend in use: ``lax.conv_general_dilated`` on accelerators, matrix products of patches
(im2col) on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxnn import init as initializers
from jaxnn._checks import check_bool, check_positive_int
from jaxnn.core import (
    Layer,
    LayerValueError,
    as_shape,
    check_entries,
    check_entry,
    check_initializer,
    check_param_dtype,
    compute_dtype,
    expand_to,
    make_layer,
)
from jaxnn.layers._arguments import conv_hint, conv_transpose_hint, positional_limit
from jaxnn.layers._conv_kernels import convolve
from jaxnn.layers._conv_transpose import conv_transpose, transposed_output_sizes
from jaxnn.layers._spatial import (
    check_spatial_fit,
    flatten_batch,
    int_tuple,
    output_sizes,
    padding_spec,
    positive_tuple,
    resolve_padding,
    spatial_input,
)

__all__ = ["Conv1D", "Conv2D", "ConvTranspose1D", "ConvTranspose2D"]


def _over_batch(kernel, x, w, maybe_b, features: int, ndim: int) -> jax.Array:
    """``kernel(flat_x, w)`` in the compute dtype of ``x`` and ``w``, over any leading batch axes
    (flattened into one), plus the bias ``maybe_b[0]`` when there is one: the part of ``apply``
    that a convolution and a transposed convolution share."""
    dtype = compute_dtype(x.dtype, w.dtype)
    flat, batch_shape = flatten_batch(x.astype(dtype), ndim)
    y = kernel(flat, w.astype(dtype))
    y = y.reshape(batch_shape + y.shape[1:])
    if maybe_b:
        b = check_entry(maybe_b[0], "params['b']", (features,))
        y = y + expand_to(b.astype(dtype), y.ndim)
    return y


def _conv(ndim: int, name: str, constructor: str, features, kernel_size, stride, padding, dilation,
          groups, use_bias, w_init, b_init, param_dtype) -> Layer:
    features = check_positive_int(features, "features", constructor)
    kernel = positive_tuple(kernel_size, ndim, "kernel_size", constructor)
    strides = positive_tuple(stride, ndim, "stride", constructor)
    dilations = positive_tuple(dilation, ndim, "dilation", constructor)
    groups = check_positive_int(groups, "groups", constructor)
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
        y = _over_batch(lambda flat, w: convolve(flat, w, strides, pads, dilations, groups),
                        x, w, maybe_b, features, ndim)
        return y, state

    return make_layer(name, init, apply)


@positional_limit(conv_hint(1))
def Conv1D(
    features: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence = "VALID",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
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


@positional_limit(conv_hint(2))
def Conv2D(
    features: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence = "VALID",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
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

    Only ``features`` and ``kernel_size`` are positional; the rest are keywords. PyTorch's
    ``Conv2d(in_channels, out_channels, kernel_size, stride, ...)`` takes the input channels first,
    which jaxnn infers, so its ``Conv2d(1, 32, 3)`` is ``Conv2D(32, 3)`` here, and a call with more
    positional arguments is a ``TypeError`` saying so rather than a kernel of 32 and a stride of 3.

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


def _conv_transpose(ndim: int, name: str, constructor: str, features, kernel_size, stride, padding,
                    output_padding, dilation, groups, use_bias, w_init, b_init, param_dtype) -> Layer:
    features = check_positive_int(features, "features", constructor)
    kernel = positive_tuple(kernel_size, ndim, "kernel_size", constructor)
    strides = positive_tuple(stride, ndim, "stride", constructor)
    dilations = positive_tuple(dilation, ndim, "dilation", constructor)
    paddings = int_tuple(padding, ndim, "padding", constructor, low=0)
    output_paddings = int_tuple(output_padding, ndim, "output_padding", constructor, low=0)
    for op, s, d in zip(output_paddings, strides, dilations):
        # PyTorch's rule: the extra output rows must lie within one stride or one dilation step.
        if op >= s and op >= d:
            raise LayerValueError(
                f"{constructor}: `output_padding` (={output_padding!r}) must be smaller than either "
                f"`stride` (={stride!r}) or `dilation` (={dilation!r}) in every axis"
            )
    groups = check_positive_int(groups, "groups", constructor)
    if features % groups:
        raise LayerValueError(
            f"{constructor}: `features` (={features}) must be divisible by `groups` (={groups})"
        )
    use_bias = check_bool(use_bias, "use_bias", constructor)
    check_initializer(w_init, "w_init", constructor)
    check_initializer(b_init, "b_init", constructor)
    param_dtype = check_param_dtype(param_dtype, constructor)
    layout = ("L", "H, W")[ndim - 1] + ", C"

    def out_sizes(sizes):
        out = transposed_output_sizes(sizes, kernel, strides, paddings, output_paddings, dilations)
        if any(o <= 0 for o in out):
            raise LayerValueError(
                f"the input spatial shape {tuple(sizes)} gives an output of spatial shape {out}: "
                f"`padding` (={padding!r}) is too large for this input and kernel"
            )
        return out

    def init(key, input_shape):
        shape = as_shape(input_shape)
        if len(shape) != ndim + 1:
            raise LayerValueError(
                f"expected a per-example input_shape ({layout}) with {ndim} spatial "
                f"ax{'i' if ndim == 1 else 'e'}s and channels last, got {shape}"
            )
        channels = shape[-1]
        if channels % groups:
            raise LayerValueError(f"input channels (={channels}) must be divisible by `groups` (={groups})")
        out = out_sizes(shape[:-1])
        w_key, b_key = jax.random.split(key)
        params = {"w": w_init(w_key, kernel + (channels, features // groups), param_dtype)}
        if use_bias:
            params["b"] = b_init(b_key, (features,), param_dtype)
        return out + (features,), params, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        x = spatial_input(x, ndim, layout)
        w, *maybe_b = check_entries(params, ("w", "b") if use_bias else ("w",))
        w = check_entry(w, "params['w']", kernel + ("in", features // groups))
        if x.shape[-1] != w.shape[-2]:
            raise LayerValueError(
                f"expected {w.shape[-2]} input channels (params['w'] is {w.shape}) in the last axis of "
                f"an input (*batch, {layout}), got shape {x.shape}"
            )
        if w.shape[-2] % groups:
            raise LayerValueError(
                f"input channels (={w.shape[-2]}) must be divisible by `groups` (={groups})"
            )
        out_sizes(x.shape[x.ndim - ndim - 1:-1])
        y = _over_batch(lambda flat, w: conv_transpose(flat, w, strides, paddings, output_paddings,
                                                       dilations, groups),
                        x, w, maybe_b, features, ndim)
        return y, state

    return make_layer(name, init, apply)


@positional_limit(conv_transpose_hint(1))
def ConvTranspose1D(
    features: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    use_bias: bool = True,
    w_init=initializers.he_normal(),
    b_init=initializers.zeros(),
    param_dtype=jnp.float32,
) -> Layer:
    """A 1D transposed convolution ``(*batch, L, C) -> (*batch, L_out, features)``, ``nn.ConvTranspose1d``.

    The transpose (the gradient with respect to its input) of :func:`Conv1D` with the same
    ``stride``, ``padding`` and ``dilation``. Params ``w (k, C, features / groups)`` and
    ``b (features,)``::

        y[n, j, o] = b[o] + sum_{i, a, c : j = i*s + a*d - p} x[n, i, c] * w[a, c, o - g*(F/groups)]

    the sum running over the input channels ``c`` of the group ``g = o // (F / groups)`` of
    output channel ``o``, with ``s`` the stride, ``d`` the dilation and ``p`` the padding;
    ``L_out = (L - 1)*s - 2*p + d*(k - 1) + output_padding + 1``, PyTorch's formula, where
    ``output_padding`` adds positions at the high end (they receive only the bias and the taps
    that reach them). A PyTorch weight ``(in, out / groups, k)`` ports as
    ``w = weight.permute(2, 0, 1)``, with ``b = bias``. Arguments as :func:`ConvTranspose2D`.
    """
    return _conv_transpose(1, "conv_transpose1d", "ConvTranspose1D", features, kernel_size, stride, padding,
                           output_padding, dilation, groups, use_bias, w_init, b_init, param_dtype)


@positional_limit(conv_transpose_hint(2))
def ConvTranspose2D(
    features: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    use_bias: bool = True,
    w_init=initializers.he_normal(),
    b_init=initializers.zeros(),
    param_dtype=jnp.float32,
) -> Layer:
    """A 2D transposed convolution: ``(*batch, H, W, C) -> (*batch, H_out, W_out, features)``,
    PyTorch's ``nn.ConvTranspose2d`` (sometimes called a deconvolution).

    The transpose (the gradient with respect to its input) of :func:`Conv2D` with the same
    ``stride``, ``padding`` and ``dilation``: each input position scatters its kernel-weighted
    values onto the output. Params ``w (kh, kw, C, features / groups)`` and ``b (features,)``::

        y[n, i', j', o] = b[o] + sum x[n, i, j, c] * w[a, b, c, o - g*(F/groups)]
            over i, j, a, b, c with i' = i*s_h + a*d_h - p_h and j' = j*s_w + b*d_w - p_w,

    ``c`` running over the input channels of the group ``g = o // (F / groups)`` of output
    channel ``o``. Along each spatial axis of size ``n`` the output size is PyTorch's
    ``(n - 1)*s - 2*p + d*(k - 1) + output_padding + 1``. The kernel is not flipped in the
    params (the formula holds the flip), so a PyTorch weight ``(in, out / groups, kh, kw)`` ports
    as ``w = weight.permute(2, 3, 0, 1)``, with ``b = bias``.

    Only ``features`` and ``kernel_size`` are positional. PyTorch's
    ``ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, output_padding,
    groups, bias, dilation)`` takes the input channels first, which jaxnn infers.

    Args:
      features: number of output channels ``F``.
      kernel_size: an int (the same in both axes) or a tuple of 2 ints.
      stride: an int or a tuple of 2 ints: the upsampling factor.
      padding: an int or a tuple of 2 non-negative ints: ``dilation * (k - 1) - padding`` zeros are
        in effect added to each side of the stride-dilated input, so a larger ``padding`` gives a
        smaller output (``kernel_size=4, stride=2, padding=1`` doubles the size exactly).
      output_padding: an int or a tuple of 2 non-negative ints added to the high end of the output;
        each must be smaller than the stride or the dilation of its axis, as PyTorch requires. It
        picks among the output sizes that a strided :func:`Conv2D` maps to the same input size.
      dilation: spacing between kernel taps, an int or a tuple of 2 ints.
      groups: input and output channels are split into ``groups`` groups, each output group
        seeing only its input group; both channel counts must be divisible by it.
      use_bias: whether to add ``b``.
      w_init: kernel initializer, He (Kaiming) normal by default, with fan-in ``kh * kw * C``
        computed from the kernel's shape.
      b_init: bias initializer (zeros).
      param_dtype: dtype of the parameters.

    Example::

        layer = ConvTranspose2D(16, 4, stride=2, padding=1)
        output_shape, params, state = layer.init(jax.random.key(0), (14, 14, 32))   # (28, 28, 16)
    """
    return _conv_transpose(2, "conv_transpose2d", "ConvTranspose2D", features, kernel_size, stride, padding,
                           output_padding, dilation, groups, use_bias, w_init, b_init, param_dtype)
