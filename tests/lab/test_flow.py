"""jaxnn.lab.gradient_flow and GradientFlowLogger: norms against jax.grad, activation statistics
against NumPy, measurements at the right epochs of fit."""

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn
from jaxnn import lab
from conftest import classification_data


def saturating_model():
    return jaxnn.Sequential([jaxnn.Dense(6), jaxnn.Sigmoid(), jaxnn.Dense(6), jaxnn.Tanh(),
                             jaxnn.Dense(6), jaxnn.Relu(), jaxnn.Dense(3)])


def numpy_params(rng, scale):
    sizes = [4, 6, 6, 6, 3]
    params = {f"{kind}_{index}": {} for index, kind in ((1, "sigmoid"), (3, "tanh"), (5, "relu"))}
    for layer, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        weights = scale * rng.standard_normal((fan_in, fan_out))
        params[f"dense_{2 * layer}"] = {"w": weights.astype(np.float32),
                                        "b": rng.standard_normal(fan_out).astype(np.float32)}
    return params


def test_norms_equal_jax_grad_and_statistics_equal_numpy():
    model = saturating_model()
    rng = np.random.default_rng(0)
    # Large weights: many sigmoid and tanh units saturate, many ReLUs are off.
    params = numpy_params(rng, 3.0)
    state = {name: {} for name in params}
    x, y = classification_data(16, features=4, classes=3)
    flow = lab.gradient_flow(model, params, state, x, y)

    def objective(params):
        return jaxnn.losses.cross_entropy(model.apply(params, state, x)[0], y)

    value, grads = jax.jit(jax.value_and_grad(objective))(params)
    np.testing.assert_allclose(flow.loss, value, rtol=1e-6)
    assert list(flow.grad_norms) == ["dense_0", "dense_2", "dense_4", "dense_6"]
    for path, norm in flow.grad_norms.items():
        leaves = [np.asarray(leaf, np.float64).ravel() for leaf in jax.tree_util.tree_leaves(grads[path])]
        np.testing.assert_allclose(norm, np.linalg.norm(np.concatenate(leaves)), rtol=1e-5)
        np.testing.assert_allclose(flow.param_grad_norms[path]["w"], np.linalg.norm(grads[path]["w"]),
                                   rtol=1e-5)

    # The forward pass in float64 NumPy, and the statistics from their definitions.
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    hidden_1 = 1 / (1 + np.exp(-(x @ p["dense_0"]["w"] + p["dense_0"]["b"])))
    hidden_2 = np.tanh(hidden_1 @ p["dense_2"]["w"] + p["dense_2"]["b"])
    hidden_3 = np.maximum(hidden_2 @ p["dense_4"]["w"] + p["dense_4"]["b"], 0)
    sigmoid_saturated = np.mean((hidden_1 <= 0.01) | (hidden_1 >= 0.99))
    tanh_saturated = np.mean(np.abs(hidden_2) > 0.99)
    assert 0.05 < sigmoid_saturated < 0.95 and 0.05 < tanh_saturated < 0.95  # the check has teeth
    stats = flow.activations
    np.testing.assert_allclose(stats["sigmoid_1"]["saturated"], sigmoid_saturated)
    np.testing.assert_allclose(stats["tanh_3"]["saturated"], tanh_saturated)
    np.testing.assert_allclose(stats["relu_5"]["dead"], np.mean(hidden_3 == 0))
    np.testing.assert_allclose(stats["relu_5"]["dead_units"], np.mean(np.all(hidden_3 == 0, axis=0)))
    np.testing.assert_allclose(stats["tanh_3"]["mean"], hidden_2.mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["tanh_3"]["std"], hidden_2.std(), rtol=1e-5)
    assert set(stats["dense_0"]) == {"mean", "std"} and "dead" not in stats["tanh_3"]


def test_logger_records_at_train_begin_and_every_epochs_of_fit():
    model = jaxnn.Sequential([jaxnn.Dense(5), jaxnn.Tanh(), jaxnn.Dense(3)])
    x, y = classification_data(32, features=4, classes=3)
    optimizer = jaxnn.optim.sgd(0.5)
    train_state = jaxnn.train.create_train_state(model, optimizer, jax.random.key(0), (4,))

    @jax.jit
    def norms(params):
        def loss(params):
            return jaxnn.losses.cross_entropy(model.apply(params, train_state.state, x[:8])[0], y[:8])

        grads = jax.grad(loss)(params)
        return [jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(grads[path])))
                for path in ("dense_0", "dense_2")]

    before = norms(train_state.params)
    logger = lab.GradientFlowLogger(x[:8], y[:8], every=2, model=model)
    train_state, _ = jaxnn.train.fit(model, optimizer, train_state, (x, y), epochs=4, batch_size=16,
                                     callbacks=[logger], progress=False)
    assert logger.epochs == [0, 2, 4]
    assert logger.paths == ["dense_0", "dense_2"]
    table = logger.grad_norm_table()
    assert table.shape == (3, 2)
    # Each row is measured with the parameters of its epoch: the first before training, the last
    # with the final ones, which differ.
    np.testing.assert_allclose(table[0], before, rtol=1e-5)
    np.testing.assert_allclose(table[-1], norms(train_state.params), rtol=1e-5)
    assert not np.allclose(table[0], table[-1], rtol=1e-3)
    assert logger.flows[-1].loss < logger.flows[0].loss
