r"""Lesson ``batch-size``: what the batch size changes: steps, time, accuracy and gradient noise.

A minibatch gradient :math:`g_B = \frac1B \sum_{i \in B} g_i` estimates the full-batch gradient
:math:`g = \frac1N \sum_i g_i`. For a batch of :math:`B` examples drawn independently (with
replacement), its noise is

.. math:: \mathbb E \lVert g_B - g \rVert^2 = \frac{\sigma^2}{B}, \qquad
          \sigma^2 = \frac1N \sum_i \lVert g_i - g \rVert^2,

so quadrupling the batch halves the noise's standard deviation. The lesson measures the left side
by sampling minibatches, and trains the same MLP with each batch size for the same number of
epochs (the same number of examples seen): small batches take more, noisier steps per epoch.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn
from jaxnn import data, losses, optim, train
from jaxnn.lab.lessons.report import Report
from jaxnn.viz import new_figure


def mlp():
    return jaxnn.Sequential([jaxnn.Dense(64), jaxnn.Relu(), jaxnn.Dense(10)])


def _loss(model, params, state, x, y):
    logits, _ = model.apply(params, state, x)
    return losses.cross_entropy(logits, y)


def squared_distance(tree_a, tree_b) -> jax.Array:
    """:math:`\\lVert a - b \\rVert^2` summed over every leaf of two pytrees of the same structure."""
    return sum(jnp.sum(jnp.square(a - b)) for a, b in zip(jax.tree.leaves(tree_a), jax.tree.leaves(tree_b)))


def gradient_noise(model, params, state, x, y, batch_sizes, *, samples: int = 200,
                   key: jax.Array | None = None) -> dict[int, float]:
    r"""``B -> mean ||g_B - g||²`` over ``samples`` minibatches of ``B`` examples drawn with replacement.

    ``g`` is the gradient of the mean cross-entropy over all of ``(x, y)``; ``g_B`` that over a
    minibatch.
    """
    key = jax.random.key(0) if key is None else key
    x, y = jnp.asarray(x), jnp.asarray(y)
    gradient = jax.grad(lambda p, xs, ys: _loss(model, p, state, xs, ys))
    full = jax.jit(gradient)(params, x, y)
    noise = {}
    for batch_size, batch_key in zip(batch_sizes, jax.random.split(key, len(batch_sizes))):
        indices = jax.random.randint(batch_key, (samples, batch_size), 0, x.shape[0])

        def distance(rows):
            return squared_distance(gradient(params, x[rows], y[rows]), full)

        noise[int(batch_size)] = float(jnp.mean(jax.lax.map(jax.jit(distance), indices)))
    return noise


def per_example_variance(model, params, state, x, y) -> float:
    r""":math:`\sigma^2 = \frac1N \sum_i \lVert g_i - g \rVert^2`, from per-example gradients
    (``jax.vmap`` of ``jax.grad``)."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    per_example = jax.jit(jax.vmap(jax.grad(lambda p, xi, yi: _loss(model, p, state, xi[None], yi[None])),
                                   in_axes=(None, 0, 0)))(params, x, y)
    mean = jax.tree.map(lambda leaf: jnp.mean(leaf, axis=0), per_example)
    deviations = sum(jnp.sum(jnp.square(leaf - centre[None]), axis=tuple(range(1, leaf.ndim)))
                     for leaf, centre in zip(jax.tree.leaves(per_example), jax.tree.leaves(mean)))
    return float(jnp.mean(deviations))


def train_with_batch_size(batch_size: int, epochs: int, dataset, *, seed: int = 0) -> dict:
    """Trains the 64-64-10 MLP with Adam (1e-3) for ``epochs``; returns its history and test metrics."""
    model = mlp()
    optimizer = optim.adam(1e-3)
    train_state = train.create_train_state(model, optimizer, jax.random.key(seed), dataset.input_shape)
    train_state, history = train.fit(model, optimizer, train_state, (dataset.x_train, dataset.y_train),
                                     epochs=epochs, batch_size=batch_size, progress=False,
                                     validation_data=(dataset.x_test, dataset.y_test))
    return {"history": history, "steps_per_epoch": data.num_batches(len(dataset.y_train), batch_size)}


