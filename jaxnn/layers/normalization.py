"""Normalization layers: BatchNorm (with running statistics kept in ``state``), LayerNorm,
GroupNorm and RMSNorm.

Features are the last axis of their input, as everywhere in jaxnn; statistics are computed in at
least float32, whatever the input dtype.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxnn._checks import check_positive_int, check_real
from jaxnn.core import (
    Layer,
    LayerValueError,
    Static,
    as_shape,
    batch_shape,
    check_array,
    check_entries,
    check_entry,
    check_initializer,
    check_floating,
    check_param_dtype,
    check_min_ndim,
    check_trailing_shape,
    compute_dtype,
    expand_to,
    make_layer,
)
from jaxnn.init import Initializer, ones, zeros
from jaxnn.layers._arguments import (
    batch_norm_hint,
    group_norm_hint,
    layer_norm_hint,
    positional_limit,
    rms_norm_hint,
)


__all__ = ["BatchNorm", "GroupNorm", "LayerNorm", "RMSNorm"]


def _check_constructor_arguments(name: str, eps: float, scale_init, bias_init, param_dtype) -> jnp.dtype:
    """Checks the arguments both layers take; returns ``param_dtype`` as a dtype."""
    check_real(eps, "eps", name, low=0.0, low_open=True)
    check_initializer(scale_init, "scale_init", name)
    check_initializer(bias_init, "bias_init", name)
    return check_param_dtype(param_dtype, name)


def _checked_input_and_params(x, params) -> tuple[jax.Array, jax.Array, jax.Array]:
    x = check_array(x)
    check_floating(x)
    scale, bias = check_entries(params, ("scale", "bias"))
    scale = check_entry(scale, "params['scale']", ("features",))
    bias = check_entry(bias, "params['bias']", scale.shape)
    check_trailing_shape(x, scale.shape)
    return x, scale, bias


def _mean_and_variance(x: jax.Array, axis: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """Mean and biased variance of ``x`` over ``axis``.

    Two passes, the mean of squared deviations, rather than ``E[x^2] - E[x]^2``: that formula
    cancels catastrophically when ``|mean| >> std`` (it can even go negative), while this one is
    never negative and costs only a second read of ``x``, which XLA fuses.
    """
    mean = jnp.mean(x, axis=axis, keepdims=True)
    variance = jnp.mean(jnp.square(x - mean), axis=axis, keepdims=True)
    return mean, variance


def _scale_and_bias(key, features: int, scale_init: Initializer, bias_init: Initializer,
                    param_dtype: jnp.dtype) -> dict:
    scale_key, bias_key = jax.random.split(key)
    return {
        "scale": scale_init(scale_key, (features,), param_dtype),
        "bias": bias_init(bias_key, (features,), param_dtype),
    }


def _normalize(x, mean, variance, eps: float, scale, bias) -> jax.Array:
    """``(x - mean) / sqrt(variance + eps) * scale + bias``, with per-feature ``scale`` and ``bias``."""
    normalized = (x - mean) * jax.lax.rsqrt(variance + eps)
    return normalized * expand_to(scale.astype(x.dtype), x.ndim) + expand_to(bias.astype(x.dtype), x.ndim)


@positional_limit(batch_norm_hint)
def BatchNorm(
    *,
    momentum: float = 0.9,
    eps: float = 1e-5,
    scale_init: Initializer = ones(),
    bias_init: Initializer = zeros(),
    param_dtype=jnp.float32,
) -> Layer:
    """Batch normalization over every axis but the last (features), with running statistics.

    With ``C`` features (the last axis of ``input_shape``), ``params`` are ``scale (C,)`` and
    ``bias (C,)``; ``state`` is ``mean (C,)`` (starts at 0) and ``var (C,)`` (starts at 1), both
    float32. Statistics are taken over all axes but the last, so ``(N, C)``, ``(N, L, C)`` and
    ``(N, H, W, C)`` inputs behave like PyTorch's ``BatchNorm1d``/``BatchNorm2d`` with channels last.

    With ``train=True``, over the ``n`` values of each feature in the batch::

        mu      = mean(x)
        sigma2  = mean((x - mu)^2)                          (biased, used to normalize)
        y       = (x - mu) / sqrt(sigma2 + eps) * scale + bias
        mean'   = momentum * mean + (1 - momentum) * mu
        var'    = momentum * var  + (1 - momentum) * sigma2 * n / (n - 1)   (unbiased, as PyTorch)

    With ``train=False`` the running statistics are used and ``state`` is returned unchanged::

        y = (x - mean) / sqrt(var + eps) * scale + bias

    PyTorch's ``momentum`` weighs the *new* batch, ours the old running value: PyTorch's
    ``momentum=0.1`` (its default) is our ``momentum=0.9``. Statistics are computed in at least
    float32; the output has the dtype of ``x``. Training needs more than one value per feature.

    Under ``vmap`` each mapped call sees only its own slice, so in training the statistics would be
    per example; ``vmap`` over examples (per-example gradients) is meant for ``train=False``.

    Every argument is keyword-only: PyTorch's first positional argument is the number of
    features, which jaxnn infers, so ``BatchNorm(64)`` is an error rather than ``momentum=64``.

    Args:
      momentum: weight of the old running statistics in each update, in ``[0, 1]``.
      eps: added to the variance before the square root, ``> 0``.
      scale_init, bias_init: initializers of ``scale`` and ``bias``.
      param_dtype: dtype of ``scale`` and ``bias``; the running statistics are float32.

    Example::

        layer = BatchNorm()
        output_shape, params, state = layer.init(jax.random.key(0), (32, 32, 16))
        y, state = layer.apply(params, state, images, train=True)   # images: (N, 32, 32, 16)
        y, _ = layer.apply(params, state, images)                    # eval: running statistics
    """
    momentum = check_real(momentum, "momentum", "BatchNorm", low=0.0, high=1.0)
    param_dtype = _check_constructor_arguments("BatchNorm", eps, scale_init, bias_init, param_dtype)

    def init(key, input_shape):
        shape = as_shape(input_shape)
        check_min_ndim(shape, 1, "(..., features)")
        features = shape[-1]
        params = _scale_and_bias(key, features, scale_init, bias_init, param_dtype)
        state = {
            "mean": jnp.zeros((features,), jnp.float32),
            "var": jnp.ones((features,), jnp.float32),
        }
        return shape, params, state

    def apply(params, state, x, *, key=None, train=False):
        del key
        x, scale, bias = _checked_input_and_params(x, params)
        running = check_entries(state, ("mean", "var"), "state")
        for name, value in zip(("mean", "var"), running):
            check_entry(value, f"state['{name}']", scale.shape)
        dtype = compute_dtype(x.dtype, scale.dtype, bias.dtype, jnp.float32)
        x_compute = x.astype(dtype)
        if train:
            count = math.prod(x.shape[:-1])
            if count <= 1:
                raise LayerValueError(
                    f"expected more than 1 value per channel when training, got input shape {x.shape}"
                )
            batch_mean, batch_variance = _mean_and_variance(x_compute, tuple(range(x.ndim - 1)))
            mean, variance = batch_mean, batch_variance
            unbiased = batch_variance.reshape(-1) * (count / (count - 1))
            running_mean, running_var = running
            new_state = {
                "mean": (momentum * running_mean
                         + (1 - momentum) * batch_mean.reshape(-1).astype(running_mean.dtype)),
                "var": momentum * running_var + (1 - momentum) * unbiased.astype(running_var.dtype),
            }
        else:
            mean = expand_to(running[0].astype(dtype), x.ndim)
            variance = expand_to(running[1].astype(dtype), x.ndim)
            new_state = state
        y = _normalize(x_compute, mean, variance, eps, scale, bias)
        return y.astype(x.dtype), new_state

    return make_layer("batch_norm", init, apply)


@positional_limit(layer_norm_hint)
def LayerNorm(
    *,
    eps: float = 1e-5,
    scale_init: Initializer = ones(),
    bias_init: Initializer = zeros(),
    param_dtype=jnp.float32,
) -> Layer:
    """Layer normalization over the last axis, as PyTorch's ``LayerNorm(normalized_shape=C)``.

    With ``C`` features (the last axis of ``input_shape``), ``params`` are ``scale (C,)`` and
    ``bias (C,)``; there is no ``state``. For each position, over its ``C`` features::

        mu     = mean(x)
        sigma2 = mean((x - mu)^2)                    (biased)
        y      = (x - mu) / sqrt(sigma2 + eps) * scale + bias

    The same in training and evaluation. Statistics are computed in at least float32; the output
    has the dtype of ``x``.

    Every argument is keyword-only: PyTorch's first positional argument is the normalized shape,
    which jaxnn infers, so ``LayerNorm(64)`` is an error rather than ``eps=64``.

    Args:
      eps: added to the variance before the square root, ``> 0``.
      scale_init, bias_init: initializers of ``scale`` and ``bias``.
      param_dtype: dtype of ``scale`` and ``bias``.
    """
    param_dtype = _check_constructor_arguments("LayerNorm", eps, scale_init, bias_init, param_dtype)

    def init(key, input_shape):
        shape = as_shape(input_shape)
        check_min_ndim(shape, 1, "(..., features)")
        features = shape[-1]
        params = _scale_and_bias(key, features, scale_init, bias_init, param_dtype)
        return shape, params, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        x, scale, bias = _checked_input_and_params(x, params)
        dtype = compute_dtype(x.dtype, scale.dtype, bias.dtype, jnp.float32)
        x_compute = x.astype(dtype)
        mean, variance = _mean_and_variance(x_compute, (-1,))
        y = _normalize(x_compute, mean, variance, eps, scale, bias)
        return y.astype(x.dtype), state

    return make_layer("layer_norm", init, apply)


@positional_limit(group_norm_hint)
def GroupNorm(
    groups: int,
    *,
    eps: float = 1e-5,
    scale_init: Initializer = ones(),
    bias_init: Initializer = zeros(),
    param_dtype=jnp.float32,
) -> Layer:
    """Group normalization, as PyTorch's ``nn.GroupNorm(groups, C)``, on channels-last inputs.

    The ``C`` channels (the last axis) are split into ``groups`` groups of ``C / groups``
    consecutive channels. For each example and group, over the group's channels and every
    per-example axis before them (the spatial axes of ``(L, C)`` or ``(H, W, C)``)::

        mu     = mean(x)
        sigma2 = mean((x - mu)^2)                    (biased)
        y      = (x - mu) / sqrt(sigma2 + eps) * scale[c] + bias[c]

    Params ``scale (C,)`` and ``bias (C,)`` (PyTorch's ``weight`` and ``bias``, ported as they
    are). The same in training and evaluation. ``state`` records the per-example input shape,
    to tell batch axes from spatial ones; it holds no arrays. Statistics are computed in at least
    float32; the output has the dtype of ``x``. ``groups=1`` normalizes each example as a whole;
    ``groups=C`` is instance normalization.

    Args:
      groups: number of groups; must divide ``C``.
      eps: added to the variance before the square root, ``> 0``.
      scale_init, bias_init: initializers of ``scale`` and ``bias``.
      param_dtype: dtype of ``scale`` and ``bias``.

    Example::

        layer = GroupNorm(4)
        output_shape, params, state = layer.init(jax.random.key(0), (32, 32, 16))
        y, state = layer.apply(params, state, images)   # images: (N, 32, 32, 16)
    """
    groups = check_positive_int(groups, "groups", "GroupNorm")
    param_dtype = _check_constructor_arguments("GroupNorm", eps, scale_init, bias_init, param_dtype)

    def check_channels(channels: int) -> None:
        if channels % groups:
            raise LayerValueError(f"channels (={channels}) must be divisible by `groups` (={groups})")

    def init(key, input_shape):
        shape = as_shape(input_shape)
        check_min_ndim(shape, 1, "(..., channels)")
        check_channels(shape[-1])
        params = _scale_and_bias(key, shape[-1], scale_init, bias_init, param_dtype)
        return shape, params, {"input_shape": Static(shape)}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        x, scale, bias = _checked_input_and_params(x, params)
        check_channels(x.shape[-1])
        batch_axes = batch_shape(x, state)
        dtype = compute_dtype(x.dtype, scale.dtype, bias.dtype, jnp.float32)
        grouped = x.astype(dtype).reshape(x.shape[:-1] + (groups, x.shape[-1] // groups))
        # Statistics over the per-example axes but the group axis (second to last).
        axes = tuple(range(len(batch_axes), grouped.ndim - 2)) + (grouped.ndim - 1,)
        mean, variance = _mean_and_variance(grouped, axes)
        normalized = ((grouped - mean) * jax.lax.rsqrt(variance + eps)).reshape(x.shape)
        y = normalized * expand_to(scale.astype(dtype), x.ndim) + expand_to(bias.astype(dtype), x.ndim)
        return y.astype(x.dtype), state

    return make_layer("group_norm", init, apply)


@positional_limit(rms_norm_hint)
def RMSNorm(
    *,
    eps: float | None = None,
    scale_init: Initializer = ones(),
    param_dtype=jnp.float32,
) -> Layer:
    """Root-mean-square normalization over the last axis, as PyTorch's ``nn.RMSNorm(D)``.

    With ``D`` features (the last axis), params ``scale (D,)`` (PyTorch's ``weight``), no bias and
    no state. For each position, over its ``D`` features::

        y = x / sqrt(mean(x^2) + eps) * scale

    With ``eps=None`` (the default), ``eps`` is the machine epsilon of the input's dtype
    (``jnp.finfo(x.dtype).eps``, ``torch.finfo(x.dtype).eps`` in PyTorch), as PyTorch does. The
    mean is computed in at least float32; the output has the dtype of ``x``.

    Every argument is keyword-only: PyTorch's first positional argument is the normalized shape,
    which jaxnn infers, so ``RMSNorm(64)`` is an error rather than ``eps=64``.

    Args:
      eps: added to the mean square before the square root, ``> 0``, or None.
      scale_init: initializer of ``scale`` (ones).
      param_dtype: dtype of ``scale``.
    """
    if eps is not None:
        eps = check_real(eps, "eps", "RMSNorm", low=0.0, low_open=True)
    check_initializer(scale_init, "scale_init", "RMSNorm")
    param_dtype = check_param_dtype(param_dtype, "RMSNorm")

    def init(key, input_shape):
        shape = as_shape(input_shape)
        check_min_ndim(shape, 1, "(..., features)")
        return shape, {"scale": scale_init(key, shape[-1:], param_dtype)}, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        x = check_array(x)
        check_floating(x)
        (scale,) = check_entries(params, ("scale",))
        scale = check_entry(scale, "params['scale']", ("features",))
        check_trailing_shape(x, scale.shape)
        epsilon = float(jnp.finfo(x.dtype).eps) if eps is None else eps
        dtype = compute_dtype(x.dtype, scale.dtype, jnp.float32)
        wide = x.astype(dtype)
        mean_square = jnp.mean(jnp.square(wide), axis=-1, keepdims=True)
        y = wide * jax.lax.rsqrt(mean_square + epsilon) * expand_to(scale.astype(dtype), x.ndim)
        return y.astype(x.dtype), state

    return make_layer("rms_norm", init, apply)
