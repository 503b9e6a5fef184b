r"""Lesson ``loss-landscape``: slices of the loss around trained weights, and MSE against cross-entropy.

**Filter-normalized directions** (Li et al., 2018, "Visualizing the Loss Landscape of Neural
Nets"). A direction :math:`d` has the structure of the params. Each weight array's entries are
drawn from :math:`\mathcal N(0, 1)`, then every filter (the slice of one output unit: a column
``w[:, j]`` of a ``Dense`` kernel, an output channel ``w[..., j]`` of a convolution) is rescaled
to the norm of the same filter of the trained weights,

.. math:: d_{\cdot j} \leftarrow \frac{d_{\cdot j}}{\lVert d_{\cdot j} \rVert} \lVert \theta_{\cdot j} \rVert,

so that a step :math:`\alpha d` moves every filter by the same fraction of its size and the slices
of networks of different scales compare. Biases and normalization parameters (1-D arrays) are 0
in the direction. The slices are :math:`L(\theta + \alpha d)` and
:math:`L(\theta + \alpha d_1 + \beta d_2)`.

**MSE against cross-entropy for a logistic output** :math:`p = \sigma(z)` with target 1:
:math:`\mathrm{CE}(z) = -\log \sigma(z)`, :math:`\mathrm{CE}'(z) = \sigma(z) - 1`, while
:math:`\mathrm{MSE}(z) = (\sigma(z) - 1)^2`,
:math:`\mathrm{MSE}'(z) = 2(\sigma(z) - 1)\,\sigma(z)(1 - \sigma(z))`:
for a confidently wrong output (:math:`z \ll 0`) the MSE gradient vanishes with :math:`\sigma(z)`
while the cross-entropy gradient tends to -1.
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


def filter_normalized_direction(key: jax.Array, params):
    """A random direction shaped like ``params``, each filter rescaled to its weights' norm.

    A leaf with two or more axes is a kernel whose last axis indexes the filters (output units);
    a leaf with fewer axes (bias, normalization scale and shift) is zero in the direction.
    """
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    directions = []
    for leaf_key, leaf in zip(keys, leaves):
        if leaf.ndim < 2:
            directions.append(jnp.zeros_like(leaf))
            continue
        direction = jax.random.normal(leaf_key, leaf.shape, leaf.dtype)
        axes = tuple(range(leaf.ndim - 1))
        weight_norms = jnp.sqrt(jnp.sum(jnp.square(leaf), axis=axes, keepdims=True))
        direction_norms = jnp.sqrt(jnp.sum(jnp.square(direction), axis=axes, keepdims=True))
        directions.append(direction * (weight_norms / direction_norms))
    return jax.tree.unflatten(treedef, directions)


def filter_norms(params) -> list[np.ndarray]:
    """The norm of every filter (last-axis slice) of each kernel leaf with two or more axes."""
    return [np.sqrt(np.sum(np.square(np.asarray(leaf)), axis=tuple(range(leaf.ndim - 1))))
            for leaf in jax.tree.leaves(params) if leaf.ndim >= 2]


def loss_surface(model, params, state, x, y, directions, coordinates) -> np.ndarray:
    r"""Mean cross-entropy :math:`L(\theta + \sum_k c_k d_k)` for each row ``c`` of ``coordinates``.

    Args:
      directions: a list of K direction pytrees shaped like ``params``.
      coordinates: array of shape ``(points, K)``.
    """
    coordinates = jnp.asarray(coordinates, jnp.float32)

    def loss_at(point):
        moved = params
        for index, direction in enumerate(directions):
            moved = jax.tree.map(lambda p, d, c=point[index]: p + c.astype(p.dtype) * d, moved, direction)
        logits, _ = model.apply(moved, state, x)
        return losses.cross_entropy(logits, y)

    return np.asarray(jax.lax.map(jax.jit(loss_at), coordinates))


def logistic_losses(logits: np.ndarray) -> dict[str, np.ndarray]:
    """For target 1 and each logit z: MSE(σ(z), 1), cross-entropy, and their z-derivatives by ``jax.grad``."""
    z = jnp.asarray(logits, jnp.float32)

    def mse(t):
        return losses.mse(jaxnn.sigmoid(t), jnp.ones_like(t))

    def cross_entropy(t):
        return losses.binary_cross_entropy(t, jnp.ones_like(t))

    return {
        "mse": np.asarray(jax.vmap(mse)(z)),
        "cross_entropy": np.asarray(jax.vmap(cross_entropy)(z)),
        "mse_gradient": np.asarray(jax.vmap(jax.grad(mse))(z)),
        "cross_entropy_gradient": np.asarray(jax.vmap(jax.grad(cross_entropy))(z)),
    }


def train_mlp(epochs: int, seed: int = 0):
    """A 64-64-10 ReLU MLP trained with Adam on the digits; returns ``(model, train_state, dataset)``."""
    digits = data.digits()
    model = jaxnn.Sequential([jaxnn.Dense(64), jaxnn.Relu(), jaxnn.Dense(10)])
    optimizer = optim.adam(1e-2)
    train_state = train.create_train_state(model, optimizer, jax.random.key(seed), digits.input_shape)
    train_state, _ = train.fit(model, optimizer, train_state, (digits.x_train, digits.y_train),
                               epochs=epochs, batch_size=64, progress=False)
    return model, train_state, digits


def run(out: Path, *, quick: bool = False, log=print) -> Path:
    epochs, points_1d, points_2d = (3, 21, 9) if quick else (30, 61, 31)
    log(f"training a 64-64-10 MLP on the digits for {epochs} epochs")
    model, train_state, digits = train_mlp(epochs)
    params, state = train_state.params, train_state.state
    x, y = jnp.asarray(digits.x_train), jnp.asarray(digits.y_train)
    key_1, key_2 = jax.random.split(jax.random.key(1))
    direction_1 = filter_normalized_direction(key_1, params)
    direction_2 = filter_normalized_direction(key_2, params)

    report = Report(out, "The loss landscape around trained weights")
    report.text(f"A 64-64-10 ReLU MLP trained on the digits ({len(y)} training images, Adam, {epochs} "
                f"epochs). The loss is the mean training cross-entropy at θ + α·d₁ (+ β·d₂), with d₁, d₂ "
                f"Gaussian directions whose every filter (column of a Dense kernel) is rescaled to the "
                f"norm of the same filter of θ, and biases 0 (Li et al., 2018).")
    check = [float(np.abs(a - b).max()) for a, b in zip(filter_norms(direction_1), filter_norms(params))]
    report.text(f"Largest difference between a direction's filter norm and the weights': {max(check):.2e}.")

    log("1-D slice")
    alphas = np.linspace(-1.0, 1.0, points_1d, dtype=np.float32)
    slice_1d = loss_surface(model, params, state, x, y, [direction_1], alphas[:, None])
    lowest = float(alphas[np.argmin(slice_1d)])
    centre = float(slice_1d[np.argmin(np.abs(alphas))])
    shown = [a for a in (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0) if np.isclose(alphas, a).any()]
    report.section("1-D slice")
    report.table(["α", "training loss"],
                 [[f"{a:g}", float(slice_1d[np.argmin(np.abs(alphas - a))])] for a in shown])
    report.text(f"The loss at the trained weights (α = 0) is {centre:.4f}; the lowest sampled loss along "
                f"the direction is at α = {lowest:g}, and at α = ±1 (every filter moved by its own norm) "
                f"the loss is {slice_1d[0] / centre:.0f}× and {slice_1d[-1] / centre:.0f}× as high.")

    log("2-D slice")
    grid = np.linspace(-1.0, 1.0, points_2d, dtype=np.float32)
    alpha_grid, beta_grid = np.meshgrid(grid, grid, indexing="xy")
    points = np.stack([alpha_grid.ravel(), beta_grid.ravel()], axis=1)
    surface = loss_surface(model, params, state, x, y, [direction_1, direction_2], points)
    surface = surface.reshape(alpha_grid.shape)
    row, column = np.unravel_index(np.argmin(surface), surface.shape)
    report.section("2-D slice")
    report.text(f"Over the {points_2d}×{points_2d} grid the lowest loss, {surface.min():.4f}, is at "
                f"(α, β) = ({alpha_grid[row, column]:g}, {beta_grid[row, column]:g}); the highest is "
                f"{surface.max():.4g}.")

    figure = new_figure(11, 4.2)
    left, right = figure.subplots(1, 2)
    left.plot(alphas, slice_1d, marker=".", label="L(θ + α d₁)")
    left.axvline(0.0, color="grey", linestyle=":", label="trained weights")
    left.set_yscale("log")
    left.set(title="1-D slice along a filter-normalized direction",
             xlabel="α", ylabel="training cross-entropy (log scale)")
    left.legend()
    levels = np.geomspace(max(surface.min(), 1e-4), surface.max(), 15)
    contours = right.contour(alpha_grid, beta_grid, surface, levels=levels, cmap="viridis")
    right.clabel(contours, fontsize=6, fmt="%.2g")
    right.plot([0], [0], "r*", markersize=10, label="trained weights")
    right.set(title="2-D slice: L(θ + α d₁ + β d₂)", xlabel="α", ylabel="β")
    right.legend()
    report.figure(figure, "loss_slices.png", "1-D and 2-D slices of the training loss")

    log("MSE against cross-entropy")
    z = np.linspace(-10.0, 10.0, 401, dtype=np.float32)
    curves = logistic_losses(z)
    report.section("MSE against cross-entropy for a logistic output, target 1")
    rows = []
    for logit in (-10.0, -5.0, -2.0, 0.0, 2.0, 5.0):
        index = int(np.argmin(np.abs(z - logit)))
        rows.append([f"{logit:g}", float(curves["mse"][index]), float(curves["mse_gradient"][index]),
                     float(curves["cross_entropy"][index]), float(curves["cross_entropy_gradient"][index])])
    report.table(["logit z", "MSE", "dMSE/dz", "cross-entropy", "dCE/dz"], rows)
    wrong = int(np.argmin(np.abs(z + 10.0)))
    ratio = curves["cross_entropy_gradient"][wrong] / curves["mse_gradient"][wrong]
    report.text(f"At z = -10 (the output says 'certainly 0' for an example of class 1) the MSE gradient is "
                f"{curves['mse_gradient'][wrong]:.2e}, {abs(ratio):.0f}× smaller than the cross-entropy "
                f"gradient {curves['cross_entropy_gradient'][wrong]:.4f}: under MSE a confidently wrong "
                f"sigmoid unit barely learns, under cross-entropy it learns fastest.")
    figure = new_figure(10, 4)
    left, right = figure.subplots(1, 2)
    left.plot(z, curves["mse"], label="MSE (σ(z) - 1)²")
    left.plot(z, curves["cross_entropy"], label="cross-entropy -log σ(z)")
    left.set(title="Loss for target 1", xlabel="logit z", ylabel="loss")
    left.legend()
    right.plot(z, curves["mse_gradient"], label="dMSE/dz")
    right.plot(z, curves["cross_entropy_gradient"], label="dCE/dz")
    right.set(title="Gradient with respect to the logit (jax.grad)", xlabel="logit z", ylabel="dL/dz")
    right.legend()
    report.figure(figure, "mse_vs_cross_entropy.png", "MSE against cross-entropy for a logistic output")
    return report.write()
