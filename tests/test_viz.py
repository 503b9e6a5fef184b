"""Tests for ``jaxnn.viz``: the figures hold the data given, PNGs are valid, bad input is named."""

import sys

import numpy as np
import pytest

from jaxnn import viz

mpl_image = pytest.importorskip("matplotlib.image")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

HISTORY = {
    "loss": [1.0, 0.6, 0.4, 0.3],
    "accuracy": [0.5, 0.7, 0.8, 0.85],
    "val_loss": [1.1, 0.7, 0.5, 0.45],
    "val_accuracy": [0.45, 0.65, 0.75, 0.8],
    "lr": [0.1, 0.05, 0.025, 0.0125],
}


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_history_has_one_subplot_per_metric_with_train_and_validation(tmp_path):
    figure = viz.plot_history(HISTORY)
    axes = figure.get_axes()
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy", "lr"]
    loss, accuracy, lr = (lines_by_label(ax) for ax in axes)
    assert set(loss) == {"train", "validation"} and set(accuracy) == {"train", "validation"}
    assert set(lr) == {"train"}
    for lines, base in ((loss, "loss"), (accuracy, "accuracy")):
        np.testing.assert_array_equal(lines["train"].get_xdata(), [1, 2, 3, 4])
        np.testing.assert_array_equal(lines["train"].get_ydata(), HISTORY[base])
        np.testing.assert_array_equal(lines["validation"].get_xdata(), [1, 2, 3, 4])
        np.testing.assert_array_equal(lines["validation"].get_ydata(), HISTORY["val_" + base])
    np.testing.assert_array_equal(lr["train"].get_ydata(), HISTORY["lr"])
    assert all(ax.get_xlabel() == "epoch" for ax in axes)


def test_history_axes_name_their_units_and_the_run():
    history = {"loss": [1.0, 0.5], "accuracy": [0.5, 0.9], "val_loss": [1.1, 0.7], "custom": [1, 2]}
    figure = viz.plot_history(history, title="mlp on digits")
    by_metric = {ax.get_title().split(":")[0]: ax for ax in figure.axes}
    assert by_metric["loss"].get_ylabel() == "loss (mean per example)"
    assert by_metric["accuracy"].get_ylabel() == "accuracy (fraction correct)"
    assert by_metric["custom"].get_ylabel() == "custom"
    assert all(ax.get_title().endswith(": mlp on digits") and ax.get_xlabel() == "epoch" for ax in figure.axes)
    matrix_figure = viz.plot_confusion_matrix(np.eye(3, dtype=int), title="mlp on digits")
    assert matrix_figure.axes[0].get_title().endswith("mlp on digits")


def test_history_png_is_written_and_valid(tmp_path):
    path = tmp_path / "history.png"
    figure = viz.plot_history(HISTORY, path)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    image = mpl_image.imread(path)
    width, height = figure.get_size_inches() * 100
    assert image.shape[:2] == (round(height), round(width))
    # Something was drawn: the image is not one flat colour.
    assert image[..., :3].std() > 0


def test_history_selected_metrics_and_validation_only(tmp_path):
    figure = viz.plot_history(HISTORY, metrics=["accuracy"])
    (ax,) = figure.get_axes()
    assert ax.get_title() == "accuracy"
    np.testing.assert_array_equal(lines_by_label(ax)["validation"].get_ydata(), HISTORY["val_accuracy"])

    figure = viz.plot_history({"val_loss": np.array([0.5, 0.25])})
    (ax,) = figure.get_axes()
    assert ax.get_title() == "loss" and set(lines_by_label(ax)) == {"validation"}


def test_history_grid_layout_and_nan_gaps():
    history = {f"metric_{i}": [float(i), np.nan, float(i + 1)] for i in range(4)}
    figure = viz.plot_history(history)
    assert [ax.get_title() for ax in figure.get_axes()] == [f"metric_{i}" for i in range(4)]
    ydata = figure.get_axes()[2].get_lines()[0].get_ydata()
    assert ydata[0] == 2.0 and np.isnan(ydata[1])


