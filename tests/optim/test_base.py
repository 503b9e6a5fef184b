"""The optimizer interface: chain, apply_updates, interop with optax, state as a pytree, bad arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn.optim as jo

PARAMS = {"dense": {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.1, -0.1])}}
GRADS = {"dense": {"w": jnp.array([[0.2, 0.4], [-0.6, 0.8]]), "b": jnp.array([1.0, -1.0])}}

ALL_OPTIMIZERS = {
    "sgd": lambda: jo.sgd(0.1),
    "momentum": lambda: jo.sgd(0.1, momentum=0.9),
    "nesterov": lambda: jo.sgd(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: jo.adam(1e-3),
    "nadam": lambda: jo.adam(1e-3, nesterov=True),
    "adamw": lambda: jo.adamw(1e-3),
    "rmsprop": lambda: jo.rmsprop(1e-3),
    "rmsprop-centered": lambda: jo.rmsprop(1e-3, centered=True, momentum=0.9),
    "adagrad": lambda: jo.adagrad(1e-2),
    "accumulate": lambda: jo.accumulate_gradients(jo.adam(1e-3), 2),
    "skip-non-finite": lambda: jo.skip_non_finite(jo.sgd(0.1, momentum=0.9)),
    "clipped": lambda: jo.chain(jo.clip_by_global_norm(1.0), jo.clip(0.5), jo.adam(1e-3)),
}


def with_optax_promotion(function, *args):
    # optax mixes int32 counts with float hyperparameters, which strict promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        return function(*args)


def test_sgd_step_by_hand():
    updates, _ = jo.sgd(0.1).update(GRADS, jo.sgd(0.1).init(PARAMS), PARAMS)
    new = jo.apply_updates(PARAMS, updates)
    np.testing.assert_allclose(new["dense"]["w"], [[0.98, -2.04], [0.56, 2.92]], rtol=1e-6)
    np.testing.assert_allclose(new["dense"]["b"], [0.0, 0.0], atol=1e-7)


def test_momentum_by_hand():
    optimizer = jo.sgd(1.0, momentum=0.5)
    state = optimizer.init({"x": jnp.zeros(())})
    grads = [1.0, 2.0, -1.0]
    expected_buffers = [1.0, 2.5, 0.25]  # m_t = g_t + 0.5 m_{t-1}
    for g, m in zip(grads, expected_buffers):
        updates, state = optimizer.update({"x": jnp.asarray(g)}, state)
        np.testing.assert_allclose(updates["x"], -m, rtol=1e-6)


def test_first_adam_step_is_the_learning_rate_times_the_gradient_sign():
    # After bias correction m/sqrt(v) = g/|g| on the first step: a closed form for Adam.
    optimizer = jo.adam(0.01, eps=0.0)
    updates, _ = optimizer.update(GRADS, optimizer.init(PARAMS), PARAMS)
    for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(GRADS)):
        np.testing.assert_allclose(u, -0.01 * np.sign(g), rtol=1e-5)


def test_jaxnn_optimizer_inside_optax_chain():
    ours = optax.chain(optax.clip_by_global_norm(1.0), jo.adam(1e-2))
    reference = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
    for optimizer in (ours, reference):
        state = with_optax_promotion(optimizer.init, PARAMS)
        for _ in range(3):
            updates, state = with_optax_promotion(optimizer.update, GRADS, state, PARAMS)
        optimizer.result = updates
    for a, b in zip(jax.tree.leaves(ours.result), jax.tree.leaves(reference.result)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_optax_transformation_inside_jaxnn_chain():
    ours = jo.chain(optax.scale_by_adam(), jo.scale_by_learning_rate(1e-2))
    reference = optax.adam(1e-2)
    results = []
    for optimizer in (ours, reference):
        state = with_optax_promotion(optimizer.init, PARAMS)
        for _ in range(3):
            updates, state = with_optax_promotion(optimizer.update, GRADS, state, PARAMS)
        results.append(updates)
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_chain_checks_its_states():
    optimizer = jo.chain(jo.clip(1.0), jo.scale_by_adam(), jo.scale_by_learning_rate(0.1))
    state = optimizer.init(PARAMS)
    with pytest.raises(ValueError, match=r"chain of 3 transformations got a tuple of 2 \(EmptyState, ScaleByAdamState\)"):
        optimizer.update(GRADS, state[:2], PARAMS)
    with pytest.raises(TypeError, match="chain of 3 transformations expected a tuple of their states as its state, got dict"):
        optimizer.update(GRADS, {}, PARAMS)
    # One transformation's NamedTuple state is a tuple too, but not a chain's.
    with pytest.raises(TypeError, match="chain of 3 transformations expected a tuple .* got ScaleByAdamState"):
        optimizer.update(GRADS, state[1], PARAMS)


def test_chain_rejects_an_uncalled_factory():
    with pytest.raises(TypeError, match="argument 1 must be a gradient transformation.*got function.*adam"):
        jo.chain(jo.clip(1.0), jo.adam)


def test_apply_updates_keeps_the_parameter_dtype():
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    new = jo.apply_updates(params, {"w": jnp.full(3, 0.5, jnp.float32)})
    assert new["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(new["w"], np.float32), [1.5, 1.5, 1.5])


@pytest.mark.parametrize("name", sorted(ALL_OPTIMIZERS))
def test_state_is_a_pytree_of_arrays_with_int32_counts(name):
    state = ALL_OPTIMIZERS[name]().init(PARAMS)
    leaves = jax.tree.leaves(state)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)
    counts = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(state)
              if any(getattr(key, "name", None) in ("count", "micro_step", "skipped") for key in path)]
    assert counts, "every optimizer keeps a step count"
    assert all(count.dtype == jnp.int32 and count.shape == () for count in counts)
    # Flattened and rebuilt from its leaves alone, as a checkpoint restores it.
    rebuilt = jax.tree.unflatten(jax.tree.structure(state), [np.asarray(leaf) for leaf in leaves])
    optimizer = ALL_OPTIMIZERS[name]()
    expected, _ = optimizer.update(GRADS, state, PARAMS)
    restored, _ = optimizer.update(GRADS, rebuilt, PARAMS)
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(ALL_OPTIMIZERS))
def test_jitted_update_compiles_once(name):
    optimizer = ALL_OPTIMIZERS[name]()
    traces = []

    @jax.jit
    def step(params, state, grads):
        traces.append(None)
        updates, state = optimizer.update(grads, state, params)
        return jo.apply_updates(params, updates), state

    params, state = PARAMS, optimizer.init(PARAMS)
    for scale in (1.0, 0.5, 2.0):
        params, state = step(params, state, jax.tree.map(lambda g, scale=scale: scale * g, GRADS))
    assert len(traces) == 1


@pytest.mark.parametrize("name", sorted(ALL_OPTIMIZERS))
def test_bfloat16_params_with_zero_gradients_stay_finite(name):
    optimizer = ALL_OPTIMIZERS[name]()
    for dtype in (jnp.bfloat16, jnp.float16):
        params = jax.tree.map(lambda p, dtype=dtype: p.astype(dtype), PARAMS)
        zeros = jax.tree.map(jnp.zeros_like, params)
        state = optimizer.init(params)
        for _ in range(3):
            updates, state = optimizer.update(zeros, state, params)
            params = jo.apply_updates(params, updates)
        for leaf in jax.tree.leaves((params, state)):
            assert bool(jnp.all(jnp.isfinite(leaf))), (dtype, leaf)
        assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(params))


def test_vmap_runs_several_optimizers_in_one_program():
    # Three learning rates and three starting points, traced once.
    learning_rates = jnp.array([0.1, 0.01, 0.001])
    starts = jnp.array([1.0, 2.0, 3.0])

    def run(learning_rate, start):
        optimizer = jo.adam(learning_rate)
        params = {"x": start}
        state = optimizer.init(params)
        for _ in range(5):
            grads = jax.grad(lambda p: p["x"] ** 2)(params)
            updates, state = optimizer.update(grads, state, params)
            params = jo.apply_updates(params, updates)
        return params["x"]

    batched = jax.jit(jax.vmap(run))(learning_rates, starts)
    for i in range(3):
        np.testing.assert_allclose(batched[i], run(float(learning_rates[i]), starts[i]), rtol=1e-6)


def test_vmap_over_optimizer_states():
    optimizer = jo.sgd(0.1, momentum=0.9)
    stacked = jax.tree.map(lambda p: jnp.stack([p, 2 * p]), PARAMS)
    states = jax.vmap(optimizer.init)(stacked)
    grads = jax.tree.map(lambda g: jnp.stack([g, -g]), GRADS)
    updates, _ = jax.vmap(optimizer.update)(grads, states, stacked)
    np.testing.assert_allclose(updates["dense"]["w"][1], 0.1 * GRADS["dense"]["w"], rtol=1e-6)
    assert states[0].trace["dense"]["w"].shape == (2, 2, 2)


@pytest.mark.parametrize("make,message", [
    (lambda: jo.sgd(-0.1), r"sgd: learning_rate must be in \[0.0, inf\], got -0.1"),
    (lambda: jo.sgd(float("nan")), "sgd: learning_rate"),
    (lambda: jo.adam(-1e-3), "adam: learning_rate must be in"),
    (lambda: jo.adam(1e-3, b1=1.0), r"b1 must be in \[0.0, 1.0\), got 1.0"),
    (lambda: jo.adam(1e-3, b1=-0.1), r"b1 must be in \[0.0, 1.0\), got -0.1"),
    (lambda: jo.adam(1e-3, b2=1.5), "b2 must be in"),
    (lambda: jo.adam(1e-3, eps=-1.0), "eps must be in"),
    (lambda: jo.sgd(0.1, momentum=1.0), "momentum must be in"),
    (lambda: jo.sgd(0.1, nesterov=True), "nesterov=True needs momentum > 0"),
    (lambda: jo.adamw(1e-3, weight_decay=-1.0), "weight_decay must be in"),
    (lambda: jo.rmsprop(1e-3, decay=1.0), "decay must be in"),
    (lambda: jo.adagrad(1e-3, initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (lambda: jo.clip_by_global_norm(0.0), "max_norm must be positive"),
    (lambda: jo.clip(-1.0), "max_delta must be in"),
    (lambda: jo.accumulate_gradients(jo.sgd(0.1), 0), "every_k must be at least 1"),
])
def test_bad_hyperparameters_raise_value_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("make,message", [
    (lambda: jo.sgd("0.1"), "learning_rate must be a number or a schedule"),
    (lambda: jo.adam(1e-3, b1=None), "b1 must be a number, got NoneType"),
    (lambda: jo.accumulate_gradients(jo.sgd(0.1), 2.0), "every_k must be an int"),
    (lambda: jo.skip_non_finite(jo.sgd), "inner must be a gradient transformation"),
    (lambda: jo.scale(None), "^scale: step_size must be a number, got NoneType"),
    (lambda: jo.scale("0.5"), "^scale: step_size must be a number, got str"),
    (lambda: jo.scale(np.array("0.5")), "^scale: step_size must be a number, got an array of dtype <U3"),
    (lambda: jo.clip(None), "^clip: max_delta must be a number, got NoneType"),
    (lambda: jo.clip_by_global_norm([1.0]), "^clip_by_global_norm: max_norm must be a number, got list"),
    (lambda: jo.add_decayed_weights(None), "^add_decayed_weights: weight_decay must be a number or a schedule"),
    (lambda: jo.adam(1e-3, nesterov=1), "^scale_by_adam: nesterov must be True or False, got 1"),
    (lambda: jo.sgd(0.1, momentum=0.9, nesterov="yes"), "^sgd: nesterov must be True or False, got 'yes'"),
    (lambda: jo.rmsprop(1e-3, centered=None), "^scale_by_rms: centered must be True or False, got None"),
    (lambda: jo.rmsprop(1e-3, eps_in_sqrt=0), "^scale_by_rms: eps_in_sqrt must be True or False, got 0"),
    (lambda: jo.scale_by_learning_rate(0.1, flip_sign=None), "flip_sign must be True or False, got None"),
])
def test_bad_hyperparameter_types_raise_type_errors(make, message):
    with pytest.raises(TypeError, match=message):
        make()


INF = float("inf")


@pytest.mark.parametrize("make,message", [
    # An infinite learning rate, eps, decay or momentum makes every update inf or NaN.
    (lambda: jo.sgd(INF), "^sgd: learning_rate must be finite, got inf"),
    (lambda: jo.sgd(jnp.float32(INF)), "^sgd: learning_rate must be finite, got inf"),
    (lambda: jo.sgd(jnp.asarray(INF)), "^sgd: learning_rate must be finite, got inf"),
    (lambda: jo.sgd(10**400), "^sgd: learning_rate must be finite"),
    (lambda: jo.adam(INF), "^adam: learning_rate must be finite, got inf"),
    (lambda: jo.adam(1e-3, eps=INF), "^scale_by_adam: eps must be finite, got inf"),
    (lambda: jo.adam(1e-3, eps_root=INF), "^scale_by_adam: eps_root must be finite, got inf"),
    (lambda: jo.adamw(1e-3, weight_decay=INF), "^add_decayed_weights: weight_decay must be finite, got inf"),
    (lambda: jo.adamw(INF), "^adamw: learning_rate must be finite"),
    (lambda: jo.rmsprop(INF), "^rmsprop: learning_rate must be finite"),
    (lambda: jo.rmsprop(1e-3, eps=INF), "^scale_by_rms: eps must be finite, got inf"),
    (lambda: jo.rmsprop(1e-3, initial_scale=INF), "^scale_by_rms: initial_scale must be finite, got inf"),
    (lambda: jo.adagrad(INF), "^adagrad: learning_rate must be finite"),
    (lambda: jo.adagrad(1e-2, eps=INF), "^scale_by_rss: eps must be finite, got inf"),
    (lambda: jo.adagrad(1e-2, initial_accumulator_value=INF), "^scale_by_rss: initial_accumulator_value must be finite"),
    (lambda: jo.trace(INF), "^trace: momentum must be finite, got inf"),
    (lambda: jo.add_decayed_weights(INF), "^add_decayed_weights: weight_decay must be finite, got inf"),
    (lambda: jo.scale(INF), "^scale: step_size must be finite, got inf"),
    (lambda: jo.scale(-INF), "^scale: step_size must be finite, got -inf"),
    (lambda: jo.scale(float("nan")), "^scale: step_size must be in"),
    (lambda: jo.scale_by_learning_rate(INF), "^scale_by_learning_rate: learning_rate must be finite"),
])
def test_infinite_hyperparameters_raise_value_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_scale_takes_any_finite_step_size():
    # Negative included: scale(-lr) is a descent step, optax's convention.
    updates, _ = jo.scale(-0.5).update(GRADS, jo.scale(-0.5).init(PARAMS))
    for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(GRADS)):
        np.testing.assert_array_equal(u, -0.5 * np.asarray(g))


@pytest.mark.parametrize("clipper", [lambda: jo.clip(INF), lambda: jo.clip_by_global_norm(INF),
                                     lambda: jo.clip_by_global_norm(jnp.asarray(INF))])
def test_an_infinite_clipping_threshold_clips_nothing(clipper):
    # The identity, bit for bit: finite gradients, gradients whose global norm overflows float32
    # (3e38 squared is inf), and infinities and NaN themselves.
    optimizer = clipper()
    for grads in (GRADS, {"a": jnp.array([3e38, -3e38, 1.0]), "b": jnp.array([1e-30])},
                  {"a": jnp.array([INF, -INF, np.nan]), "b": jnp.array([2.0])}):
        updates, _ = jax.jit(optimizer.update)(grads, optimizer.init(grads))
        for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads)):
            np.testing.assert_array_equal(u, g)


STATE_CLASSES = {
    "scale_by_adam": (jo.scale_by_adam, jo.ScaleByAdamState),
    "trace": (lambda: jo.trace(0.9), jo.TraceState),
    "scale_by_rms": (jo.scale_by_rms, jo.ScaleByRmsState),
    "scale_by_rss": (jo.scale_by_rss, jo.ScaleByRssState),
    "scale_by_learning_rate": (lambda: jo.scale_by_learning_rate(0.1), jo.ScaleByScheduleState),
    "add_decayed_weights": (lambda: jo.add_decayed_weights(1e-4), jo.EmptyState),
    "clip": (lambda: jo.clip(1.0), jo.EmptyState),
    "clip_by_global_norm": (lambda: jo.clip_by_global_norm(1.0), jo.EmptyState),
    "scale": (lambda: jo.scale(0.5), jo.EmptyState),
    "identity": (jo.identity, jo.EmptyState),
    "accumulate_gradients": (lambda: jo.accumulate_gradients(jo.sgd(0.1), 2), jo.AccumulateGradientsState),
    "skip_non_finite": (lambda: jo.skip_non_finite(jo.sgd(0.1)), jo.SkipNonFiniteState),
}


@pytest.mark.parametrize("name", sorted(STATE_CLASSES))
def test_each_transformation_names_the_state_it_expects(name):
    make, state_class = STATE_CLASSES[name]
    transformation = make()
    assert isinstance(transformation.init(PARAMS), state_class)
    # Another transformation's state: a TraceState, or for those that keep a TraceState, Adam's.
    other_make = STATE_CLASSES["scale_by_adam" if state_class is jo.TraceState else "trace"][0]
    other_state = other_make().init(PARAMS)
    with pytest.raises(TypeError, match=rf"^{name}: expected a {state_class.__name__} as its state, "
                                        rf"got {type(other_state).__name__}; pass the state that this "
                                        "optimizer's init returned"):
        transformation.update(GRADS, other_state, PARAMS)


def test_adam_given_sgd_state_names_both_state_classes():
    adam, momentum = jo.adam(1e-3), jo.sgd(0.1, momentum=0.9)
    with pytest.raises(TypeError, match="^scale_by_adam: expected a ScaleByAdamState as its state, got TraceState"):
        adam.update(GRADS, momentum.init(PARAMS), PARAMS)
    with pytest.raises(ValueError, match=r"^chain of 2 transformations got a tuple of 1 \(ScaleByScheduleState\)"):
        adam.update(GRADS, jo.sgd(0.1).init(PARAMS), PARAMS)
    # optax's class of the same name is told apart by its module.
    with pytest.raises(TypeError, match=r"expected a jaxnn\.optim\.adam\.ScaleByAdamState as its state, got optax\."):
        jo.scale_by_adam().update(GRADS, with_optax_promotion(optax.scale_by_adam().init, PARAMS))


@pytest.mark.parametrize("name", sorted(ALL_OPTIMIZERS))
def test_the_state_of_another_optimizer_is_a_clear_error(name):
    optimizer = ALL_OPTIMIZERS[name]()
    own = jax.tree.structure(optimizer.init(PARAMS))
    for other_name, make_other in ALL_OPTIMIZERS.items():
        other_state = make_other().init(PARAMS)
        if jax.tree.structure(other_state) == own:  # the same kinds of state: interchangeable
            continue
        with pytest.raises((TypeError, ValueError), match="as its state"):
            optimizer.update(GRADS, other_state, PARAMS)


@pytest.mark.parametrize("name", sorted(ALL_OPTIMIZERS))
def test_gradients_of_another_model_are_named(name):
    optimizer = ALL_OPTIMIZERS[name]()
    state = optimizer.init(PARAMS)
    missing = {"dense": {"w": GRADS["dense"]["w"]}}
    wrong_shape = {"dense": {"w": jnp.ones((3, 2)), "b": GRADS["dense"]["b"]}}
    with pytest.raises(ValueError, match=r"missing \['dense'\]\['b'\]"):
        optimizer.update(missing, state, PARAMS)
    with pytest.raises(ValueError, match=r"\['dense'\]\['w'\] has shape \(3, 2\).*\(2, 2\)"):
        optimizer.update(wrong_shape, state, PARAMS)


def test_adamw_without_params_says_what_to_pass():
    optimizer = jo.adamw(1e-3)
    with pytest.raises(ValueError, match="needs the parameters"):
        optimizer.update(GRADS, optimizer.init(PARAMS))


def test_adamw_mask_skips_marked_parameters():
    mask = {"dense": {"w": True, "b": False}}
    optimizer = jo.adamw(0.1, weight_decay=0.5, mask=mask)
    plain = jo.adam(0.1)
    zero = jax.tree.map(jnp.zeros_like, GRADS)
    updates, _ = optimizer.update(zero, optimizer.init(PARAMS), PARAMS)
    baseline, _ = plain.update(zero, plain.init(PARAMS), PARAMS)
    # Zero gradients: Adam's part is 0, so the update is -lr * wd * w where masked in, 0 elsewhere.
    np.testing.assert_allclose(updates["dense"]["w"], -0.1 * 0.5 * PARAMS["dense"]["w"], rtol=1e-6)
    np.testing.assert_array_equal(updates["dense"]["b"], baseline["dense"]["b"])
    # A callable mask and a prefix mask give the same.
    for other_mask in (lambda params: mask, {"dense": {"w": True, "b": False}}):
        other = jo.adamw(0.1, weight_decay=0.5, mask=other_mask)
        other_updates, _ = other.update(zero, other.init(PARAMS), PARAMS)
        np.testing.assert_array_equal(other_updates["dense"]["w"], updates["dense"]["w"])


def test_jaxnn_optim_does_not_use_optax():
    # optax is the oracle only: importing jaxnn.optim must not import it.
    import subprocess
    import sys

    code = "import sys, jaxnn.optim, jaxnn; print('optax' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
