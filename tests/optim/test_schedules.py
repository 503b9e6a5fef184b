"""Schedules: closed forms worked out by hand, optax's values at every step, and when they are read."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn.optim as jo

COUNTS = jnp.arange(0, 1300, dtype=jnp.int32)

PAIRS = [
    ("constant", lambda m: m.constant_schedule(0.3)),
    ("linear", lambda m: m.linear_schedule(1.0, 0.1, 500)),
    ("linear-begin", lambda m: m.linear_schedule(0.0, 2.0, 300, transition_begin=100)),
    ("polynomial", lambda m: m.polynomial_schedule(1.0, 0.01, 2.0, 800, 50)),
    ("exponential", lambda m: m.exponential_decay(1.0, 100, 0.5)),
    ("exponential-staircase", lambda m: m.exponential_decay(1.0, 100, 0.5, transition_begin=20, staircase=True)),
    ("exponential-end", lambda m: m.exponential_decay(1.0, 100, 0.5, end_value=0.05)),
    ("exponential-growth", lambda m: m.exponential_decay(0.1, 100, 2.0, end_value=1.0)),
    ("cosine", lambda m: m.cosine_decay_schedule(1.0, 1000)),
    ("cosine-alpha", lambda m: m.cosine_decay_schedule(0.5, 700, alpha=0.1, exponent=2.0)),
    ("warmup-cosine", lambda m: m.warmup_cosine_decay_schedule(0.0, 1.0, 100, 1000, end_value=1e-3)),
    ("piecewise", lambda m: m.piecewise_constant_schedule(1.0, {300: 0.1, 800: 0.5})),
]


@pytest.mark.parametrize("name,make", PAIRS, ids=[p[0] for p in PAIRS])
def test_matches_optax_at_every_step(name, make):
    ours = jax.vmap(make(jo))(COUNTS)
    with jax.numpy_dtype_promotion("standard"):
        reference = jax.vmap(lambda c: jnp.asarray(make(optax)(c), jnp.float32))(COUNTS)
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-7)


def test_closed_forms_by_hand():
    assert float(jo.linear_schedule(1.0, 0.0, 10)(jnp.int32(5))) == pytest.approx(0.5)
    assert float(jo.linear_schedule(1.0, 0.0, 10)(jnp.int32(50))) == pytest.approx(0.0)
    assert float(jo.exponential_decay(2.0, 10, 0.5)(jnp.int32(20))) == pytest.approx(0.5)
    assert float(jo.exponential_decay(2.0, 10, 0.5, staircase=True)(jnp.int32(19))) == pytest.approx(1.0)
    assert float(jo.cosine_decay_schedule(1.0, 100)(jnp.int32(50))) == pytest.approx(0.5)
    assert float(jo.cosine_decay_schedule(1.0, 100, alpha=0.2)(jnp.int32(100))) == pytest.approx(0.2)
    warmup = jo.warmup_cosine_decay_schedule(0.0, 1.0, 10, 110, end_value=0.0)
    assert float(warmup(jnp.int32(5))) == pytest.approx(0.5)
    assert float(warmup(jnp.int32(10))) == pytest.approx(1.0)
    assert float(warmup(jnp.int32(60))) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))
    piecewise = jo.piecewise_constant_schedule(1.0, {10: 0.1, 20: 0.1})
    assert [float(piecewise(jnp.int32(c))) for c in (9, 10, 19, 20)] == pytest.approx([1.0, 0.1, 0.1, 0.01])


def test_first_step_uses_schedule_at_zero():
    # sgd on f(x) = x: the gradient is 1, so each step moves x by exactly -schedule(t).
    schedule = jo.piecewise_constant_schedule(1.0, {1: 0.5, 2: 0.1})
    optimizer = jo.sgd(schedule)
    params = {"x": jnp.zeros(())}
    state = optimizer.init(params)
    moves = []
    for _ in range(3):
        updates, state = optimizer.update({"x": jnp.ones(())}, state, params)
        moves.append(float(updates["x"]))
    assert moves == pytest.approx([-1.0, -0.5, -0.05])


def test_schedules_are_jit_safe_at_large_counts():
    # int32 counts near the limit must not overflow inside the schedule.
    count = jnp.int32(2**31 - 10)
    value = jax.jit(jo.cosine_decay_schedule(1.0, 10**9, alpha=0.1))(count)
    assert float(value) == pytest.approx(0.1)


@pytest.mark.parametrize("make,error,message", [
    (lambda: jo.linear_schedule(1.0, 0.0, 0), ValueError, r"`transition_steps` \(=0\) must be a positive int"),
    (lambda: jo.linear_schedule(1.0, 0.0, 10.5), TypeError, "`transition_steps` must be a positive int"),
    (lambda: jo.exponential_decay(1.0, 10, -0.5), ValueError, r"`decay_rate` \(=-0.5\) must be positive"),
    (lambda: jo.cosine_decay_schedule(1.0, 0), ValueError, r"`decay_steps` \(=0\) must be a positive int"),
    (lambda: jo.warmup_cosine_decay_schedule(0.0, 1.0, 100, 50), ValueError, "must exceed `warmup_steps`"),
    (lambda: jo.piecewise_constant_schedule(1.0, {10: -0.1}), ValueError,
     r"`boundaries_and_scales\[10\]` \(=-0.1\) must be non-negative"),
    (lambda: jo.constant_schedule("fast"), TypeError, "`value` must be a real number"),
])
def test_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()
