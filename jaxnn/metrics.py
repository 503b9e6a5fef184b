"""Classification metrics: pure functions of logits and labels that work eagerly and under ``jit``.

Labels are integer class ids, or (for :func:`accuracy` and :func:`top_k_accuracy`) floating one-hot
targets; shapes and dtypes are checked as in :mod:`jaxnn.losses`, before XLA sees them.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxnn._checks import check_int, check_positive_int
from jaxnn._targets import as_array, check_class_targets, check_examples, check_in_range, check_logits


def _class_ids(function: str, logits: Any, labels: Any) -> jax.Array:
    """Integer class ids from integer labels or one-hot targets, checked against ``logits``."""
    if check_class_targets(function, logits, labels):
        return labels.astype(jnp.int32)
    return jnp.argmax(labels, axis=-1).astype(jnp.int32)


def accuracy(logits: Any, labels: Any) -> jax.Array:
    r"""Fraction of examples whose largest logit is the true class.

    .. math:: \operatorname{acc} = \frac{1}{N} \sum_{n=1}^{N} [\operatorname{argmax}_c x_{n,c} = y_n]

    Ties go to the lowest class index (``jnp.argmax``'s rule).

    Args:
      logits: floating-point array of shape ``(*batch, classes)``.
      labels: integer class ids of shape ``(*batch,)``, or floating one-hot targets of shape
        ``(*batch, classes)`` (their argmax is the class). On concrete arrays a class id outside
        ``[0, classes)`` raises a ``ValueError``; under ``jit``/``vmap`` it counts as wrong.

    Returns:
      A float32 scalar in ``[0, 1]``. Over zero examples the mean is undefined: a ``ValueError``.

    Example::

        accuracy(jnp.array([[2.0, 1.0], [0.0, 3.0]]), jnp.array([0, 0]))  # 0.5
    """
    function = "accuracy"
    logits = as_array(function, "logits", logits)
    labels = as_array(function, "labels", labels)
    check_logits(function, logits)
    class_ids = _class_ids(function, logits, labels)
    check_examples(function, logits.size // logits.shape[-1], f"logits shape {tuple(logits.shape)}")
    predicted = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jnp.mean((predicted == class_ids).astype(jnp.float32))


def top_k_accuracy(logits: Any, labels: Any, k: int = 5) -> jax.Array:
    r"""Fraction of examples whose true class is among the ``k`` largest logits.

    .. math:: \operatorname{acc}_k = \frac{1}{N} \sum_{n=1}^{N} [y_n \in \operatorname{top}_k(x_n)]

    Among equal logits the lower class index ranks higher (``jax.lax.top_k``'s rule), so ``k=1``
    agrees with :func:`accuracy`.

    Args:
      logits: floating-point array of shape ``(*batch, classes)``.
      labels: integer class ids of shape ``(*batch,)`` or floating one-hot targets of shape
        ``(*batch, classes)``, checked as in :func:`accuracy`.
      k: a Python int in ``[1, classes]``.

    Returns:
      A float32 scalar in ``[0, 1]``; a ``ValueError`` over zero examples, as :func:`accuracy`.

    Example::

        top_k_accuracy(jnp.array([[3.0, 2.0, 1.0]]), jnp.array([1]), k=2)  # 1.0
    """
    function = "top_k_accuracy"
    logits = as_array(function, "logits", logits)
    labels = as_array(function, "labels", labels)
    check_logits(function, logits)
    num_classes = logits.shape[-1]
    k = check_int(k, "k", function)
    if not 1 <= k <= num_classes:
        raise ValueError(f"{function}: `k` (={k}) must be in [1, {num_classes}], the number of classes")
    class_ids = _class_ids(function, logits, labels)
    check_examples(function, logits.size // logits.shape[-1], f"logits shape {tuple(logits.shape)}")
    _, top_classes = jax.lax.top_k(logits, k)
    hit = jnp.any(top_classes.astype(jnp.int32) == class_ids[..., None], axis=-1)
    return jnp.mean(hit.astype(jnp.float32))


def confusion_matrix(predictions: Any, labels: Any, num_classes: int) -> jax.Array:
    r"""Counts of (true class, predicted class) pairs; rows are true labels, columns predictions.

    .. math:: M_{ij} = \#\{n : y_n = i,\ \hat y_n = j\}, \qquad 0 \le i, j < K

    scikit-learn's convention (``sklearn.metrics.confusion_matrix``): the diagonal holds the
    correct predictions, ``M.sum(axis=1)`` the number of examples of each true class.

    Args:
      predictions: integer class ids of the shape of ``labels``, or floating-point logits of shape
        ``(*labels.shape, num_classes)`` (their argmax is the prediction).
      labels: integer class ids of any shape.
      num_classes: :math:`K`, a Python int (static under ``jit``). On concrete arrays a label or
        predicted id outside ``[0, K)`` raises a ``ValueError`` naming it; under ``jit``/``vmap``
        such pairs are left out of the counts.

    Returns:
      An int32 array of shape ``(K, K)``.

    Example::

        confusion_matrix(jnp.array([0, 1, 1]), jnp.array([0, 0, 1]), 2)  # [[1, 1], [0, 1]]
    """
    function = "confusion_matrix"
    num_classes = check_positive_int(num_classes, "num_classes", function)
    predictions = as_array(function, "predictions", predictions)
    labels = as_array(function, "labels", labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"{function}: labels must be integer class ids, got dtype {labels.dtype}")
    check_in_range(function, "label", labels, num_classes)
    if jnp.issubdtype(predictions.dtype, jnp.floating):
        expected = tuple(labels.shape) + (num_classes,)
        if tuple(predictions.shape) != expected:
            raise ValueError(
                f"{function}: floating-point predictions (logits) shape {tuple(predictions.shape)} "
                f"must equal labels shape + (num_classes,) = {expected}"
            )
        predicted = jnp.argmax(predictions, axis=-1).astype(jnp.int32)
    elif jnp.issubdtype(predictions.dtype, jnp.integer):
        if tuple(predictions.shape) != tuple(labels.shape):
            raise ValueError(
                f"{function}: predictions shape {tuple(predictions.shape)} and labels shape "
                f"{tuple(labels.shape)} differ"
            )
        check_in_range(function, "prediction", predictions, num_classes)
        predicted = predictions.astype(jnp.int32)
    else:
        raise TypeError(
            f"{function}: predictions must be integer class ids or floating-point logits, "
            f"got dtype {predictions.dtype}"
        )
    true = labels.astype(jnp.int32)
    valid = (true >= 0) & (true < num_classes) & (predicted >= 0) & (predicted < num_classes)
    # Indexing would wrap negative ids, so invalid pairs go to an index past the end and are dropped.
    cell = jnp.where(valid, true * num_classes + predicted, num_classes * num_classes)
    counts = jnp.zeros(num_classes * num_classes, jnp.int32).at[cell.reshape(-1)].add(1, mode="drop")
    return counts.reshape(num_classes, num_classes)
