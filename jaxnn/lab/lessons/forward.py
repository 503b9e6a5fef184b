r"""Lesson ``forward``: forward propagation in a trained network, layer by layer.

Each ``Dense`` layer computes :math:`z^{(l)} = a^{(l-1)} W^{(l)} + b^{(l)}` and each activation
:math:`a^{(l)} = \mathrm{relu}(z^{(l)})`; the last layer's :math:`z` are the logits, and
:math:`\mathrm{softmax}` turns them into class probabilities. ``jaxnn.lab.capture`` records every
layer's output by path during one ``model.apply``; the lesson shows them for one digit and their
distributions over a batch, and recomputes the pass in NumPy float64 from the weights as a check.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

import jaxnn
from jaxnn import data, optim, train
from jaxnn.lab import capture
from jaxnn.lab.lessons.report import Report
from jaxnn.viz import new_figure

WIDTHS = (32, 16)


def mlp(classes: int = 10):
    layers = []
    for width in WIDTHS:
        layers += [jaxnn.Dense(width), jaxnn.Relu()]
    return jaxnn.Sequential(layers + [jaxnn.Dense(classes)])


def train_mlp(epochs: int, seed: int = 0):
    """The 64-32-16-10 ReLU MLP trained with Adam (1e-2) on the digits: ``(model, train_state, dataset)``."""
    digits = data.digits()
    model = mlp(digits.num_classes)
    optimizer = optim.adam(1e-2)
    train_state = train.create_train_state(model, optimizer, jax.random.key(seed), digits.input_shape)
    train_state, _ = train.fit(model, optimizer, train_state, (digits.x_train, digits.y_train),
                               epochs=epochs, batch_size=64, progress=False)
    return model, train_state, digits


def numpy_forward(params, x: np.ndarray) -> dict[str, np.ndarray]:
    """The same forward pass by hand in float64 NumPy: ``path -> output`` for the :func:`mlp` model."""
    outputs, activation = {}, np.asarray(x, np.float64)
    index = 0
    for _ in WIDTHS:
        dense = params[f"dense_{index}"]
        z = activation @ np.asarray(dense["w"], np.float64) + np.asarray(dense["b"], np.float64)
        activation = np.maximum(z, 0.0)
        outputs[f"dense_{index}"], outputs[f"relu_{index + 1}"] = z, activation
        index += 2
    dense = params[f"dense_{index}"]
    outputs[f"dense_{index}"] = (activation @ np.asarray(dense["w"], np.float64)
                                 + np.asarray(dense["b"], np.float64))
    return outputs


def layer_statistics(outputs) -> list[list]:
    """Per layer path: mean, standard deviation, fraction of exact zeros, min and max over a batch."""
    rows = []
    for path, output in outputs.items():
        values = np.asarray(output)
        rows.append([path, "×".join(map(str, values.shape[1:])), float(values.mean()), float(values.std()),
                     float(np.mean(values == 0.0)), float(values.min()), float(values.max())])
    return rows


def run(out: Path, *, quick: bool = False, log=print) -> Path:
    epochs = 3 if quick else 30
    log(f"training a 64-32-16-10 ReLU MLP on the digits for {epochs} epochs")
    model, train_state, digits = train_mlp(epochs)
    params, state = train_state.params, train_state.state
    example = 0
    x_one = digits.x_test[example:example + 1]
    outputs = capture(model, params, state, x_one)
    batch_outputs = capture(model, params, state, digits.x_test)
    by_hand = numpy_forward(params, digits.x_test)
    difference = max(float(np.abs(np.asarray(batch_outputs[path], np.float64) - value).max())
                     for path, value in by_hand.items())
    logits = np.asarray(outputs[list(outputs)[-1]])[0]
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    predicted = int(np.argmax(logits))

    report = Report(out, "Forward propagation, layer by layer")
    accuracy = train.evaluate(model, train_state, (digits.x_test, digits.y_test))["accuracy"]
    report.text(f"A 64-32-16-10 ReLU MLP trained with Adam for {epochs} epochs on the digits (test accuracy "
                f"{accuracy:.3f}). `jaxnn.lab.capture` records each layer's output during one `model.apply`.")
    report.section("One digit")
    report.text(f"Test image {example}, labelled {int(digits.y_test[example])}: the network predicts "
                f"{predicted} with probability {probabilities[predicted]:.3f}.")
    report.table(["layer", "output shape", "values (first 8)"],
                 [[path, "×".join(map(str, np.shape(value)[1:])),
                   ", ".join(f"{v:.2f}" for v in np.asarray(value)[0][:8])]
                  for path, value in outputs.items()])
    report.section(f"Over the {len(digits.y_test)} test digits")
    report.table(["layer", "shape", "mean", "std", "fraction zero", "min", "max"],
                 layer_statistics(batch_outputs))
    relu_zero = {path: float(np.mean(np.asarray(v) == 0.0)) for path, v in batch_outputs.items()
                 if path.startswith("relu")}
    shares = ", ".join(f"{share:.0%} ({path})" for path, share in relu_zero.items())
    report.text(f"The ReLU layers output exact zeros for {shares} of their units and digits: a sparse "
                f"code. Recomputing the pass in float64 NumPy from the weights gives the captured outputs "
                f"to within {difference:.1e}.")

    paths = list(outputs)
    figure = new_figure(3.0 * (len(paths) + 1), 3.2)
    axes = figure.subplots(1, len(paths) + 1)
    axes[0].imshow(x_one.reshape(8, 8), cmap="gray_r")
    axes[0].set(title=f"input (label {int(digits.y_test[example])})",
                xlabel="pixel column", ylabel="pixel row")
    for axis, path in zip(axes[1:], paths):
        values = np.asarray(outputs[path])[0]
        units = np.arange(values.size)
        positive = values > 0
        axis.bar(units[positive], values[positive], color="tab:blue", label="> 0")
        axis.bar(units[~positive], values[~positive], color="tab:red", label="≤ 0")
        axis.set(title=f"{path} (logits)" if path == paths[-1] else path,
                 xlabel="unit", ylabel="output value")
        axis.legend(fontsize=7)
    figure.suptitle("One digit's forward pass: every layer's output (captured)")
    report.figure(figure, "one_example.png", "One digit's activations, layer by layer")

    figure = new_figure(3.0 * len(paths), 3.0)
    axes = figure.subplots(1, len(paths))
    for axis, path in zip(axes, paths):
        values = np.asarray(batch_outputs[path]).ravel()
        axis.hist(values, bins=40, color="tab:green", label=f"{values.size} values")
        axis.set_yscale("log")
        axis.set(title=path, xlabel="output value", ylabel="count (log)")
        axis.legend(fontsize=7)
    figure.suptitle("Distribution of each layer's outputs over the test digits")
    report.figure(figure, "histograms.png", "Per-layer histograms over the test digits")
    return report.write()
