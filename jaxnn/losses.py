"""Loss functions and weight penalties: pure functions from arrays (or a parameter pytree) to a scalar.

Formulas are PyTorch's (``MSELoss``, ``L1Loss``, ``BCEWithLogitsLoss``, ``CrossEntropyLoss``), the
argument order is ``(predictions_or_logits, targets, *, reduction="mean", ...)``. Losses compute in
at least float32, and bad input raises a ``ValueError``/``TypeError`` naming the function and the
argument before XLA sees it. ``reduction="mean"`` over zero examples is a ``ValueError`` (the mean
of nothing is 0 / 0, a NaN); ``"sum"`` of nothing is 0, and ``"none"`` gives an empty array.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._checks import check_real
from jaxnn._targets import (
    as_array,
    check_class_targets,
    check_examples,
    check_floating,
    check_logits,
    check_probabilities,
)
from jaxnn.core import compute_dtype, first_out_of_range
from jaxnn.layers.activations import log_softmax

PyTree = Any

_REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------------------------
# Checks of the losses' own arguments.


def _check_reduction(function: str, reduction: Any) -> None:
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        allowed = ", ".join(repr(r) for r in _REDUCTIONS)
        raise ValueError(f"{function}: reduction must be one of {allowed}, got {reduction!r}")


def _check_numeric_dtype(function: str, name: str, x: Any) -> None:
    """Raises a ``TypeError`` unless the array ``x`` holds integer or floating-point numbers."""
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(f"{function}: {name} must be integer or floating-point, got dtype {x.dtype}")


def _check_same_shape(function: str, a_name: str, a: Any, b_name: str, b: Any) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{function}: {a_name} shape {tuple(a.shape)} and {b_name} shape {tuple(b.shape)} differ"
        )


def _float_dtype(*dtypes) -> jnp.dtype:
    """The dtype a loss computes in: the inputs' common dtype, at least float32."""
    return compute_dtype(*dtypes, jnp.float32)


def _abs_with_zero_subgradient(x: jax.Array) -> jax.Array:
    """``|x|``, differentiated as ``sign(x)``: 0 at ``x = 0`` as in PyTorch, where ``jnp.abs`` gives 1."""
    return jnp.sign(x) * x


def _reduce(loss: jax.Array, reduction: str) -> jax.Array:
    if reduction == "mean":
        return jnp.mean(loss)
    if reduction == "sum":
        return jnp.sum(loss)
    return loss


# --------------------------------------------------------------------------------------------
# Regression.


def _regression_inputs(function: str, predictions: Any, targets: Any, reduction: Any):
    _check_reduction(function, reduction)
    predictions = as_array(function, "predictions", predictions)
    targets = as_array(function, "targets", targets)
    _check_numeric_dtype(function, "predictions", predictions)
    _check_numeric_dtype(function, "targets", targets)
    _check_same_shape(function, "predictions", predictions, "targets", targets)
    check_examples(function, predictions.size, f"predictions shape {tuple(predictions.shape)}",
                   reduction=reduction)
    dtype = _float_dtype(predictions.dtype, targets.dtype)
    return predictions.astype(dtype), targets.astype(dtype)


def mse(predictions: Any, targets: Any, *, reduction: str = "mean") -> jax.Array:
    r"""Mean squared error, PyTorch's ``MSELoss``.

    .. math:: \ell_i = (p_i - t_i)^2

    reduced over all elements: ``"mean"`` gives :math:`\frac{1}{N}\sum_i \ell_i` (a ``ValueError``
    for :math:`N = 0`), ``"sum"`` gives :math:`\sum_i \ell_i` (0 for :math:`N = 0`), ``"none"`` the
    elementwise array.

    Args:
      predictions: array of any shape.
      targets: array of the same shape (no broadcasting: a ``(32, 1)`` against ``(32,)`` mistake
        raises instead of silently making a ``(32, 32)`` loss).
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
      A scalar, or an array of ``predictions.shape`` for ``"none"``; float32 or wider.

    Example::

        mse(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0]))  # (0 + 4) / 2 = 2.0
    """
    predictions, targets = _regression_inputs("mse", predictions, targets, reduction)
    return _reduce(jnp.square(predictions - targets), reduction)


