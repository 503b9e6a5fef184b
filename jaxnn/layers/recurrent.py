"""Recurrent layers: SimpleRNN, LSTM and GRU over ``(*batch, time, features)``, and the
Bidirectional combinator that runs one of them both ways along time.

The formulas are PyTorch's (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``), so weights port by transposing
and, for the LSTM, summing PyTorch's two biases. Each layer runs one ``lax.scan`` over time whose
body holds only ``h @ wh``: the input projection is done for all time steps at once before it. Its
derivative is written out (a ``custom_jvp``) so that the gradients of ``wi`` and ``wh`` are one
matmul each after the backward loop instead of a small one in every step; forward- and reverse-mode
differentiation both work, to any order.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

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
    check_min_ndim,
    check_param_dtype,
    child_scope,
    compute_dtype,
    init_child,
    make_layer,
    split_key,
)
from jaxnn.layers.dense import _check_positive_int

# --------------------------------------------------------------------------------------------
# Cells. Each holds the step of one recurrence and its tangent (forward-mode derivative) given the
# part of the tangent that does not depend on the previous step, which is computed for all steps at
# once outside the loop.
#
# Arrays inside are time-major, with ``N`` the flattened batch: states are ``(N, H)`` and the
# projected inputs one ``(T, N, H)`` array per gate. Separate arrays rather than slices of one
# ``(T, N, G*H)`` array: XLA's CPU backend vectorizes badly an elementwise loop that slices a
# dynamically indexed operand, which made the forward step several times slower.


def _split_gates(a: jax.Array, gates: int) -> list[jax.Array]:
    return jnp.split(a, gates, axis=-1)


def _sigmoid_tangent(t: jax.Array, s: jax.Array) -> jax.Array:
    # t * s * (1 - s), written so that every operation takes a tangent: an operation on residuals
    # alone would be split off by JAX's partial evaluation into a separate loop under jax.grad.
    ts = t * s
    return ts - ts * s


def _tanh_tangent(t: jax.Array, y: jax.Array) -> jax.Array:
    # t * (1 - y^2), every operation taking a tangent (see _sigmoid_tangent).
    return t - (t * y) * y


class _SimpleCell:
    """``h' = act(x_t wi + b + h wh)``; residual: ``act'`` at each step."""

    gates = 1
    hidden_bias = False

    def __init__(self, nonlinearity: str):
        self.nonlinearity = nonlinearity

    def step(self, xs_t, carry, wh, biases):
        (x,), (h,), (b,) = xs_t, carry, biases
        pre = x + h @ wh + b
        if self.nonlinearity == "tanh":
            h = jnp.tanh(pre)
            derivative = 1 - h * h
        else:
            h = jnp.maximum(pre, jnp.zeros((), pre.dtype))
            derivative = (pre > 0).astype(pre.dtype)
        return (h,), (derivative,)

    def tangent_step(self, hoisted_t, dcarry, wh, residuals_t, hprev_t):
        (e,), (dh,), (derivative,) = hoisted_t, dcarry, residuals_t
        return ((e + dh @ wh) * derivative,)


class _LSTMCell:
    """PyTorch's LSTM step; residuals: the four gate activations, ``c_{t-1}`` and ``tanh(c_t)``."""

    gates = 4
    hidden_bias = False

    def step(self, xs_t, carry, wh, biases):
        (h, c), (b,) = carry, biases
        pre_i, pre_f, pre_g, pre_o = [
            x + a + b_gate for x, a, b_gate in zip(xs_t, _split_gates(h @ wh, 4), _split_gates(b, 4))
        ]
        i, f, o = lax.logistic(pre_i), lax.logistic(pre_f), lax.logistic(pre_o)
        g = jnp.tanh(pre_g)
        c_new = f * c + i * g
        tanh_c = jnp.tanh(c_new)
        return (o * tanh_c, c_new), (i, f, g, o, c, tanh_c)

    def tangent_step(self, hoisted_t, dcarry, wh, residuals_t, hprev_t):
        (e,), (dh, dc) = hoisted_t, dcarry
        i, f, g, o, c_prev, tanh_c = residuals_t
        t_i, t_f, t_g, t_o = _split_gates(e + dh @ wh, 4)
        di, df, do = _sigmoid_tangent(t_i, i), _sigmoid_tangent(t_f, f), _sigmoid_tangent(t_o, o)
        dg = _tanh_tangent(t_g, g)
        dc_new = df * c_prev + f * dc + di * g + i * dg
        dh_new = do * tanh_c + _tanh_tangent(dc_new, tanh_c) * o
        return dh_new, dc_new


