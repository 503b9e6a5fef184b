"""Gradient accumulation, skipping non-finite steps, and clipping, against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn.optim as jo

PARAMS = {"w": jnp.array([1.0, -2.0, 0.5])}


def test_accumulation_equals_one_step_on_the_mean_gradient():
    micro_batches = [jnp.array([1.0, 2.0, 3.0]), jnp.array([-1.0, 0.0, 5.0]), jnp.array([3.0, 1.0, -2.0])]
    accumulated = jo.accumulate_gradients(jo.adam(0.1), 3)
    state = accumulated.init(PARAMS)
    outputs = []
    for g in micro_batches:
        updates, state = accumulated.update({"w": g}, state, PARAMS)
        outputs.append(updates["w"])
    # Calls 1 and 2 emit nothing; call 3 emits Adam's first step on the mean (a sign step).
    np.testing.assert_array_equal(outputs[0], np.zeros(3))
    np.testing.assert_array_equal(outputs[1], np.zeros(3))
    mean = sum(micro_batches) / 3
    np.testing.assert_allclose(outputs[2], -0.1 * np.sign(mean), rtol=1e-5)
    assert int(state.micro_step) == 0
    assert int(state.inner_state[0].count) == 1
    np.testing.assert_array_equal(state.mean_gradient["w"], np.zeros(3))


def test_accumulation_holds_the_inner_state_between_steps():
    accumulated = jo.accumulate_gradients(jo.sgd(1.0, momentum=0.5), 2)
    state = accumulated.init(PARAMS)
    _, state = accumulated.update({"w": jnp.ones(3)}, state, PARAMS)
    np.testing.assert_array_equal(state.inner_state[0].trace["w"], np.zeros(3))
    assert int(state.micro_step) == 1


def test_skip_non_finite_skips_and_counts():
    optimizer = jo.skip_non_finite(jo.sgd(0.1, momentum=0.9))
    state = optimizer.init(PARAMS)
    good = {"w": jnp.array([1.0, 1.0, 1.0])}
    bad = {"w": jnp.array([1.0, jnp.nan, 1.0])}
    infinite = {"w": jnp.array([jnp.inf, 0.0, 1.0])}
    updates, state = optimizer.update(good, state, PARAMS)
    trace_after_good = state.inner_state[0].trace["w"]
    for grads in (bad, infinite):
        updates, state = optimizer.update(grads, state, PARAMS)
        np.testing.assert_array_equal(updates["w"], np.zeros(3))
        np.testing.assert_array_equal(state.inner_state[0].trace["w"], trace_after_good)
    assert (int(state.skipped), int(state.consecutive_skips)) == (2, 2)
    updates, state = optimizer.update(good, state, PARAMS)
    np.testing.assert_allclose(updates["w"], -0.1 * (1.0 + 0.9 * 1.0) * np.ones(3), rtol=1e-6)
    assert (int(state.skipped), int(state.consecutive_skips)) == (2, 0)


def test_skip_non_finite_under_jit():
    optimizer = jo.skip_non_finite(jo.adam(0.1))
    update = jax.jit(optimizer.update)
    state = optimizer.init(PARAMS)
    _, state = update({"w": jnp.full(3, jnp.nan)}, state, PARAMS)
    _, state = update({"w": jnp.ones(3)}, state, PARAMS)
    assert int(state.skipped) == 1
    assert int(state.inner_state[0].count) == 1


def test_clip_elementwise():
    updates, _ = jo.clip(1.5).update({"w": jnp.array([-3.0, 0.5, 2.0])}, None)
    np.testing.assert_array_equal(updates["w"], [-1.5, 0.5, 1.5])


def test_clip_by_global_norm_rescales_all_leaves_together():
    grads = {"a": jnp.array([3.0]), "b": jnp.array([0.0, 4.0])}  # global norm 5
    clipped, _ = jo.clip_by_global_norm(1.0).update(grads, jo.EmptyState())
    np.testing.assert_allclose(clipped["a"], [0.6], rtol=1e-6)
    np.testing.assert_allclose(clipped["b"], [0.0, 0.8], rtol=1e-6)
    untouched, _ = jo.clip_by_global_norm(10.0).update(grads, jo.EmptyState())
    np.testing.assert_array_equal(untouched["b"], grads["b"])
    assert float(jo.global_norm(grads)) == pytest.approx(5.0)
