"""Tests of Dropout: drop rate and inverted scaling checked statistically, keys, modes and errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.core import LayerTypeError, LayerValueError
from jaxnn.layers.dropout import Dropout

MISSING_KEY = (
    "dropout: train=True needs a PRNG key: apply(params, state, x, key=jax.random.key(0), train=True)"
)


def positive_input(shape, seed=0):
    """Values in [1, 2): never zero, so a zero in the output means dropped."""
    return np.random.default_rng(seed).uniform(1.0, 2.0, shape).astype(np.float32)


def train(layer, x, key):
    return layer.apply({}, {}, x, key=key, train=True)[0]


@pytest.mark.parametrize("input_shape", [(4,), (5, 4), (3, 5, 4)])
@pytest.mark.parametrize("batch_shape", [(), (2,), (2, 3)])
def test_predicted_shape_matches_apply(input_shape, batch_shape):
    layer = Dropout(0.5)
    output_shape, params, state = layer.init(jax.random.key(0), input_shape)
    assert output_shape == input_shape and params == {} and state == {}
    x = jnp.asarray(positive_input(batch_shape + input_shape))
    y, new_state = layer.apply(params, state, x, key=jax.random.key(1), train=True)
    assert y.shape == batch_shape + output_shape and y.dtype == x.dtype
    assert new_state is state
    y, _ = layer.apply(params, state, x)
    assert y.shape == batch_shape + output_shape


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.9])
def test_drop_fraction_mean_and_scaling(rate):
    n = 100_000
    x = positive_input((n,))
    y = np.asarray(train(Dropout(rate), jnp.asarray(x), jax.random.key(42)))
    dropped = y == 0
    # The fraction dropped is Binomial(n, rate) / n.
    assert abs(dropped.mean() - rate) < 5 * math.sqrt(rate * (1 - rate) / n)
    # Inverted scaling: E[y_i] = x_i, Var[y_i] = x_i^2 rate / (1 - rate).
    standard_error = math.sqrt(np.sum(x.astype(np.float64) ** 2) * rate / (1 - rate)) / n
    assert abs(y.mean(dtype=np.float64) - x.mean(dtype=np.float64)) < 5 * standard_error
    # Kept values are x / (1 - rate): exactly x times the rounded reciprocal, within an ulp of the
    # exact quotient.
    kept = ~dropped
    np.testing.assert_array_equal(y[kept], x[kept] * np.float32(1 / (1 - rate)))
    np.testing.assert_allclose(y[kept], x[kept].astype(np.float64) / (1 - rate), rtol=2e-7)


def test_keys_decide_the_mask():
    layer = Dropout(0.5)
    x = jnp.asarray(positive_input((1000,)))
    first = np.asarray(train(layer, x, jax.random.key(0)))
    again = np.asarray(train(layer, x, jax.random.key(0)))
    other = np.asarray(train(layer, x, jax.random.key(1)))
    np.testing.assert_array_equal(first == 0, again == 0)
    np.testing.assert_array_equal(first, again)
    # Two independent masks of 1000 elements at rate 0.5 agree on about half of them.
    assert 0.4 < np.mean((first == 0) == (other == 0)) < 0.6


def test_legacy_uint32_key_works():
    y = np.asarray(train(Dropout(0.5), jnp.asarray(positive_input((1000,))), jax.random.PRNGKey(0)))
    assert 0.4 < np.mean(y == 0) < 0.6


def test_eval_and_rate_zero_are_identity_without_key():
    x = jnp.asarray(positive_input((7, 3)))
    for layer, train_flag in [(Dropout(0.5), False), (Dropout(0.0), True), (Dropout(0), False)]:
        y, state = layer.apply({}, {}, x, train=train_flag)
        np.testing.assert_array_equal(y, x)
        assert state == {}


def test_missing_key_in_training():
    with pytest.raises(ValueError) as error:
        Dropout(0.5).apply({}, {}, jnp.ones((2, 3)), train=True)
    assert isinstance(error.value, LayerValueError)
    assert str(error.value) == MISSING_KEY


def test_rate_one_gives_zeros():
    x = jnp.asarray(np.array([[1.0, -3.0, 1e30], [0.5, 2.0, -1e30]], np.float32))
    y = np.asarray(train(Dropout(1.0), x, jax.random.key(0)))
    np.testing.assert_array_equal(y, np.zeros((2, 3), np.float32))
    assert y.dtype == np.float32
    with pytest.raises(LayerValueError, match="PRNG key"):
        Dropout(1).apply({}, {}, x, train=True)


@pytest.mark.parametrize(
    "rate, error",
    [(-0.1, LayerValueError), (1.5, LayerValueError), (float("nan"), LayerValueError),
     ("0.5", LayerTypeError), (True, LayerTypeError), (None, LayerTypeError), ([0.5], LayerTypeError)],
)
def test_rate_validation(rate, error):
    # A real number out of range is a ValueError; something that is not a real number a TypeError.
    with pytest.raises((ValueError, TypeError)) as info:
        Dropout(rate)
    assert type(info.value) is error
    assert str(info.value).startswith("Dropout: `rate`")
    assert repr(rate) in str(info.value) and "[0, 1]" in str(info.value)


@pytest.mark.parametrize("rate", [np.float32(0.25), np.float64(0.5), 0, 1])
def test_rate_accepts_numpy_and_integer_real_numbers(rate):
    y = train(Dropout(rate), jnp.asarray(positive_input((1000,))), jax.random.key(0))
    assert abs(float(jnp.mean(y == 0)) - float(rate)) < 0.1


def test_integer_input():
    with pytest.raises(TypeError) as error:
        Dropout(0.5).apply({}, {}, jnp.ones((2, 3), jnp.int32))
    assert isinstance(error.value, LayerTypeError)
    assert str(error.value) == "dropout: expected a floating-point input, got dtype int32"


def test_under_jit():
    layer = Dropout(0.25)
    x = positive_input((200, 500))

    @jax.jit
    def step(x, key):
        return layer.apply({}, {}, x, key=key, train=True)[0]

    y = np.asarray(step(jnp.asarray(x), jax.random.key(3)))
    dropped = y == 0
    assert abs(dropped.mean() - 0.25) < 5 * math.sqrt(0.25 * 0.75 / x.size)
    np.testing.assert_array_equal(y[~dropped], x[~dropped] * np.float32(1 / 0.75))
    other = np.asarray(step(jnp.asarray(x), jax.random.key(4)))
    assert not np.array_equal(other == 0, dropped)


def test_vmap_over_examples_with_split_keys():
    layer = Dropout(0.5)
    examples = 16
    x = positive_input((examples, 2000))
    keys = jax.random.split(jax.random.key(0), examples)
    y = np.asarray(jax.vmap(lambda key, example: train(layer, example, key))(keys, jnp.asarray(x)))
    dropped = y == 0
    assert abs(dropped.mean() - 0.5) < 5 * math.sqrt(0.25 / x.size)
    np.testing.assert_array_equal(y[~dropped], x[~dropped] * np.float32(2.0))
    # Each example has its own mask: no two rows drop the same elements.
    assert len({row.tobytes() for row in dropped}) == examples


def test_bf16_scaling_is_computed_in_float32_and_rounded_once():
    # In bfloat16, 1 / 0.9 rounds to 1.109375, 0.16% low: multiplying by that biases every kept
    # value the same way, and about a fifth of them round to a different bfloat16 number.
    rate = 0.1
    n = 4_000_000
    x = jnp.asarray(positive_input((n,), seed=1), jnp.bfloat16)
    y = train(Dropout(rate), x, jax.random.key(7))
    assert y.dtype == jnp.bfloat16
    x32, y32 = np.asarray(x, np.float32), np.asarray(y, np.float32)
    kept = y32 != 0
    expected = (x32[kept] * np.float32(1 / (1 - rate))).astype(jnp.bfloat16).astype(np.float32)
    np.testing.assert_array_equal(y32[kept], expected)
    # Rounding once to bfloat16 leaves the kept values averaging x / (1 - rate) to about 2e-5 here
    # (the rounding errors of the 128 bfloat16 numbers in [1, 2) nearly cancel), far better than
    # the 0.16% that a bfloat16 scale costs.
    scale = np.sum(y32[kept], dtype=np.float64) / np.sum(x32[kept], dtype=np.float64)
    assert abs(scale * (1 - rate) - 1) < 1e-4
    # E[y] = x: Var[y_i] = x_i^2 rate / (1 - rate); the old bias was about 9 standard errors here.
    standard_error = math.sqrt(np.sum(x32.astype(np.float64) ** 2) * rate / (1 - rate)) / n
    assert abs(y32.mean(dtype=np.float64) - x32.mean(dtype=np.float64)) < 5 * standard_error


def test_bf16_input():
    x = jnp.asarray(positive_input((10_000,)), jnp.bfloat16)
    y = train(Dropout(0.5), x, jax.random.key(0))
    assert y.dtype == jnp.bfloat16
    kept = np.asarray(y != 0)
    np.testing.assert_array_equal(np.asarray(y, np.float32)[kept], np.asarray(x, np.float32)[kept] * 2)