class _GRUCell:
    """PyTorch's GRU step; residuals: ``r``, ``z``, ``n`` and ``h_{t-1} W_hn + b_hn`` (and ``h_{t-1}``).

    The hidden side's tangent is kept apart from the input side's (``hidden_bias``), as its n block
    is multiplied by ``r``.
    """

    gates = 3
    hidden_bias = True

    def step(self, xs_t, carry, wh, biases):
        (x_r, x_z, x_n), (h,), (bi, bh) = xs_t, carry, biases
        bi_r, bi_z, bi_n = _split_gates(bi, 3)
        h_r, h_z, h_n = [a + b for a, b in zip(_split_gates(h @ wh, 3), _split_gates(bh, 3))]
        r, z = lax.logistic(x_r + bi_r + h_r), lax.logistic(x_z + bi_z + h_z)
        n = jnp.tanh(x_n + bi_n + r * h_n)
        return (n + z * (h - n),), (r, z, n, h_n)

    def tangent_step(self, hoisted_t, dcarry, wh, residuals_t, h_prev):
        (e_input, e_hidden), (dh,), (r, z, n, h_n) = hoisted_t, dcarry, residuals_t
        i_r, i_z, i_n = _split_gates(e_input, 3)
        h_r, h_z, h_n_tangent = _split_gates(e_hidden + dh @ wh, 3)
        dr, dz = _sigmoid_tangent(i_r + h_r, r), _sigmoid_tangent(i_z + h_z, z)
        dn = _tanh_tangent(i_n + dr * h_n + r * h_n_tangent, n)
        return (dn + dz * h_prev - dz * n + z * (dh - dn),)


_CELLS = {"tanh": _SimpleCell("tanh"), "relu": _SimpleCell("relu"), "lstm": _LSTMCell(), "gru": _GRUCell()}


# --------------------------------------------------------------------------------------------
# The recurrence: a scan with a hand-written tangent.


def _rows(a: jax.Array) -> jax.Array:
    """A time-major ``(T, N, K)`` array as ``(T*N, K)`` rows, for one matmul over all steps."""
    return a.reshape(a.shape[0] * a.shape[1], a.shape[2])


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2, 3))
def _recurrence(cell, reverse: bool, unroll: int, return_sequences: bool, x, wi, wh, biases, carry0):
    """Runs ``cell`` over the time-major ``x (T, N, in)``.

    Returns all hidden states ``(T, N, H)`` or the last one ``(N, H)``.
    """
    xs = _project(x, wi, cell.gates)

    def step(carry, xs_t):
        carry, _ = cell.step(xs_t, carry, wh, biases)
        return carry, carry[0] if return_sequences else None

    carry, hs = lax.scan(step, carry0, xs, reverse=reverse, unroll=unroll)
    return hs if return_sequences else carry[0]


def _project(x, wi, gates: int) -> list[jax.Array]:
    """``x @ wi`` for all steps, one ``(T, N, H)`` array per gate.

    A matmul per gate writes each gate's array directly, where one matmul followed by slicing
    would copy the whole result once more.
    """
    time, batch, _ = x.shape
    rows = _rows(x)
    return [(rows @ w_gate).reshape(time, batch, w_gate.shape[1]) for w_gate in _split_gates(wi, gates)]


def _sum_terms(terms, shape, dtype) -> jax.Array:
    """The sum of the terms that are not None (tangents known to be zero are left out)."""
    terms = [term for term in terms if term is not None]
    if not terms:
        return jnp.zeros(shape, dtype)
    return functools.reduce(jnp.add, terms)


