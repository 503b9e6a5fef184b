"""Every optimizer against its optax counterpart, 1000 steps, on a small real model and on Rosenbrock.

optax is the oracle: the same hyperparameters must give the same parameters to 1e-5 relative.
Each run is one ``lax.scan`` of 1000 steps, so each configuration compiles once.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import most_optimizations_disabled

import jaxnn
import jaxnn.optim as jo

STEPS = 1000


def rosenbrock(params):
    x, y = params["x"], params["y"]
    return jnp.sum((1 - x) ** 2 + 100 * (y - x**2) ** 2)


ROSENBROCK_START = {"x": jnp.array([-1.2, 0.5, 1.5]), "y": jnp.array([1.0, -0.3, 2.0])}


def digits_problem():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    x, y = sklearn_datasets.load_digits(return_X_y=True)
    x = jnp.asarray(x[:256] / 16.0, jnp.float32)
    y = jnp.asarray(y[:256], jnp.int32)
    model = jaxnn.Sequential([jaxnn.Dense(32), jaxnn.Tanh(), jaxnn.Dense(10)])
    _, params, state = model.init(jax.random.key(0), (64,))

    def loss(params):
        logits, _ = model.apply(params, state, x)
        return jaxnn.losses.cross_entropy(logits, y)

    return loss, params


def run(optimizer, loss, params, steps=STEPS):
    """Parameters after ``steps`` full-batch steps of ``optimizer`` from ``params``."""

    @jax.jit
    def train(params):
        def step(carry, _):
            params, opt_state = carry
            grads = jax.grad(loss)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
        return params

    return train(params)


def run_optax(optimizer, loss, params, steps=STEPS):
    # optax mixes int32 counts with float hyperparameters, which strict promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        return run(optimizer, loss, params, steps)


def assert_trees_close(actual, expected, rtol=1e-5, atol=1e-6):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert np.all(np.isfinite(np.asarray(e)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol)


def warmup_cosine(jaxnn_module):
    return jaxnn_module.warmup_cosine_decay_schedule(0.0, 2e-3, 100, 1000, end_value=1e-5)


# (name, jaxnn optimizer, optax optimizer); Rosenbrock needs small rates to stay finite.
CONFIGS = [
    ("sgd", lambda: jo.sgd(1e-3), lambda: optax.sgd(1e-3)),
    ("sgd-momentum", lambda: jo.sgd(5e-4, momentum=0.9), lambda: optax.sgd(5e-4, momentum=0.9)),
    ("sgd-nesterov", lambda: jo.sgd(5e-4, momentum=0.5, nesterov=True),
     lambda: optax.sgd(5e-4, momentum=0.5, nesterov=True)),
    ("sgd-schedule", lambda: jo.sgd(jo.exponential_decay(1e-3, 100, 0.9)),
     lambda: optax.sgd(optax.exponential_decay(1e-3, 100, 0.9))),
    ("adam", lambda: jo.adam(1e-2), lambda: optax.adam(1e-2)),
    ("adam-betas", lambda: jo.adam(3e-3, b1=0.5, b2=0.99, eps=1e-6, eps_root=1e-8),
     lambda: optax.adam(3e-3, b1=0.5, b2=0.99, eps=1e-6, eps_root=1e-8)),
    ("nadam", lambda: jo.adam(1e-2, nesterov=True), lambda: optax.adam(1e-2, nesterov=True)),
    ("adam-warmup-cosine", lambda: jo.adam(warmup_cosine(jo)), lambda: optax.adam(warmup_cosine(optax))),
    ("adamw", lambda: jo.adamw(1e-2), lambda: optax.adamw(1e-2)),
    ("adamw-decay", lambda: jo.adamw(5e-3, b1=0.8, weight_decay=0.1),
     lambda: optax.adamw(5e-3, b1=0.8, weight_decay=0.1)),
    ("rmsprop", lambda: jo.rmsprop(1e-3), lambda: optax.rmsprop(1e-3)),
    ("rmsprop-centered-momentum", lambda: jo.rmsprop(3e-4, decay=0.95, centered=True, momentum=0.9),
     lambda: optax.rmsprop(3e-4, decay=0.95, centered=True, momentum=0.9)),
    ("rmsprop-torch-eps", lambda: jo.rmsprop(1e-3, decay=0.99, eps_in_sqrt=False),
     lambda: optax.rmsprop(1e-3, decay=0.99, eps_in_sqrt=False)),
    ("adagrad", lambda: jo.adagrad(1e-2), lambda: optax.adagrad(1e-2)),
    ("adagrad-settings", lambda: jo.adagrad(5e-2, initial_accumulator_value=0.5, eps=1e-5),
     lambda: optax.adagrad(5e-2, initial_accumulator_value=0.5, eps=1e-5)),
    ("clip-norm-adam", lambda: jo.chain(jo.clip_by_global_norm(1.0), jo.adam(1e-2)),
     lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))),
    ("clip-sgd", lambda: jo.chain(jo.clip(0.5), jo.sgd(1e-3, momentum=0.9)),
     lambda: optax.chain(optax.clip(0.5), optax.sgd(1e-3, momentum=0.9))),
    ("l2-sgd", lambda: jo.chain(jo.add_decayed_weights(1e-2), jo.sgd(1e-3, momentum=0.9)),
     lambda: optax.chain(optax.add_decayed_weights(1e-2), optax.sgd(1e-3, momentum=0.9))),
    ("accumulate-adam", lambda: jo.accumulate_gradients(jo.adam(1e-2), 4),
     lambda: optax.MultiSteps(optax.adam(1e-2), 4).gradient_transformation()),
    ("skip-non-finite-adam", lambda: jo.skip_non_finite(jo.adam(1e-2)),
     lambda: optax.apply_if_finite(optax.adam(1e-2), 10**6)),
]


@pytest.mark.parametrize("name,make_jaxnn,make_optax", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_rosenbrock_trajectory_matches_optax(name, make_jaxnn, make_optax):
    ours = run(make_jaxnn(), rosenbrock, ROSENBROCK_START)
    reference = run_optax(make_optax(), rosenbrock, ROSENBROCK_START)
    # The run must have moved, or agreeing would prove nothing.
    assert not np.allclose(np.asarray(reference["x"]), np.asarray(ROSENBROCK_START["x"]))
    assert_trees_close(ours, reference)


@pytest.fixture
def compiled_fast():
    """The digits MLP is not chaotic: its 1000 steps agree with optax's within tolerance when both
    are compiled without most optimizations, as the other test modules compile (Rosenbrock's
    trajectories in this module need every optimization, see conftest)."""
    with most_optimizations_disabled():
        yield


@pytest.mark.usefixtures("compiled_fast")
@pytest.mark.parametrize("name,make_jaxnn,make_optax", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_mlp_on_digits_matches_optax(name, make_jaxnn, make_optax):
    loss, params = digits_problem()
    ours = run(make_jaxnn(), loss, params)
    reference = run_optax(make_optax(), loss, params)
    assert float(loss(reference)) < float(loss(params))
    assert_trees_close(ours, reference)


def quadratic(params):
    # Condition number 100: a fair test of convergence, minimum at w = (1, -2, 3, 0.5).
    target = jnp.array([1.0, -2.0, 3.0, 0.5])
    curvature = jnp.array([1.0, 10.0, 0.1, 3.0])
    return 0.5 * jnp.sum(curvature * (params["w"] - target) ** 2)


# Settings a user would pick for each problem; every optimizer must reach the minimum.
CONVERGENCE = {
    "sgd": (lambda: jo.sgd(0.15), lambda: jo.sgd(1e-3)),
    "momentum": (lambda: jo.sgd(0.05, momentum=0.9), lambda: jo.sgd(5e-4, momentum=0.9)),
    "nesterov": (lambda: jo.sgd(0.05, momentum=0.9, nesterov=True), lambda: jo.sgd(5e-4, momentum=0.9, nesterov=True)),
    "adam": (lambda: jo.adam(0.1), lambda: jo.adam(jo.exponential_decay(0.02, 1000, 0.5))),
    "adamw": (lambda: jo.adamw(0.1, weight_decay=0.0), lambda: jo.adamw(jo.exponential_decay(0.02, 1000, 0.5), weight_decay=0.0)),
    "rmsprop": (lambda: jo.rmsprop(jo.exponential_decay(0.05, 100, 0.8)),
                lambda: jo.rmsprop(jo.cosine_decay_schedule(3e-3, 20000), decay=0.99)),
    "adagrad": (lambda: jo.adagrad(0.5), lambda: jo.adagrad(0.2)),
}


@pytest.mark.parametrize("name", sorted(CONVERGENCE))
def test_converges_on_a_quadratic(name):
    params = run(CONVERGENCE[name][0](), quadratic, {"w": jnp.zeros(4)}, steps=2000)
    np.testing.assert_allclose(np.asarray(params["w"]), [1.0, -2.0, 3.0, 0.5], atol=2e-2)


@pytest.mark.parametrize("name", sorted(CONVERGENCE))
def test_converges_on_rosenbrock(name):
    start = {"x": jnp.array([-1.2]), "y": jnp.array([1.0])}
    params = run(CONVERGENCE[name][1](), rosenbrock, start, steps=20000)
    assert float(rosenbrock(params)) < float(rosenbrock(start)) * 1e-3
    np.testing.assert_allclose([float(params["x"][0]), float(params["y"][0])], [1.0, 1.0], atol=1e-2)
