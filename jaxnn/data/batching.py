"""Minibatches, train/validation splits and k-fold cross-validation, over NumPy arrays on the host.

Shuffles are drawn from an explicit seed (an int, a tuple of ints, a JAX PRNG key or a NumPy
generator), never from global state, so the same seed always gives the same batches and splits.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from jaxnn._checks import check_bool, check_int, check_positive_int
from jaxnn.data.checks import as_numeric_array, fraction_count, make_rng


def num_batches(num_examples: int, batch_size: int, *, drop_remainder: bool = False) -> int:
    r"""The number of batches :func:`batches` yields per epoch.

    :math:`\lceil N / B \rceil`, or :math:`\lfloor N / B \rfloor` with ``drop_remainder=True``.

    Args:
      num_examples: :math:`N`, a non-negative int.
      batch_size: :math:`B`, a positive int.
      drop_remainder: whether a last batch smaller than ``batch_size`` is left out.

    Returns:
      An int.
    """
    function = "num_batches"
    num_examples = check_int(num_examples, "num_examples", function, low=0)
    batch_size = check_positive_int(batch_size, "batch_size", function)
    if drop_remainder:
        return num_examples // batch_size
    return math.ceil(num_examples / batch_size)


def batches(
    x: Any,
    y: Any = None,
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: Any = None,
    drop_remainder: bool = False,
) -> Iterator:
    """Iterates over one epoch of ``x`` (and ``y``) in minibatches along the first axis.

    Every example appears exactly once per epoch, in order, or with ``shuffle=True`` in the order
    of a permutation drawn from ``seed``. All batches hold ``batch_size`` examples except the last,
    which holds the ``N mod batch_size`` left over, or is left out with ``drop_remainder=True``
    (so that a jitted step sees one shape only). Without shuffling a batch is a view (basic
    slicing); with it, a copy (fancy indexing).

    Arguments are checked when ``batches`` is called, not when the first batch is drawn.

    Args:
      x: inputs of shape ``(N, ...)``; NumPy arrays, or anything ``np.asarray`` converts (JAX arrays
        are copied to the host once).
      y: labels or targets of shape ``(N, ...)``, or ``None``.
      batch_size: a positive int.
      shuffle: whether to visit the examples in a random order.
      seed: required with ``shuffle=True``: a non-negative int, a tuple of ints, a JAX PRNG key, or
        a ``numpy.random.Generator`` (which advances, so successive epochs differ). The same int,
        tuple or key gives the same order; for a new order each epoch pass ``seed=(seed, epoch)``
        or ``jax.random.fold_in(key, epoch)``. Ignored without shuffling.
      drop_remainder: whether to leave out a last batch smaller than ``batch_size``. With fewer
        than ``batch_size`` examples that would leave nothing, which raises a ``ValueError``.

    Returns:
      An iterator of ``(x_batch, y_batch)`` tuples, or of ``x_batch`` arrays when ``y`` is None;
      :func:`num_batches` of them.

    Example::

        for epoch in range(epochs):
            for x_batch, y_batch in batches(x, y, batch_size=128, shuffle=True, seed=(0, epoch)):
                train_state, metrics = train_step(train_state, (x_batch, y_batch))
    """
    function = "batches"
    x = as_numeric_array(x, f"{function}: x")
    if x.ndim == 0:
        raise ValueError(f"{function}: x must have an example axis first, got a scalar")
    if y is not None:
        y = as_numeric_array(y, f"{function}: y")
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"{function}: x and y must hold the same number of examples, got x of shape {x.shape} "
                f"and y of shape {y.shape}"
            )
    batch_size = check_positive_int(batch_size, "batch_size", function)
    shuffle = check_bool(shuffle, "shuffle", function)
    drop_remainder = check_bool(drop_remainder, "drop_remainder", function)
    count = x.shape[0]
    if drop_remainder and count < batch_size:
        raise ValueError(
            f"{function}: drop_remainder=True with {count} examples and batch_size={batch_size} "
            f"leaves no batch; use a smaller batch_size or drop_remainder=False"
        )
    order = None
    if shuffle:
        if seed is None:
            raise ValueError(
                f"{function}: shuffle=True needs a seed, e.g. seed=0, seed=(0, epoch) or a JAX key"
            )
        order = make_rng(seed, "seed", function).permutation(count)
    return _batches(x, y, order, batch_size, num_batches(count, batch_size, drop_remainder=drop_remainder))


def _batches(x: np.ndarray, y: np.ndarray | None, order: np.ndarray | None, batch_size: int, count: int):
    for start in range(0, count * batch_size, batch_size):
        rows = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
        yield x[rows] if y is None else (x[rows], y[rows])


def train_val_split(
    x: Any,
    y: Any,
    val_fraction: float,
    *,
    seed: Any,
    stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""Splits ``(x, y)`` at random into a training and a validation part.

    The validation part holds :math:`V = \lfloor f N + \tfrac12 \rfloor` examples (``val_fraction``
    :math:`f` of :math:`N`, rounded half up). With ``stratify=True``, each class :math:`c` with
    :math:`N_c` examples gives :math:`\lfloor q_c \rfloor` or :math:`\lceil q_c \rceil` of them,
    :math:`q_c = V N_c / N` (largest remainders first, so the total is exactly :math:`V`), and so
    keeps its proportion in both parts to within one example. Each part is returned in a random
    order.

    Args:
      x: inputs of shape ``(N, ...)``.
      y: labels of shape ``(N,)`` (integer class ids if ``stratify``) or targets of shape ``(N, ...)``.
      val_fraction: :math:`f`, a float in ``(0, 1)`` that leaves at least one example on each side.
      seed: a non-negative int, a tuple of ints, a JAX PRNG key or a ``numpy.random.Generator``.
      stratify: whether to keep the class proportions; needs integer labels ``y`` of shape ``(N,)``.

    Returns:
      ``(x_train, y_train, x_val, y_val)``, NumPy arrays of the input dtypes.
    """
    function = "train_val_split"
    x = as_numeric_array(x, f"{function}: x")
    y = as_numeric_array(y, f"{function}: y")
    if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{function}: x and y must hold the same number of examples, got x of shape {x.shape} "
            f"and y of shape {y.shape}"
        )
    val_count = fraction_count(val_fraction, x.shape[0], "val_fraction", function)
    rng = make_rng(seed, "seed", function)
    stratify = check_bool(stratify, "stratify", function)
    if stratify:
        if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
            raise TypeError(
                f"{function}: stratify=True needs integer class ids y of shape (N,), got dtype {y.dtype} "
                f"and shape {y.shape}; pass stratify=False for other targets"
            )
        val, train = stratified_split(y, val_count, rng)
    else:
        val, train = random_split(x.shape[0], val_count, rng)
    return x[train], y[train], x[val], y[val]