def run(out: Path, *, quick: bool = False, log=print) -> Path:
    batch_sizes = [8, 32, 128, 512] if quick else [8, 16, 32, 64, 128, 256, 512]
    epochs, samples = (3, 50) if quick else (15, 400)
    digits = data.digits()
    model = mlp()
    _, params, state = model.init(jax.random.key(0), digits.input_shape)

    log("measuring gradient noise")
    noise = gradient_noise(model, params, state, digits.x_train, digits.y_train, batch_sizes, samples=samples)
    variance = per_example_variance(model, params, state, digits.x_train, digits.y_train)
    runs = {}
    for batch_size in batch_sizes:
        log(f"training with batch size {batch_size} for {epochs} epochs")
        runs[batch_size] = train_with_batch_size(batch_size, epochs, digits)

    report = Report(out, "Batch size: steps, time, accuracy and gradient noise")
    report.text(f"A 64-64-10 ReLU MLP on the digits ({len(digits.y_train)} training images), Adam 1e-3, "
                f"{epochs} epochs for every batch size: the same number of examples seen. Time per epoch "
                f"is the fastest epoch after the first (which compiles), the one least disturbed by other "
                f"work. Gradient noise is E‖g_B − g‖² over {samples} minibatches drawn with replacement at "
                f"initialization; σ²/B is its prediction from the per-example gradients "
                f"(σ² = {variance:.4g}).")
    rows = []
    for batch_size in batch_sizes:
        history = runs[batch_size]["history"]
        seconds = history["epoch_seconds"][1:] or history["epoch_seconds"]
        rows.append([batch_size, runs[batch_size]["steps_per_epoch"], 1e3 * min(seconds),
                     history["loss"][-1], history["val_accuracy"][-1], noise[batch_size],
                     variance / batch_size, noise[batch_size] * batch_size])
    report.table(["batch size B", "steps per epoch", "ms per epoch", "final training loss",
                  f"test accuracy after {epochs} epochs", "E‖g_B − g‖²", "σ²/B", "B · E‖g_B − g‖²"], rows)
    products = [noise[b] * b for b in batch_sizes]
    slope = float(np.polyfit(np.log(batch_sizes), np.log([noise[b] for b in batch_sizes]), 1)[0])
    accuracies = {b: runs[b]["history"]["val_accuracy"][-1] for b in batch_sizes}
    best = max(accuracies, key=accuracies.get)
    report.text(f"The gradient noise falls as B^{slope:.2f} (a least-squares fit on log-log axes; 1/B is "
                f"B^-1): B times the noise stays between {min(products):.3g} and {max(products):.3g}, "
                f"against σ² = {variance:.3g}. After the same {epochs} epochs the best test accuracy, "
                f"{accuracies[best]:.3f}, came with B = {best}, which took {runs[best]['steps_per_epoch']} "
                f"steps per epoch; B = {batch_sizes[-1]} took {runs[batch_sizes[-1]]['steps_per_epoch']} "
                f"and reached {accuracies[batch_sizes[-1]]:.3f}.")

    figure = new_figure(11, 4)
    left, middle, right = figure.subplots(1, 3)
    left.loglog(batch_sizes, [noise[b] for b in batch_sizes], "o-", label="measured E‖g_B − g‖²")
    left.loglog(batch_sizes, [variance / b for b in batch_sizes], "--", label="σ²/B")
    left.set(title="Gradient noise against batch size", xlabel="batch size B", ylabel="E‖g_B − g‖²")
    left.legend()
    for batch_size in batch_sizes:
        history = runs[batch_size]["history"]
        middle.plot(range(1, len(history["val_accuracy"]) + 1), history["val_accuracy"], marker=".",
                    label=f"B = {batch_size}")
    middle.set(title="Test accuracy per epoch", xlabel="epoch", ylabel="test accuracy")
    middle.legend(fontsize=7)
    right.semilogx(batch_sizes, [row[2] for row in rows], "o-", label="fastest epoch")
    right.set(title="Time per epoch", xlabel="batch size B", ylabel="milliseconds")
    right.legend()
    report.figure(figure, "batch_size.png", "Gradient noise, accuracy and time per epoch against batch size")
    return report.write()
