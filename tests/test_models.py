"""Tests for ``jaxnn.models``: every builder in ``MODELS`` fits every dataset shape its layout allows.

Written over ``MODELS``, so models added later are checked without new tests.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn.models import LAYOUT_SHAPES, MODELS


# Per-example shapes of the bundled datasets: digits, mnist1d, moons and spirals, MNIST-format IDX.
DATASET_SHAPES = {"digits": (64,), "mnist1d": (40,), "moons": (2,), "idx": (28, 28, 1)}
NUM_CLASSES = 7  # not 10 or 2, so a hard-coded class count would show


def test_layout_shapes_by_hand():
    expected = {
        "flat": {"digits": (64,), "mnist1d": (40,), "moons": (2,), "idx": (784,)},
        "image": {"digits": (8, 8, 1), "mnist1d": (40, 1), "moons": None, "idx": (28, 28, 1)},
        "sequence": {"digits": (8, 8), "mnist1d": (40, 1), "moons": None, "idx": (28, 28)},
    }
    for layout, shapes in expected.items():
        for dataset, shape in shapes.items():
            got = LAYOUT_SHAPES[layout](DATASET_SHAPES[dataset])
            assert (None if got is None else tuple(got)) == shape, (layout, dataset)


def test_every_model_names_a_known_layout():
    assert "mlp" in MODELS
    for name, (builder, layout) in MODELS.items():
        assert callable(builder), name
        assert layout in LAYOUT_SHAPES, (name, layout)


def model_cases():
    cases = []
    for name, (_, layout) in sorted(MODELS.items()):
        for dataset, shape in DATASET_SHAPES.items():
            input_shape = LAYOUT_SHAPES[layout](shape)
            if input_shape is not None:
                cases.append((name, dataset, tuple(input_shape)))
    return cases


@pytest.mark.parametrize("name, dataset, input_shape", model_cases(),
                         ids=[f"{name}-{dataset}" for name, dataset, _ in model_cases()])
def test_model_maps_each_dataset_shape_to_logits(name, dataset, input_shape):
    # Shapes only (jax.eval_shape): every combination is checked without compiling anything.
    builder, _ = MODELS[name]
    model = builder(NUM_CLASSES, input_shape)
    assert isinstance(model, jaxnn.Layer)
    found = {}

    def init(key):
        output_shape, params, state = model.init(key, input_shape)
        found["output_shape"] = tuple(output_shape)
        return params, state

    params, state = jax.eval_shape(init, jax.random.key(0))
    assert found["output_shape"] == (NUM_CLASSES,)
    assert sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params)) > 0
    batch = jax.ShapeDtypeStruct((3, *input_shape), jnp.float32)
    logits = jax.eval_shape(lambda p, s, x: model.apply(p, s, x, key=jax.random.key(1), train=True)[0],
                            params, state, batch)
    assert logits.shape == (3, NUM_CLASSES)
    single = jax.eval_shape(lambda p, s, x: model.apply(p, s, x)[0], params, state,
                            jax.ShapeDtypeStruct(input_shape, jnp.float32))
    assert single.shape == (NUM_CLASSES,)


def smallest_case(name):
    return min(((dataset, shape) for model, dataset, shape in model_cases() if model == name),
               key=lambda case: int(np.prod(case[1])))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_gets_finite_gradients(name):
    # One compiled program per model, on its smallest dataset shape: initialization, then the
    # gradient of the loss.
    dataset, input_shape = smallest_case(name)
    model = MODELS[name][0](NUM_CLASSES, input_shape)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((3, *input_shape)).astype(np.float32))
    labels = jnp.asarray([0, 3, NUM_CLASSES - 1], jnp.int32)

    def init_and_grads(key):
        _, params, state = model.init(key, input_shape)

        def loss(params):
            logits, new_state = model.apply(params, state, x, key=jax.random.key(1), train=True)
            return jaxnn.losses.cross_entropy(logits, labels), (logits, state, new_state)

        return params, jax.grad(loss, has_aux=True)(params)

    params, (grads, (logits, state, new_state)) = jax.jit(init_and_grads)(jax.random.key(0))

    assert logits.shape == (3, NUM_CLASSES)
    assert np.all(np.isfinite(np.asarray(logits)))
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params)
    leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(grads)]
    assert all(np.all(np.isfinite(leaf)) for leaf in leaves), dataset
    assert any(np.any(leaf != 0) for leaf in leaves)


def test_every_model_fits_some_dataset():
    assert {name for name, _, _ in model_cases()} == set(MODELS)