def random_split(total: int, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(chosen, rest)`` of ``count`` and ``total - count`` examples drawn without replacement."""
    order = rng.permutation(total)
    return order[:count], order[count:]


def stratified_split(
    labels: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    r"""Indices ``(chosen, rest)``: ``count`` examples chosen class by class in proportion.

    Class :math:`c` with :math:`N_c` of the :math:`N` examples gives :math:`\lfloor count\,N_c/N
    \rfloor` examples, and the classes with the largest fractional remainders one more each until
    ``count`` is reached (Hamilton's apportionment). Both parts come back in a random order.
    """
    classes, inverse, class_counts = np.unique(labels, return_inverse=True, return_counts=True)
    exact = class_counts * count / labels.shape[0]
    take = np.floor(exact).astype(np.int64)
    # A stable sort makes ties (equal remainders) go to the smaller class id, so the split
    # depends on the seed alone.
    extra = np.argsort(-(exact - take), kind="stable")[: count - int(take.sum())]
    take[extra] += 1
    chosen, rest = [], []
    for class_index in range(classes.shape[0]):
        members = rng.permutation(np.flatnonzero(inverse == class_index))
        chosen.append(members[: take[class_index]])
        rest.append(members[take[class_index]:])
    # Without this second shuffle both parts would be sorted by class.
    return rng.permutation(np.concatenate(chosen)), rng.permutation(np.concatenate(rest))


def kfold(
    data: Any,
    k: int,
    *,
    shuffle: bool = True,
    seed: Any = None,
    labels: Any = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    r"""Yields the ``k`` ``(train_idx, val_idx)`` index pairs of k-fold cross-validation.

    The :math:`N` examples are dealt into ``k`` disjoint folds whose sizes differ by at most one
    (the first :math:`N \bmod k` folds hold one more); fold :math:`i` is the validation set of
    round :math:`i` and the other folds its training set, so every example is validated exactly
    once. Without shuffling the folds are contiguous runs ``0..``, as scikit-learn's ``KFold``.
    With ``labels``, the folds are stratified: each class is dealt round-robin across the folds,
    so its count in any two folds differs by at most one.

    Args:
      data: the number of examples :math:`N`, or an array whose first axis has length :math:`N`.
      k: the number of folds, an int in ``[2, N]``.
      shuffle: whether examples go to folds at random (needs ``seed``).
      seed: a non-negative int, a tuple of ints, a JAX PRNG key or a ``numpy.random.Generator``.
      labels: optional integer class ids of shape ``(N,)`` to stratify by.

    Returns:
      An iterator of ``k`` pairs of sorted int64 index arrays ``(train_idx, val_idx)``.

    Example::

        for train_idx, val_idx in kfold(x, 5, seed=0, labels=y):
            score = fit_and_evaluate(x[train_idx], y[train_idx], x[val_idx], y[val_idx])
    """
    function = "kfold"
    if isinstance(data, (int, np.integer)) and not isinstance(data, bool):
        total = int(data)
        if total < 0:
            raise ValueError(f"{function}: the number of examples must be non-negative, got {total}")
    else:
        shape = getattr(data, "shape", None)
        if shape is None:
            shape = as_numeric_array(data, f"{function}: data").shape
        if len(shape) == 0:
            raise ValueError(
                f"{function}: data must be a number of examples or an array of them, got a scalar"
            )
        total = int(shape[0])
    k = check_positive_int(k, "k", function)
    if not 2 <= k <= total:
        raise ValueError(f"{function}: k must be in [2, N] = [2, {total}], got {k}")
    shuffle = check_bool(shuffle, "shuffle", function)
    if shuffle and seed is None:
        raise ValueError(f"{function}: shuffle=True needs a seed, e.g. seed=0, or pass shuffle=False")
    order = make_rng(seed, "seed", function).permutation(total) if shuffle else np.arange(total)

    if labels is None:
        fold_of = np.empty(total, np.int64)
        fold_of[order] = np.repeat(np.arange(k), [len(part) for part in np.array_split(order, k)])
    else:
        labels = as_numeric_array(labels, f"{function}: labels")
        integer = labels.dtype != np.bool_ and np.issubdtype(labels.dtype, np.integer)
        if not integer or labels.shape != (total,):
            raise TypeError(
                f"{function}: labels must be integer class ids of shape ({total},), got dtype "
                f"{labels.dtype} and shape {labels.shape}"
            )
        # Grouping by class (keeping the shuffled order within a class) and dealing position i to
        # fold i mod k spreads each class, a contiguous run, evenly over the folds.
        grouped = order[np.argsort(labels[order], kind="stable")]
        fold_of = np.empty(total, np.int64)
        fold_of[grouped] = np.arange(total) % k
    return _folds(fold_of, k)


def _folds(fold_of: np.ndarray, k: int):
    for fold in range(k):
        yield np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