@functools.partial(_recurrence.defjvp, symbolic_zeros=True)
def _recurrence_jvp(cell, reverse, unroll, return_sequences, primals, tangents):
    x, wi, wh, biases, carry0 = primals
    # Tangents known to be zero (inputs not differentiated, such as the data x or a default initial
    # state) become None, and the terms they would enter are left out rather than computed as zeros.
    dx, dwi, dwh, dbiases, dcarry0 = jax.tree_util.tree_map(
        lambda t: None if isinstance(t, SymbolicZero) else t, tangents,
        is_leaf=lambda t: isinstance(t, SymbolicZero),
    )
    time, batch, _ = x.shape
    width = wh.shape[1]
    xs = _project(x, wi, cell.gates)

    def step(carry, xs_t):
        new_carry, residuals = cell.step(xs_t, carry, wh, biases)
        return new_carry, (carry[0], new_carry[0] if return_sequences else None, residuals)

    carry, (hprev, hs, residuals) = lax.scan(step, carry0, xs, reverse=reverse, unroll=unroll)

    # The terms of the tangent that do not depend on the previous step's tangent, for all steps at
    # once. Under jax.grad each becomes a single matmul after the backward loop: the gradients of
    # wi and wh are one (in, T*N) @ (T*N, G*H) product each, not T small ones accumulated in it.
    def matmul(a, b):
        return None if a is None or b is None else _rows(a) @ b

    def bias(db):
        return None if db is None else jnp.broadcast_to(db, (time * batch, width))

    input_side = [matmul(dx, wi), matmul(x, dwi), bias(dbiases[0])]
    hidden_side = [matmul(hprev, dwh)] + ([bias(dbiases[1])] if cell.hidden_bias else [])
    rows_shape = (time * batch, width)
    if cell.hidden_bias:
        hoisted = (_sum_terms(input_side, rows_shape, x.dtype), _sum_terms(hidden_side, rows_shape, x.dtype))
    else:
        hoisted = (_sum_terms(input_side + hidden_side, rows_shape, x.dtype),)
    hoisted = tuple(part.reshape(time, batch, width) for part in hoisted)
    dcarry0 = tuple(jnp.zeros_like(part) if tangent is None else tangent
                    for part, tangent in zip(carry0, dcarry0))

    def tangent_step(dcarry, inputs):
        hoisted_t, residuals_t, hprev_t = inputs
        dcarry = cell.tangent_step(hoisted_t, dcarry, wh, residuals_t, hprev_t)
        return dcarry, dcarry[0] if return_sequences else None

    dcarry, dhs = lax.scan(tangent_step, dcarry0, (hoisted, residuals, hprev), reverse=reverse, unroll=unroll)
    if return_sequences:
        return hs, dhs
    return carry[0], dcarry[0]


# --------------------------------------------------------------------------------------------
# Layers.


def _check_input(x: Any, in_features: int) -> jax.Array:
    x = check_array(x)
    check_floating(x)
    if x.ndim < 2:
        raise LayerValueError(f"expected an input of shape (*batch, time, features), got {x.shape}")
    if x.shape[-1] != in_features:
        raise LayerValueError(f"expected last axis (features) {in_features}, got {x.shape[-1]}")
    if x.shape[-2] == 0:
        raise LayerValueError(f"expected at least one time step, got an input of shape {x.shape}")
    return x


def _check_state_array(value: Any, expected: tuple[int, ...], what: str) -> jax.Array:
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise LayerTypeError(f"{what} must be an array, got {type(value).__name__}")
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise LayerTypeError(f"{what} must be floating-point, got dtype {value.dtype}")
    if tuple(value.shape) != expected:
        raise LayerValueError(f"{what} has shape {tuple(value.shape)}, expected {expected} (*batch, hidden)")
    return value