def mae(predictions: Any, targets: Any, *, reduction: str = "mean") -> jax.Array:
    r"""Mean absolute error, PyTorch's ``L1Loss``.

    .. math:: \ell_i = |p_i - t_i|

    reduced over all elements as in :func:`mse`.

    Args:
      predictions: array of any shape.
      targets: array of the same shape.
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
      A scalar, or an array of ``predictions.shape`` for ``"none"``; float32 or wider.

    Example::

        mae(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0]))  # (0 + 2) / 2 = 1.0
    """
    predictions, targets = _regression_inputs("mae", predictions, targets, reduction)
    return _reduce(_abs_with_zero_subgradient(predictions - targets), reduction)


# --------------------------------------------------------------------------------------------
# Classification.


def binary_cross_entropy(logits: Any, targets: Any, *, reduction: str = "mean") -> jax.Array:
    r"""Binary cross-entropy from logits, PyTorch's ``BCEWithLogitsLoss``.

    With :math:`\sigma` the sigmoid,

    .. math::
        \ell_i = -[t_i \log \sigma(x_i) + (1 - t_i) \log(1 - \sigma(x_i))]
               = \max(x_i, 0) - x_i t_i + \log(1 + e^{-|x_i|})

    computed in the second form, which is finite with finite gradient
    :math:`\partial \ell_i / \partial x_i = \sigma(x_i) - t_i` for any finite logit. Reduced over
    all elements as in :func:`mse`.

    Args:
      logits: floating-point array of any shape (pre-sigmoid scores).
      targets: probabilities in ``[0, 1]`` of the same shape; integer or boolean 0/1 labels are
        accepted and cast. On concrete arrays a target outside ``[0, 1]`` raises a ``ValueError``;
        under ``jit``/``vmap`` (tracers) that check is skipped.
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
      A scalar, or an array of ``logits.shape`` for ``"none"``; float32 or wider.

    Example::

        binary_cross_entropy(jnp.array([0.0]), jnp.array([1.0]))  # log 2
    """
    function = "binary_cross_entropy"
    _check_reduction(function, reduction)
    logits = as_array(function, "logits", logits)
    targets = as_array(function, "targets", targets)
    check_floating(function, "logits", logits)
    if not (jnp.issubdtype(targets.dtype, jnp.floating) or jnp.issubdtype(targets.dtype, jnp.integer)
            or targets.dtype == jnp.bool_):
        raise TypeError(f"{function}: targets must be probabilities in [0, 1], got dtype {targets.dtype}")
    _check_same_shape(function, "logits", logits, "targets", targets)
    check_examples(function, logits.size, f"logits shape {tuple(logits.shape)}", reduction=reduction)
    found = first_out_of_range(targets, 0, 1, closed=True)
    if found is not None:
        index, value = found
        raise ValueError(
            f"{function}: target {value} at index {index} is outside [0, 1]; targets are probabilities"
        )
    dtype = _float_dtype(logits.dtype, targets.dtype)
    x, t = logits.astype(dtype), targets.astype(dtype)
    # logaddexp(x, 0) evaluates max(x, 0) + log1p(exp(-|x|)) but differentiates as sigmoid(x);
    # writing that sum out gets the gradient at x = 0 wrong, as d|x|/dx there is 1 in JAX.
    loss = jnp.logaddexp(x, jnp.zeros((), dtype)) - x * t
    return _reduce(loss, reduction)


