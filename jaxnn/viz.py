"""Plots of a training run and of a sweep: learning curves, confusion matrices, a metric against a
hyperparameter; saved as PNG files.

Figures are drawn with matplotlib's Agg backend on a ``matplotlib.figure.Figure`` of their own,
never through ``pyplot``, so plotting works without a display and leaves pyplot's global state
alone. matplotlib is an optional dependency: ``pip install "jaxnn[viz]"``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxnn._checks import check_bool

_INSTALL_HINT = 'jaxnn.viz needs matplotlib; install it with: pip install "jaxnn[viz]"'
_VALIDATION_PREFIX = "val_"
# Above this many classes, numbers written in the cells would overlap.
_MAX_ANNOTATED_CLASSES = 20


def new_figure(width: float, height: float):
    """A figure of ``width`` × ``height`` inches with an Agg canvas and constrained layout: no
    pyplot, so no global state and no display needed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | os.PathLike | None) -> None:
    if path is not None:
        figure.savefig(os.fspath(path), format="png", dpi=100)


def _series(history: Any) -> dict[str, np.ndarray]:
    """Validates ``history`` and returns each series as a float64 array of equal length."""
    if not isinstance(history, Mapping):
        raise TypeError(f"history must be a dict of metric name -> list of per-epoch values, "
                        f"got {type(history).__name__}")
    if not history:
        raise ValueError("history is empty; expected e.g. {'loss': [...], 'val_loss': [...]}")
    series = {}
    for name, values in history.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"history keys must be non-empty metric names, got {name!r}")
        if isinstance(values, (str, bytes, Mapping)):
            raise TypeError(f"history[{name!r}] must be a list of numbers, got {type(values).__name__}")
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"history[{name!r}] must be a list of numbers, got {values!r}") from None
        if array.ndim != 1:
            raise ValueError(f"history[{name!r}] must be a flat list, one number per epoch, "
                             f"got an array of shape {array.shape}")
        if array.size == 0:
            raise ValueError(f"history[{name!r}] is empty")
        series[name] = array
    lengths = {name: array.size for name, array in series.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"history lists must all have one value per epoch, got lengths {lengths}")
    return series


def _base_metrics(names: Sequence[str]) -> list[str]:
    """Metric names without the ``val_`` prefix, in order of first appearance."""
    bases: list[str] = []
    for name in names:
        base = name.removeprefix(_VALIDATION_PREFIX)
        if base and base not in bases:
            bases.append(base)
    return bases


# What a metric's y axis shows, with its unit; other metrics are labelled with their name.
Y_LABELS = {
    "loss": "loss (mean per example)",
    "accuracy": "accuracy (fraction correct)",
    "top_k_accuracy": "top-k accuracy (fraction)",
    "lr": "learning rate",
    "epoch_seconds": "seconds per epoch",
    "samples_per_second": "examples per second",
}


def plot_history(history: Mapping[str, Sequence[float]], path: str | os.PathLike | None = None, *,
                 metrics: Sequence[str] | None = None, title: str | None = None):
    """Plots learning curves: one subplot per metric, its training and validation curves together.

    ``history`` maps a metric name to its per-epoch values, as ``fit`` returns it::

        {"loss": [...], "accuracy": [...], "val_loss": [...], "val_accuracy": [...], "lr": [...]}

    Each base metric (the name without ``val_``) gets a subplot titled with its name, holding the
    curve ``name`` (labelled ``"train"``) and ``val_name`` (labelled ``"validation"``), whichever
    exist. The x axis is the epoch, counted from 1. Non-finite values (a diverged loss) leave gaps.

    Args:
      history: metric name -> list of numbers, all lists of the same length (one per epoch).
      path: where to write the figure as a PNG; nothing is written when None.
      metrics: the base metrics to plot, in this order (e.g. ``["loss"]``); all of them when None.
      title: the run's name (model and data, e.g. ``"mlp on digits"``), shown above the plots and
        in each subplot's title.

    Returns:
      The ``matplotlib.figure.Figure``.

    Raises:
      ImportError: matplotlib is not installed.
      ValueError: ``history`` is empty, its lists are empty or of different lengths, or
        ``metrics`` names a metric that is not in it.
      TypeError: ``history`` is not a dict of lists of numbers.

    Example::

        history = fit(...)
        plot_history(history, "runs/mlp/history.png", metrics=["loss", "accuracy"])
    """
    series = _series(history)
    available = _base_metrics(list(series))
    if metrics is None:
        chosen = available
    else:
        if isinstance(metrics, str):
            raise TypeError(f"metrics must be a list of metric names, got the string {metrics!r}; "
                            f"write metrics=[{metrics!r}]")
        chosen = list(metrics)
        unknown = [name for name in chosen if name not in available]
        if unknown:
            raise ValueError(f"metrics {unknown} are not in the history; it has {available}")
        if not chosen:
            raise ValueError(f"metrics is empty; choose from {available}")

    columns = min(3, len(chosen))
    rows = math.ceil(len(chosen) / columns)
    figure = new_figure(4.5 * columns, 3.5 * rows)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    epochs = np.arange(1, next(iter(series.values())).size + 1)
    for ax, base in zip(axes, chosen):
        for name, label in ((base, "train"), (_VALIDATION_PREFIX + base, "validation")):
            if name in series:
                ax.plot(epochs, series[name], marker="o" if epochs.size <= 30 else None,
                        markersize=3, label=label)
        ax.set(title=base if title is None else f"{base}: {title}",
               xlabel="epoch", ylabel=Y_LABELS.get(base, base))
        ax.grid(True, alpha=0.3)
        # Whole epochs only: a short run would otherwise get ticks at 1.5, 2.5, ...
        ax.xaxis.get_major_locator().set_params(integer=True)
        if len(ax.lines) > 1:
            ax.legend()
    for ax in axes[len(chosen):]:
        figure.delaxes(ax)
    _save(figure, path)
    return figure