def _recurrent_layer(name: str, constructor, cell_name: str, hidden: int, options: dict) -> Layer:
    """Builds SimpleRNN, LSTM and GRU, which differ only in their cell and bias layout.

    ``options`` are the constructor's keyword arguments, kept to build the reversed copy that
    :func:`Bidirectional` needs.
    """
    label = constructor.__name__
    hidden = _check_positive_int(hidden, "hidden", label)
    return_sequences = check_bool(options["return_sequences"], "return_sequences", label)
    reverse = check_bool(options["reverse"], "reverse", label)
    unroll = _check_positive_int(options["unroll"], "unroll", label)
    wi_init, wh_init, b_init = options["wi_init"], options["wh_init"], options["b_init"]
    check_initializer(wi_init, "wi_init", label)
    check_initializer(wh_init, "wh_init", label)
    check_initializer(b_init, "b_init", label)
    param_dtype = check_param_dtype(options["param_dtype"], label)
    forget_bias = options.get("forget_bias", 0.0)
    cell = _CELLS[cell_name]
    gates = cell.gates
    width = gates * hidden
    is_gru, is_lstm = cell_name == "gru", cell_name == "lstm"
    bias_names = ("bi", "bh") if is_gru else ("b",)

    def init(key, input_shape):
        shape = as_shape(input_shape)
        check_min_ndim(shape, 2, "(time, features)")
        wi_key, wh_key, b_key = jax.random.split(key, 3)
        # One orthogonal (H, H) block per gate, as Flax does: an orthogonal (H, G*H) matrix would
        # only make each row a unit vector, leaving every gate's own map non-orthogonal.
        wh = jnp.concatenate(
            [wh_init(gate_key, (hidden, hidden), param_dtype) for gate_key in jax.random.split(wh_key, gates)],
            axis=1,
        )
        params = {"wi": wi_init(wi_key, (shape[-1], width), param_dtype), "wh": wh}
        for bias_name, bias_key in zip(bias_names, jax.random.split(b_key, len(bias_names))):
            params[bias_name] = b_init(bias_key, (width,), param_dtype)
        if is_lstm and forget_bias:
            params["b"] = params["b"].at[hidden:2 * hidden].add(jnp.asarray(forget_bias, param_dtype))
        output_shape = shape[:-1] + (hidden,) if return_sequences else shape[:-2] + (hidden,)
        return output_shape, params, {}

    def apply(params, state, x, *, key=None, train=False, initial_state=None):
        del key, train
        wi, wh, *biases = check_entries(params, ("wi", "wh") + bias_names)
        wi = check_entry(wi, "params['wi']", ("in", width))
        wh = check_entry(wh, "params['wh']", (hidden, width))
        biases = [check_entry(b, f"params['{n}']", (width,)) for b, n in zip(biases, bias_names)]
        x = _check_input(x, wi.shape[0])
        batch_shape, (time, features) = x.shape[:-2], x.shape[-2:]
        dtype = compute_dtype(x.dtype, wi.dtype, wh.dtype, *[b.dtype for b in biases])
        carry0 = _initial_carry(initial_state, batch_shape, dtype)
        batch = int(np.prod(batch_shape))
        # Time-major, batch flattened: scan walks the leading axis.
        x_time_major = jnp.swapaxes(x.reshape(batch, time, features), 0, 1).astype(dtype)
        # Biases as (1, G*H) rows, to broadcast against (N, G*H) without rank promotion.
        biases = tuple(b.astype(dtype)[None, :] for b in biases)
        carry0 = tuple(part.reshape(batch, hidden) for part in carry0)
        y = _recurrence(cell, reverse, unroll, return_sequences, x_time_major,
                        wi.astype(dtype), wh.astype(dtype), biases, carry0)
        if return_sequences:
            return jnp.swapaxes(y, 0, 1).reshape(batch_shape + (time, hidden)), state
        return y.reshape(batch_shape + (hidden,)), state

    def _initial_carry(initial_state, batch_shape, dtype):
        expected = tuple(batch_shape) + (hidden,)
        if initial_state is None:
            zeros = jnp.zeros(expected, dtype)
            return (zeros, zeros) if is_lstm else (zeros,)
        if is_lstm:
            if not isinstance(initial_state, (tuple, list)) or len(initial_state) != 2:
                raise LayerTypeError(
                    f"initial_state of an LSTM must be a tuple (h, c), got {type(initial_state).__name__}"
                )
            parts = [_check_state_array(part, expected, f"initial_state[{i}] ({'hc'[i]})")
                     for i, part in enumerate(initial_state)]
        else:
            parts = [_check_state_array(initial_state, expected, "initial_state")]
        return tuple(part.astype(dtype) for part in parts)

    layer = _layer_with_options(name, init, apply)
    # Bidirectional builds the reversed copy from the same settings.
    layer.apply.reversed_copy = lambda: constructor(hidden, **{**options, "reverse": not reverse})
    layer.apply.reverse = reverse
    return layer


