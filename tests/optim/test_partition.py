"""masked, multi_transform, set_to_zero and path_labels against optax on the same inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_trees_close

from jaxnn import optim


def make_params():
    keys = jax.random.split(jax.random.key(0), 4)
    return {
        "body": {"w": jax.random.normal(keys[0], (3, 4)), "b": jax.random.normal(keys[1], (4,))},
        "head": {"w": jax.random.normal(keys[2], (4, 2)), "b": jax.random.normal(keys[3], (2,))},
    }


def loss(params):
    x = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)
    h = jnp.tanh(x @ params["body"]["w"] + params["body"]["b"][None])
    return jnp.sum((h @ params["head"]["w"] + params["head"]["b"][None] - 0.5) ** 2)


def run(optimizer, params, steps=4):
    """The updates of ``steps`` steps and the final params; optax's transformations mix int32 counts
    with float hyperparameters, which strict promotion rejects, so this runs with standard promotion."""
    with jax.numpy_dtype_promotion("standard"):
        return run_steps(optimizer, params, steps)


def run_steps(optimizer, params, steps):
    @jax.jit
    def step(params, opt_state):
        updates, opt_state = optimizer.update(jax.grad(loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state, updates

    opt_state = optimizer.init(params)
    trajectory = []
    for _ in range(steps):
        params, opt_state, updates = step(params, opt_state)
        trajectory.append(updates)
    return params, trajectory


MASK = {"body": False, "head": {"w": True, "b": False}}


def leaf_mask(params):
    return jax.tree.map(lambda p: p.ndim == 2, params)


@pytest.mark.parametrize("inner,mask", [("adam", MASK), ("sgd", leaf_mask)], ids=["adam-tree", "sgd-callable"])
def test_masked_equals_optax(inner, mask):
    ours = {"adam": optim.adam(0.1), "sgd": optim.sgd(0.1, momentum=0.9)}[inner]
    theirs = {"adam": optax.adam(0.1), "sgd": optax.sgd(0.1, momentum=0.9)}[inner]
    params = make_params()
    got, got_updates = run(optim.masked(ours, mask), params)
    want, want_updates = run(optax.masked(theirs, mask), params)
    assert_trees_close(want_updates, got_updates, atol=1e-6)
    assert_trees_close(want, got, atol=1e-6)
    # Masked-out leaves pass their gradient through unchanged, as in optax.
    np.testing.assert_allclose(got_updates[0]["body"]["b"], jax.grad(loss)(params)["body"]["b"], rtol=1e-5)


def test_masked_inner_state_covers_masked_in_leaves_only():
    state = optim.masked(optim.adam(0.1), MASK).init(make_params())
    mu = state.inner_state[0].mu
    assert jax.tree.leaves(mu)[0].shape == (4, 2) and len(jax.tree.leaves(mu)) == 1


def test_multi_transform_equals_optax():
    params = make_params()
    given = {"body": "slow", "head": {"w": "fast", "b": "frozen"}}
    ours = optim.multi_transform({"slow": optim.sgd(0.05, momentum=0.5), "fast": optim.adam(0.1),
                                  "frozen": optim.set_to_zero()}, given)
    theirs = optax.multi_transform({"slow": optax.sgd(0.05, momentum=0.5), "fast": optax.adam(0.1),
                                    "frozen": optax.set_to_zero()}, given)
    got, got_updates = run(ours, params)
    want, want_updates = run(theirs, params)
    assert_trees_close(want_updates, got_updates, atol=1e-6)
    assert_trees_close(want, got, atol=1e-6)
    np.testing.assert_array_equal(got["head"]["b"], params["head"]["b"])


def test_path_labels_freeze_body():
    params = make_params()
    labels = optim.path_labels({"head/*": "train", "*": "freeze"})
    assert labels(params) == {"body": {"w": "freeze", "b": "freeze"}, "head": {"w": "train", "b": "train"}}
    optimizer = optim.multi_transform({"train": optim.adam(0.1), "freeze": optim.set_to_zero()}, labels)
    trained, _ = run(optimizer, params, steps=3)
    np.testing.assert_array_equal(trained["body"]["w"], params["body"]["w"])
    assert not np.allclose(trained["head"]["w"], params["head"]["w"])
    # The same freezing with optax's pieces and a hand-written label tree.
    want, _ = run(optax.multi_transform({"train": optax.adam(0.1), "freeze": optax.set_to_zero()},
                                        labels(params)), params, steps=3)
    assert_trees_close(want, trained, atol=1e-6)


def test_works_under_jit_and_inside_optax_chain():
    params = make_params()
    ours = optax.chain(optax.clip_by_global_norm(1.0), optim.masked(optim.adam(0.1), MASK))
    theirs = optax.chain(optax.clip_by_global_norm(1.0), optax.masked(optax.adam(0.1), MASK))
    grads = jax.grad(loss)(params)
    with jax.numpy_dtype_promotion("standard"):
        updates, _ = jax.jit(ours.update)(grads, ours.init(params), params)
        want, _ = jax.jit(theirs.update)(grads, theirs.init(params), params)
    assert_trees_close(want, updates, atol=1e-6)


def test_errors_name_what_is_wrong():
    params = make_params()
    with pytest.raises(ValueError, match="no pattern matches the parameter 'body/b'"):
        optim.path_labels({"head/*": "train"})(params)
    with pytest.raises(ValueError, match="labelled 'other'"):
        optim.multi_transform({"train": optim.adam(0.1)}, {"body": "train", "head": "other"}).init(params)
    with pytest.raises(ValueError, match="masked: mask does not match"):
        optim.masked(optim.adam(0.1), {"body": True}).init(params)
    with pytest.raises(TypeError, match=r"mask\['body'\] must be True or False"):
        optim.masked(optim.adam(0.1), {"body": "yes", "head": True}).init(params)
    with pytest.raises(TypeError, match="expected a MaskedState"):
        optim.masked(optim.adam(0.1), MASK).update(params, optim.adam(0.1).init(params), params)
    with pytest.raises(TypeError, match="without calling it"):
        optim.masked(optim.adam, MASK)
