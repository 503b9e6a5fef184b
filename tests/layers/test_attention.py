"""Tests for MultiHeadAttention, the positional embeddings and TransformerEncoderBlock.

The oracle is a NumPy float64 implementation that loops over examples, heads and queries,
written from the documented formulas independently of the layers' code.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.special import erf

from jaxnn import init as initializers
from jaxnn.core import Sequential
from jaxnn.layers.attention import (
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    SinusoidalPositionalEmbedding,
    TransformerEncoderBlock,
)

# --------------------------------------------------------------------------------------------
# The NumPy oracle.


def as_numpy(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


def numpy_attention(params, x, heads, mask=None, causal=False):
    """Self-attention of ``x (N, T, D)`` in float64, one example, head and query at a time."""
    p, x = as_numpy(params), np.asarray(x, np.float64)
    batch, time, features = x.shape
    size = features // heads
    q, k, v = (x @ p[name]["w"] + p[name]["b"] for name in ("q", "k", "v"))
    attended = np.zeros_like(x)
    for n in range(batch):
        for head in range(heads):
            columns = slice(head * size, (head + 1) * size)
            for t in range(time):
                keys = [u for u in range(time)
                        if (mask is None or mask[n][u]) and (not causal or u <= t)]
                if not keys:
                    continue  # no allowed key: the weights are all zero
                scores = np.array([q[n, t, columns] @ k[n, u, columns] for u in keys]) / math.sqrt(size)
                weights = np.exp(scores - scores.max())
                weights /= weights.sum()
                attended[n, t, columns] = sum(w * v[n, u, columns] for w, u in zip(weights, keys))
    return attended @ p["o"]["w"] + p["o"]["b"]


def numpy_layer_norm(p, x):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + 1e-5) * p["scale"] + p["bias"]


def numpy_block(params, x, heads, pre_norm, mask=None, causal=False):
    p, x = as_numpy(params), np.asarray(x, np.float64)

    def mlp(h):
        h = h @ p["dense_1"]["w"] + p["dense_1"]["b"]
        h = 0.5 * h * (1 + erf(h / math.sqrt(2)))
        return h @ p["dense_2"]["w"] + p["dense_2"]["b"]

    def attention(h):
        return numpy_attention(params["attention"], h, heads, mask, causal)

    if pre_norm:
        x = x + attention(numpy_layer_norm(p["norm_1"], x))
        return x + mlp(numpy_layer_norm(p["norm_2"], x))
    x = numpy_layer_norm(p["norm_1"], x + attention(x))
    return numpy_layer_norm(p["norm_2"], x + mlp(x))


def random_tree(tree, seed=0, scale=0.5):
    """The same structure with every entry random, biases included, so that no term hides."""
    leaves, structure = jax.tree_util.tree_flatten(tree)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_unflatten(
        structure, [jnp.asarray(rng.normal(0, scale, leaf.shape), jnp.float32) for leaf in leaves])


def jitted(layer, params, state, x, **options):
    """``layer.apply`` under jit: one compilation per call rather than one per operation."""
    return jax.jit(lambda params, x: layer.apply(params, state, x, **options)[0])(params, x)


MASK = np.array([[True, True, True, False, False, True],
                 [True, False, True, True, True, True],
                 [False, False, False, False, False, False]])


# --------------------------------------------------------------------------------------------
# MultiHeadAttention.


def test_attention_shapes_and_params_for_any_number_of_batch_axes():
    layer = MultiHeadAttention(2)
    output_shape, params, state = layer.init(jax.random.key(0), (5, 6))
    assert output_shape == (5, 6) and state == {}
    assert set(params) == {"q", "k", "v", "o"}
    for name in params:
        assert params[name]["w"].shape == (6, 6) and params[name]["b"].shape == (6,)
    for batch_shape in [(), (3,), (2, 3)]:
        assert jitted(layer, params, state, jnp.ones(batch_shape + (5, 6))).shape == batch_shape + (5, 6)


@pytest.mark.parametrize("causal,with_mask", [(False, False), (True, False), (False, True), (True, True)])
def test_attention_against_numpy(causal, with_mask):
    layer = MultiHeadAttention(2, causal=causal)
    _, params, state = layer.init(jax.random.key(0), (6, 4))
    params = random_tree(params)
    x = jax.random.normal(jax.random.key(1), (3, 6, 4))
    mask = jnp.asarray(MASK) if with_mask else None
    y = jitted(layer, params, state, x, mask=mask)
    expected = numpy_attention(params, x, 2, MASK if with_mask else None, causal)
    np.testing.assert_allclose(y, expected, rtol=2e-5, atol=2e-5)


def test_fully_masked_queries_give_the_output_bias_and_finite_gradients():
    layer = MultiHeadAttention(2, causal=True)
    _, params, state = layer.init(jax.random.key(0), (6, 4))
    params = random_tree(params)
    x = jax.random.normal(jax.random.key(1), (3, 6, 4))
    mask = jnp.asarray(MASK)
    y = jitted(layer, params, state, x, mask=mask)
    # Example 2 is all padding, so none of its queries has an allowed key; every query of the
    # other two has at least key 0 (real, and not later than any query).
    np.testing.assert_allclose(y[2], np.broadcast_to(params["o"]["b"], (6, 4)), rtol=1e-6)
    grads = jax.jit(jax.grad(lambda p, x: layer.apply(p, state, x, mask=mask)[0].sum(), argnums=(0, 1)))(params, x)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(grads))


def test_causal_outputs_do_not_depend_on_later_positions():
    layer = MultiHeadAttention(2, causal=True)
    _, params, state = layer.init(jax.random.key(0), (5, 4))
    x = jax.random.normal(jax.random.key(1), (5, 4))
    jacobian = jax.jit(jax.jacobian(lambda x: layer.apply(params, state, x)[0]))(x)  # (T, D, T, D)
    for t in range(5):
        assert np.all(jacobian[t, :, t + 1:] == 0), t
        assert np.all(np.any(jacobian[t, :, :t + 1] != 0, axis=(0, 2))), t


def test_padding_does_not_change_the_outputs_at_real_positions():
    layer = MultiHeadAttention(2)
    _, params, state = layer.init(jax.random.key(0), (6, 4))
    x = jax.random.normal(jax.random.key(1), (2, 6, 4))
    mask = jnp.asarray(MASK[:2])
    noise = jax.random.normal(jax.random.key(2), x.shape) * (~mask[..., None]).astype(jnp.float32)
    y, _ = layer.apply(params, state, x, mask=mask)
    y_changed, _ = layer.apply(params, state, x + noise, mask=mask)
    real = np.asarray(mask)
    np.testing.assert_allclose(np.asarray(y_changed)[real], np.asarray(y)[real], rtol=1e-5, atol=1e-6)
    # Without the mask the same change reaches the real positions, so the check above has teeth.
    unmasked, _ = layer.apply(params, state, x)
    unmasked_changed, _ = layer.apply(params, state, x + noise)
    assert not np.allclose(np.asarray(unmasked_changed)[real], np.asarray(unmasked)[real], atol=1e-3)


def test_dropout_acts_on_the_attention_weights_only_in_training():
    # One key per example: its weight is 1, so with v = bv (wv = 0) the attention returns bv, or
    # 0 where dropout drops the weight, and bv / (1 - rate) where it keeps it.
    rate = 0.25
    layer = MultiHeadAttention(1, dropout=rate, w_init=initializers.zeros(), b_init=initializers.ones())
    _, params, state = layer.init(jax.random.key(0), (1, 3))
    params = {**params, "o": {"w": jnp.eye(3), "b": jnp.zeros(3)}}
    x = jax.random.normal(jax.random.key(1), (4000, 1, 3))
    y, _ = layer.apply(params, state, x, key=jax.random.key(2), train=True)
    values = np.asarray(y)[:, 0, 0]
    kept = np.isclose(values, 1 / (1 - rate))
    assert np.all(kept | (values == 0))
    assert abs(kept.mean() - (1 - rate)) < 4 * math.sqrt(rate * (1 - rate) / values.size)
    np.testing.assert_array_equal(y, np.repeat(np.asarray(y)[:, :, :1], 3, axis=2))  # one weight per query
    evaluation, _ = layer.apply(params, state, x)
    np.testing.assert_allclose(evaluation, np.ones_like(evaluation))
    with pytest.raises(ValueError, match=r"^multi_head_attention: train=True needs a PRNG key"):
        layer.apply(params, state, x, train=True)


def test_attention_gradients_against_finite_differences():
    with jax.enable_x64(True):
        layer = MultiHeadAttention(2, causal=True)
        _, params, state = layer.init(jax.random.key(0), (4, 4))
        params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), random_tree(params))
        x = jax.random.normal(jax.random.key(1), (2, 4, 4), jnp.float64)
        mask = jnp.asarray(MASK[:2, :4])
        f = jax.jit(lambda params, x: layer.apply(params, state, x, mask=mask)[0])
        check_grads(f, (params, x), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_attention_vmap_over_examples_equals_the_batched_call():
    layer = MultiHeadAttention(2, causal=True)
    _, params, state = layer.init(jax.random.key(0), (6, 4))
    x = jax.random.normal(jax.random.key(1), (3, 6, 4))
    mask = jnp.asarray(MASK)
    batched, _ = layer.apply(params, state, x, mask=mask)
    single = jax.vmap(lambda x, m: layer.apply(params, state, x, mask=m)[0])(x, mask)
    np.testing.assert_allclose(single, batched, rtol=1e-5, atol=1e-6)


def test_attention_computes_scores_in_float32_for_half_precision():
    layer = MultiHeadAttention(2, param_dtype=jnp.bfloat16)
    _, params, state = layer.init(jax.random.key(0), (6, 4))
    x = jax.random.normal(jax.random.key(1), (2, 6, 4)).astype(jnp.bfloat16)
    y, _ = layer.apply(params, state, x)
    assert y.dtype == jnp.bfloat16
    expected = numpy_attention(params, x, 2)
    np.testing.assert_allclose(np.asarray(y, np.float64), expected, rtol=5e-2, atol=5e-2)


def test_attention_bad_inputs():
    layer = MultiHeadAttention(3)
    with pytest.raises(ValueError, match=r"^multi_head_attention: features \(=8\) must be divisible by `heads` \(=3\)"):
        layer.init(jax.random.key(0), (5, 8))
    _, params, state = MultiHeadAttention(2).init(jax.random.key(0), (5, 8))
    with pytest.raises(ValueError, match=r"^multi_head_attention: features \(=8\) must be divisible by `heads` \(=3\)"):
        layer.apply(params, state, jnp.ones((5, 8)))
    layer = MultiHeadAttention(2)
    x = jnp.ones((2, 5, 8))
    with pytest.raises(TypeError, match="^multi_head_attention: mask must be boolean .True for real tokens., got dtype int32"):
        layer.apply(params, state, x, mask=jnp.ones((2, 5), jnp.int32))
    with pytest.raises(ValueError, match=r"^multi_head_attention: mask has shape \(5,\), expected \(2, 5\)"):
        layer.apply(params, state, x, mask=jnp.ones(5, bool))
    with pytest.raises(ValueError, match=r"^multi_head_attention: expected an input of shape \(\*batch, time, features\)"):
        layer.apply(params, state, jnp.ones(8))
    with pytest.raises(TypeError, match="^multi_head_attention: expected a floating-point input, got dtype int32"):
        layer.apply(params, state, jnp.ones((5, 8), jnp.int32))
    with pytest.raises(ValueError, match=r"^multi_head_attention: expected last axis 8, got 6"):
        jax.jit(lambda x: layer.apply(params, state, x)[0])(jnp.ones((5, 6)))
    with pytest.raises(ValueError, match=r"^MultiHeadAttention: `dropout` \(=1.0\) must be in \[0, 1\)"):
        MultiHeadAttention(2, dropout=1.0)
    with pytest.raises(ValueError, match=r"^MultiHeadAttention: `heads` \(=0\) must be a positive int"):
        MultiHeadAttention(0)
    with pytest.raises(TypeError, match=r"^MultiHeadAttention: `causal` must be True or False, got 'yes'"):
        MultiHeadAttention(2, causal="yes")


# --------------------------------------------------------------------------------------------
# Positional embeddings.


def test_sinusoidal_embedding_values_by_hand():
    layer = SinusoidalPositionalEmbedding()
    output_shape, params, state = layer.init(jax.random.key(0), (3, 5))
    assert output_shape == (3, 5) and params == {} and state == {}
    y, _ = layer.apply(params, state, jnp.zeros((2, 3, 5)))
    # D = 5: frequencies 1, 10000^(-2/5) = 0.025119, 10000^(-4/5) = 0.000631; the odd last column is a sine.
    w1, w2 = 10000 ** (-2 / 5), 10000 ** (-4 / 5)
    expected = [[math.sin(t), math.cos(t), math.sin(t * w1), math.cos(t * w1), math.sin(t * w2)] for t in range(3)]
    np.testing.assert_allclose(y, np.broadcast_to(expected, (2, 3, 5)), rtol=1e-6, atol=1e-7)
    ones, _ = layer.apply(params, state, jnp.ones((3, 5)))
    np.testing.assert_allclose(ones, np.asarray(expected) + 1, rtol=1e-6)
    half, _ = layer.apply(params, state, jnp.ones((3, 5), jnp.bfloat16))
    assert half.dtype == jnp.bfloat16


def test_learned_embedding_adds_the_first_rows():
    layer = LearnedPositionalEmbedding(6)
    output_shape, params, state = layer.init(jax.random.key(0), (4, 3))
    assert output_shape == (4, 3) and params["table"].shape == (6, 3)
    assert 0.01 < float(jnp.std(params["table"])) < 0.04  # N(0, 0.02^2)
    table = jnp.arange(18.0).reshape(6, 3)
    y, _ = layer.apply({"table": table}, state, jnp.ones((2, 4, 3)))
    np.testing.assert_array_equal(y, np.broadcast_to(np.arange(12.0).reshape(4, 3) + 1, (2, 4, 3)))
    shorter, _ = layer.apply({"table": table}, state, jnp.zeros((2, 3)))
    np.testing.assert_array_equal(shorter, np.arange(6.0).reshape(2, 3))
    grads = jax.grad(lambda t: layer.apply({"table": t}, state, jnp.ones((5, 4, 3)))[0].sum())(table)
    np.testing.assert_array_equal(grads, np.concatenate([np.full((4, 3), 5.0), np.zeros((2, 3))]))
    with pytest.raises(ValueError, match=r"^learned_positional_embedding: sequence length 7 exceeds max_length \(=6\)"):
        layer.apply({"table": table}, state, jnp.ones((7, 3)))
    with pytest.raises(ValueError, match=r"^learned_positional_embedding: sequence length 9 exceeds max_length \(=6\)"):
        layer.init(jax.random.key(0), (9, 3))
    with pytest.raises(ValueError, match=r"^learned_positional_embedding: params\['table'\] has shape \(6, 3\), expected \(6, 4\)"):
        layer.apply({"table": table}, state, jnp.ones((2, 4)))


# --------------------------------------------------------------------------------------------
# TransformerEncoderBlock.


@pytest.mark.parametrize("pre_norm", [True, False])
def test_transformer_block_against_numpy(pre_norm):
    layer = TransformerEncoderBlock(2, mlp_ratio=2, pre_norm=pre_norm)
    output_shape, params, state = layer.init(jax.random.key(0), (6, 4))
    assert output_shape == (6, 4)
    assert set(params) == {"norm_1", "attention", "norm_2", "dense_1", "dense_2"}
    assert params["dense_1"]["w"].shape == (4, 8) and params["dense_2"]["w"].shape == (8, 4)
    params = random_tree(params, seed=3)
    x = jax.random.normal(jax.random.key(1), (3, 6, 4))
    y = jitted(layer, params, state, x, mask=jnp.asarray(MASK))
    np.testing.assert_allclose(y, numpy_block(params, x, 2, pre_norm, MASK), rtol=5e-5, atol=5e-5)


def test_transformer_block_causal_and_batch_axes():
    layer = TransformerEncoderBlock(2, causal=True)
    _, params, state = layer.init(jax.random.key(0), (5, 4))
    x = jax.random.normal(jax.random.key(1), (2, 3, 5, 4))
    batched = jitted(layer, params, state, x)
    np.testing.assert_allclose(batched[1, 2], jitted(layer, params, state, x[1, 2]), rtol=1e-5, atol=1e-6)
    jacobian = jax.jit(jax.jacobian(lambda x: layer.apply(params, state, x)[0]))(x[0, 0])
    for t in range(5):
        assert np.all(jacobian[t, :, t + 1:] == 0), t


def test_transformer_block_dropout_and_errors():
    layer = TransformerEncoderBlock(2, dropout=0.5)
    _, params, state = layer.init(jax.random.key(0), (5, 4))
    x = jax.random.normal(jax.random.key(1), (3, 5, 4))
    evaluation = jitted(layer, params, state, x)
    np.testing.assert_allclose(evaluation, numpy_block(params, x, 2, True), rtol=5e-5, atol=5e-5)
    train = jax.jit(lambda key: layer.apply(params, state, x, key=key, train=True)[0])
    first, second = train(jax.random.key(2)), train(jax.random.key(3))
    assert not np.allclose(first, evaluation) and not np.allclose(first, second)
    with pytest.raises(ValueError, match=r"^attention: train=True needs a PRNG key"):
        layer.apply(params, state, x, train=True)
    # Inside a model, errors name the path down to the sublayer.
    model = Sequential({"block": layer})
    _, model_params, model_state = model.init(jax.random.key(0), (5, 4))
    broken = {"block": {**model_params["block"], "attention": {**model_params["block"]["attention"],
                                                               "q": {"w": jnp.ones((4, 3)), "b": jnp.ones(4)}}}}
    with pytest.raises(ValueError, match=r"^block/attention/q: params\['w'\] has shape \(4, 3\), expected \(in, 4\)"):
        model.apply(broken, model_state, x)
    with pytest.raises(ValueError, match=r"^block/attention: features \(=6\) must be divisible by `heads` \(=4\)"):
        Sequential({"block": TransformerEncoderBlock(4)}).init(jax.random.key(0), (5, 6))
    with pytest.raises(ValueError, match=r"^TransformerEncoderBlock: `mlp_ratio` \(=0\) must be a positive int"):
        TransformerEncoderBlock(2, mlp_ratio=0)
    with pytest.raises(TypeError, match=r"^TransformerEncoderBlock: `pre_norm` must be True or False, got None"):
        TransformerEncoderBlock(2, pre_norm=None)


# --------------------------------------------------------------------------------------------
# Porting from PyTorch (optional).


@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer_block_ports_from_pytorch(norm_first):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    reference = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, activation="gelu",
                                                 batch_first=True, norm_first=norm_first).double().eval()
    x = np.random.default_rng(0).normal(size=(2, 5, 8))
    padding = np.array([[False] * 5, [False, False, False, True, True]])  # PyTorch: True = padding
    with torch.no_grad():
        expected = reference(torch.from_numpy(x), src_key_padding_mask=torch.from_numpy(padding)).numpy()

    def numpy_of(tensor):
        return jnp.asarray(tensor.detach().numpy(), jnp.float32)

    wq, wk, wv = reference.self_attn.in_proj_weight.detach().chunk(3)
    bq, bk, bv = reference.self_attn.in_proj_bias.detach().chunk(3)
    params = {
        "attention": {"q": {"w": numpy_of(wq.T), "b": numpy_of(bq)}, "k": {"w": numpy_of(wk.T), "b": numpy_of(bk)},
                      "v": {"w": numpy_of(wv.T), "b": numpy_of(bv)},
                      "o": {"w": numpy_of(reference.self_attn.out_proj.weight.T),
                            "b": numpy_of(reference.self_attn.out_proj.bias)}},
        "norm_1": {"scale": numpy_of(reference.norm1.weight), "bias": numpy_of(reference.norm1.bias)},
        "norm_2": {"scale": numpy_of(reference.norm2.weight), "bias": numpy_of(reference.norm2.bias)},
        "dense_1": {"w": numpy_of(reference.linear1.weight.T), "b": numpy_of(reference.linear1.bias)},
        "dense_2": {"w": numpy_of(reference.linear2.weight.T), "b": numpy_of(reference.linear2.bias)},
    }
    layer = TransformerEncoderBlock(2, mlp_ratio=2, pre_norm=norm_first)
    _, _, state = layer.init(jax.random.key(0), (5, 8))
    y, _ = layer.apply(params, state, jnp.asarray(x, jnp.float32), mask=jnp.asarray(~padding))
    real = ~padding
    np.testing.assert_allclose(np.asarray(y)[real], expected[real], rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------
# Cross-attention: queries from x, keys and values from the `context=` option.


def numpy_cross_attention(params, x, context, heads, allowed):
    """Attention of ``x (N, Tq, D)`` to ``context (N, Tk, Dc)`` in float64, ``allowed (N, Tq, Tk)``."""
    p, x, context = as_numpy(params), np.asarray(x, np.float64), np.asarray(context, np.float64)
    size = x.shape[-1] // heads
    q = x @ p["q"]["w"] + p["q"]["b"]
    k, v = (context @ p[name]["w"] + p[name]["b"] for name in ("k", "v"))
    attended = np.zeros_like(q)
    for n, head, t in np.ndindex(x.shape[0], heads, x.shape[1]):
        columns = slice(head * size, (head + 1) * size)
        keys = np.flatnonzero(allowed[n, t])
        if keys.size:
            scores = k[n][keys][:, columns] @ q[n, t, columns] / math.sqrt(size)
            weights = np.exp(scores - scores.max())
            attended[n, t, columns] = (weights / weights.sum()) @ v[n][keys][:, columns]
    return attended @ p["o"]["w"] + p["o"]["b"]


def test_cross_attention_against_numpy_with_causal_and_per_query_masks():
    layer = MultiHeadAttention(2, causal=True, context_features=3)
    output_shape, params, state = layer.init(jax.random.key(0), (4, 6))
    assert output_shape == (4, 6) and layer.options == ("context", "mask")
    assert params["k"]["w"].shape == (3, 6) and params["v"]["w"].shape == (3, 6) and params["q"]["w"].shape == (6, 6)
    params = random_tree(params)
    rng = np.random.default_rng(1)
    x, context = rng.normal(size=(2, 4, 6)).astype(np.float32), rng.normal(size=(2, 5, 3)).astype(np.float32)
    mask = rng.random((2, 4, 5)) < 0.7
    # causal: key u is allowed for query t when u <= t, over the (Tq, Tk) rectangle.
    allowed = mask & np.tril(np.ones((4, 5), bool))
    y = jitted(layer, params, state, jnp.asarray(x), context=jnp.asarray(context), mask=jnp.asarray(mask))
    np.testing.assert_allclose(y, numpy_cross_attention(params, x, context, 2, allowed), rtol=1e-5, atol=1e-5)


def test_cross_attention_bad_contexts_and_masks():
    layer = MultiHeadAttention(2, context_features=3)
    _, params, state = layer.init(jax.random.key(0), (4, 6))
    x = jnp.ones((2, 4, 6))
    with pytest.raises(ValueError, match=r"^multi_head_attention: this layer attends to a context of 3 features "
                                         r"\(context_features=3\): pass context="):
        layer.apply(params, state, x)
    with pytest.raises(ValueError, match=r"^multi_head_attention: context has shape \(2, 5, 4\), expected "
                                         r"\(2, keys, 3\) \(\*batch, keys, context_features\)"):
        layer.apply(params, state, x, context=jnp.ones((2, 5, 4)))
    with pytest.raises(ValueError, match=r"^multi_head_attention: context has shape \(5, 3\), expected"):
        layer.apply(params, state, x, context=jnp.ones((5, 3)))
    with pytest.raises(TypeError, match=r"^multi_head_attention: expected a floating-point context, got dtype int32"):
        layer.apply(params, state, x, context=jnp.ones((2, 5, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"^multi_head_attention: mask has shape \(2, 4\), expected \(2, 5\) "
                                         r"\(\*batch, keys\) or \(2, 4, 5\) \(\*batch, queries, keys\)"):
        layer.apply(params, state, x, context=jnp.ones((2, 5, 3)), mask=jnp.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"^MultiHeadAttention: `context_features` \(=0\) must be a positive int"):
        MultiHeadAttention(2, context_features=0)