@pytest.mark.parametrize("history, error, match", [
    ({}, ValueError, "history is empty"),
    ({"loss": [1.0, 0.5], "val_loss": [1.0]}, ValueError, "one value per epoch.*'loss': 2.*'val_loss': 1"),
    ({"loss": []}, ValueError, r"history\['loss'\] is empty"),
    ({"loss": [[1.0, 2.0], [3.0, 4.0]]}, ValueError, "flat list"),
    ({"loss": ["high", "low"]}, TypeError, "list of numbers"),
    ({"loss": "1, 2"}, TypeError, "list of numbers"),
    ([1.0, 0.5], TypeError, "history must be a dict"),
])
def test_history_bad_input(history, error, match):
    with pytest.raises(error, match=match):
        viz.plot_history(history)


def test_history_unknown_metric():
    expected = r"\['top5'\] are not in the history; it has \['loss', 'accuracy', 'lr'\]"
    with pytest.raises(ValueError, match=expected):
        viz.plot_history(HISTORY, metrics=["loss", "top5"])
    with pytest.raises(TypeError, match=r"metrics=\['loss'\]"):
        viz.plot_history(HISTORY, metrics="loss")


def test_confusion_matrix_image_holds_counts(tmp_path):
    counts = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 4]])
    path = tmp_path / "confusion.png"
    figure = viz.plot_confusion_matrix(counts, path, class_names=["cat", "dog", "bird"])
    ax = figure.get_axes()[0]
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), counts)
    assert [label.get_text() for label in ax.get_xticklabels()] == ["cat", "dog", "bird"]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["cat", "dog", "bird"]
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    # Cell (1, 0) is written at x=0, y=1: two dogs taken for cats.
    texts = {text.get_position(): text.get_text() for text in ax.texts}
    assert texts[(0, 1)] == "2" and texts[(1, 1)] == "7" and len(texts) == 9
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert mpl_image.imread(path).ndim == 3


def test_confusion_matrix_normalized_rows():
    counts = np.array([[3, 1], [0, 0]])
    figure = viz.plot_confusion_matrix(counts, normalize=True)
    shown = np.asarray(figure.get_axes()[0].get_images()[0].get_array())
    np.testing.assert_allclose(shown, [[0.75, 0.25], [0.0, 0.0]])
    # Rows with examples sum to one; the empty row stays zero instead of 0/0.
    np.testing.assert_allclose(shown.sum(axis=1), [1.0, 0.0])


@pytest.mark.parametrize("matrix, kwargs, error, match", [
    (np.ones((2, 3)), {}, ValueError, r"square.*\(2, 3\)"),
    (np.ones(3), {}, ValueError, "square"),
    (np.ones((0, 0)), {}, ValueError, "empty"),
    (np.array([[1, -1], [0, 1]]), {}, ValueError, "non-negative"),
    (np.array([[1, np.nan], [0, 1]]), {}, ValueError, "finite"),
    (np.array([["a"]]), {}, TypeError, "numbers"),
    (np.eye(2), {"class_names": ["a", "b", "c"]}, ValueError, "3 names for a 2x2"),
    (np.eye(2), {"normalize": "yes"}, TypeError, "normalize"),
])
def test_confusion_matrix_bad_input(matrix, kwargs, error, match):
    with pytest.raises(error, match=match):
        viz.plot_confusion_matrix(matrix, **kwargs)


def test_missing_matplotlib_names_the_extra(monkeypatch):
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r'pip install "jaxnn\[viz\]"'):
        viz.plot_history(HISTORY)
    with pytest.raises(ImportError, match=r'pip install "jaxnn\[viz\]"'):
        viz.plot_confusion_matrix(np.eye(2))


def test_pyplot_is_left_alone():
    had_pyplot = "matplotlib.pyplot" in sys.modules
    viz.plot_history(HISTORY)
    viz.plot_confusion_matrix(np.eye(2))
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot
