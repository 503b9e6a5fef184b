"""Tests for SimpleRNN, LSTM, GRU and Bidirectional.

The oracle is a plain NumPy float64 loop over time steps, written from PyTorch's documented
formulas independently of the layers' code; gradients are checked by finite differences.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxnn import init as initializers
from jaxnn.core import Sequential
from jaxnn.layers.dense import Dense, Flatten
from jaxnn.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN

CONSTRUCTORS = {
    "tanh": lambda hidden, **kw: SimpleRNN(hidden, **kw),
    "relu": lambda hidden, **kw: SimpleRNN(hidden, nonlinearity="relu", **kw),
    "lstm": LSTM,
    "gru": GRU,
}


# --------------------------------------------------------------------------------------------
# The NumPy oracle.


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def numpy_recurrence(kind, params, x, initial_state=None, reverse=False, return_sequences=False):
    """Runs the recurrence step by step in float64 on ``x (N, T, F)``; returns (N, H) or (N, T, H)."""
    p = {name: np.asarray(value, np.float64) for name, value in params.items()}
    x = np.asarray(x, np.float64)
    batch, time, _ = x.shape
    hidden = p["wh"].shape[0]
    h = np.zeros((batch, hidden)) if initial_state is None else np.asarray(
        initial_state[0] if kind == "lstm" else initial_state, np.float64)
    c = np.zeros((batch, hidden)) if initial_state is None or kind != "lstm" else np.asarray(
        initial_state[1], np.float64)
    outputs = [None] * time
    steps = range(time - 1, -1, -1) if reverse else range(time)
    for t in steps:
        x_t = x[:, t]
        if kind in ("tanh", "relu"):
            pre = x_t @ p["wi"] + h @ p["wh"] + p["b"]
            h = np.tanh(pre) if kind == "tanh" else np.maximum(pre, 0)
        elif kind == "lstm":
            a = x_t @ p["wi"] + h @ p["wh"] + p["b"]
            i, f, g, o = (a[:, k * hidden:(k + 1) * hidden] for k in range(4))
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        else:
            gi = x_t @ p["wi"] + p["bi"]
            gh = h @ p["wh"] + p["bh"]
            r = _sigmoid(gi[:, :hidden] + gh[:, :hidden])
            z = _sigmoid(gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
            n = np.tanh(gi[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
            h = (1 - z) * n + z * h
        outputs[t] = h
    return np.stack(outputs, axis=1) if return_sequences else h


def random_params(kind, features, hidden, seed=0, scale=0.5):
    """Params with every entry random (biases too), so that no term of the formulas hides."""
    width = {"tanh": 1, "relu": 1, "lstm": 4, "gru": 3}[kind] * hidden
    rng = np.random.default_rng(seed)
    params = {"wi": rng.normal(0, scale, (features, width)), "wh": rng.normal(0, scale, (hidden, width))}
    for name in ("bi", "bh") if kind == "gru" else ("b",):
        params[name] = rng.normal(0, scale, (width,))
    return {name: jnp.asarray(value, jnp.float32) for name, value in params.items()}


def random_state(kind, batch_shape, hidden, seed=1):
    rng = np.random.default_rng(seed)
    h = jnp.asarray(rng.normal(0, 0.5, batch_shape + (hidden,)), jnp.float32)
    if kind == "lstm":
        return h, jnp.asarray(rng.normal(0, 0.5, batch_shape + (hidden,)), jnp.float32)
    return h


def jitted_apply(layer, params, x, initial_state=None, state=None):
    """``layer.apply`` under jit: one compilation per call instead of one per operation, which
    keeps the many configurations below fast to run."""
    state = {} if state is None else state
    return jax.jit(lambda params, x, initial_state: layer.apply(params, state, x, initial_state=initial_state)[0])(
        params, x, initial_state)


# --------------------------------------------------------------------------------------------
# Shapes and parameters.


@pytest.mark.parametrize("kind", list(CONSTRUCTORS))
def test_init_predicts_apply_shape_for_any_number_of_batch_axes(kind):
    widths = {"tanh": 1, "relu": 1, "lstm": 4, "gru": 3}
    for return_sequences, batch_shape in [(False, ()), (True, (2,)), (False, (3, 2))]:
        layer = CONSTRUCTORS[kind](5, return_sequences=return_sequences)
        output_shape, params, state = layer.init(jax.random.key(0), (4, 3))
        assert output_shape == ((4, 5) if return_sequences else (5,))
        assert params["wi"].shape == (3, widths[kind] * 5) and params["wh"].shape == (5, widths[kind] * 5)
        biases = ("bi", "bh") if kind == "gru" else ("b",)
        assert set(params) == {"wi", "wh", *biases} and state == {}
        for name in biases:
            assert params[name].shape == (widths[kind] * 5,)
        x = jax.random.normal(jax.random.key(1), batch_shape + (4, 3))
        assert jitted_apply(layer, params, x).shape == batch_shape + tuple(output_shape)


def test_default_initialization():
    _, params, _ = LSTM(16).init(jax.random.key(0), (3, 8))
    wh = np.asarray(params["wh"], np.float64)
    # One orthogonal (H, H) block per gate.
    for k in range(4):
        block = wh[:, 16 * k:16 * (k + 1)]
        np.testing.assert_allclose(block.T @ block, np.eye(16), atol=1e-5)
    np.testing.assert_array_equal(params["b"], np.zeros(64))
    # Glorot uniform over (in, 4H): U(-a, a) with a = sqrt(6 / (8 + 64)).
    limit = math.sqrt(6 / (8 + 64))
    assert np.abs(params["wi"]).max() <= limit and np.abs(params["wi"]).max() > 0.8 * limit


def test_forget_bias_sets_only_the_forget_block():
    _, params, _ = LSTM(3, forget_bias=1.0).init(jax.random.key(0), (2, 2))
    np.testing.assert_array_equal(params["b"], [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])


def test_param_dtype_and_promotion():
    layer = GRU(4, param_dtype=jnp.bfloat16)
    _, params, state = layer.init(jax.random.key(0), (3, 2))
    assert all(value.dtype == jnp.bfloat16 for value in params.values())
    assert layer.apply(params, state, jnp.ones((3, 2), jnp.bfloat16))[0].dtype == jnp.bfloat16
    assert layer.apply(params, state, jnp.ones((3, 2), jnp.float32))[0].dtype == jnp.float32


# --------------------------------------------------------------------------------------------
# Values.


def test_simple_rnn_by_hand():
    # H = F = 1, all weights 1, bias 0: h_t = tanh(x_t + h_{t-1}).
    layer = SimpleRNN(1, return_sequences=True, wi_init=initializers.ones(), wh_init=initializers.ones())
    _, params, state = layer.init(jax.random.key(0), (3, 1))
    y, _ = layer.apply(params, state, jnp.array([[1.0], [0.0], [-2.0]]))
    h0 = math.tanh(1)
    h1 = math.tanh(h0)
    h2 = math.tanh(-2 + h1)
    np.testing.assert_allclose(y[:, 0], [h0, h1, h2], rtol=1e-6)
    # Reversed, the last state returned is h_0, which has read x_2, x_1, x_0 in that order.
    reverse = SimpleRNN(1, reverse=True, wi_init=initializers.ones(), wh_init=initializers.ones())
    y, _ = reverse.apply(params, state, jnp.array([[1.0], [0.0], [-2.0]]))
    np.testing.assert_allclose(y, [math.tanh(1 + math.tanh(math.tanh(-2)))], rtol=1e-6)


def test_lstm_with_constant_gates_by_hand():
    # Zero weights and bias beta: every gate is constant, i = f = o = s = sigmoid(beta),
    # g = tanh(beta), so c_t = s g (1 + s + ... + s^t) and h_t = s tanh(c_t), whatever x is.
    beta = 0.7
    layer = LSTM(2, return_sequences=True, wi_init=initializers.zeros(), wh_init=initializers.zeros(),
                 b_init=initializers.constant(beta))
    _, params, state = layer.init(jax.random.key(0), (4, 3))
    y, _ = layer.apply(params, state, jax.random.normal(jax.random.key(1), (4, 3)))
    s, g = 1 / (1 + math.exp(-beta)), math.tanh(beta)
    expected = [s * math.tanh(s * g * sum(s ** j for j in range(t + 1))) for t in range(4)]
    np.testing.assert_allclose(y, np.repeat(np.array(expected)[:, None], 2, axis=1), rtol=1e-6)


def test_gru_with_constant_gates_by_hand():
    # Zero weights and both biases beta: r = z = sigmoid(2 beta), n = tanh(beta + r beta), and
    # h_t = (1 - z) n + z h_{t-1} from h_{-1} = 0 gives h_t = n (1 - z^(t+1)).
    beta = -0.4
    layer = GRU(1, return_sequences=True, wi_init=initializers.zeros(), wh_init=initializers.zeros(),
                b_init=initializers.constant(beta))
    _, params, state = layer.init(jax.random.key(0), (5, 2))
    y, _ = layer.apply(params, state, jnp.ones((5, 2)))
    z = 1 / (1 + math.exp(-2 * beta))
    n = math.tanh(beta + z * beta)
    np.testing.assert_allclose(y[:, 0], [n * (1 - z ** (t + 1)) for t in range(5)], rtol=1e-6)


@pytest.mark.parametrize("kind", list(CONSTRUCTORS))
def test_against_a_numpy_loop_over_time(kind):
    features, hidden, time = 3, 4, 5
    params = random_params(kind, features, hidden)
    x = jax.random.normal(jax.random.key(2), (2, time, features))
    # Every pair of the three options appears in both of its combinations.
    for return_sequences, reverse, with_state in [(False, False, False), (False, True, True),
                                                  (True, False, True), (True, True, False)]:
        layer = CONSTRUCTORS[kind](hidden, return_sequences=return_sequences, reverse=reverse)
        initial_state = random_state(kind, (2,), hidden) if with_state else None
        y = jitted_apply(layer, params, x, initial_state)
        expected = numpy_recurrence(kind, params, x, initial_state, reverse, return_sequences)
        np.testing.assert_allclose(y, expected, rtol=2e-5, atol=2e-5,
                                   err_msg=f"{return_sequences=} {reverse=} {with_state=}")


def test_reverse_equals_forward_over_the_flipped_sequence():
    # What "reverse" means, independently of the oracle's loop: reading x backwards is reading the
    # flipped sequence forwards; the sequence output is then flipped back to input positions.
    params = random_params("lstm", 3, 4, seed=3)
    x = jax.random.normal(jax.random.key(4), (2, 6, 3))
    y, _ = LSTM(4, return_sequences=True, reverse=True).apply(params, {}, x)
    expected = numpy_recurrence("lstm", params, np.asarray(x)[:, ::-1], return_sequences=True)[:, ::-1]
    np.testing.assert_allclose(y, expected, rtol=2e-5, atol=2e-5)


def test_batch_axes_are_independent_and_vmap_agrees():
    layer = GRU(4, return_sequences=True)
    _, params, state = layer.init(jax.random.key(0), (5, 3))
    x = jax.random.normal(jax.random.key(1), (2, 3, 5, 3))
    h0 = random_state("gru", (2, 3), 4)
    batched = jitted_apply(layer, params, x, h0)
    flat = jitted_apply(layer, params, x.reshape(6, 5, 3), h0.reshape(6, 4))
    single = jax.jit(jax.vmap(jax.vmap(lambda example, h: layer.apply(params, state, example, initial_state=h)[0])))(
        x, h0)
    unbatched = jitted_apply(layer, params, x[1, 2], h0[1, 2])
    np.testing.assert_allclose(flat.reshape(2, 3, 5, 4), batched, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(single, batched, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(unbatched, batched[1, 2], rtol=1e-5, atol=1e-6)
    assert jitted_apply(layer, params, x[:0], h0[:0]).shape == (0, 3, 5, 4)  # an empty batch


def test_jit_gives_the_eager_result():
    layer = LSTM(4, return_sequences=True, reverse=True)
    _, params, state = layer.init(jax.random.key(0), (5, 3))
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))
    eager, _ = layer.apply(params, state, x)
    jitted, _ = jax.jit(lambda p, x: layer.apply(p, state, x))(params, x)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Gradients.


# One setting per kind, between them covering the last state and the sequence output, both
# directions and the relu's derivative; with an initial state, so its gradient is checked too.
GRADIENT_CASES = [("tanh", False, True), ("relu", True, False), ("lstm", True, True), ("gru", False, False)]


@pytest.mark.parametrize("kind,return_sequences,reverse", GRADIENT_CASES)
def test_gradients_against_finite_differences(kind, return_sequences, reverse):
    # The derivative is written by hand (a custom_jvp), so forward and reverse mode are each checked.
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), random_params(kind, 2, 3, seed=5))
        x = jax.random.normal(jax.random.key(6), (2, 4, 2), jnp.float64)
        h0 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), random_state(kind, (2,), 3))
        layer = CONSTRUCTORS[kind](3, return_sequences=return_sequences, reverse=reverse)
        # Jitted, so that each derivative compiles once rather than running op by op.
        f = jax.jit(lambda params, x, h0: layer.apply(params, {}, x, initial_state=h0)[0])
        check_grads(f, (params, x, h0), order=1, modes=["fwd", "rev"], atol=1e-5, rtol=1e-5)
        if kind == "lstm":
            # Second order (the tangent rule differentiated again), as Hessian-vector products need.
            check_grads(f, (params, x, h0), order=2, modes=["fwd"], atol=1e-5, rtol=1e-5)


def test_gradient_flows_only_from_what_was_read():
    # The last state of a forward run depends on every step; of a reversed run, too; but the
    # sequence output at position t of a forward run does not depend on later inputs.
    layer = SimpleRNN(3, return_sequences=True)
    _, params, state = layer.init(jax.random.key(0), (4, 2))
    x = jax.random.normal(jax.random.key(1), (4, 2))
    jacobian = jax.jit(jax.jacobian(lambda x: layer.apply(params, state, x)[0]))(x)  # (T, H, T, F)
    for t in range(4):
        assert np.all(jacobian[t, :, t + 1:] == 0)
        assert np.any(jacobian[t, :, :t + 1] != 0)


# --------------------------------------------------------------------------------------------
# Bidirectional.


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bidirectional_concatenates_forward_and_reversed_runs(kind):
    for return_sequences in (False, True):
        layer = Bidirectional(CONSTRUCTORS[kind](4, return_sequences=return_sequences))
        output_shape, params, state = layer.init(jax.random.key(0), (5, 3))
        assert set(params) == {"forward", "backward"}
        assert output_shape == ((5, 8) if return_sequences else (8,))
        assert not np.allclose(params["forward"]["wi"], params["backward"]["wi"])
        x = jax.random.normal(jax.random.key(1), (2, 5, 3))
        y = jitted_apply(layer, params, x, state=state)
        forward = numpy_recurrence(kind, params["forward"], x, return_sequences=return_sequences)
        backward = numpy_recurrence(kind, params["backward"], x, reverse=True, return_sequences=return_sequences)
        np.testing.assert_allclose(y, np.concatenate([forward, backward], axis=-1), rtol=2e-5, atol=2e-5)


def test_bidirectional_initial_state_and_errors():
    layer = Bidirectional(SimpleRNN(3))
    _, params, state = layer.init(jax.random.key(0), (4, 2))
    x = jax.random.normal(jax.random.key(1), (4, 2))
    h_forward, h_backward = jnp.full((3,), 0.5), jnp.full((3,), -0.5)
    y, _ = layer.apply(params, state, x, initial_state={"forward": h_forward, "backward": h_backward})
    expected_forward = numpy_recurrence("tanh", params["forward"], x[None], h_forward[None])[0]
    expected_backward = numpy_recurrence("tanh", params["backward"], x[None], h_backward[None], reverse=True)[0]
    np.testing.assert_allclose(y, np.concatenate([expected_forward, expected_backward]), rtol=2e-5, atol=2e-5)
    with pytest.raises(ValueError, match=r"^backward: initial_state has shape \(2,\), expected \(3,\)"):
        layer.apply(params, state, x, initial_state={"forward": h_forward, "backward": jnp.zeros(2)})
    with pytest.raises(ValueError, match=r"^bidirectional: initial_state must be a dict with an entry for each "
                                         r"direction that takes one, \['backward', 'forward'\], got \['forward'\]"):
        layer.apply(params, state, x, initial_state={"forward": h_forward})
    with pytest.raises(ValueError, match=r"got tuple"):
        layer.apply(params, state, x, initial_state=(h_forward, h_backward))
    # A backward layer that takes no initial state gets none, and giving it one is refused.
    mixed = Bidirectional(SimpleRNN(3), Sequential([Flatten(), Dense(3)]))
    assert mixed.options == ("initial_state",)
    _, mixed_params, mixed_state = mixed.init(jax.random.key(0), (4, 2))
    y_mixed, _ = mixed.apply(mixed_params, mixed_state, x, initial_state={"forward": h_forward})
    expected = numpy_recurrence("tanh", mixed_params["forward"], x[None], h_forward[None])[0]
    np.testing.assert_allclose(y_mixed[:3], expected, rtol=2e-5, atol=2e-5)
    with pytest.raises(ValueError, match=r"takes one, \['forward'\], got \['backward', 'forward'\]"):
        mixed.apply(mixed_params, mixed_state, x, initial_state={"forward": h_forward, "backward": h_backward})
    with pytest.raises(TypeError, match=r"^Bidirectional: `forward` must be a Layer, got function"):
        Bidirectional(GRU)
    with pytest.raises(TypeError, match=r"^Bidirectional: `backward` must be a Layer, got int"):
        Bidirectional(GRU(3), 3)
    with pytest.raises(ValueError, match=r"^bidirectional: the two directions give outputs of shapes \(4, 3\) and \(2,\)"):
        Bidirectional(GRU(3, return_sequences=True), GRU(2, reverse=True)).init(jax.random.key(0), (4, 2))


# Each cell kind with each output once in the default run; the other three pairs with -m slow.
@pytest.mark.parametrize("kind,return_sequences", [
    ("tanh", False), ("lstm", True), ("gru", False),
    *(pytest.param(kind, sequences, marks=pytest.mark.slow)
      for kind, sequences in [("tanh", True), ("lstm", False), ("gru", True)]),
])
def test_bidirectional_without_a_backward_layer_equals_an_explicit_reversed_one(kind, return_sequences):
    # Left out, the backward direction is the forward kind run on the reversed sequence; given,
    # it is a layer built with reverse=True. Both compute the same, in value and gradient.
    constructor = CONSTRUCTORS[kind]
    implicit = Bidirectional(constructor(4, return_sequences=return_sequences))
    explicit = Bidirectional(constructor(4, return_sequences=return_sequences),
                             constructor(4, return_sequences=return_sequences, reverse=True))
    _, params, state = implicit.init(jax.random.key(0), (5, 3))
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))

    def loss(layer, params):
        y, _ = layer.apply(params, state, x)
        return jnp.sum(jnp.sin(y)), y

    (implicit_loss, implicit_y), implicit_grads = jax.value_and_grad(lambda p: loss(implicit, p), has_aux=True)(params)
    (explicit_loss, explicit_y), explicit_grads = jax.value_and_grad(lambda p: loss(explicit, p), has_aux=True)(params)
    np.testing.assert_allclose(implicit_y, explicit_y, rtol=1e-6, atol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(implicit_grads), jax.tree_util.tree_leaves(explicit_grads)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Errors.


def test_bad_inputs_name_the_layer_and_the_problem():
    layer = LSTM(4)
    _, params, state = layer.init(jax.random.key(0), (5, 3))
    with pytest.raises(ValueError, match=r"^lstm: expected last axis \(features\) 3, got 2"):
        layer.apply(params, state, jnp.ones((2, 5, 2)))
    with pytest.raises(ValueError, match=r"^lstm: expected an input of shape \(\*batch, time, features\), got \(3,\)"):
        layer.apply(params, state, jnp.ones(3))
    with pytest.raises(TypeError, match="^lstm: expected a floating-point input, got dtype int32"):
        layer.apply(params, state, jnp.ones((5, 3), jnp.int32))
    with pytest.raises(ValueError, match="^lstm: expected at least one time step"):
        layer.apply(params, state, jnp.ones((2, 0, 3)))
    with pytest.raises(ValueError, match=r"^lstm: expected an input of shape \(time, features\), got input_shape \(3,\)"):
        layer.init(jax.random.key(0), (3,))
    with pytest.raises(TypeError, match=r"^lstm: initial_state of an LSTM must be a tuple \(h, c\), got ArrayImpl"):
        layer.apply(params, state, jnp.ones((2, 5, 3)), initial_state=jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"^lstm: initial_state\[1\] \(c\) has shape \(4,\), expected \(2, 4\)"):
        layer.apply(params, state, jnp.ones((2, 5, 3)), initial_state=(jnp.zeros((2, 4)), jnp.zeros(4)))
    with pytest.raises(ValueError, match=r"^lstm: params\['wh'\] has shape \(4, 12\), expected \(4, 16\)"):
        layer.apply({**params, "wh": jnp.ones((4, 12))}, state, jnp.ones((5, 3)))
    with pytest.raises(ValueError, match=r"^gru: params has no 'bi', 'bh'"):
        GRU(4).apply(params, state, jnp.ones((5, 3)))
    # Under jit the shapes are still checked before XLA sees them.
    with pytest.raises(ValueError, match=r"lstm: expected last axis \(features\) 3, got 2"):
        jax.jit(lambda x: layer.apply(params, state, x)[0])(jnp.ones((2, 5, 2)))
    # Inside a model the path names the layer.
    model = Sequential({"encoder": GRU(4), "head": Dense(2)})
    _, model_params, model_state = model.init(jax.random.key(0), (5, 3))
    with pytest.raises(ValueError, match=r"^encoder: expected last axis \(features\) 3, got 7"):
        model.apply(model_params, model_state, jnp.ones((5, 7)))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"^LSTM: `hidden` \(=0\) must be a positive int"):
        LSTM(0)
    with pytest.raises(TypeError, match=r"^GRU: `hidden` must be a positive int, got '8'"):
        GRU("8")
    with pytest.raises(TypeError, match=r"^SimpleRNN: `return_sequences` must be True or False, got 'yes'"):
        SimpleRNN(3, return_sequences="yes")
    with pytest.raises(TypeError, match=r"^LSTM: `reverse` must be True or False, got 1"):
        LSTM(3, reverse=1)
    with pytest.raises(ValueError, match=r"^GRU: `unroll` \(=0\) must be a positive int"):
        GRU(3, unroll=0)
    with pytest.raises(ValueError, match=r"^SimpleRNN: `nonlinearity` must be 'tanh' or 'relu', got 'sigmoid'"):
        SimpleRNN(3, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match=r"^LSTM: `wh_init` must be an initializer .*call it: wh_init=jaxnn.init.orthogonal\(\)"):
        LSTM(3, wh_init=initializers.orthogonal)
    with pytest.raises(TypeError, match=r"^GRU: `param_dtype` must be floating-point, got int32"):
        GRU(3, param_dtype=jnp.int32)
    with pytest.raises(TypeError, match=r"^LSTM: `forget_bias` must be a real number, got 'one'"):
        LSTM(3, forget_bias="one")
    with pytest.raises(ValueError, match=r"^LSTM: `forget_bias` \(=inf\) must be a finite number"):
        LSTM(3, forget_bias=math.inf)


# --------------------------------------------------------------------------------------------
# Porting from PyTorch (optional).


@pytest.mark.parametrize("kind", ["lstm", "gru", "tanh"])
def test_weights_port_from_pytorch(kind):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module_class = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "tanh": torch.nn.RNN}[kind]
    module = module_class(3, 4, batch_first=True, bidirectional=True).double()
    x = np.random.default_rng(0).normal(size=(2, 5, 3))
    expected, _ = module(torch.from_numpy(x))

    def port(suffix):
        weights = {name: getattr(module, f"{name}_l0{suffix}").detach().numpy()
                   for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        params = {"wi": weights["weight_ih"].T, "wh": weights["weight_hh"].T}
        if kind == "gru":
            params.update(bi=weights["bias_ih"], bh=weights["bias_hh"])
        else:
            params["b"] = weights["bias_ih"] + weights["bias_hh"]
        return {name: jnp.asarray(value, jnp.float32) for name, value in params.items()}

    layer = Bidirectional(CONSTRUCTORS[kind](4, return_sequences=True))
    _, _, state = layer.init(jax.random.key(0), (5, 3))
    y, _ = layer.apply({"forward": port(""), "backward": port("_reverse")}, state, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(y, expected.detach().numpy(), rtol=1e-5, atol=1e-5)
