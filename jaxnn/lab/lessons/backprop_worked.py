r"""Lesson ``backprop``: backpropagation on a 2-2-2 network with every number shown.

The network and numbers are the classic worked example (Mazur, "A Step by Step Backpropagation
Example", 2015): inputs :math:`x = (0.05, 0.10)`, targets :math:`y = (0.01, 0.99)`, sigmoid hidden
and output layers, and the squared error :math:`L = \frac12 \sum_k (a^{[2]}_k - y_k)^2`, which is
``jaxnn.losses.mse`` (the mean over the 2 outputs). ``jaxnn.lab.backprop`` applies the δ rules

.. math::
    \delta^{[2]} = (a^{[2]} - y) \odot \sigma'(z^{[2]}), \qquad
    \delta^{[1]} = (\delta^{[2]} W^{[2]\top}) \odot \sigma'(z^{[1]}), \qquad
    \frac{\partial L}{\partial W^{[l]}} = a^{[l-1]\top} \delta^{[l]}

by hand; the lesson prints the computation, compares every gradient with ``jax.grad``, and
trains the network by gradient descent with those hand-computed gradients.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn
from jaxnn import losses
from jaxnn.lab import backprop
from jaxnn.lab.lessons.report import Report
from jaxnn.viz import new_figure

LEARNING_RATE = 0.5


def worked_example():
    """``(model, params, state, x, y)`` of the 2-2-2 sigmoid network with the textbook's numbers.

    Kernels are ``(units in, units out)``: ``w[i, j]`` joins input ``i`` to unit ``j``.
    """
    model = jaxnn.Sequential([jaxnn.Dense(2), jaxnn.Sigmoid(), jaxnn.Dense(2), jaxnn.Sigmoid()])
    _, _, state = model.init(jax.random.key(0), (2,))
    params = {
        "dense_0": {"w": jnp.array([[0.15, 0.25], [0.20, 0.30]]), "b": jnp.array([0.35, 0.35])},
        "sigmoid_1": {},
        "dense_2": {"w": jnp.array([[0.40, 0.50], [0.45, 0.55]]), "b": jnp.array([0.60, 0.60])},
        "sigmoid_3": {},
    }
    return model, params, state, jnp.array([[0.05, 0.10]]), jnp.array([[0.01, 0.99]])


def jax_gradients(model, params, state, x, y):
    """``(loss, grads)`` of the mean squared error by ``jax.value_and_grad``: the oracle."""
    return jax.value_and_grad(lambda p: losses.mse(model.apply(p, state, x)[0], y))(params)


def gradient_rows(record, reference) -> list[list]:
    """One row per parameter entry: path, hand value, ``jax.grad`` value, absolute difference."""
    rows = []
    for layer in ("dense_0", "dense_2"):
        for name in ("w", "b"):
            mine, theirs = np.asarray(record.grads[layer][name]), np.asarray(reference[layer][name])
            for index in np.ndindex(mine.shape):
                rows.append([f"{layer}.{name}[{', '.join(map(str, index))}]", float(mine[index]),
                             float(theirs[index]), abs(float(mine[index]) - float(theirs[index]))])
    return rows


def descend(model, params, state, x, y, steps: int) -> list[float]:
    """Losses of ``steps`` steps of gradient descent (rate 0.5) driven by ``backprop``'s gradients."""
    step = jax.jit(lambda p: backprop(model, p, state, x, y, "mse"))
    history = []
    for _ in range(steps):
        record = step(params)
        history.append(float(record.loss))
        params = jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, record.grads)
    return history


