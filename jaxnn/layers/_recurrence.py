"""The recurrence behind SimpleRNN, LSTM and GRU: one ``lax.scan`` over time with a hand-written derivative.

Each layer runs one ``lax.scan`` over time whose body holds only ``h @ wh``: the input projection is
done for all time steps at once before it. Its derivative is written out (a ``custom_jvp``) so
that the gradients of ``wi`` and ``wh`` are one matmul each after the backward loop instead of a
small one in every step; forward- and reverse-mode differentiation both work, to any order.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

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


CELLS = {"tanh": _SimpleCell("tanh"), "relu": _SimpleCell("relu"), "lstm": _LSTMCell(), "gru": _GRUCell()}


# --------------------------------------------------------------------------------------------
# The recurrence: a scan with a hand-written tangent.


def _rows(a: jax.Array) -> jax.Array:
    """A time-major ``(T, N, K)`` array as ``(T*N, K)`` rows, for one matmul over all steps."""
    return a.reshape(a.shape[0] * a.shape[1], a.shape[2])


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2, 3))
def recurrence(cell, reverse: bool, unroll: int, return_sequences: bool, x, wi, wh, biases, carry0):
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


@functools.partial(recurrence.defjvp, symbolic_zeros=True)
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