def _layer_with_options(name: str, init, apply) -> Layer:
    """``make_layer`` for an ``apply`` with keyword options beyond ``key`` and ``train``.

    ``make_layer`` passes only ``key`` and ``train`` on; the options are bound to ``apply`` for
    each call instead, so the key/train checks and error paths stay those of every layer.
    """
    layer = make_layer(name, init, apply)

    @functools.wraps(apply)
    def apply_with_options(params, state, x, *, key=None, train=False, **options):
        bound = functools.partial(apply, **options)
        return make_layer(name, init, bound).apply(params, state, x, key=key, train=train)

    return Layer(name, layer.init, apply_with_options)


def SimpleRNN(
    hidden: int,
    *,
    nonlinearity: str = "tanh",
    return_sequences: bool = False,
    reverse: bool = False,
    unroll: int = 1,
    wi_init=initializers.glorot_uniform(),
    wh_init=initializers.orthogonal(),
    b_init=initializers.zeros(),
    param_dtype=jnp.float32,
) -> Layer:
    """An Elman recurrent layer, PyTorch's ``nn.RNN``: for each time step ``t``::

        h_t = act(x_t @ wi + b + h_{t-1} @ wh),      act = tanh (or relu), h_{-1} = 0

    Params ``wi (in, H)``, ``wh (H, H)``, ``b (H,)``. Input ``(*batch, time, in)`` with any number
    of leading batch axes (zero included); output the last state ``(*batch, H)`` or, with
    ``return_sequences=True``, every state ``(*batch, time, H)``.

    ``apply(params, state, x, *, key=None, train=False, initial_state=None)``: ``initial_state`` is
    ``h_{-1}``, of shape ``(*batch, H)``; zeros by default.

    With ``reverse=True`` the sequence is processed from the last step to the first: ``h_t`` depends
    on ``x_t, ..., x_{T-1}``; the last state returned is then ``h_0``, and the sequence output
    stays aligned with the input (its position ``t`` holds ``h_t``).

    Porting from PyTorch: ``wi = weight_ih_l0.T``, ``wh = weight_hh_l0.T``,
    ``b = bias_ih_l0 + bias_hh_l0``.

    Args:
      hidden: size ``H`` of the hidden state.
      nonlinearity: ``"tanh"`` or ``"relu"``.
      return_sequences: return every hidden state instead of the last.
      reverse: run from the last time step to the first.
      unroll: time steps per iteration of the compiled loop (``lax.scan``'s ``unroll``); it changes
        speed, not the formulas. On the CPU 1 was fastest (LSTM and GRU, H=128, T=40, batch 64).
      wi_init, b_init: initializers ``(key, shape, dtype) -> array``; ``wi`` defaults to Glorot
        uniform over ``(in, H)``, as Keras.
      wh_init: initializer of ``wh``, orthogonal by default.
      param_dtype: dtype of the parameters. The recurrence runs in the promoted dtype of the input
        and the parameters.
    """
    if nonlinearity not in ("tanh", "relu"):
        raise LayerValueError(f"SimpleRNN: `nonlinearity` must be 'tanh' or 'relu', got {nonlinearity!r}")
    options = {"nonlinearity": nonlinearity, "return_sequences": return_sequences, "reverse": reverse,
               "unroll": unroll, "wi_init": wi_init, "wh_init": wh_init, "b_init": b_init,
               "param_dtype": param_dtype}
    return _recurrent_layer("simple_rnn", SimpleRNN, nonlinearity, hidden, options)


