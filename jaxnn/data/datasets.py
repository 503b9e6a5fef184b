"""Small datasets that need no download, and MNIST-format data from local IDX files.

Every loader returns a :class:`Dataset`: NumPy arrays on the host (float32 inputs, int32 labels)
with a fixed train/test split, plus what a training script needs to build a model for it.
Nothing is written to disk; generated and loaded arrays are cached in memory only.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import random
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from jaxnn.data.batching import stratified_split
from jaxnn._checks import check_bool, check_int, check_positive_int, check_real
from jaxnn.data.checks import check_dataset, fraction_count, make_rng
from jaxnn.data.idx import load_idx

_INSTALL_HINT = 'pip install "jaxnn[data]"'


class Dataset(NamedTuple):
    """A classification dataset split into train and test, as host NumPy arrays.

    Attributes:
      x_train: float32 inputs of shape ``(N_train, *input_shape)``.
      y_train: int32 class ids of shape ``(N_train,)``, in ``[0, num_classes)``.
      x_test: float32 inputs of shape ``(N_test, *input_shape)``.
      y_test: int32 class ids of shape ``(N_test,)``.
      num_classes: the number of classes, an int.
      name: a short identifier such as ``"digits"``.
      input_shape: the per-example shape (no batch axis), a tuple of ints, as ``init`` takes it.
      description: one line saying what the data is and how it was prepared.

    Each loader returns fresh arrays, so changing one in place does not alter later loads.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str
    input_shape: tuple[int, ...]
    description: str = ""

    def __repr__(self) -> str:
        # The default repr would print every array; shapes are what one wants to see.
        return (
            f"Dataset(name={self.name!r}, x_train={_describe(self.x_train)}, "
            f"y_train={_describe(self.y_train)}, x_test={_describe(self.x_test)}, "
            f"y_test={_describe(self.y_test)}, num_classes={self.num_classes}, "
            f"input_shape={self.input_shape})"
        )

    def with_input_shape(self, input_shape: tuple[int, ...]) -> Dataset:
        """The same dataset with each example reshaped (row-major) to ``input_shape``.

        For instance ``(64,)`` to ``(8, 8, 1)`` for a CNN, or ``(40, 1)`` to ``(40,)`` for an MLP.
        Raises a ``ValueError`` if ``input_shape`` holds a different number of values.
        """
        shape = tuple(int(size) for size in input_shape)
        if any(size < 0 for size in shape) or math.prod(shape) != math.prod(self.input_shape):
            raise ValueError(
                f"Dataset.with_input_shape: {self.name} examples of shape {self.input_shape} cannot be "
                f"reshaped to {shape}: the number of values differs"
            )
        return self._replace(
            x_train=self.x_train.reshape(self.x_train.shape[0], *shape),
            x_test=self.x_test.reshape(self.x_test.shape[0], *shape),
            input_shape=shape,
        )


def _read_only(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Marks cached arrays read-only, so that only copies of them ever reach a caller."""
    for array in arrays:
        array.flags.writeable = False
    return arrays


def _describe(array: np.ndarray) -> str:
    return f"{array.dtype}{list(array.shape)}"


def _dataset(x_train, y_train, x_test, y_test, num_classes: int, name: str, description: str) -> Dataset:
    """Builds a :class:`Dataset` after checking both parts (so a loader never returns bad data)."""
    check_dataset(x_train, y_train, num_classes, name=f"{name} train")
    check_dataset(x_test, y_test, num_classes, name=f"{name} test", input_shape=x_train.shape[1:])
    input_shape = tuple(int(size) for size in x_train.shape[1:])
    return Dataset(x_train, y_train, x_test, y_test, int(num_classes), name, input_shape, description)


def _import_optional(module: str, package: str, function: str) -> Any:
    """Imports an optional dependency, or raises an ``ImportError`` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"jaxnn.data.{function}() needs {package}, which is not installed: {_INSTALL_HINT}"
        ) from error


def _seed(seed: Any, function: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"{function}: seed must be a non-negative int, got {seed!r}")
    return int(seed)


# --------------------------------------------------------------------------------------------
# scikit-learn's 8x8 digits.


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixels are counts 0..16 (of a 4x4 block of the original 32x32 bitmap), so /16 gives [0, 1].
    arrays = (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int32)
    return _read_only(arrays)