def plot_confusion_matrix(matrix: Any, path: str | os.PathLike | None = None, *,
                          class_names: Sequence[str] | None = None, normalize: bool = False,
                          title: str | None = None):
    """Draws a confusion matrix as an image: rows are true classes, columns predicted ones.

    ``matrix[i, j]`` counts the examples of true class ``i`` predicted as ``j``, the convention of
    :func:`jaxnn.metrics.confusion_matrix` and scikit-learn. With ``normalize=True`` each row is
    divided by its sum, so a cell is the fraction of class ``i`` predicted as ``j`` and the
    diagonal is each class's recall; a row with no examples stays zero. Cells are annotated with
    their values for up to 20 classes.

    Args:
      matrix: a square array of non-negative counts, shape ``(K, K)``.
      path: where to write the figure as a PNG; nothing is written when None.
      class_names: ``K`` labels for the axes; ``0 .. K-1`` when None.
      normalize: whether to show row fractions instead of counts.
      title: the run's name (model and data), added to the title.

    Returns:
      The ``matplotlib.figure.Figure``; its image holds the (normalized) matrix.

    Raises:
      ImportError: matplotlib is not installed.
      ValueError: ``matrix`` is not square, is empty, or holds negative or non-finite values, or
        ``class_names`` does not have ``K`` entries.
      TypeError: ``matrix`` is not numeric or ``normalize`` is not a bool.

    Example::

        counts = jaxnn.metrics.confusion_matrix(logits, labels, 10)
        plot_confusion_matrix(counts, "runs/mlp/confusion.png", class_names=digits, normalize=True)
    """
    values = np.asarray(matrix)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"matrix must hold numbers, got dtype {values.dtype}")
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ValueError(f"matrix must be square, (classes, classes), got shape {values.shape}")
    if values.shape[0] == 0:
        raise ValueError("matrix is empty: it has no classes")
    values = values.astype(np.float64)
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("matrix must hold non-negative finite counts")
    normalize = check_bool(normalize, "normalize", "plot_confusion_matrix")
    classes = values.shape[0]
    if class_names is None:
        labels = [str(i) for i in range(classes)]
    else:
        if isinstance(class_names, str):
            raise TypeError("class_names must be a list of names, got a single string")
        labels = [str(name) for name in class_names]
        if len(labels) != classes:
            raise ValueError(f"class_names has {len(labels)} names for a {classes}x{classes} matrix")

    if normalize:
        totals = values.sum(axis=1, keepdims=True)
        values = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)

    size = min(4.0 + 0.4 * classes, 16.0)
    figure = new_figure(size + 1.5, size)
    ax = figure.subplots()
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else max(values.max(), 1.0))
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    # Long names along the x axis are slanted so that neighbours do not overlap.
    slanted = max(map(len, labels)) > 3
    ax.set_xticks(range(classes), labels, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    ax.set_yticks(range(classes), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("confusion matrix" + (" (fraction of each true class)" if normalize else "")
                 + ("" if title is None else f"\n{title}"))
    if classes <= _MAX_ANNOTATED_CLASSES:
        # Dark cells get white text so that every number stays readable.
        threshold = image.norm.vmax / 2
        integral = not normalize and np.all(values == np.round(values))
        for i in range(classes):
            for j in range(classes):
                text = f"{values[i, j]:.0f}" if integral else f"{values[i, j]:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if values[i, j] > threshold else "black")
    _save(figure, path)
    return figure


def _configuration_label(configuration: Mapping[str, float]) -> str:
    return ", ".join(f"{name}={value:g}" for name, value in configuration.items()) or "all members"


def plot_sweep_metric(summary: Sequence[Mapping[str, Any]], hyperparameter: str, metric: str,
                      path: str | os.PathLike | None = None):
    r"""Plots a sweep's ``metric`` against one hyperparameter, with error bars over seeds and folds.

    Each point is one configuration: its mean final ``metric`` (``summary``'s ``METRIC_mean``),
    with a bar of one standard deviation (``METRIC_std``) either side, over the configuration's
    members. Configurations that differ in other hyperparameters are separate lines, labelled
    with those values. The x axis is logarithmic when every value is positive and they span at
    least a factor of 10 (learning rates, decays).

    Args:
      summary: :meth:`jaxnn.train.SweepResult.summary`'s rows.
      hyperparameter: a name of the grid, the x axis.
      metric: a metric of the histories (``"val_accuracy"``), the y axis.
      path: where to write the figure as a PNG; nothing is written when None.

    Returns:
      The ``matplotlib.figure.Figure``.

    Raises:
      ImportError: matplotlib is not installed.
      ValueError: ``summary`` is empty, or does not hold ``hyperparameter`` or ``metric``.
    """
    rows = list(summary)
    if not rows:
        raise ValueError("plot_sweep_metric: summary is empty")
    if hyperparameter not in rows[0]:
        raise ValueError(f"plot_sweep_metric: hyperparameter {hyperparameter!r} is not in the summary; "
                         f"its columns are {list(rows[0])}")
    if f"{metric}_mean" not in rows[0]:
        metrics = [name.removesuffix("_mean") for name in rows[0] if name.endswith("_mean")]
        raise ValueError(f"plot_sweep_metric: metric {metric!r} is not in the summary; it has {metrics}")
    # The other grid names: the columns before "members", except the plotted one.
    names = list(rows[0])
    others = [name for name in names[:names.index("members")] if name != hyperparameter]
    lines: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        lines.setdefault(tuple(row[name] for name in others), []).append(row)
    figure = new_figure(6.0, 4.0)
    ax = figure.subplots()
    for key, line in lines.items():
        line = sorted(line, key=lambda row: row[hyperparameter])
        ax.errorbar([row[hyperparameter] for row in line], [row[f"{metric}_mean"] for row in line],
                    yerr=[row[f"{metric}_std"] for row in line], marker="o", capsize=3,
                    label=_configuration_label(dict(zip(others, key))))
    values = np.asarray([row[hyperparameter] for row in rows], np.float64)
    if np.all(values > 0) and values.max() >= 10 * values.min():
        ax.set_xscale("log")
    ax.set_xlabel(hyperparameter)
    ax.set_ylabel(f"final {metric} (mean ± std)")
    ax.set_title(f"{metric} against {hyperparameter}, {rows[0]['members']} member(s) per point")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    _save(figure, path)
    return figure


def plot_sweep_curves(result: Any, metric: str, path: str | os.PathLike | None = None):
    """Plots a sweep's learning curves: per configuration, the mean of ``metric`` over its members
    by epoch, with a band of one standard deviation either side.

    Args:
      result: a :class:`jaxnn.train.SweepResult`.
      metric: a metric of the histories (``"loss"``, ``"val_accuracy"``).
      path: where to write the figure as a PNG; nothing is written when None.

    Returns:
      The ``matplotlib.figure.Figure``.

    Raises:
      ImportError: matplotlib is not installed.
      ValueError: the histories do not hold ``metric``, or hold no epochs.
    """
    histories = list(result.histories)
    if not histories or metric not in histories[0]:
        recorded = list(histories[0]) if histories else []
        raise ValueError(f"plot_sweep_curves: metric {metric!r} is not in the histories; "
                         f"they hold {recorded}")
    if histories[0].epochs == 0:
        raise ValueError("plot_sweep_curves: the histories hold no epochs")
    figure = new_figure(6.5, 4.0)
    ax = figure.subplots()
    epochs = np.arange(1, histories[0].epochs + 1)
    for configuration in result.configurations():
        curves = np.asarray([[np.nan if v is None else v for v in history[metric]]
                             for member, history in zip(result.members, histories)
                             if member.hyperparameters == configuration], np.float64)
        mean = curves.mean(axis=0)
        spread = curves.std(axis=0, ddof=1) if curves.shape[0] > 1 else np.zeros_like(mean)
        (line,) = ax.plot(epochs, mean, label=_configuration_label(configuration))
        ax.fill_between(epochs, mean - spread, mean + spread, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} (mean ± std over seeds and folds)")
    ax.set_title(f"{metric} by epoch, per configuration")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    _save(figure, path)
    return figure