def LSTM(
    hidden: int,
    *,
    return_sequences: bool = False,
    reverse: bool = False,
    unroll: int = 1,
    forget_bias: float = 0.0,
    wi_init=initializers.glorot_uniform(),
    wh_init=initializers.orthogonal(),
    b_init=initializers.zeros(),
    param_dtype=jnp.float32,
) -> Layer:
    """A long short-term memory layer, PyTorch's ``nn.LSTM``: for each time step ``t``::

        [a_i, a_f, a_g, a_o] = x_t @ wi + h_{t-1} @ wh + b      (split in four blocks of H)
        i = sigmoid(a_i)    f = sigmoid(a_f)    g = tanh(a_g)    o = sigmoid(a_o)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)                                       h_{-1} = c_{-1} = 0

    Params ``wi (in, 4H)``, ``wh (H, 4H)``, ``b (4H,)``, gates in PyTorch's order i, f, g, o.
    Input ``(*batch, time, in)`` with any number of leading batch axes (zero included); output the
    last hidden state ``h`` ``(*batch, H)`` or, with ``return_sequences=True``, every ``h_t``
    ``(*batch, time, H)``.

    ``apply(params, state, x, *, key=None, train=False, initial_state=None)``: ``initial_state`` is
    the tuple ``(h_{-1}, c_{-1})``, each ``(*batch, H)``; zeros by default. With ``reverse=True`` the
    sequence runs from the last step to the first, as in :func:`SimpleRNN`.

    Porting from PyTorch: ``wi = weight_ih_l0.T``, ``wh = weight_hh_l0.T``,
    ``b = bias_ih_l0 + bias_hh_l0`` (the two biases only ever appear summed).

    Args:
      hidden: size ``H`` of the hidden and cell states.
      return_sequences, reverse, unroll: as in :func:`SimpleRNN`.
      forget_bias: added to the forget-gate block of ``b`` at initialization (Jozefowicz et al. use
        1.0); the formula is unchanged, so trained weights still port to PyTorch.
      wi_init, b_init: initializers; ``wi`` defaults to Glorot uniform over ``(in, 4H)``, as Keras.
      wh_init: initializer called once per gate with shape ``(H, H)``; orthogonal by default.
      param_dtype: dtype of the parameters.
    """
    if isinstance(forget_bias, bool) or not isinstance(forget_bias, numbers.Real):
        raise LayerTypeError(f"LSTM: `forget_bias` must be a real number, got {forget_bias!r}")
    if not math.isfinite(forget_bias):
        raise LayerValueError(f"LSTM: `forget_bias` (={forget_bias}) must be finite")
    options = {"return_sequences": return_sequences, "reverse": reverse, "unroll": unroll,
               "forget_bias": forget_bias, "wi_init": wi_init, "wh_init": wh_init, "b_init": b_init,
               "param_dtype": param_dtype}
    return _recurrent_layer("lstm", LSTM, "lstm", hidden, options)


def GRU(
    hidden: int,
    *,
    return_sequences: bool = False,
    reverse: bool = False,
    unroll: int = 1,
    wi_init=initializers.glorot_uniform(),
    wh_init=initializers.orthogonal(),
    b_init=initializers.zeros(),
    param_dtype=jnp.float32,
) -> Layer:
    """A gated recurrent unit layer, PyTorch's ``nn.GRU``: for each time step ``t``::

        [i_r, i_z, i_n] = x_t @ wi + bi          [h_r, h_z, h_n] = h_{t-1} @ wh + bh
        r = sigmoid(i_r + h_r)      z = sigmoid(i_z + h_z)
        n = tanh(i_n + r * h_n)
        h_t = (1 - z) * n + z * h_{t-1}                            h_{-1} = 0

    Params ``wi (in, 3H)``, ``wh (H, 3H)``, ``bi (3H,)``, ``bh (3H,)``, gates in PyTorch's order
    r, z, n. The two biases are kept apart because ``bh``'s n block is multiplied by ``r``. Input,
    output, ``initial_state`` (``h_{-1}``, ``(*batch, H)``) and ``reverse`` as in :func:`SimpleRNN`.

    Porting from PyTorch: ``wi = weight_ih_l0.T``, ``wh = weight_hh_l0.T``, ``bi = bias_ih_l0``,
    ``bh = bias_hh_l0``.

    Args:
      hidden: size ``H`` of the hidden state.
      return_sequences, reverse, unroll: as in :func:`SimpleRNN`.
      wi_init, b_init: initializers; ``wi`` defaults to Glorot uniform over ``(in, 3H)``, as Keras;
        ``b_init`` initializes both ``bi`` and ``bh``.
      wh_init: initializer called once per gate with shape ``(H, H)``; orthogonal by default.
      param_dtype: dtype of the parameters.
    """
    options = {"return_sequences": return_sequences, "reverse": reverse, "unroll": unroll,
               "wi_init": wi_init, "wh_init": wh_init, "b_init": b_init, "param_dtype": param_dtype}
    return _recurrent_layer("gru", GRU, "gru", hidden, options)