def digits(*, test_fraction: float = 0.2, seed: int = 0, image: bool = False) -> Dataset:
    r"""scikit-learn's bundled 8×8 handwritten digits (1797 images, 10 classes), split into train and test.

    Each pixel, a count in ``0..16``, is divided by 16, so inputs lie in ``[0, 1]``. The split is
    a random permutation fixed by ``seed`` (``numpy.random.default_rng(seed).permutation``): its
    first :math:`\lfloor 1797 f + \tfrac12 \rfloor` images are the test set (359 for the default
    :math:`f = 0.2`, leaving 1438 to train). This is the split ``examples/mlp_digits.py`` has used
    from the start, so results stay comparable. Test accuracy depends on it: the same MLP scores
    between about 96% and 99% over split seeds 0 to 4.

    Needs scikit-learn (``pip install "jaxnn[data]"``); the data ships with it, no download.

    Args:
      test_fraction: :math:`f`, the fraction of images held out for testing.
      seed: a non-negative int fixing the split.
      image: ``False`` gives flat inputs of shape ``(64,)`` (for an MLP); ``True`` gives images of
        shape ``(8, 8, 1)`` (NHWC, for a CNN), rows top to bottom.

    Returns:
      A :class:`Dataset` named ``"digits"``.
    """
    function = "digits"
    image = check_bool(image, "image", function)
    seed = _seed(seed, function)
    _import_optional("sklearn.datasets", "scikit-learn", function)
    x, y = _digits_arrays()
    test_count = fraction_count(test_fraction, y.shape[0], "test_fraction", function)
    order = make_rng(seed, "seed", function).permutation(y.shape[0])
    test, train = order[:test_count], order[test_count:]
    x_train, x_test = x[train], x[test]
    if image:
        x_train, x_test = x_train.reshape(-1, 8, 8, 1), x_test.reshape(-1, 8, 8, 1)
    return _dataset(
        x_train, y[train], x_test, y[test], 10, "digits",
        f"scikit-learn 8x8 handwritten digits, pixels scaled to [0, 1], random split "
        f"{len(train)}/{len(test)} (seed {seed})",
    )


# --------------------------------------------------------------------------------------------
# MNIST-1D.


@functools.lru_cache(maxsize=4)
def _mnist1d_arrays(num_samples: int, seed: int) -> tuple[np.ndarray, ...]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    # make_dataset seeds NumPy's and Python's global generators; restoring them keeps loading
    # data from changing the random numbers the rest of the program draws.
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    arrays = (
        data["x"].astype(np.float32), data["y"].astype(np.int32),
        data["x_test"].astype(np.float32), data["y_test"].astype(np.int32),
    )
    return _read_only(arrays)


def mnist1d(*, sequence: bool = False, num_samples: int = 5000, seed: int = 42) -> Dataset:
    r"""MNIST-1D (Greydanus, 2020): ten 1-D digit templates, randomly transformed, as length-40 signals.

    Generated locally by the ``mnist1d`` package (``make_dataset`` with the package's default
    arguments, the paper's), so nothing is downloaded or written: generation takes a few seconds
    and is cached in memory, per ``(num_samples, seed)``. Signals are as the package makes them:
    centered and scaled to unit standard deviation over the whole generated set. With the
    defaults, 4000 training and 1000 test examples, about 400 and 100 per class; in general
    :math:`10 \lfloor S/10 \rfloor` examples, the first 80% for training.

    Needs the ``mnist1d`` package (``pip install "jaxnn[data]"``). NumPy's and Python's global
    random state are left as they were.

    Args:
      sequence: ``False`` gives inputs of shape ``(40,)`` (for an MLP); ``True`` gives ``(40, 1)``,
        a length-40 sequence of one feature (for ``Conv1D`` or recurrent layers).
      num_samples: :math:`S`, the number of examples generated, at least 10.
      seed: the generator's seed; 42, the package's default, gives the paper's data.

    Returns:
      A :class:`Dataset` named ``"mnist1d"``.
    """
    function = "mnist1d"
    sequence = check_bool(sequence, "sequence", function)
    num_samples = check_positive_int(num_samples, "num_samples", function)
    if num_samples < 10:
        raise ValueError(f"{function}: num_samples must be at least 10 (one per class), got {num_samples}")
    seed = _seed(seed, function)
    _import_optional("mnist1d.data", "mnist1d", function)
    x_train, y_train, x_test, y_test = (array.copy() for array in _mnist1d_arrays(num_samples, seed))
    if sequence:
        x_train, x_test = x_train[..., None], x_test[..., None]
    return _dataset(
        x_train, y_train, x_test, y_test, 10, "mnist1d",
        f"MNIST-1D signals of length 40 generated with seed {seed}, split "
        f"{len(y_train)}/{len(y_test)}",
    )


# --------------------------------------------------------------------------------------------
# Two-dimensional toy problems.


