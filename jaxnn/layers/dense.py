"""Fully connected layers and the shape plumbing around them: Dense, Flatten, Reshape, Embedding."""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import init as initializers
from jaxnn._checks import check_bool, check_positive_int
from jaxnn.core import (
    LayerTypeError,
    LayerValueError,
    Layer,
    Static,
    as_shape,
    batch_shape,
    check_array,
    check_entries,
    check_entry,
    check_initializer,
    check_param_dtype,
    check_floating,
    check_integer,
    check_min_ndim,
    check_trailing_shape,
    compute_dtype,
    expand_to,
    first_out_of_range,
    make_layer,
)
from jaxnn.layers._arguments import dense_hint, embedding_hint, flatten_hint, positional_limit, reshape_hint

__all__ = ["Dense", "Embedding", "Flatten", "Reshape"]


@positional_limit(dense_hint)
def Dense(
    features: int,
    *,
    use_bias: bool = True,
    w_init=initializers.lecun_normal(),
    b_init=initializers.zeros(),
    param_dtype=jnp.float32,
) -> Layer:
    """An affine map of the last axis: ``y = x @ w + b``.

    Params ``w (in, features)`` and ``b (features,)``. PyTorch's ``nn.Linear`` computes
    ``x @ W.T + b`` with ``W (features, in)``, so its weights port as ``w = W.T``.

    Args:
      features: size of the output's last axis.
      use_bias: whether to add ``b``.
      w_init, b_init: initializers ``(key, shape, dtype) -> array``.
      param_dtype: dtype of the parameters. Inputs of another floating dtype are computed in the
        promoted dtype of the two.
    """
    features = check_positive_int(features, "features", "Dense")
    use_bias = check_bool(use_bias, "use_bias", "Dense")
    check_initializer(w_init, "w_init", "Dense")
    check_initializer(b_init, "b_init", "Dense")
    param_dtype = check_param_dtype(param_dtype, "Dense")

    def init(key, input_shape):
        shape = as_shape(input_shape)
        check_min_ndim(shape, 1, "(..., in_features)")
        w_key, b_key = jax.random.split(key)
        params = {"w": w_init(w_key, (shape[-1], features), param_dtype)}
        if use_bias:
            params["b"] = b_init(b_key, (features,), param_dtype)
        return shape[:-1] + (features,), params, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        x = check_array(x)
        check_floating(x)
        w, *maybe_b = check_entries(params, ("w", "b") if use_bias else ("w",))
        w = check_entry(w, "params['w']", ("in", features))
        if use_bias:
            b = check_entry(maybe_b[0], "params['b']", (features,))
        check_trailing_shape(x, (w.shape[0],))
        dtype = compute_dtype(x.dtype, w.dtype)
        y = jnp.matmul(x.astype(dtype), w.astype(dtype))
        if use_bias:
            y = y + expand_to(b.astype(dtype), y.ndim)
        return y, state

    return make_layer("dense", init, apply)


@positional_limit(flatten_hint)
def Flatten() -> Layer:
    """Flattens the per-example axes into one: ``(*batch, d1, d2, ...) -> (*batch, d1*d2*...)``.

    Batch axes are kept whatever their number: ``init`` records the per-example shape in
    ``state`` as a static value (no arrays). Given a state without it (``{}`` built by hand),
    ``apply`` keeps the first axis alone, as PyTorch's ``nn.Flatten()`` (``start_dim=1``).
    """

    def init(key, input_shape):
        del key
        shape = as_shape(input_shape)
        return (math.prod(shape),), {}, {"input_shape": Static(shape)}

    def apply(params, state, x, *, key=None, train=False):
        del params, key, train
        x = check_array(x)
        batch_axes = batch_shape(x, state)
        return x.reshape(batch_axes + (math.prod(x.shape[len(batch_axes):]),)), state

    return make_layer("flatten", init, apply)


@positional_limit(reshape_hint)
def Reshape(shape: Sequence[int]) -> Layer:
    """Reshapes each example to ``shape``: ``(*batch, *input_shape) -> (*batch, *shape)``.

    One entry of ``shape`` may be ``-1`` and is then inferred. The per-example input shape is
    kept in ``state`` as a static value, as in :func:`Flatten`; given a state without it, the
    first axis alone is the batch axis (PyTorch's ``x.view(x.size(0), *shape)``).
    """
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or any(
        not isinstance(size, (int, np.integer)) or isinstance(size, bool) for size in shape
    ):
        raise LayerTypeError(f"Reshape: `shape` must be a tuple of ints, got {shape!r}")
    target = tuple(int(size) for size in shape)
    if any(size < 1 and size != -1 for size in target) or target.count(-1) > 1:
        raise LayerValueError(f"Reshape: `shape` (={target}) must hold positive ints and at most one -1")

    def output_shape_for(input_shape):
        size = math.prod(input_shape)
        known = math.prod(s for s in target if s != -1)
        resolved = tuple(size // known if s == -1 else s for s in target)
        if math.prod(resolved) != size:
            raise LayerValueError(f"cannot reshape {input_shape} ({size} values) to {target}")
        return resolved

    def init(key, input_shape):
        del key
        input_shape = as_shape(input_shape)
        return output_shape_for(input_shape), {}, {"input_shape": Static(input_shape)}

    def apply(params, state, x, *, key=None, train=False):
        del params, key, train
        x = check_array(x)
        batch_axes = batch_shape(x, state)
        return x.reshape(batch_axes + output_shape_for(x.shape[len(batch_axes):])), state

    return make_layer("reshape", init, apply)


@positional_limit(embedding_hint)
def Embedding(
    vocab_size: int,
    features: int,
    *,
    table_init=initializers.normal(1.0),
    param_dtype=jnp.float32,
) -> Layer:
    """Looks up a learned vector for each integer id: ``y[..., :] = table[x[...], :]``.

    Params ``table (vocab_size, features)``, initialized ``N(0, 1)`` as PyTorch's
    ``nn.Embedding``, whose ``weight`` ports unchanged. Input: integer ids of any shape; output
    appends a ``features`` axis. On concrete inputs an id outside ``[0, vocab_size)`` raises a
    ``ValueError``; under ``jit`` ids cannot be checked and out-of-range ids are clamped.
    """
    vocab_size = check_positive_int(vocab_size, "vocab_size", "Embedding")
    features = check_positive_int(features, "features", "Embedding")
    check_initializer(table_init, "table_init", "Embedding")
    param_dtype = check_param_dtype(param_dtype, "Embedding")

    def init(key, input_shape):
        shape = as_shape(input_shape)
        return shape + (features,), {"table": table_init(key, (vocab_size, features), param_dtype)}, {}

    def input_check(x):
        # Concrete ids only: under jit there is nothing to check, and ids are clamped.
        outside = first_out_of_range(x, 0, vocab_size)
        if outside is not None:
            index, value = outside
            raise LayerValueError(f"id {value} at index {index} is outside [0, {vocab_size})")

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        x = check_array(x)
        check_integer(x, "input (token ids)")
        (table,) = check_entries(params, ("table",))
        table = check_entry(table, "params['table']", (vocab_size, features))
        input_check(x)
        return jnp.take(table, x, axis=0, mode="clip"), state

    return make_layer("embedding", init, apply, input_check=input_check)