def draw_network(report: Report, record) -> None:
    figure = new_figure(7, 4.5)
    axis = figure.subplots()
    columns = {0: ["x₁", "x₂"], 1: ["h₁", "h₂"], 2: ["o₁", "o₂"]}
    position = {(column, row): (column * 3.0, 1.5 - row * 2.0) for column in columns for row in (0, 1)}
    for (layer, dense) in ((1, "dense_0"), (2, "dense_2")):
        weights, grads = np.asarray(record.params[dense]["w"]), np.asarray(record.grads[dense]["w"])
        for source in (0, 1):
            for target in (0, 1):
                (x0, y0), (x1, y1) = position[(layer - 1, source)], position[(layer, target)]
                axis.plot([x0, x1], [y0, y1], color="grey", zorder=1)
                fraction = 0.3 if target == 0 else 0.7
                axis.text(x0 + fraction * (x1 - x0), y0 + fraction * (y1 - y0),
                          f"w={weights[source, target]:.2f}\n∂L/∂w={grads[source, target]:.2e}",
                          fontsize=7, ha="center", va="center", bbox={"facecolor": "white", "alpha": 0.8})
    values = {0: np.asarray(record.inputs)[0]}
    for layer, dense in ((1, "dense_0"), (2, "dense_2")):
        values[layer] = np.asarray(record.activations[dense])[0]
    for (column, row), (px, py) in position.items():
        axis.scatter([px], [py], s=900, color="tab:blue" if column else "tab:green", zorder=2,
                     label={0: "input", 1: "sigmoid unit", 2: None}[column] if row == 0 else None)
        axis.text(px, py, f"{columns[column][row]}\n{values[column][row]:.3f}", ha="center", va="center",
                  color="white", fontsize=8, zorder=3)
    axis.set(title=f"The 2-2-2 network: activations, weights and ∂L/∂w (L = {float(record.loss):.4f})",
             xlabel="layer", ylabel="unit")
    axis.set_xticks([0, 3, 6], ["input", "hidden", "output"])
    axis.set_yticks([])
    axis.set_xlim(-1, 7)
    axis.set_ylim(-1.5, 2.5)
    axis.legend(loc="upper right", fontsize=7, markerscale=0.3)
    report.figure(figure, "network.png", "The worked example's network with its gradients")


def run(out: Path, *, quick: bool = False, log=print) -> Path:
    model, params, state, x, y = worked_example()
    log("backpropagating by hand through the 2-2-2 network")
    record = backprop(model, params, state, x, y, "mse")
    loss, reference = jax_gradients(model, params, state, x, y)
    rows = gradient_rows(record, reference)
    difference = max(row[3] for row in rows)

    report = Report(out, "Backpropagation, step by step")
    report.text("A 2-2-2 network with sigmoid units, x = (0.05, 0.10), targets y = (0.01, 0.99), "
                "loss L = ½ Σ (a − y)² (`jaxnn.losses.mse`, the mean over the two outputs). "
                "`jaxnn.lab.backprop(...).explain()` prints each number of the forward and backward pass:")
    report.code(record.explain(decimals=6, show=False))
    report.section("Against jax.grad")
    report.table(["parameter", "backprop (δ rules)", "jax.grad", "|difference|"], rows)
    agreement = ": the same float32 numbers." if difference == 0 else ", float32 rounding."
    report.text(f"The loss is {float(record.loss):.9f} by hand and {float(loss):.9f} by `jax.grad`'s forward "
                f"pass; the largest difference between a hand-computed gradient and `jax.grad`'s is "
                f"{difference:.1e}{agreement}")
    draw_network(report, record)

    steps = 200 if quick else 10000
    log(f"{steps} steps of gradient descent with the hand-computed gradients")
    history = descend(model, params, state, x, y, steps)
    report.section("Training with the hand-computed gradients")
    shown = [1, 10, 100, 1000, 10000]
    report.table(["step", "loss"], [[step, history[step - 1]] for step in shown if step <= steps])
    report.text(f"Gradient descent with rate {LEARNING_RATE} and the δ-rule gradients brings the loss from "
                f"{history[0]:.6f} to {history[-1]:.3e} in {steps} steps.")
    figure = new_figure(6, 4)
    axis = figure.subplots()
    axis.loglog(np.arange(1, steps + 1), history, label=f"gradient descent, rate {LEARNING_RATE}")
    axis.set(title="Loss of the worked example while training", xlabel="step", ylabel="L (log scale)")
    axis.legend()
    report.figure(figure, "training.png", "Loss while training with the hand-computed gradients")
    return report.write()
