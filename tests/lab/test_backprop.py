"""jaxnn.lab.backprop: the δ rules by hand, against a published worked example and jax.grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn import lab

# Matt Mazur, "A Step by Step Backpropagation Example" (2015): a 2-2-2 sigmoid network, one
# example, E = sum of (1/2)(target - output)^2. jaxnn's w is (in, out): w[i, j] joins input i to
# unit j, so w1 (i1 -> h1) is w[0, 0] and w3 (i1 -> h2) is w[0, 1].
MAZUR_PARAMS = {
    "dense_0": {"w": jnp.array([[0.15, 0.25], [0.20, 0.30]]), "b": jnp.array([0.35, 0.35])},
    "sigmoid_1": {},
    "dense_2": {"w": jnp.array([[0.40, 0.50], [0.45, 0.55]]), "b": jnp.array([0.60, 0.60])},
    "sigmoid_3": {},
}
MAZUR_X, MAZUR_Y = jnp.array([[0.05, 0.10]]), jnp.array([[0.01, 0.99]])


def half_squared_error(outputs, targets):
    return 0.5 * jnp.sum(jnp.square(targets - outputs))


def mazur_model():
    return jaxnn.Sequential([jaxnn.Dense(2), jaxnn.Sigmoid(), jaxnn.Dense(2), jaxnn.Sigmoid()])


def test_published_worked_example_and_its_explanation():
    state = {name: {} for name in MAZUR_PARAMS}
    record = jax.jit(lambda params: lab.backprop(mazur_model(), params, state, MAZUR_X, MAZUR_Y,
                                                 half_squared_error))(MAZUR_PARAMS)
    assert isinstance(record, lab.BackpropRecord)
    np.testing.assert_allclose(record.loss, 0.298371109, rtol=1e-6)
    np.testing.assert_allclose(record.activations["dense_0"], [[0.593269992, 0.596884378]], rtol=1e-6)
    np.testing.assert_allclose(record.activations["dense_2"], [[0.75136507, 0.772928465]], rtol=1e-6)
    # dE/dw5 (h1 -> o1), and the updated weights at learning rate 0.5.
    np.testing.assert_allclose(record.grads["dense_2"]["w"][0, 0], 0.082167041, rtol=1e-5)
    updated = jax.tree.map(lambda p, g: p - 0.5 * g, MAZUR_PARAMS, record.grads)
    np.testing.assert_allclose(updated["dense_2"]["w"],
                               [[0.35891648, 0.511301270], [0.408666186, 0.561370121]],
                               rtol=1e-6)
    np.testing.assert_allclose(updated["dense_0"]["w"], [[0.149780716, 0.24975114], [0.19956143, 0.29950229]],
                               rtol=1e-6)
    # The explanation shows the same numbers.
    text = record.explain(decimals=6, show=False)
    for number in ("0.298371", "0.593270", "0.751365", "0.082167", "0.000439"):
        assert number in text
    for step in ("δ[2] = ∂L/∂a[2] ⊙ σ'(z[2])", "∂L/∂a[1] = δ[2] W[2]ᵀ", "∂L/∂W[1] = a[0]ᵀ δ[1]"):
        assert step in text


def random_network(depth, hidden, output_activation, rng):
    """A Sequential of ``depth`` Dense layers 5 -> 3 -> ... -> 4, with params drawn in NumPy."""
    layers, params, sizes = [], {}, [5] + [3] * (depth - 1) + [4]
    for index in range(depth):
        name = f"dense_{len(layers)}"
        layers.append(jaxnn.Dense(sizes[index + 1]))
        params[name] = {"w": rng.standard_normal(sizes[index:index + 2]).astype(np.float32),
                        "b": rng.standard_normal(sizes[index + 1]).astype(np.float32)}
        activation = hidden[index % len(hidden)] if index < depth - 1 else output_activation
        if activation is not None:
            params[f"{activation.name}_{len(layers)}"] = {}
            layers.append(activation)
    return jaxnn.Sequential(layers), params


def negative_log_likelihood(probabilities, labels):
    """Per example, the textbook's loss for a softmax output: -log p[label]."""
    picked = jnp.take_along_axis(probabilities, labels[..., None], axis=-1)[..., 0]
    return -jnp.log(picked)


def log_probability_loss(log_probabilities, labels):
    return negative_log_likelihood(jnp.exp(log_probabilities), labels)


# (depth, hidden activations, output activation, loss, reduction, batch shape, targets). Every
# activation, hidden and at the output; depths 1-4; batches of 1 and 7 (and two batch axes);
# both reductions; every loss name, and functions.
CASES = [
    (1, [], None, "cross_entropy", "mean", (7,), "labels"),
    (2, [jaxnn.Sigmoid()], None, "cross_entropy", "sum", (1,), "one_hot"),
    (3, [jaxnn.Tanh(), jaxnn.Relu()], None, "binary_cross_entropy", "mean", (7,), "bits"),
    (4, [jaxnn.LeakyRelu(0.1), jaxnn.Sigmoid(), jaxnn.Tanh()], None, "mse", "sum", (7,), "reals"),
    (2, [jaxnn.Relu()], jaxnn.Sigmoid(), "mse", "mean", (2, 3), "reals"),
    (3, [jaxnn.Softmax(), jaxnn.Tanh()], jaxnn.Tanh(), "mae", "mean", (7,), "reals"),
    (2, [jaxnn.Sigmoid()], jaxnn.Softmax(), negative_log_likelihood, "mean", (7,), "labels"),
    (3, [jaxnn.Tanh(), jaxnn.LeakyRelu()], jaxnn.LogSoftmax(), log_probability_loss, "sum", (1,), "labels"),
    (4, [jaxnn.Relu(), jaxnn.Sigmoid(), jaxnn.Tanh()], jaxnn.Relu(), "binary_cross_entropy", "sum", (1,),
     "bits"),
]


