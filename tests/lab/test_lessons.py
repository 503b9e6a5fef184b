"""The lessons' measurements against independent checks (closed forms, NumPy float64, jax.grad, the
published worked example), the ``jaxnn lesson`` command, and whole lessons writing their reports."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from conftest import classification_data
from jaxnn import cli, losses
from jaxnn.lab import backprop, capture
from jaxnn.lab import lessons
from jaxnn.lab.lessons import (
    activations,
    backprop_worked,
    batch_size,
    decision_boundary,
    forward,
    loss_landscape,
    regularization,
    vanishing_gradients,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def numpy_cross_entropy(logits, labels):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -np.mean(log_probabilities[np.arange(len(labels)), labels])


# --------------------------------------------------------------------------------------------
# activations


def test_sigmoid_derivative_peaks_at_a_quarter_and_saturates_where_the_closed_form_says():
    x = np.linspace(-8, 8, 1601, dtype=np.float32)
    curves = activations.values_and_derivatives(x, {"sigmoid": jaxnn.sigmoid, "relu": jaxnn.relu})
    s = 1 / (1 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(curves["sigmoid"][1], s * (1 - s), atol=1e-6)
    assert curves["sigmoid"][1].max() == pytest.approx(0.25, abs=1e-7)
    # σ' = σ(1 − σ) = 0.01 · 0.25 where σ = (1 − √0.99)/2: |x| = 5.986.
    p = (1 - math.sqrt(0.99)) / 2
    edge = math.log(p / (1 - p))
    (low_first, low_last), (high_first, high_last) = activations.saturated_intervals(x, curves["sigmoid"][1])
    assert low_first == -8 and high_last == 8
    assert abs(low_last - edge) <= 0.01 and abs(high_first + edge) <= 0.01
    # relu'(x) = 0 for x <= 0 (PyTorch's convention at the kink), 1 above.
    assert activations.saturated_intervals(x, curves["relu"][1]) == [(-8.0, 0.0)]


# --------------------------------------------------------------------------------------------
# loss-landscape


def test_filter_normalized_directions_have_the_weights_filter_norms_and_zero_biases():
    model = jaxnn.Sequential([jaxnn.Conv2D(4, 3), jaxnn.Relu(), jaxnn.Flatten(), jaxnn.Dense(5),
                              jaxnn.BatchNorm(), jaxnn.Dense(3)])
    _, params, _ = model.init(jax.random.key(0), (6, 6, 2))
    direction = loss_landscape.filter_normalized_direction(jax.random.key(1), params)
    kernels = 0
    for weight, step in zip(jax.tree.leaves(params), jax.tree.leaves(direction)):
        weight, step = np.asarray(weight, np.float64), np.asarray(step, np.float64)
        if weight.ndim < 2:
            assert not step.any()
            continue
        kernels += 1
        for unit in range(weight.shape[-1]):
            expected = np.linalg.norm(weight[..., unit])
            assert np.linalg.norm(step[..., unit]) == pytest.approx(expected, rel=1e-5)
        cosine = np.sum(weight * step) / (np.linalg.norm(weight) * np.linalg.norm(step))
        assert abs(cosine) < 0.9  # a random direction, not the weights themselves
    assert kernels == 3


def test_loss_surface_is_the_cross_entropy_of_the_moved_weights():
    x, y = classification_data(64, features=4, classes=3)
    model = jaxnn.Sequential([jaxnn.Dense(8), jaxnn.Tanh(), jaxnn.Dense(3)])
    _, params, state = model.init(jax.random.key(0), (4,))
    d1 = loss_landscape.filter_normalized_direction(jax.random.key(1), params)
    d2 = loss_landscape.filter_normalized_direction(jax.random.key(2), params)
    coordinates = np.array([[0.0, 0.0], [0.5, -0.25], [1.0, 1.0]], np.float32)
    got = loss_landscape.loss_surface(model, params, state, x, y, [d1, d2], coordinates)

    def moved(layer, name, a, b):
        return (np.asarray(params[layer][name], np.float64) + a * np.asarray(d1[layer][name], np.float64)
                + b * np.asarray(d2[layer][name], np.float64))

    for (a, b), value in zip(coordinates, got):
        hidden = np.tanh(x @ moved("dense_0", "w", a, b) + moved("dense_0", "b", a, b))
        logits = hidden @ moved("dense_2", "w", a, b) + moved("dense_2", "b", a, b)
        assert value == pytest.approx(numpy_cross_entropy(logits, y), rel=1e-5)


def test_mse_gradient_vanishes_for_a_confidently_wrong_logistic_output():
    z = np.array([-10.0, -2.0, 0.0, 3.0], np.float32)
    curves = loss_landscape.logistic_losses(z)
    s = 1 / (1 + np.exp(-z.astype(np.float64)))
    np.testing.assert_allclose(curves["mse"], (s - 1) ** 2, rtol=1e-5)
    np.testing.assert_allclose(curves["cross_entropy"], -np.log(s), rtol=1e-5)
    np.testing.assert_allclose(curves["mse_gradient"], 2 * (s - 1) * s * (1 - s), rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(curves["cross_entropy_gradient"], s - 1, rtol=1e-5)
    assert abs(curves["mse_gradient"][0]) < 1e-3 * abs(curves["cross_entropy_gradient"][0])


# --------------------------------------------------------------------------------------------
# batch-size


def test_gradient_noise_falls_as_one_over_the_batch_size():
    x, y = classification_data(64, features=6, classes=3)
    model = jaxnn.Sequential([jaxnn.Dense(8), jaxnn.Relu(), jaxnn.Dense(3)])
    _, params, state = model.init(jax.random.key(0), (6,))

    # σ² by a loop over single examples, each gradient from jax.grad.
    def loss_fn(p, xs, ys):
        return losses.cross_entropy(model.apply(p, state, xs)[0], ys)

    single = jax.jit(jax.grad(loss_fn))
    per_example = np.asarray([np.concatenate([np.ravel(leaf) for leaf in
                                              jax.tree.leaves(single(params, x[i:i + 1], y[i:i + 1]))])
                              for i in range(len(y))], np.float64)
    variance = np.mean(np.sum((per_example - per_example.mean(axis=0)) ** 2, axis=1))
    assert batch_size.per_example_variance(model, params, state, x, y) == pytest.approx(variance, rel=1e-4)

    sizes = [4, 16, 64]
    noise = batch_size.gradient_noise(model, params, state, x, y, sizes, samples=200, key=jax.random.key(3))
    for size in sizes:
        assert noise[size] == pytest.approx(variance / size, rel=0.2)
    slope = np.polyfit(np.log(sizes), np.log([noise[size] for size in sizes]), 1)[0]
    assert -1.15 < slope < -0.85


# --------------------------------------------------------------------------------------------
# regularization


def test_l2_adds_lambda_theta_to_the_gradient():
    params = {"dense_0": {"w": jnp.array([[1.0, -2.0]]), "b": jnp.array([0.5, 0.0])}}
    zero_gradient = jax.tree.map(jnp.zeros_like, params)
    for setup, decay in (("none", 0.0), ("L2", regularization.L2_STRENGTH)):
        _, optimizer, _ = regularization.make_setup(setup)
        updates, _ = optimizer.update(zero_gradient, optimizer.init(params), params)
        # One SGD step (rate 0.05, momentum 0.9 from zero) on the gradient 0 + λθ: −0.05·λθ.
        for update, weight in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
            np.testing.assert_allclose(update, -0.05 * decay * np.asarray(weight), rtol=1e-6, atol=1e-12)
    with pytest.raises(ValueError, match="unknown regularization setup 'l3'.*early stopping"):
        regularization.make_setup("l3")


@pytest.mark.slow
def test_l2_shrinks_the_weight_norm_and_early_stopping_restores_the_best_epoch():
    splits = regularization.small_digits(100, 100)
    plain = regularization.train_setup("none", splits, epochs=80)
    decayed = regularization.train_setup("L2", splits, epochs=80)
    for result in (plain, decayed):
        params = result["train_state"].params
        kernels = [np.asarray(params[name]["w"], np.float64) for name in ("dense_0", "dense_2", "dense_4")]
        expected = math.sqrt(sum(np.sum(kernel ** 2) for kernel in kernels))
        assert result["weight_norm"] == pytest.approx(expected, rel=1e-6)
    assert decayed["weight_norm"] < 0.8 * plain["weight_norm"]
    assert plain["train"]["accuracy"] > plain["validation"]["accuracy"]  # a generalization gap
    stopped = regularization.train_setup("early stopping", splits, epochs=200)
    assert stopped["history"].epochs < 200
    assert stopped["validation"]["loss"] == pytest.approx(min(stopped["history"]["val_loss"]), rel=1e-4)


# --------------------------------------------------------------------------------------------
# vanishing-gradients


def test_sigmoid_with_plain_normal_init_starves_the_first_layer():
    digits = jaxnn.data.digits()
    x, y = digits.x_train[:64], digits.y_train[:64]
    first_norms = {}
    for setup in ("ReLU, He", next(iter(vanishing_gradients.SETUPS))):
        model = vanishing_gradients.deep_mlp(setup, depth=10)
        _, params, state = model.init(jax.random.key(0), (64,))
        norms = vanishing_gradients.dense_gradient_norms(model, params, state, x, y)
        assert list(norms) == [f"dense_{2 * i}" for i in range(11)]
        first_norms[setup] = norms["dense_0"]
    # The sigmoid network's first-layer norm again, from jax.grad.
    grads = jax.grad(lambda p: losses.cross_entropy(model.apply(p, state, x)[0], y))(params)
    oracle = math.sqrt(sum(float(np.sum(np.asarray(leaf, np.float64) ** 2))
                           for leaf in jax.tree.leaves(grads["dense_0"])))
    relu_first, sigmoid_first = first_norms.values()
    assert sigmoid_first == pytest.approx(oracle, rel=1e-4)
    assert relu_first > 30 * sigmoid_first


# --------------------------------------------------------------------------------------------
# forward and backprop


def test_captured_layer_outputs_equal_a_numpy_forward_pass():
    model = forward.mlp()
    _, params, state = model.init(jax.random.key(0), (64,))
    x = np.random.default_rng(0).uniform(0, 1, (20, 64)).astype(np.float32)
    outputs = capture(model, params, state, x)
    by_hand = forward.numpy_forward(params, x)
    assert list(outputs) == list(by_hand) == ["dense_0", "relu_1", "dense_2", "relu_3", "dense_4"]
    for path, value in by_hand.items():
        np.testing.assert_allclose(np.asarray(outputs[path]), value, rtol=1e-5, atol=1e-5)
    statistics = {row[0]: row for row in forward.layer_statistics(outputs)}
    assert statistics["relu_1"][4] == pytest.approx(np.mean(by_hand["dense_0"] <= 0))


def test_worked_example_gives_the_published_numbers_and_equals_jax_grad():
    model, params, state, x, y = backprop_worked.worked_example()
    record = backprop(model, params, state, x, y, "mse")
    # Mazur (2015): E_total = 0.298371109, ∂E/∂w5 = 0.082167041, ∂E/∂w1 = 0.000438568.
    assert float(record.loss) == pytest.approx(0.298371109, abs=1e-7)
    assert float(record.grads["dense_2"]["w"][0, 0]) == pytest.approx(0.082167041, abs=1e-7)
    assert float(record.grads["dense_0"]["w"][0, 0]) == pytest.approx(0.000438568, abs=1e-8)
    _, reference = backprop_worked.jax_gradients(model, params, state, x, y)
    rows = backprop_worked.gradient_rows(record, reference)
    assert len(rows) == 12 and max(row[3] for row in rows) < 1e-7
    losses_seen = backprop_worked.descend(model, params, state, x, y, 20)
    assert losses_seen[0] == pytest.approx(0.298371109, abs=1e-7) and losses_seen[-1] < 0.5 * losses_seen[0]


# --------------------------------------------------------------------------------------------
# the command and the Python API


def test_list_prints_every_lesson_with_its_description(capsys):
    assert cli.main(["lesson", "--list"]) == 0
    printed = capsys.readouterr().out
    for name, description in lessons.LESSONS.items():
        assert re.search(rf"^{re.escape(name)}\s+{re.escape(description)}$", printed, flags=re.MULTILINE)
    assert set(lessons.LESSONS) == {"activations", "forward", "backprop", "vanishing-gradients",
                                    "loss-landscape", "batch-size", "regularization", "decision-boundary"}


def test_an_unknown_lesson_is_an_error_listing_the_lessons(capsys, tmp_path):
    assert cli.main(["lesson", "activation", "--out", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("jaxnn lesson: error: unknown lesson 'activation'")
    assert all(name in error for name in lessons.LESSONS)
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="unknown lesson 'nope'"):
        lessons.run("nope", tmp_path)


def test_no_name_and_no_list_says_what_to_pass(capsys):
    assert cli.main(["lesson"]) == 1
    assert "pass the name of a lesson" in capsys.readouterr().err


def test_a_quick_lesson_writes_its_report_and_figures(tmp_path):
    path = lessons.run("activations", tmp_path / "activations", quick=True)
    report = path.read_text()
    assert path == tmp_path / "activations" / "report.md"
    # The sigmoid row, from σ'(0) = 0.25 and σ' < 0.0025 beyond |x| = 5.986 (grid step 0.02).
    sigmoid_row = r"^\| sigmoid \| 0\.25 \| 0\.00 \| x ≤ -6\.00 and x ≥ 6\.00 \|$"
    assert re.search(sigmoid_row, report, flags=re.MULTILINE)
    figures = re.findall(r"\]\(([^)]+\.png)\)", report)
    assert figures == ["activations.png", "depth_factor.png"]
    for figure in figures:
        assert (path.parent / figure).read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.slow
def test_the_command_writes_the_report_and_figures(capsys, tmp_path):
    out = tmp_path / "lesson"
    assert cli.main(["lesson", "activations", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"report written to {out / 'report.md'}" in printed
    report = (out / "report.md").read_text()
    sigmoid_row = r"^\| sigmoid \| 0\.25 \| 0\.00 \| x ≤ -5\.99 and x ≥ 5\.99 \|$"
    assert re.search(sigmoid_row, report, flags=re.MULTILINE)
    for figure in re.findall(r"\]\(([^)]+\.png)\)", report):
        assert (out / figure).read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.slow
@pytest.mark.parametrize("name", list(lessons.LESSONS))
def test_every_lesson_runs_quickly_and_writes_its_figures(name, tmp_path):
    path = lessons.run(name, tmp_path / name, quick=True)
    report = path.read_text()
    assert path == tmp_path / name / "report.md" and report.startswith("# ")
    figures = re.findall(r"\]\(([^)]+\.png)\)", report)
    assert figures
    for figure in figures:
        assert (path.parent / figure).read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.slow
def test_decision_boundary_snapshots_improve_as_training_proceeds():
    dataset = jaxnn.data.moons(n=300)
    snapshots = decision_boundary.train_with_snapshots(dataset, [0, 20], resolution=30)
    before, after = snapshots
    assert after["train_accuracy"] > 0.95 > before["train_accuracy"]
    # The grid decisions are the model's argmax: the grid point nearest each training point mostly
    # agrees with its label once trained.
    u, v = after["u"], after["v"]
    columns = np.abs(u[0][None, :] - dataset.x_train[:, :1]).argmin(axis=1)
    rows = np.abs(v[:, 0][None, :] - dataset.x_train[:, 1:]).argmin(axis=1)
    assert np.mean(after["decisions"][rows, columns] == dataset.y_train) > 0.85