def moons(n: int = 1000, noise: float = 0.1, seed: int = 0, *, test_fraction: float = 0.2) -> Dataset:
    r"""Two interleaving half circles in the plane (scikit-learn's ``make_moons``), 2 classes.

    Class 0 lies on :math:`(\cos\theta, \sin\theta)`, class 1 on :math:`(1 - \cos\theta,
    \tfrac12 - \sin\theta)`, :math:`\theta \in [0, \pi]`, each point moved by Gaussian noise of
    standard deviation ``noise``. Class 0 gets :math:`\lfloor n/2 \rfloor` points, class 1 the rest.

    Args:
      n: the total number of points, train and test together.
      noise: the standard deviation of the Gaussian noise added to each coordinate.
      seed: a non-negative int fixing the points and the split.
      test_fraction: the fraction held out for testing (stratified), rounded half up.

    Returns:
      A :class:`Dataset` named ``"moons"``, inputs of shape ``(2,)``.
    """
    function = "moons"
    n = check_positive_int(n, "n", function)
    noise = check_real(noise, "noise", function, low=0)
    seed = _seed(seed, function)
    test_count = fraction_count(test_fraction, n, "test_fraction", function)
    datasets = _import_optional("sklearn.datasets", "scikit-learn", function)
    x, y = datasets.make_moons(n_samples=n, noise=noise, random_state=seed)
    x, y = x.astype(np.float32), y.astype(np.int32)
    test, train = stratified_split(y, test_count, make_rng(seed, "seed", function))
    return _dataset(
        x[train], y[train], x[test], y[test], 2, "moons",
        f"two moons, {n} points, noise {noise}, stratified split {len(train)}/{len(test)} (seed {seed})",
    )


def spirals(n: int = 600, classes: int = 3, noise: float = 0.2, seed: int = 0, *,
            test_fraction: float = 0.2) -> Dataset:
    r"""Interleaved spiral arms in the plane, one per class (the CS231n toy problem).

    Class :math:`j` gets :math:`m_j` points (``n`` split as evenly as possible, the first classes
    taking one more); its :math:`i`-th point, :math:`i = 0, \dots, m_j - 1`, is

    .. math::
        r_i = \frac{i}{m_j - 1}, \qquad
        t_i = 4j + \frac{4 i}{m_j - 1} + \sigma \epsilon_i, \qquad
        x_i = (r_i \sin t_i,\; r_i \cos t_i), \qquad \epsilon_i \sim \mathcal N(0, 1)

    so noise moves points along their circle (the angle) but never changes their radius.

    Args:
      n: the total number of points, train and test together, at least ``2 * classes``.
      classes: the number of arms (classes), at least 2.
      noise: :math:`\sigma`, the standard deviation of the angular noise, in radians.
      seed: a non-negative int fixing the noise and the split.
      test_fraction: the fraction held out for testing (stratified), rounded half up.

    Returns:
      A :class:`Dataset` named ``"spirals"``, inputs of shape ``(2,)``.
    """
    function = "spirals"
    n = check_positive_int(n, "n", function)
    classes = check_int(classes, "classes", function, low=2)
    if n < 2 * classes:
        raise ValueError(f"{function}: n must be at least 2 * classes = {2 * classes}, got {n}")
    noise = check_real(noise, "noise", function, low=0)
    seed = _seed(seed, function)
    test_count = fraction_count(test_fraction, n, "test_fraction", function)
    rng = make_rng(seed, "seed", function)
    points, labels = [], []
    for arm in range(classes):
        count = n // classes + (arm < n % classes)
        radius = np.linspace(0.0, 1.0, count)
        angle = np.linspace(4.0 * arm, 4.0 * (arm + 1), count) + noise * rng.standard_normal(count)
        points.append(np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1))
        labels.append(np.full(count, arm, np.int32))
    x, y = np.concatenate(points).astype(np.float32), np.concatenate(labels)
    test, train = stratified_split(y, test_count, rng)
    return _dataset(
        x[train], y[train], x[test], y[test], classes, "spirals",
        f"{classes} spiral arms, {n} points, angular noise {noise}, stratified split "
        f"{len(train)}/{len(test)} (seed {seed})",
    )


# --------------------------------------------------------------------------------------------
# MNIST-format IDX directories.

_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def _find_idx_file(directory: str, stem: str) -> str:
    # Some mirrors write "train-images.idx3-ubyte" (a dot before "idx").
    candidates = [stem, stem + ".gz"]
    dotted = stem.replace("-idx", ".idx")
    candidates += [dotted, dotted + ".gz"]
    for candidate in candidates:
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"idx_dataset: no {stem} in {directory}; looked for {', '.join(candidates)}"
    )


