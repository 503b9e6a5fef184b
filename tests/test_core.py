"""Tests for the layer contract and the combinators: naming, key splitting, state threading, errors."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import init as initializers
from jaxnn.core import Concat, Layer, Residual, Sequential, Static, as_shape, make_layer
from jaxnn.layers.dense import Dense, Flatten


def ones_dense(features):
    return Dense(features, w_init=initializers.ones(), b_init=initializers.ones())


def counter_layer():
    """A layer whose state counts its calls in training and that records the key it was given."""

    def init(key, input_shape):
        return input_shape, {}, {"calls": jnp.zeros((), jnp.int32)}

    def apply(params, state, x, *, key=None, train=False):
        if not train:
            return x, state
        noise = jax.random.normal(key, x.shape, x.dtype)
        return x + noise, {"calls": state["calls"] + 1}

    return make_layer("counter", init, apply)


def test_sequential_names_children_by_kind_and_position():
    model = Sequential([Dense(3), counter_layer(), Dense(2)])
    output_shape, params, state = model.init(jax.random.key(0), (4,))
    assert output_shape == (2,)
    assert list(params) == ["dense_0", "counter_1", "dense_2"]
    assert list(state) == ["dense_0", "counter_1", "dense_2"]
    assert params["dense_0"]["w"].shape == (4, 3)
    assert params["dense_2"]["w"].shape == (3, 2)


def test_sequential_dict_uses_given_names():
    model = Sequential({"encoder": Dense(3), "head": Dense(2)})
    _, params, _ = model.init(jax.random.key(0), (4,))
    assert list(params) == ["encoder", "head"]


def test_sequential_composes_by_hand():
    # Two all-ones dense layers: y1 = sum(x) + 1 per unit, y2 = 3 * y1 + 1.
    model = Sequential([ones_dense(3), ones_dense(2)])
    _, params, state = model.init(jax.random.key(0), (4,))
    x = jnp.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    y, _ = model.apply(params, state, x)
    np.testing.assert_allclose(y, [[34.0, 34.0], [4.0, 4.0]])


def test_sequential_initializes_children_with_different_keys():
    model = Sequential([Dense(5), Dense(5)])
    _, params, _ = model.init(jax.random.key(0), (5,))
    assert not np.allclose(params["dense_0"]["w"], params["dense_1"]["w"])


def test_sequential_threads_state_and_splits_key_per_child():
    model = Sequential([counter_layer(), counter_layer()])
    _, params, state = model.init(jax.random.key(0), (3,))
    x = jnp.zeros((2, 3))
    y, new_state = model.apply(params, state, x, key=jax.random.key(1), train=True)
    assert int(new_state["counter_0"]["calls"]) == 1
    assert int(new_state["counter_1"]["calls"]) == 1
    # Each child must get its own key: the sum of two independent unit normals has variance 2,
    # while the same key used twice would give exactly twice the first noise.
    first, _ = counter_layer().apply({}, {"calls": jnp.zeros((), jnp.int32)}, x,
                                     key=jax.random.split(jax.random.key(1), 2)[0], train=True)
    assert not np.allclose(y, 2 * first)
    _, eval_state = model.apply(params, new_state, x, train=False)
    assert eval_state is not None and int(eval_state["counter_0"]["calls"]) == 1


def test_residual_adds_input():
    model = Residual(ones_dense(3))
    _, params, state = model.init(jax.random.key(0), (3,))
    x = jnp.array([1.0, 2.0, 3.0])
    y, _ = model.apply(params, state, x)
    np.testing.assert_allclose(y, x + 7.0)


def test_residual_rejects_shape_change():
    with pytest.raises(ValueError, match=r"residual: .*\(3,\) to \(4,\)"):
        Residual(Dense(4)).init(jax.random.key(0), (3,))


def test_concat_stacks_outputs_along_last_axis():
    model = Concat([ones_dense(2), ones_dense(3)])
    output_shape, params, state = model.init(jax.random.key(0), (4,))
    assert output_shape == (5,)
    x = jnp.ones((6, 4))
    y, _ = model.apply(params, state, x)
    assert y.shape == (6, 5)
    np.testing.assert_allclose(y, 5.0)


def test_concat_rejects_mismatched_shapes_and_positive_axis():
    with pytest.raises(ValueError, match="concat: cannot concatenate along axis -1"):
        Concat([Flatten(), Dense(3)]).init(jax.random.key(0), (2, 5))  # (10,) vs (2, 3)
    with pytest.raises(ValueError, match="cannot concatenate along axis -2"):
        Concat([Dense(2), Dense(3)], axis=-2).init(jax.random.key(0), (5, 4))
    with pytest.raises(ValueError, match="negative axis"):
        Concat([Dense(2)], axis=0)


def test_concat_along_an_inner_axis_keeps_batch_axes():
    model = Concat([Dense(3), Dense(3)], axis=-2)
    output_shape, params, state = model.init(jax.random.key(0), (2, 4))
    y, _ = model.apply(params, state, jnp.ones((5, 2, 4)))
    assert output_shape == (4, 3) and y.shape == (5, 4, 3)


def test_errors_name_the_layer_path():
    model = Sequential({"encoder": Sequential([Dense(8), Dense(4)]), "head": Dense(2)})
    _, params, state = model.init(jax.random.key(0), (16,))
    params["encoder"]["dense_1"]["w"] = jnp.ones((5, 4))
    with pytest.raises(ValueError, match=r"^encoder/dense_1: expected last axis 5, got 8$"):
        model.apply(params, state, jnp.ones((3, 16)))


def test_top_level_error_names_the_layer_kind():
    _, params, state = Dense(2).init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"^dense: expected last axis 3, got 4$"):
        Dense(2).apply(params, state, jnp.ones((1, 4)))


def test_errors_are_raised_under_jit_before_xla():
    model = Sequential([Dense(8), Dense(2)])
    _, params, state = model.init(jax.random.key(0), (4,))
    with pytest.raises(ValueError, match=r"^dense_0: expected last axis 4, got 5"):
        jax.jit(lambda p, x: model.apply(p, state, x)[0])(params, jnp.ones((2, 5)))


def test_params_from_another_model_are_named_in_the_error():
    _, params, state = Sequential([Dense(3)]).init(jax.random.key(0), (4,))
    other = Sequential({"layer": Dense(3)})
    with pytest.raises(ValueError, match="params has no entry for layer"):
        other.apply(params, {"layer": {}}, jnp.ones(4))


def test_constructor_misuse_is_a_clear_type_error():
    from jaxnn.layers.dense import Dense as DenseConstructor

    with pytest.raises(TypeError, match="not a Layer; call the constructor"):
        Sequential([DenseConstructor])
    with pytest.raises(TypeError, match="list or dict of layers"):
        Sequential(Dense(3))
    with pytest.raises(ValueError, match="at least one layer"):
        Sequential([])


@pytest.mark.parametrize("bad", ["abc", (3, "a"), (3, -1), 2.5, (True,)])
def test_input_shape_validation(bad):
    with pytest.raises((TypeError, ValueError), match="input_shape"):
        as_shape(bad)


def test_input_shape_int_and_list_are_accepted():
    assert as_shape(5) == (5,)
    assert as_shape([2, 3]) == (2, 3)
    assert as_shape(()) == ()  # a scalar example


@pytest.mark.parametrize("bad", [0, (0,), (3, 0), (0, 4, 2), [2, np.int64(0)]])
def test_input_shape_with_a_zero_size_axis_is_refused_naming_the_shape(bad):
    shown = str(tuple(int(size) for size in np.atleast_1d(bad)))
    with pytest.raises(ValueError, match=rf"^input_shape must not have zero sizes, got {re.escape(shown)}"):
        as_shape(bad)


def test_static_is_structure_not_a_leaf():
    tree = {"a": jnp.ones(2), "shape": Static((3, 4))}
    assert len(jax.tree_util.tree_leaves(tree)) == 1
    assert jax.tree_util.tree_structure(tree) == jax.tree_util.tree_structure(
        {"a": jnp.zeros(2), "shape": Static((3, 4))}
    )
    assert jax.tree_util.tree_structure(tree) != jax.tree_util.tree_structure(
        {"a": jnp.zeros(2), "shape": Static((3, 5))}
    )


def test_layer_is_a_named_tuple_of_name_init_apply_options():
    layer = Dense(2)
    assert isinstance(layer, Layer)
    # The four leading fields; later ones (such as input_check) have defaults.
    assert Layer._fields[:4] == ("name", "init", "apply", "options")
    name, init, apply, options = layer[:4]
    assert name == "dense" and callable(init) and callable(apply) and options == ()
    assert Layer("custom", init, apply).options == ()


def test_model_composes_with_jit_grad_and_vmap():
    model = Sequential([Dense(5), Dense(3)])
    _, params, state = model.init(jax.random.key(0), (4,))
    x = jax.random.normal(jax.random.key(1), (7, 4))

    def loss(params, x):
        y, _ = model.apply(params, state, x)
        return jnp.sum(y ** 2)

    batched, _ = model.apply(params, state, x)
    single = jax.vmap(lambda example: model.apply(params, state, example)[0])(x)
    np.testing.assert_allclose(single, batched, rtol=1e-6, atol=1e-6)
    per_example = jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, x)
    summed = jax.tree.map(lambda g: g.sum(0), per_example)
    full = jax.jit(jax.grad(loss))(params, x)
    for got, want in zip(jax.tree_util.tree_leaves(summed), jax.tree_util.tree_leaves(full)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad_key,expected", [
    (None, r"^sequential: init needs a PRNG key: init\(jax.random.key\(0\), input_shape\)"),
    (0, r"^sequential: key must be a single PRNG key such as jax.random.key\(0\), got 0"),
    (jax.random.split(jax.random.key(0), 3),
     r"^sequential: key must be a single PRNG key .* got an array of shape \(3,\)"),
])
def test_init_rejects_bad_keys(bad_key, expected):
    with pytest.raises(TypeError, match=expected):
        Sequential([Dense(2)]).init(bad_key, (3,))


def test_apply_rejects_bad_keys_even_in_evaluation():
    model = Sequential([Dense(2)])
    _, params, state = model.init(jax.random.key(0), (3,))
    with pytest.raises(TypeError, match=r"^sequential: key must be a single PRNG key .* got 7"):
        model.apply(params, state, jnp.ones(3), key=7)
    legacy_key = jax.random.PRNGKey(0)  # raw uint32[2] keys are still accepted
    y, _ = model.apply(params, state, jnp.ones(3), key=legacy_key, train=True)
    assert y.shape == (2,)


def test_train_must_be_a_python_bool_with_a_hint_under_jit():
    model = Sequential([Dense(2)])
    _, params, state = model.init(jax.random.key(0), (3,))
    with pytest.raises(TypeError, match=r"^sequential: train must be a Python bool, got str"):
        model.apply(params, state, jnp.ones(3), train="no")
    with pytest.raises(TypeError, match=r"train must be a Python bool.*static_argnames='train'"):
        jax.jit(model.apply)(params, state, jnp.ones(3), train=True)
    y, _ = jax.jit(model.apply, static_argnames="train")(params, state, jnp.ones(3), train=True)
    assert y.shape == (2,)


def test_params_from_a_model_of_another_width_are_rejected():
    narrow = Sequential([Dense(4), Dense(2)])
    wide = Sequential([Dense(8), Dense(2)])
    _, params, state = narrow.init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"^dense_0: params\['w'\] has shape \(3, 4\), expected \(in, 8\)"):
        wide.apply(params, state, jnp.ones((5, 3)))


def test_non_array_and_non_numeric_inputs_are_type_errors():
    _, params, state = Dense(2).init(jax.random.key(0), (3,))
    with pytest.raises(TypeError, match=r"^dense: params\['w'\] must be an array, got NoneType"):
        Dense(2).apply({"w": None, "b": params["b"]}, state, jnp.ones(3))
    with pytest.raises(TypeError, match=r"^dense: params\['w'\] must be floating-point, got dtype int32"):
        Dense(2).apply({"w": jnp.ones((3, 2), jnp.int32), "b": params["b"]}, state, jnp.ones(3))
    with pytest.raises(TypeError, match=r"^dense: expected a numeric array input, got dtype <U1"):
        Dense(2).apply(params, state, np.array(["a", "b", "c"]))


def test_combinator_arguments_are_type_checked():
    with pytest.raises(TypeError, match="expected a list or dict of layers, got NoneType"):
        Sequential(None)
    with pytest.raises(TypeError, match=r"^Concat: `axis` must be a negative int, got 'a'"):
        Concat([Dense(2)], axis="a")


def test_state_missing_a_child_is_named_as_state():
    model = Sequential([Dense(2)])
    _, params, _ = model.init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"state has no entry for dense_0; .* Were these state made"):
        model.apply(params, {}, jnp.ones(3))
