"""Attention layers over sequences ``(*batch, time, features)``: multi-head self- and
cross-attention, sinusoidal and learned positional embeddings, and the transformer encoder block
built from them.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnn import init as initializers
from jaxnn._checks import check_bool, check_positive_int, check_real
from jaxnn.core import (
    Layer,
    LayerTypeError,
    LayerValueError,
    as_shape,
    check_array,
    check_entries,
    check_entry,
    check_floating,
    check_initializer,
    check_min_ndim,
    check_param_dtype,
    child_scope,
    compute_dtype,
    init_child,
    make_layer,
    split_key,
)
from jaxnn.layers._arguments import attention_hint, positional_limit, transformer_hint
from jaxnn.layers.activations import Gelu
from jaxnn.layers.dense import Dense
from jaxnn.layers.dropout import Dropout
from jaxnn.layers.normalization import LayerNorm

__all__ = [
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "SinusoidalPositionalEmbedding",
    "TransformerEncoderBlock",
]


def _check_sequence(x: Any) -> jax.Array:
    x = check_array(x)
    check_floating(x)
    if x.ndim < 2:
        raise LayerValueError(f"expected an input of shape (*batch, time, features), got {x.shape}")
    return x


def _check_mask(mask: Any, x: jax.Array, keys: int) -> jax.Array:
    """A key padding mask ``(*batch, Tk)``, or a mask per query and key ``(*batch, Tq, Tk)``."""
    if not hasattr(mask, "shape") or not hasattr(mask, "dtype"):
        raise LayerTypeError(f"mask must be a boolean array, got {type(mask).__name__}")
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise LayerTypeError(f"mask must be boolean (True for real tokens), got dtype {mask.dtype}")
    batch = tuple(x.shape[:-2])
    if tuple(mask.shape) not in (batch + (keys,), batch + (x.shape[-2], keys)):
        raise LayerValueError(
            f"mask has shape {tuple(mask.shape)}, expected {batch + (keys,)} (*batch, keys) or "
            f"{batch + (x.shape[-2], keys)} (*batch, queries, keys)"
        )
    return mask


def _check_context(context: Any, x: jax.Array, context_features: int) -> jax.Array:
    context = check_array(context, "context")
    check_floating(context, "context")
    sizes = ", ".join(map(str, x.shape[:-2] + ("keys", context_features)))
    expected = f"({sizes}) (*batch, keys, context_features)"
    if context.ndim != x.ndim or context.shape[:-2] != x.shape[:-2] or context.shape[-1] != context_features:
        raise LayerValueError(f"context has shape {tuple(context.shape)}, expected {expected} for an "
                              f"input of shape {tuple(x.shape)}")
    if context.shape[-2] == 0:
        raise LayerValueError(f"context has no keys: shape {tuple(context.shape)}")
    return context


@positional_limit(attention_hint)
def MultiHeadAttention(
    heads: int,
    *,
    causal: bool = False,
    dropout: float = 0.0,
    context_features: int | None = None,
    w_init=initializers.glorot_uniform(),
    b_init=initializers.zeros(),
    param_dtype=jnp.float32,
) -> Layer:
    """Multi-head attention over ``x (*batch, Tq, D)``, as PyTorch's ``nn.MultiheadAttention``.

    Self-attention by default; with the option ``context (*batch, Tk, Dc)``, cross-attention:
    queries from ``x``, keys and values from ``context`` (a decoder attending to an encoder's
    output). With ``c = context`` (or ``c = x`` without it), ``heads`` heads of size
    ``d = D / heads``, and each head taking its ``d`` columns of ``q``, ``k``, ``v``::

        q = x @ wq + bq        k = c @ wk + bk        v = c @ wv + bv
        s[t, u] = q_t . k_u / sqrt(d)                  (per head; u ranges over keys)
        a[t, :] = softmax(s[t, :] over allowed u)      (a[t, u] = 0 where u is not allowed)
        y = concatenate_heads(a @ v) @ wo + bo

    Key ``u`` is allowed for query ``t`` when the mask allows it (``mask[u]`` of a key padding
    mask, True for real tokens; ``mask[t, u]`` of a mask per query and key) and, with
    ``causal=True``, when ``u <= t``. A query with no allowed key gets ``a[t, :] = 0``, so its
    output is ``bo``, with finite gradients (PyTorch gives NaN there). Scores and softmax are
    computed in at least float32; the output ``(*batch, Tq, D)`` has the promoted dtype of ``x``
    and the params. With ``train=True`` and ``dropout > 0``, ``a`` goes through inverted dropout
    (needs ``key``).

    Params ``q``, ``k``, ``v``, ``o``, each ``{"w", "b"}`` (a :func:`Dense`): ``q`` and ``o`` have
    ``w (D, D)``, ``k`` and ``v`` have ``w (Dc, D)``; all biases are ``(D,)``. ``init`` sees only
    ``x``'s shape, so the context's feature size ``Dc`` is the argument ``context_features``
    (``D`` when None). ``apply(params, state, x, *, key=None, train=False, mask=None,
    context=None)``, with ``mask`` a boolean ``(*batch, Tk)`` or ``(*batch, Tq, Tk)`` array
    (``Tk = Tq`` without context) and ``context`` an array ``(*batch, Tk, Dc)`` with the batch axes
    of ``x``. Combinators route both options to every attention layer inside them. Outputs at
    padded query positions are computed but meaningless.

    Porting from PyTorch (``batch_first=True``): ``in_proj_weight`` splits in three ``(D, D)``
    blocks ``Wq, Wk, Wv`` and ``wq = Wq.T`` etc., ``in_proj_bias`` likewise; ``wo = out_proj.weight.T``,
    ``bo = out_proj.bias``. Built with ``kdim = vdim = Dc != D``, PyTorch keeps separate
    ``q_proj_weight (D, D)``, ``k_proj_weight (D, Dc)`` and ``v_proj_weight (D, Dc)``: ``wq``,
    ``wk``, ``wv`` are their transposes. PyTorch's ``key_padding_mask`` and boolean ``attn_mask``
    are True where attending is *not* allowed: pass their negation (``mask = ~key_padding_mask``
    or ``~attn_mask``; both together: ``~key_padding_mask[..., None, :] & ~attn_mask``).

    Args:
      heads: number of heads; must divide ``D``.
      causal: whether query ``t`` sees only keys ``u <= t``.
      dropout: probability of dropping each attention weight in training, in ``[0, 1)``.
      context_features: the size ``Dc`` of the context's last axis, for cross-attention whose
        context has other features than ``x``; None means ``D``.
      w_init, b_init: initializers of the four projections; Glorot uniform weights (PyTorch's
        ``in_proj_weight``) and zero biases by default.
      param_dtype: dtype of the parameters.

    Example (a decoder's queries attending to an encoder's output)::

        layer = MultiHeadAttention(4, context_features=32)
        output_shape, params, state = layer.init(jax.random.key(0), (10, 64))   # x: (10, 64)
        y, _ = layer.apply(params, state, x, context=encoded)   # encoded: (batch, 20, 32)
    """
    heads = check_positive_int(heads, "heads", "MultiHeadAttention")
    causal = check_bool(causal, "causal", "MultiHeadAttention")
    rate = check_real(dropout, "dropout", "MultiHeadAttention", low=0.0, high=1.0, high_open=True)
    if context_features is not None:
        context_features = check_positive_int(context_features, "context_features", "MultiHeadAttention")
    check_initializer(w_init, "w_init", "MultiHeadAttention")
    check_initializer(b_init, "b_init", "MultiHeadAttention")
    param_dtype = check_param_dtype(param_dtype, "MultiHeadAttention")
    names = ("q", "k", "v", "o")

    def projection(features: int) -> Layer:
        return Dense(features, w_init=w_init, b_init=b_init, param_dtype=param_dtype)

    def check_features(features: int) -> None:
        if features % heads:
            raise LayerValueError(f"features (={features}) must be divisible by `heads` (={heads})")

    def init(key, input_shape):
        shape = as_shape(input_shape)
        check_min_ndim(shape, 2, "(time, features)")
        check_features(shape[-1])
        context_shape = shape[:-1] + (shape[-1] if context_features is None else context_features,)
        params = {}
        for name, child_key in zip(names, jax.random.split(key, len(names))):
            child_shape = context_shape if name in ("k", "v") else shape
            _, params[name], _ = init_child(name, projection(shape[-1]), child_key, child_shape)
        return shape, params, {}

    def apply(params, state, x, *, key=None, train=False, mask=None, context=None):
        x = _check_sequence(x)
        features, time = x.shape[-1], x.shape[-2]
        check_features(features)
        check_entries(params, names)
        _check_features_match(params["q"], features)
        if context is None:
            if context_features not in (None, features):
                raise LayerValueError(
                    f"this layer attends to a context of {context_features} features "
                    f"(context_features={context_features}): pass context= (*batch, keys, {context_features})"
                )
            context = x
        else:
            context = _check_context(context, x, features if context_features is None else context_features)
        keys = context.shape[-2]
        if mask is not None:
            mask = _check_mask(mask, x, keys)
        projected = [_run(name, projection(features), params[name], source)
                     for name, source in (("q", x), ("k", context), ("v", context))]
        projected_dtype = compute_dtype(*[a.dtype for a in projected])
        size = features // heads
        wide = compute_dtype(projected_dtype, jnp.float32)
        q, k, v = [a.astype(wide).reshape(a.shape[:-1] + (heads, size)) for a in projected]
        scores = jnp.einsum("...thd,...uhd->...htu", q, k) * jnp.asarray(1 / math.sqrt(size), wide)
        allowed = _allowed(mask, causal, time, keys, scores.ndim)
        weights = _masked_softmax(scores, allowed)
        if train and rate > 0:
            weights, _ = Dropout(rate).apply({}, {}, weights, key=key, train=True)
        attended = jnp.einsum("...htu,...uhd->...thd", weights, v).reshape(x.shape[:-1] + (features,))
        y = _run("o", projection(features), params["o"], attended.astype(projected_dtype))
        return y, state

    return make_layer("multi_head_attention", init, apply, options=("context", "mask"))


def _check_features_match(projection_params, features: int) -> None:
    """Names a feature-size mismatch as the input's, rather than as a projection's param shape."""
    weight = projection_params.get("w") if isinstance(projection_params, dict) else None
    if getattr(weight, "ndim", None) == 2 and weight.shape[0] != features:
        raise LayerValueError(f"expected last axis {weight.shape[0]}, got {features}")


def _run(name: str, layer: Layer, params, x, **options):
    with child_scope(name):
        y, _ = layer.apply(params, {}, x, **options)
    return y


def _allowed(mask, causal: bool, time: int, keys: int, ndim: int):
    """Which keys each query may attend to, broadcastable to scores ``(*batch, heads, Tq, Tk)``.

    ``mask`` is ``(*batch, Tk)`` (one row for every query) or ``(*batch, Tq, Tk)``.
    """
    allowed = None
    if mask is not None:
        allowed = mask[..., None, None, :] if mask.ndim == ndim - 2 else mask[..., None, :, :]
    if causal:
        lower = jnp.asarray(np.tril(np.ones((time, keys), bool)))
        lower = lower.reshape((1,) * (ndim - 2) + (time, keys))
        allowed = lower if allowed is None else allowed & lower
    return allowed


def _masked_softmax(scores: jax.Array, allowed) -> jax.Array:
    """Softmax over the last axis among allowed entries; rows with none allowed give zeros."""
    if allowed is None:
        return jax.nn.softmax(scores, axis=-1)
    lowest = jnp.asarray(jnp.finfo(scores.dtype).min, scores.dtype)
    scores = jnp.where(allowed, scores, lowest)
    # The maximum only shifts the exponent; it needs no gradient.
    shift = lax.stop_gradient(jnp.max(scores, axis=-1, keepdims=True))
    exponentials = jnp.where(allowed, jnp.exp(scores - shift), jnp.zeros((), scores.dtype))
    total = jnp.sum(exponentials, axis=-1, keepdims=True)
    # A row with no allowed key sums to 0: dividing by 1 instead keeps its zeros (and gradients) finite.
    return exponentials / jnp.where(total > 0, total, jnp.ones((), scores.dtype))


def _sinusoid_table(time: int, features: int) -> np.ndarray:
    """Vaswani et al.'s table: ``P[t, 2i] = sin(t w_i)``, ``P[t, 2i+1] = cos(t w_i)``,
    ``w_i = 10000^(-2i/D)``, computed in float64."""
    positions = np.arange(time, dtype=np.float64)[:, None]
    frequencies = np.power(10000.0, -np.arange(0, features, 2, dtype=np.float64) / features)
    angles = positions * frequencies[None, :]
    table = np.empty((time, features), np.float64)
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles[:, : features // 2])
    return table


@positional_limit()
def SinusoidalPositionalEmbedding() -> Layer:
    """Adds the fixed sinusoidal position table of Vaswani et al. (2017) to ``x (*batch, T, D)``::

        y[..., t, 2i]     = x[..., t, 2i]     + sin(t / 10000^(2i/D))
        y[..., t, 2i + 1] = x[..., t, 2i + 1] + cos(t / 10000^(2i/D))

    for positions ``t = 0 .. T-1``; an odd ``D`` ends with a sine column. Any ``T`` works. The
    table is computed in float64, and the sum in at least float32 then rounded to ``x``'s dtype. No
    params, no state.
    """

    def init(key, input_shape):
        del key
        shape = as_shape(input_shape)
        check_min_ndim(shape, 2, "(time, features)")
        return shape, {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del params, key, train
        x = _check_sequence(x)
        wide = compute_dtype(x.dtype, jnp.float32)
        table = jnp.asarray(_sinusoid_table(x.shape[-2], x.shape[-1]), wide)
        return (x.astype(wide) + lax.broadcast_to_rank(table, x.ndim)).astype(x.dtype), state

    return make_layer("sinusoidal_positional_embedding", init, apply)


@positional_limit()
def LearnedPositionalEmbedding(
    max_length: int,
    *,
    table_init=initializers.normal(0.02),
    param_dtype=jnp.float32,
) -> Layer:
    """Adds a learned vector per position to ``x (*batch, T, D)``: ``y[..., t, :] = x[..., t, :] + table[t]``.

    Params ``table (max_length, D)``, initialized ``N(0, 0.02^2)`` as in BERT and GPT-2. Sequences
    longer than ``max_length`` raise a ``ValueError``; shorter ones use the first ``T`` rows. The
    output has the promoted dtype of ``x`` and ``table``.

    Args:
      max_length: the most positions a sequence may have.
      table_init: initializer of ``table``.
      param_dtype: dtype of ``table``.
    """
    max_length = check_positive_int(max_length, "max_length", "LearnedPositionalEmbedding")
    check_initializer(table_init, "table_init", "LearnedPositionalEmbedding")
    param_dtype = check_param_dtype(param_dtype, "LearnedPositionalEmbedding")

    def check_length(time: int) -> None:
        if time > max_length:
            raise LayerValueError(f"sequence length {time} exceeds max_length (={max_length})")

    def init(key, input_shape):
        shape = as_shape(input_shape)
        check_min_ndim(shape, 2, "(time, features)")
        check_length(shape[-2])
        return shape, {"table": table_init(key, (max_length, shape[-1]), param_dtype)}, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        x = _check_sequence(x)
        (table,) = check_entries(params, ("table",))
        table = check_entry(table, "params['table']", (max_length, x.shape[-1]))
        check_length(x.shape[-2])
        dtype = compute_dtype(x.dtype, table.dtype)
        rows = lax.broadcast_to_rank(table[: x.shape[-2]].astype(dtype), x.ndim)
        return x.astype(dtype) + rows, state

    return make_layer("learned_positional_embedding", init, apply)


@positional_limit(transformer_hint)
def TransformerEncoderBlock(
    heads: int,
    *,
    mlp_ratio: int = 4,
    dropout: float = 0.0,
    causal: bool = False,
    pre_norm: bool = True,
) -> Layer:
    """A transformer encoder block over ``x (*batch, T, D)``: self-attention, then an MLP.

    With ``pre_norm=True`` (GPT-2, ViT; trains without warmup more easily)::

        x = x + drop(attention(norm_1(x)))
        y = x + drop(dense_2(drop(gelu(dense_1(norm_2(x))))))

    and with ``pre_norm=False`` (Vaswani et al., PyTorch's ``TransformerEncoderLayer``)::

        x = norm_1(x + drop(attention(x)))
        y = norm_2(x + drop(dense_2(drop(gelu(dense_1(x))))))

    ``attention`` is :func:`MultiHeadAttention` ``(heads, causal, dropout)``, ``norm_*`` are
    :func:`LayerNorm`, ``dense_1`` maps ``D`` to ``mlp_ratio * D`` and ``dense_2`` back, ``gelu`` is
    the exact GELU and ``drop`` is :func:`Dropout` ``(dropout)``, active only with ``train=True``
    (which then needs ``key``). Params ``{"norm_1", "attention", "norm_2", "dense_1", "dense_2"}``,
    each those of that layer; errors name the child, e.g. ``"transformer_encoder_block/attention: ..."``.

    ``apply(params, state, x, *, key=None, train=False, mask=None)``: ``mask`` is passed to the
    attention (boolean ``(*batch, T)``, True for real tokens).

    Args:
      heads: number of attention heads; must divide ``D``.
      mlp_ratio: width of the MLP's hidden layer, in multiples of ``D``.
      dropout: dropout probability, in ``[0, 1)``.
      causal: whether position ``t`` attends only to positions ``<= t``.
      pre_norm: normalize before each sublayer (True) or after each residual sum (False).
    """
    heads = check_positive_int(heads, "heads", "TransformerEncoderBlock")
    mlp_ratio = check_positive_int(mlp_ratio, "mlp_ratio", "TransformerEncoderBlock")
    rate = check_real(dropout, "dropout", "TransformerEncoderBlock", low=0.0, high=1.0, high_open=True)
    causal = check_bool(causal, "causal", "TransformerEncoderBlock")
    pre_norm = check_bool(pre_norm, "pre_norm", "TransformerEncoderBlock")
    attention = MultiHeadAttention(heads, causal=causal, dropout=rate)
    norm, gelu, drop = LayerNorm(), Gelu(), Dropout(rate)
    names = ("norm_1", "attention", "norm_2", "dense_1", "dense_2")

    def children(features: int) -> dict:
        return {"norm_1": norm, "attention": attention, "norm_2": norm,
                "dense_1": Dense(mlp_ratio * features), "dense_2": Dense(features)}

    def init(key, input_shape):
        shape = as_shape(input_shape)
        check_min_ndim(shape, 2, "(time, features)")
        layers = children(shape[-1])
        params, state = {}, {}
        for name, child_key in zip(names, jax.random.split(key, len(names))):
            child_shape = shape[:-1] + (mlp_ratio * shape[-1],) if name == "dense_2" else shape
            _, params[name], state[name] = init_child(name, layers[name], child_key, child_shape)
        return shape, params, state

    def apply(params, state, x, *, key=None, train=False, mask=None):
        x = _check_sequence(x)
        check_entries(params, names)
        layers = children(x.shape[-1])
        attention_key, *dropout_keys = split_key(key, 4)

        def run(name, h, **options):
            return _run(name, layers[name], params[name], h, train=train, **options)

        def dropped(h, dropout_key, name):
            return _run(name, drop, {}, h, key=dropout_key, train=train)

        def add(a, b):
            dtype = compute_dtype(a.dtype, b.dtype)
            return a.astype(dtype) + b.astype(dtype)

        def attend(h):
            h = run("attention", h, key=attention_key, mask=mask)
            return dropped(h, dropout_keys[0], "dropout_attention")

        def mlp(h):
            h = _run("gelu", gelu, {}, run("dense_1", h))
            h = run("dense_2", dropped(h, dropout_keys[1], "dropout_mlp"))
            return dropped(h, dropout_keys[2], "dropout_output")

        if pre_norm:
            x = add(x, attend(run("norm_1", x)))
            y = add(x, mlp(run("norm_2", x)))
        else:
            x = run("norm_1", add(x, attend(x)))
            y = run("norm_2", add(x, mlp(x)))
        return y, state

    return make_layer("transformer_encoder_block", init, apply, options=("mask",))
