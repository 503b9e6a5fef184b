"""Property-based tests: invariants that hold for every shape and value hypothesis tries."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxnn
from jaxnn.losses import binary_cross_entropy, cross_entropy

SETTINGS = settings(max_examples=25, deadline=None)
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)
batch_shapes = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)
layers = st.sampled_from([
    lambda: jaxnn.Dense(3),
    jaxnn.Flatten,
    jaxnn.LayerNorm,
    jaxnn.Softmax,
    lambda: jaxnn.Sequential([jaxnn.Flatten(), jaxnn.Dense(2), jaxnn.Tanh()]),
    lambda: jaxnn.Reshape((-1,)),
])


@SETTINGS
@given(factory=layers, input_shape=shapes, batch_shape=batch_shapes)
def test_init_predicts_the_shape_apply_returns(factory, input_shape, batch_shape):
    layer = factory()
    output_shape, params, state = layer.init(jax.random.key(0), input_shape)
    y, _ = layer.apply(params, state, jnp.ones(batch_shape + input_shape))
    assert y.shape == batch_shape + tuple(output_shape)


finite_logits = st.lists(st.floats(-50, 50, width=32), min_size=2, max_size=6)


@SETTINGS
@given(logits=finite_logits, shift=st.floats(-1e3, 1e3, width=32), data=st.data())
def test_cross_entropy_is_shift_invariant_and_equals_minus_log_probability(logits, shift, data):
    label = data.draw(st.integers(0, len(logits) - 1))
    logits64 = np.asarray(logits, np.float64)
    expected = -(logits64[label] - np.log(np.sum(np.exp(logits64 - logits64.max()))) - logits64.max())
    x = jnp.asarray([logits], jnp.float32)
    loss = float(cross_entropy(x, jnp.asarray([label])))
    shifted = float(cross_entropy(x + jnp.float32(shift), jnp.asarray([label])))
    assert loss >= 0
    np.testing.assert_allclose(loss, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(shifted, loss, rtol=1e-3, atol=2e-3)


@SETTINGS
@given(logit=st.floats(-1e4, 1e4, width=32), target=st.floats(0, 1, width=32))
def test_binary_cross_entropy_is_symmetric_under_flipping_logit_and_target(logit, target):
    # -[t log s(x) + (1-t) log(1-s(x))] is unchanged by x -> -x, t -> 1-t, since 1-s(x) = s(-x).
    x, t = jnp.asarray([logit], jnp.float32), jnp.asarray([target], jnp.float32)
    forward = binary_cross_entropy(x, t)
    flipped = binary_cross_entropy(-x, jnp.float32(1) - t)
    assert np.isfinite(forward)
    # Oracle: the float64 closed form log(1 + e^x) - x t at the same float32 inputs. Float32 rounds
    # log(1 + e^x) and x t, each up to |x| + 1 in size, so when they nearly cancel (x large, t near
    # 1) the error is a few float32 ulps of |x| + 1 rather than of the result; the flipped form
    # cancels the same way.
    x64, t64 = float(np.float32(logit)), float(np.float32(target))
    expected = np.logaddexp(0.0, x64) - x64 * t64
    eps = float(np.finfo(np.float32).eps)
    tolerance = dict(rtol=8 * eps, atol=4 * eps * (abs(x64) + 1))
    np.testing.assert_allclose(float(forward), expected, **tolerance)
    np.testing.assert_allclose(float(flipped), expected, **tolerance)
