"""Tests for stacked recurrent layers (``num_layers > 1``) beyond the PyTorch parity tests.

The oracle: single layers, composed by hand, with the same params and the dropout between them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import init as initializers
from jaxnn.layers import GRU, LSTM, Dropout, SimpleRNN


def test_stacked_layers_compose_single_layers_with_dropout_between_them_in_training():
    layer = SimpleRNN(4, num_layers=3, dropout=0.5)
    output_shape, params, state = layer.init(jax.random.key(0), (3, 3))
    assert output_shape == (4,) and sorted(params) == ["layer_0", "layer_1", "layer_2"]
    assert params["layer_0"]["wi"].shape == (3, 4) and params["layer_1"]["wi"].shape == (4, 4)
    x = jax.random.normal(jax.random.key(1), (2, 3, 3))
    initial = [jnp.full((2, 4), v) for v in (0.1, -0.2, 0.3)]
    key = jax.random.key(2)

    @jax.jit
    def by_hand(key):
        inner, last = SimpleRNN(4, return_sequences=True), SimpleRNN(4)
        h = x
        for k, dropout_key in enumerate(jax.random.split(key, 2)):
            h, _ = inner.apply(params[f"layer_{k}"], {}, h, initial_state=initial[k])
            h, _ = Dropout(0.5).apply({}, {}, h, key=dropout_key, train=True)
        return last.apply(params["layer_2"], {}, h, initial_state=initial[2])[0]

    y = jax.jit(lambda key: layer.apply(params, state, x, key=key, train=True, initial_state=initial)[0])(key)
    np.testing.assert_allclose(y, by_hand(key), rtol=1e-6, atol=1e-6)
    # Without training, no dropout: the same as the single layers without it.
    y_eval = jax.jit(lambda key: layer.apply(params, state, x, key=key, initial_state=initial)[0])(key)
    assert not np.allclose(y, y_eval)


def test_one_layer_keeps_the_flat_params():
    _, params, _ = jax.eval_shape(lambda key: LSTM(3, num_layers=1).init(key, (4, 2)), jax.random.key(0))
    assert sorted(params) == ["b", "wh", "wi"]


def test_stacked_errors():
    with pytest.raises(ValueError, match=r"^LSTM: `dropout` \(=0.2\) acts between stacked layers and needs "
                                         r"num_layers > 1"):
        LSTM(3, dropout=0.2)
    with pytest.raises(ValueError, match=r"^GRU: `num_layers` \(=0\) must be a positive int"):
        GRU(3, num_layers=0)
    with pytest.raises(ValueError, match=r"^SimpleRNN: `dropout` \(=1.0\) must be in \[0, 1\)"):
        SimpleRNN(3, num_layers=2, dropout=1.0)
    layer = LSTM(3, num_layers=2, dropout=0.1, wi_init=initializers.zeros(), wh_init=initializers.zeros())
    _, params, state = layer.init(jax.random.key(0), (4, 2))
    x = jnp.ones((1, 4, 2))
    hidden = jnp.zeros((1, 3))
    with pytest.raises(TypeError, match=r"^lstm: initial_state of 2 stacked layers must be a sequence of 2 "
                                        r"per-layer initial states, got a sequence of 1"):
        layer.apply(params, state, x, initial_state=[(hidden, hidden)])
    with pytest.raises(TypeError, match=r"^layer_1: initial_state of an LSTM must be a tuple \(h, c\)"):
        layer.apply(params, state, x, initial_state=[(hidden, hidden), hidden])
    with pytest.raises(ValueError, match=r"^dropout_0: train=True needs a PRNG key"):
        layer.apply(params, state, x, train=True)
    with pytest.raises(TypeError, match=r"^LSTM takes hidden positionally .* PyTorch's LSTM\(8, 3, 2\) is "
                                        r"LSTM\(3, num_layers=2\) here"):
        LSTM(8, 3, 2)
