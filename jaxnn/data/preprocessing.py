"""Preprocessing on the host: feature standardization fitted on training data, and one-hot labels."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from jaxnn._checks import check_positive_int, check_real, is_int
from jaxnn.data.checks import as_numeric_array, check_finite, check_labels


class Standardizer(NamedTuple):
    r"""Statistics of a fitted standardization, :math:`x' = (x - \mu) / \sigma`.

    Calling it standardizes an array of shape ``(N, *input_shape)`` or a single example of shape
    ``input_shape``; :meth:`inverse` maps back.

    Attributes:
      mean: :math:`\mu`, float32, broadcastable against one example (the reduced axes kept as 1).
      scale: :math:`\sigma` as divided by: the training standard deviation, or 1 where that is at
        most ``eps`` (a feature constant on the training data is centered, not divided by ~0).
    """

    mean: np.ndarray
    scale: np.ndarray

    def __call__(self, x: Any) -> np.ndarray:
        """Returns :math:`(x - \\mu) / \\sigma` as float32 (float64 for float64 input)."""
        x = _as_float(as_numeric_array(x, "Standardizer: x"))
        return ((x - self.mean) / self.scale).astype(x.dtype, copy=False)

    def inverse(self, x: Any) -> np.ndarray:
        """Returns :math:`x \\sigma + \\mu`, undoing :meth:`__call__`."""
        x = _as_float(as_numeric_array(x, "Standardizer.inverse: x"))
        return (x * self.scale + self.mean).astype(x.dtype, copy=False)


def standardize(train: Any, *others: Any, axis: int | tuple[int, ...] = 0, eps: float = 1e-6):
    r"""Standardizes ``train`` and ``others`` with the mean and standard deviation of ``train``.

    With :math:`x_1, \dots, x_N` the training values of one feature (``axis`` says which axes are
    pooled; the default, 0, gives one statistic per feature),

    .. math::
        \mu = \frac1N \sum_i x_i, \qquad
        s = \sqrt{\frac1N \sum_i (x_i - \mu)^2}, \qquad
        \sigma = \begin{cases} s & s > \varepsilon \\ 1 & \text{otherwise} \end{cases}, \qquad
        x' = \frac{x - \mu}{\sigma}

    (the population deviation, as scikit-learn's ``StandardScaler``). Statistics are computed in
    float64 and come only from ``train``, so no information leaks from validation or test data;
    ``others`` are transformed with them. A feature constant on the training data (a corner pixel
    of the digits) is only centered: dividing by a deviation near 0 would turn a small change at
    test time into a huge input.

    Args:
      train: array of shape ``(N, *input_shape)``, N ≥ 1, finite.
      *others: arrays of shape ``(M, *input_shape)`` to transform the same way.
      axis: the axes to pool, an int or a tuple that includes 0 (the example axis); for images
        ``(N, H, W, C)``, ``axis=(0, 1, 2)`` gives per-channel statistics.
      eps: :math:`\varepsilon`, the deviation at or below which a feature counts as constant.

    Returns:
      ``(train_std, *others_std, standardizer)``: the standardized arrays (float32, or float64 for
      float64 input) and the fitted :class:`Standardizer`, which applies the same map to new data.

    Example::

        x_train, x_test, scaler = standardize(x_train, x_test)
    """
    function = "standardize"
    train = as_numeric_array(train, f"{function}: train")
    if train.ndim == 0 or train.shape[0] == 0:
        raise ValueError(f"{function}: train must hold at least one example, got shape {train.shape}")
    check_finite(train, f"{function}: train")
    # An infinite eps is allowed: it centers every feature without scaling any.
    eps = check_real(eps, "eps", function, low=0, finite=False)
    axes = _pooled_axes(axis, train.ndim, function)
    values = train.astype(np.float64)
    mean = values.mean(axis=axes, keepdims=True)
    deviation = np.sqrt(np.mean(np.square(values - mean), axis=axes, keepdims=True))
    scale = np.where(deviation > eps, deviation, 1.0)
    # Dropping the example axis (kept as 1) lets the statistics broadcast against a single example.
    standardizer = Standardizer(mean[0].astype(np.float32), scale[0].astype(np.float32))
    results = [standardizer(train)]
    for position, other in enumerate(others):
        other = as_numeric_array(other, f"{function}: others[{position}]")
        if other.shape[1:] != train.shape[1:]:
            raise ValueError(
                f"{function}: others[{position}] has per-example shape {other.shape[1:]} (shape "
                f"{other.shape}), but train has {train.shape[1:]} (shape {train.shape})"
            )
        results.append(standardizer(other))
    return (*results, standardizer)


def _pooled_axes(axis: Any, ndim: int, function: str) -> tuple[int, ...]:
    axes = axis if isinstance(axis, tuple) else (axis,)
    if not all(is_int(a) for a in axes):
        raise TypeError(f"{function}: axis must be an int or a tuple of ints, got {axis!r}")
    normalized = tuple(sorted({int(a) % ndim if -ndim <= a < ndim else -1 for a in axes}))
    if -1 in normalized:
        raise ValueError(f"{function}: axis {axis} is out of range for train of ndim {ndim}")
    if 0 not in normalized:
        raise ValueError(
            f"{function}: axis must include 0, the example axis, so statistics pool over examples; got {axis}"
        )
    return normalized


def _as_float(x: np.ndarray) -> np.ndarray:
    return x if np.issubdtype(x.dtype, np.floating) and x.dtype.itemsize >= 4 else x.astype(np.float32)


def one_hot(labels: Any, num_classes: int, *, dtype: Any = np.float32) -> np.ndarray:
    r"""One-hot rows for integer class ids: ``out[..., c] = 1`` where ``labels[...] == c``, else 0.

    .. math:: \operatorname{onehot}(y)_c = [\,y = c\,], \qquad c = 0, \dots, C - 1

    A NumPy function for host-side data; inside a jitted function use ``jax.nn.one_hot``.

    Args:
      labels: integer class ids of any shape, each in ``[0, num_classes)``; a label outside raises
        a ``ValueError`` naming it and its index (``jax.nn.one_hot`` would give a row of zeros).
      num_classes: :math:`C`, a positive int.
      dtype: the output dtype, float32 by default.

    Returns:
      An array of shape ``(*labels.shape, num_classes)`` and dtype ``dtype``.
    """
    function = "one_hot"
    num_classes = check_positive_int(num_classes, "num_classes", function)
    labels = as_numeric_array(labels, f"{function}: labels")
    check_labels(labels, num_classes, f"{function} labels", vector=False)
    flat = labels.reshape(-1)
    out = np.zeros((flat.shape[0], num_classes), dtype=dtype)
    out[np.arange(flat.shape[0]), flat] = 1
    return out.reshape(*labels.shape, num_classes)