def Bidirectional(layer: Layer) -> Layer:
    """Runs a recurrent layer forward and backward in time and concatenates the two outputs.

    ``layer`` is a :func:`SimpleRNN`, :func:`LSTM` or :func:`GRU` with ``reverse=False``; a copy with
    the same settings and ``reverse=True`` runs backward. Params ``{"forward": ..., "backward": ...}``,
    each the params of that layer, initialized with different keys. The output is
    ``concatenate([forward(x), backward(x)], axis=-1)``, of last axis ``2H``:

    - with ``return_sequences=True``, position ``t`` holds ``[h_fwd_t, h_bwd_t]``, where
      ``h_fwd_t`` has read ``x_0 .. x_t`` and ``h_bwd_t`` has read ``x_{T-1} .. x_t``: outputs are
      aligned with input positions, as in PyTorch's ``bidirectional=True`` output;
    - otherwise it is the last state of each direction, ``[h_fwd_{T-1}, h_bwd_0]``, as PyTorch's
      ``h_n`` of the two directions (not ``output[:, -1]``, whose backward half has read only
      the last step).

    ``apply(params, state, x, *, key=None, train=False, initial_state=None)``: ``initial_state``,
    if given, is a dict ``{"forward": s, "backward": s}`` of the wrapped layer's initial states.

    Porting from PyTorch: the ``*_l0`` weights go to ``forward`` and the ``*_l0_reverse`` weights
    to ``backward``, each as the wrapped layer's docstring says.
    """
    if not isinstance(layer, Layer):
        raise LayerTypeError(f"Bidirectional expects a Layer, got {type(layer).__name__}")
    reversed_copy = getattr(layer.apply, "reversed_copy", None)
    if reversed_copy is None:
        raise LayerTypeError(
            f"Bidirectional expects a SimpleRNN, LSTM or GRU layer, got a layer named {layer.name!r}"
        )
    if layer.apply.reverse:
        raise LayerValueError("Bidirectional expects a layer with reverse=False; it makes the reversed copy")
    children = (("forward", layer), ("backward", reversed_copy()))

    def init(key, input_shape):
        shape = as_shape(input_shape)
        params, state = {}, {}
        for (child_name, child), child_key in zip(children, jax.random.split(key, 2)):
            output_shape, params[child_name], state[child_name] = init_child(child_name, child, child_key, shape)
        return tuple(output_shape[:-1]) + (2 * output_shape[-1],), params, state

    def apply(params, state, x, *, key=None, train=False, initial_state=None):
        for what, tree in (("params", params), ("state", state)):
            check_entries(tree, ("forward", "backward"), what)
        if initial_state is not None:
            check_entries(initial_state, ("forward", "backward"), "initial_state")
        outputs = []
        for (child_name, child), child_key in zip(children, split_key(key, 2)):
            with child_scope(child_name):
                y, _ = child.apply(
                    params[child_name], state[child_name], x, key=child_key, train=train,
                    initial_state=None if initial_state is None else initial_state[child_name],
                )
            outputs.append(y)
        return jnp.concatenate(outputs, axis=-1), state

    return _layer_with_options("bidirectional", init, apply)
