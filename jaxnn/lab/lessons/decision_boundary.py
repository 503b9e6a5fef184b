r"""Lesson ``decision-boundary``: how an MLP's decision boundary forms on moons and spirals.

The classifier's decision at a point :math:`u` of the plane is :math:`\arg\max_k f_\theta(u)_k`;
the boundary is where that choice changes. The lesson evaluates the decision on a grid covering
the data after successive epochs and draws each snapshot, with the training points and the
accuracy reached so far.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn
from jaxnn import data, optim, train
from jaxnn.lab.lessons.report import Report
from jaxnn.viz import new_figure


def mlp(classes: int, width: int = 64):
    return jaxnn.Sequential([jaxnn.Dense(width), jaxnn.Tanh(), jaxnn.Dense(width), jaxnn.Tanh(),
                             jaxnn.Dense(classes)])


def plane_grid(x: np.ndarray, resolution: int, margin: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """A ``resolution × resolution`` grid over the bounding box of ``x`` (2-D points) plus a margin:
    returns ``(u, v)``, each of shape ``(resolution, resolution)``."""
    low, high = x.min(axis=0) - margin, x.max(axis=0) + margin
    return np.meshgrid(np.linspace(low[0], high[0], resolution, dtype=np.float32),
                       np.linspace(low[1], high[1], resolution, dtype=np.float32), indexing="xy")


def grid_decisions(model, train_state, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The predicted class at every grid point, shaped like ``u``."""
    points = jnp.asarray(np.stack([u.ravel(), v.ravel()], axis=1))
    logits, _ = model.apply(train_state.params, train_state.state, points)
    return np.asarray(jnp.argmax(logits, axis=-1)).reshape(u.shape)


def train_with_snapshots(dataset, snapshot_epochs, *, resolution: int = 100, seed: int = 0) -> list[dict]:
    """Trains the MLP with Adam (1e-2), stopping at each epoch of ``snapshot_epochs`` (increasing) to
    record the grid decisions and the train and test accuracy."""
    model = mlp(dataset.num_classes)
    optimizer = optim.adam(1e-2)
    train_state = train.create_train_state(model, optimizer, jax.random.key(seed), dataset.input_shape)
    u, v = plane_grid(dataset.x_train, resolution)
    training = (dataset.x_train, dataset.y_train)
    snapshots, history, done = [], None, 0
    for epoch in snapshot_epochs:
        if epoch > done:
            train_state, history = train.fit(model, optimizer, train_state, training, epochs=epoch,
                                             initial_epoch=done, history=history, batch_size=32,
                                             progress=False)
            done = epoch
        snapshots.append({
            "epoch": epoch, "u": u, "v": v, "decisions": grid_decisions(model, train_state, u, v),
            "train_accuracy": train.evaluate(model, train_state, training)["accuracy"],
            "test_accuracy": train.evaluate(model, train_state, (dataset.x_test, dataset.y_test))["accuracy"],
        })
    return snapshots


def draw_snapshots(report: Report, dataset, snapshots: list[dict], filename: str) -> None:
    from matplotlib.colors import ListedColormap

    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"][:dataset.num_classes]
    columns = min(len(snapshots), 4)
    rows = -(-len(snapshots) // columns)
    figure = new_figure(3.2 * columns, 3.0 * rows)
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for axis, snapshot in zip(axes, snapshots):
        axis.contourf(snapshot["u"], snapshot["v"], snapshot["decisions"], alpha=0.3,
                      levels=np.arange(dataset.num_classes + 1) - 0.5, cmap=ListedColormap(colours))
        for label, colour in enumerate(colours):
            chosen = dataset.y_train == label
            axis.scatter(dataset.x_train[chosen, 0], dataset.x_train[chosen, 1], s=4, color=colour,
                         label=f"class {label}")
        axis.set_title(f"epoch {snapshot['epoch']}: train accuracy {snapshot['train_accuracy']:.2f}",
                       fontsize=9)
        axis.set_xlabel("x₁")
        axis.set_ylabel("x₂")
    for axis in axes[len(snapshots):]:
        axis.set_visible(False)
    axes[0].legend(fontsize=7, loc="lower left")
    figure.suptitle(f"{dataset.name}: decision regions (shaded) as training proceeds")
    report.figure(figure, filename, f"{dataset.name}: the decision boundary as training proceeds")


def run(out: Path, *, quick: bool = False, log=print) -> Path:
    snapshot_epochs = [0, 1, 3, 10] if quick else [0, 1, 2, 5, 10, 20, 50, 100]
    resolution = 40 if quick else 150
    report = Report(out, "Decision boundaries as training proceeds")
    report.text("A 2-64-64-K tanh MLP (Adam 1e-2, batches of 32) on two planar problems; after each listed "
                "epoch the predicted class is evaluated on a grid over the plane (the shaded regions) and "
                "the accuracy measured with train=False.")
    for dataset in (data.moons(), data.spirals()):
        log(f"training on {dataset.name} with snapshots at epochs {snapshot_epochs}")
        snapshots = train_with_snapshots(dataset, snapshot_epochs, resolution=resolution)
        report.section(dataset.name)
        report.text(dataset.description + ".")
        report.table(["epoch", "train accuracy", "test accuracy", "grid share of class 0"],
                     [[s["epoch"], s["train_accuracy"], s["test_accuracy"],
                       float(np.mean(s["decisions"] == 0))] for s in snapshots])
        first, last = snapshots[0], snapshots[-1]
        report.text(f"The untrained network scores {first['train_accuracy']:.3f} on the training points; "
                    f"after {last['epoch']} epochs its boundary separates them with train accuracy "
                    f"{last['train_accuracy']:.3f} and test accuracy {last['test_accuracy']:.3f}.")
        draw_snapshots(report, dataset, snapshots, f"{dataset.name}_boundary.png")
    return report.write()