def cross_entropy(
    logits: Any,
    labels: Any,
    *,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> jax.Array:
    r"""Softmax cross-entropy from logits over the last axis, PyTorch's ``CrossEntropyLoss``.

    For an example with logits :math:`x \in \mathbb{R}^C` and target distribution :math:`t`,

    .. math::
        \ell = -\sum_{c=1}^{C} t_c \log \operatorname{softmax}(x)_c,
        \qquad \log \operatorname{softmax}(x)_c = x_c - \log \sum_{c'} e^{x_{c'}}

    where integer labels :math:`y` mean :math:`t = \operatorname{onehot}(y)`, so
    :math:`\ell = -\log \operatorname{softmax}(x)_y`. With label smoothing :math:`\varepsilon`
    (as PyTorch) the target is :math:`(1 - \varepsilon)\, t + \varepsilon / C`, that is

    .. math:: \ell_\varepsilon = (1 - \varepsilon)\,\ell - \frac{\varepsilon}{C}\sum_c \log \operatorname{softmax}(x)_c .

    ``"mean"`` averages :math:`\ell` over the examples (not over classes; a ``ValueError`` when
    there are none), ``"sum"`` adds them (0 when there are none), ``"none"`` returns them. The log-softmax subtracts the per-example max first, so logits of any
    finite size (±1e4 in float32) give exact, finite losses and gradients.

    Args:
      logits: floating-point array of shape ``(*batch, classes)``.
      labels: integer class ids of shape ``(*batch,)``, or floating-point one-hot/probability
        targets of shape ``(*batch, classes)``. On concrete arrays a class id outside
        ``[0, classes)`` raises a ``ValueError`` naming it; under ``jit``/``vmap`` (tracers) the
        check is skipped and such an example's loss is NaN. Probability targets must be
        non-negative and sum to 1 over the classes, within the square root of their dtype's
        epsilon (3.5e-4 for float32): on concrete arrays the first example that does not raises a
        ``ValueError`` naming it and its negative entry or its sum; under ``jit``/``vmap`` nothing
        is checked and the loss is the formula above for the targets as given.
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.
      label_smoothing: :math:`\varepsilon`, a Python float in ``[0, 1]``.

    Returns:
      A scalar, or per-example losses of shape ``logits.shape[:-1]`` for ``"none"``; float32 or
      wider.

    Example::

        cross_entropy(jnp.array([[0.0, 0.0]]), jnp.array([0]))  # log 2
    """
    function = "cross_entropy"
    _check_reduction(function, reduction)
    epsilon = check_real(label_smoothing, "label_smoothing", function, low=0, high=1)
    logits = as_array(function, "logits", logits)
    labels = as_array(function, "labels", labels)
    check_logits(function, logits)
    integer_labels = check_class_targets(function, logits, labels)
    if not integer_labels:
        check_probabilities(function, labels)
    check_examples(function, logits.size // logits.shape[-1], f"logits shape {tuple(logits.shape)}",
                   reduction=reduction)

    dtype = _float_dtype(logits.dtype) if integer_labels else _float_dtype(logits.dtype, labels.dtype)
    log_probs = log_softmax(logits.astype(dtype), axis=-1)
    num_classes = logits.shape[-1]
    if integer_labels:
        picked = jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
        # take_along_axis wraps negative ids; NaN makes a bad id visible under jit instead.
        valid = (labels >= 0) & (labels < num_classes)
        loss = jnp.where(valid, -picked, jnp.asarray(jnp.nan, dtype))
    else:
        loss = -jnp.sum(labels.astype(dtype) * log_probs, axis=-1)
    if epsilon:
        uniform = -jnp.mean(log_probs, axis=-1)
        loss = (1.0 - epsilon) * loss + epsilon * uniform
    return _reduce(loss, reduction)


# --------------------------------------------------------------------------------------------
# Weight penalties.


def _mask_flags(function: str, params: PyTree, structure: Any, mask: Any) -> list:
    """One Python bool per leaf of ``params``: whether the penalty counts it."""
    if mask is None:
        return [True] * structure.num_leaves
    if callable(mask):
        mask = mask(params)
    mask_leaves, mask_structure = jax.tree_util.tree_flatten(mask)
    if mask_structure != structure:
        raise ValueError(
            f"{function}: mask structure differs from params structure; "
            f"mask is {mask_structure}, params are {structure}"
        )
    for flag in mask_leaves:
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{function}: mask leaves must be Python bools, got {flag!r}")
    return [bool(flag) for flag in mask_leaves]


def _penalty(function: str, params: PyTree, mask: Any, reduction: Any, term: Callable) -> PyTree:
    _check_reduction(function, reduction)
    leaves, structure = jax.tree_util.tree_flatten(params)
    flags = _mask_flags(function, params, structure, mask)
    counted = [as_array(function, "params leaf", leaf) for leaf, flag in zip(leaves, flags) if flag]
    for leaf in counted:
        _check_numeric_dtype(function, "params leaves", leaf)
    dtype = _float_dtype(*[leaf.dtype for leaf in counted])
    terms = [term(leaf.astype(dtype)) for leaf in counted]
    if reduction == "none":
        counted_terms = iter(terms)
        all_terms = [
            next(counted_terms) if flag else jnp.zeros(jnp.shape(leaf), dtype)
            for leaf, flag in zip(leaves, flags)
        ]
        return jax.tree_util.tree_unflatten(structure, all_terms)
    total = jnp.zeros((), dtype)
    for leaf_terms in terms:
        total = total + jnp.sum(leaf_terms)
    count = sum(leaf_terms.size for leaf_terms in terms)
    if reduction == "mean" and count:
        return total / count
    return total


def l1_penalty(params: PyTree, mask: Any = None, *, reduction: str = "sum") -> PyTree:
    r"""L1 penalty over the array leaves of a parameter pytree.

    With :math:`w_1, \dots, w_N` the scalars of the leaves that count,

    .. math:: \Omega_{\text{sum}}(w) = \sum_{i=1}^{N} |w_i|, \qquad
              \Omega_{\text{mean}}(w) = \frac{1}{N} \sum_{i=1}^{N} |w_i|

    and ``reduction="none"`` gives the terms :math:`|w_i|` themselves. :math:`|w|` is
    differentiated as :math:`\operatorname{sign}(w)`, 0 at :math:`w = 0` as in PyTorch.

    Args:
      params: a pytree of arrays (nested dicts, as ``init`` returns).
      mask: which leaves count. ``None`` (all), a pytree of Python bools with the structure of
        ``params`` (True = include), or a callable ``params -> such a pytree`` (optax's
        convention). A mask of another structure raises a ``ValueError``.
      reduction: ``"sum"`` (the default), ``"mean"`` or ``"none"``.

    Returns:
      A scalar, float32 or wider; 0 when no leaf counts (for ``"mean"`` too). For ``"none"``, a
      pytree of the structure of ``params`` holding the terms, leaves that do not count as zeros
      of their shape.

    Example::

        loss = cross_entropy(logits, labels) + 1e-4 * l1_penalty(params)
    """
    return _penalty("l1_penalty", params, mask, reduction, _abs_with_zero_subgradient)


def l2_penalty(params: PyTree, mask: Any = None, *, reduction: str = "sum") -> PyTree:
    r"""Half the squared L2 norm of the array leaves of a parameter pytree.

    With :math:`w_1, \dots, w_N` the scalars of the leaves that count,

    .. math:: \Omega_{\text{sum}}(w) = \tfrac{1}{2} \sum_{i=1}^{N} w_i^2, \qquad
              \Omega_{\text{mean}}(w) = \frac{1}{2N} \sum_{i=1}^{N} w_i^2

    and ``reduction="none"`` gives the terms :math:`\tfrac12 w_i^2` themselves. The :math:`\tfrac12`
    makes :math:`\nabla_w \Omega_{\text{sum}} = w`, so adding ``coef * l2_penalty(params)`` to a
    loss is exactly SGD weight decay ``coef`` (PyTorch's ``weight_decay``, optax's
    ``add_decayed_weights``); with ``"mean"`` the decay is ``coef / N``.

    Args:
      params: a pytree of arrays.
      mask: ``None``, a pytree of Python bools with the structure of ``params`` (True = include),
        or a callable ``params -> such a pytree``. A mask of another structure raises a
        ``ValueError``.
      reduction: ``"sum"`` (the default), ``"mean"`` or ``"none"``.

    Returns:
      A scalar, float32 or wider; 0 when no leaf counts (for ``"mean"`` too). For ``"none"``, a
      pytree of the structure of ``params`` holding the terms, leaves that do not count as zeros
      of their shape.

    Example::

        no_biases = lambda params: jax.tree_util.tree_map_with_path(
            lambda path, _: path[-1].key != "b", params)
        loss = cross_entropy(logits, labels) + 5e-4 * l2_penalty(params, mask=no_biases)
    """
    return _penalty("l2_penalty", params, mask, reduction, lambda w: 0.5 * jnp.square(w))