def case_data(case):
    depth, hidden, output_activation, loss, reduction, batch, kind = CASES[case]
    rng = np.random.default_rng(case)
    model, params = random_network(depth, hidden, output_activation, rng)
    x = rng.standard_normal(batch + (5,)).astype(np.float32)
    labels = rng.integers(0, 4, batch).astype(np.int32)
    y = {"labels": labels, "one_hot": np.eye(4, dtype=np.float32)[labels],
         "bits": rng.integers(0, 2, batch + (4,)).astype(np.float32),
         "reals": rng.standard_normal(batch + (4,)).astype(np.float32)}[kind]
    return model, params, x, y, loss, reduction


def reference(model, params, x, y, loss, reduction):
    """The loss and jax.grad of it."""
    def objective(params):
        outputs, _ = model.apply(params, {name: {} for name in params}, x)
        if callable(loss):
            values = loss(outputs, y)
            return jnp.mean(values) if reduction == "mean" else jnp.sum(values)
        return getattr(jaxnn.losses, loss)(outputs, y, reduction=reduction)

    return jax.value_and_grad(objective)(params)


def test_equals_jax_grad_over_random_networks():
    cases = [case_data(case) for case in range(len(CASES))]

    def all_cases(all_params):
        results = []
        for (model, _, x, y, loss, reduction), params in zip(cases, all_params):
            state = {name: {} for name in params}
            record = lab.backprop(model, params, state, x, y, loss, reduction=reduction)
            results.append(((record.loss, record.grads), reference(model, params, x, y, loss, reduction)))
        return results

    # One compiled program for every case: compiling, not running, is what takes the time.
    results = jax.jit(all_cases)([params for _, params, *_ in cases])
    for case, ((loss, grads), (expected_loss, expected_grads)) in enumerate(results):
        np.testing.assert_allclose(loss, expected_loss, rtol=1e-5, err_msg=f"case {case}")
        assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(expected_grads)
        for expected, got in zip(jax.tree_util.tree_leaves(expected_grads), jax.tree_util.tree_leaves(grads)):
            np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-6, err_msg=f"case {case}")


def test_softmax_output_with_log_likelihood_gives_the_shortcut_p_minus_y():
    model = jaxnn.Sequential([jaxnn.Dense(3), jaxnn.Softmax()])
    rng = np.random.default_rng(3)
    params = {"dense_0": {"w": rng.standard_normal((2, 3)).astype(np.float32),
                          "b": rng.standard_normal(3).astype(np.float32)}, "softmax_1": {}}
    x, labels = rng.standard_normal((4, 2)).astype(np.float32), np.array([0, 2, 1, 2], np.int32)
    record = jax.jit(lambda params: lab.backprop(model, params, {"dense_0": {}, "softmax_1": {}}, x, labels,
                                                 negative_log_likelihood))(params)
    z = x @ params["dense_0"]["w"] + params["dense_0"]["b"]
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(record.deltas["dense_0"], (p - np.eye(3)[labels]) / 4, rtol=1e-4, atol=1e-6)


def test_unsupported_models_and_arguments_are_named():
    x, y = np.ones((2, 4), np.float32), np.zeros(2, np.int32)

    def run(model, loss="cross_entropy", x=x, **kwargs):
        # Zero params of the right shapes, without running init.
        _, params, state = jax.eval_shape(lambda key: model.init(key, x.shape[1:]), jax.random.key(0))
        params, state = jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), (params, state))
        # Traced without running: the checks raise while the model is traced.
        return jax.eval_shape(lambda: lab.backprop(model, params, state, x, y, loss, **kwargs))

    with pytest.raises(ValueError, match="`batch_norm_1` is a batch_norm layer; backprop supports Seq"):
        run(jaxnn.Sequential([jaxnn.Dense(3), jaxnn.BatchNorm(), jaxnn.Dense(2)]))
    with pytest.raises(ValueError, match="`sequential_1` is a sequential layer made of layers"):
        run(jaxnn.Sequential([jaxnn.Dense(3), jaxnn.Sequential([jaxnn.Dense(2)])]))
    with pytest.raises(ValueError, match="`relu_0` is a relu layer before the first Dense layer"):
        run(jaxnn.Sequential([jaxnn.Relu(), jaxnn.Dense(2)]))
    with pytest.raises(ValueError, match="`tanh_2` is a tanh layer after an activation"):
        run(jaxnn.Sequential([jaxnn.Dense(2), jaxnn.Relu(), jaxnn.Tanh()]))
    with pytest.raises(ValueError, match="`gelu_1` is a gelu layer"):
        run(jaxnn.Sequential([jaxnn.Dense(2), jaxnn.Gelu()]))
    with pytest.raises(ValueError, match="`softmax_1` takes the softmax over an axis other than the last"):
        run(jaxnn.Sequential([jaxnn.Dense(2), jaxnn.Softmax(axis=-2)]), x=np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="expected a Sequential model .* got a dense layer"):
        run(jaxnn.Dense(2))
    with pytest.raises(ValueError, match="`loss` must be one of"):
        run(jaxnn.Sequential([jaxnn.Dense(2)]), "hinge")
    with pytest.raises(TypeError, match="`loss` must be one of .* or a function"):
        run(jaxnn.Sequential([jaxnn.Dense(2)]), 3)
    with pytest.raises(ValueError, match="`reduction` must be one of 'mean', 'sum'"):
        run(jaxnn.Sequential([jaxnn.Dense(2)]), reduction="none")
