"""Checks on the arrays that losses and metrics take: predictions, logits and class targets.

Each check raises a ``TypeError`` (not an array, wrong dtype) or ``ValueError`` (wrong shape, a
class id out of range) whose message names the function and the argument, before XLA sees the
arrays. They run at trace time on shapes and dtypes; only :func:`check_in_range` looks at values,
and only on concrete arrays.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from jaxnn.core import first_out_of_range


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