def idx_dataset(
    directory: str | os.PathLike,
    *,
    flatten: bool = False,
    name: str | None = None,
    num_classes: int | None = None,
) -> Dataset:
    """A :class:`Dataset` from a directory holding the four MNIST-format IDX files.

    The files are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``)
    and with ``.idx`` in place of ``-idx`` also accepted; MNIST, Fashion-MNIST and KMNIST come
    this way, and the split is theirs (60000/10000 for MNIST). Files are read with
    :func:`load_idx`, nothing is downloaded.

    uint8 images are scaled to ``[0, 1]`` (divided by 255) as float32; images of another dtype
    are converted to float32 unscaled. Images of shape ``(N, H, W)`` gain a channel axis, giving
    ``(H, W, 1)`` per example (NHWC, for a CNN); ``flatten=True`` gives ``(H * W,)`` instead
    (for an MLP). Labels become int32.

    Args:
      directory: the directory holding the files (``~`` is expanded).
      flatten: whether to flatten each example to a vector.
      name: the dataset's name; by default the directory's name (``"mnist"``, ``"fashion-mnist"``).
      num_classes: by default one more than the largest label in either split.

    Returns:
      A :class:`Dataset`; for MNIST, ``x_train`` float32 ``(60000, 28, 28, 1)``, ``y_train`` int32
      ``(60000,)``, ``x_test`` ``(10000, 28, 28, 1)``, ``y_test`` ``(10000,)``, 10 classes.

    Raises:
      FileNotFoundError: naming the file not found and the names tried.
      ValueError/TypeError: for a malformed file (see :func:`load_idx`), images and labels of
        different lengths, labels that are not integers of shape ``(N,)`` or lie outside
        ``[0, num_classes)``.
    """
    function = "idx_dataset"
    flatten = check_bool(flatten, "flatten", function)
    directory = os.path.expanduser(os.fspath(directory))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{function}: {directory} is not a directory")
    if name is None:
        name = os.path.basename(os.path.normpath(os.path.abspath(directory))) or "idx"
    arrays = {key: load_idx(_find_idx_file(directory, stem)) for key, stem in _IDX_FILES.items()}
    scaled = arrays["x_train"].dtype == np.uint8
    for split in ("train", "test"):
        images = arrays[f"x_{split}"]
        if images.ndim < 2:
            raise ValueError(
                f"{function}: {name} {split} images must have shape (N, ...), got shape {images.shape}"
            )
        images = images / np.float32(255.0) if images.dtype == np.uint8 else images.astype(np.float32)
        if flatten:
            images = images.reshape(images.shape[0], -1)
        elif images.ndim == 3:
            images = images[..., None]
        arrays[f"x_{split}"] = images.astype(np.float32, copy=False)
        labels = arrays[f"y_{split}"]
        if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"{function}: {name} {split} labels must be integers, got dtype {labels.dtype}")
        arrays[f"y_{split}"] = labels.astype(np.int32)
    if num_classes is None:
        num_classes = int(max(arrays["y_train"].max(initial=0), arrays["y_test"].max(initial=0))) + 1
    num_classes = check_positive_int(num_classes, "num_classes", function)
    shape = "x".join(str(size) for size in arrays["x_train"].shape[1:])
    scaling = "uint8 pixels scaled to [0, 1]" if scaled else "values unscaled"
    return _dataset(
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], num_classes, name,
        f"IDX files from {directory}, inputs {shape}, {scaling}, split "
        f"{len(arrays['y_train'])}/{len(arrays['y_test'])}",
    )


# --------------------------------------------------------------------------------------------
# By name.

DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": digits,
    "mnist1d": mnist1d,
    "moons": moons,
    "spirals": spirals,
    "idx": idx_dataset,
}


def load(name: str, **options: Any) -> Dataset:
    """Loads a dataset by name: ``DATASETS[name](**options)``.

    Args:
      name: one of ``"digits"``, ``"mnist1d"``, ``"moons"``, ``"spirals"``, ``"idx"`` (which needs
        ``directory=...``).
      **options: keyword arguments of that loader, e.g. ``image=True`` for ``"digits"``.

    Returns:
      The loader's :class:`Dataset`.

    Example::

        data = load("mnist1d", sequence=True)
    """
    if name not in DATASETS:
        raise ValueError(f"load: unknown dataset {name!r}; known datasets are {', '.join(DATASETS)}")
    return DATASETS[name](**options)
