"""Checks on the arrays that losses and metrics take: predictions, logits and class targets.

Each check raises a ``TypeError`` (not an array, wrong dtype) or ``ValueError`` (wrong shape, a
class id out of range) whose message names the function and the argument, before XLA sees the
arrays. They run at trace time on shapes and dtypes; only :func:`check_in_range` and
:func:`check_probabilities` look at values, and only on concrete arrays.
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxnn.core import first_out_of_range, is_concrete


def as_array(function: str, name: str, x: Any) -> Any:
    """Returns ``x`` if it is an array (JAX, NumPy or traced), else converts it with ``jnp.asarray``.

    Raises a ``TypeError`` for what is not an array of numbers (or booleans): ``None``, ragged
    lists, strings, objects.
    """
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        try:
            x = jnp.asarray(x)
        except (TypeError, ValueError):
            raise TypeError(f"{function}: {name} must be an array, got {type(x).__name__}") from None
    if not (jnp.issubdtype(x.dtype, jnp.number) or jnp.issubdtype(x.dtype, jnp.bool_)):
        raise TypeError(f"{function}: {name} must be an array of numbers, got dtype {x.dtype}")
    return x


def check_floating(function: str, name: str, x: Any) -> None:
    """Raises a ``TypeError`` unless ``x`` holds floating-point numbers."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{function}: {name} must be floating-point, got dtype {x.dtype}")


def check_logits(function: str, logits: Any) -> None:
    """Raises unless ``logits`` is a floating-point array with a class axis (the last)."""
    check_floating(function, "logits", logits)
    if logits.ndim == 0:
        raise ValueError(f"{function}: logits must have a class axis (the last), got a scalar")
    if logits.shape[-1] == 0:
        raise ValueError(
            f"{function}: logits must have at least one class (the last axis), "
            f"got shape {tuple(logits.shape)}"
        )


def check_examples(function: str, count: int, what: str, *, reduction: str | None = None) -> None:
    """Raises a ``ValueError`` for a mean over ``count == 0`` examples.

    The mean of nothing is 0 / 0, a NaN that would pass for a loss or an accuracy. A loss's
    ``reduction`` other than ``"mean"`` is well defined on no examples (``"sum"`` is 0, ``"none"``
    an empty array) and passes; ``reduction=None`` (a metric, always a mean) never does. Shapes are
    static, so this holds under ``jit`` too.
    """
    if count or reduction not in (None, "mean"):
        return
    hint = "; reduction='sum' gives 0 and reduction='none' an empty array" if reduction else ""
    raise ValueError(f"{function}: the mean over zero examples ({what}) is undefined{hint}")


def check_class_targets(function: str, logits: Any, labels: Any) -> bool:
    """Checks ``labels`` against ``logits`` of shape ``(*batch, classes)``.

    Returns True for integer class ids (shape ``(*batch,)``), False for floating one-hot or
    probability targets (shape ``(*batch, classes)``).
    """
    batch_shape, full_shape = tuple(logits.shape[:-1]), tuple(logits.shape)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        if tuple(labels.shape) != batch_shape:
            one_hot_shaped = tuple(labels.shape) == full_shape
            hint = "; for one-hot targets pass a floating-point array" if one_hot_shaped else ""
            raise ValueError(
                f"{function}: integer labels shape {tuple(labels.shape)} must equal "
                f"logits.shape[:-1] {batch_shape} (logits shape {full_shape}){hint}"
            )
        check_in_range(function, "label", labels, logits.shape[-1])
        return True
    if jnp.issubdtype(labels.dtype, jnp.floating):
        if tuple(labels.shape) != full_shape:
            raise ValueError(
                f"{function}: floating-point labels (one-hot or probabilities) shape "
                f"{tuple(labels.shape)} must equal logits shape {full_shape}"
            )
        return False
    raise TypeError(
        f"{function}: labels must be integer class ids or floating-point one-hot/probability "
        f"targets, got dtype {labels.dtype}"
    )


def check_in_range(function: str, what: str, values: Any, num_classes: int) -> None:
    """On concrete arrays, raises a ``ValueError`` naming the first value outside ``[0, num_classes)``.

    Tracers (inside ``jit``/``vmap``/``grad`` over ``values``) hold no values, so they are not checked.
    """
    found = first_out_of_range(values, 0, num_classes)
    if found is not None:
        index, value = found
        raise ValueError(f"{function}: {what} {value} at index {index} is outside [0, {num_classes})")


def probability_tolerance(dtype: Any) -> float:
    """How far from 1 the targets of one example may sum: the square root of ``dtype``'s epsilon.

    About 3.5e-4 for float32, 0.03 for float16 and 0.09 for bfloat16: far above the rounding of
    targets computed in that dtype (a softmax, counts divided by their total), far below the
    mistakes it is there to catch (unnormalized scores, multi-label targets).
    """
    return math.sqrt(float(jnp.finfo(dtype).eps))


def check_probabilities(function: str, targets: Any) -> None:
    """On concrete arrays, raises a ``ValueError`` naming the first example (all axes but the last)
    whose targets are not a distribution: an entry that is negative or NaN, or a sum over the last
    axis further than :func:`probability_tolerance` from 1.

    Tracers (inside ``jit``/``vmap``/``grad`` over ``targets``) hold no values, so they are not
    checked.
    """
    if not is_concrete(targets) or targets.size == 0:
        return
    values = np.asarray(targets)
    wide = values.astype(np.float64)
    tolerance = probability_tolerance(values.dtype)
    # Summed in float64, so that the sum adds no rounding of its own to the targets'.
    sums = wide.sum(axis=-1)
    invalid_entries = ~(wide >= 0)  # negative or NaN
    bad = invalid_entries.any(axis=-1) | ~(np.abs(sums - 1) <= tolerance)
    if not bad.any():
        return
    example = tuple(int(i) for i in np.argwhere(bad)[0])
    if invalid_entries[example].any():
        index = example + (int(np.argmax(invalid_entries[example])),)
        value = values[index]  # a NumPy scalar, printed as its dtype rounds it: -0.2, not -0.20000000298
        raise ValueError(
            f"{function}: target {value!s} at index {index} (example {example}) is "
            f"{'NaN' if math.isnan(float(value)) else 'negative'}; probability targets must be "
            "non-negative and sum to 1 over the classes (the last axis)"
        )
    raise ValueError(
        f"{function}: the targets of example {example} sum to {sums[example]:.7g}, not 1 "
        f"(tolerance {tolerance:.2g} for {values.dtype}); probability targets must sum to 1 over "
        "the classes (the last axis)"
    )
