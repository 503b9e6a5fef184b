"""Checks on datasets and on the arguments of the data functions.

A bad dataset is reported once, at entry, as a ``ValueError``/``TypeError`` that names the array,
what is wrong with it and where (the first offending index), instead of surfacing later as a NaN
loss or an XLA error deep inside a train step.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxnn._checks import check_positive_int


def check_dataset(
    x: Any,
    y: Any = None,
    num_classes: int | None = None,
    *,
    name: str = "train",
    input_shape: Sequence[int] | None = None,
) -> None:
    """Checks inputs ``x`` and labels ``y`` before training or evaluating on them.

    Raises, naming ``name`` and the array (``"train x"``, ``"test y"``):

    - ``TypeError`` if ``x`` or ``y`` is not an array of numbers (complex, strings, objects,
      ragged lists), or if ``num_classes`` is given and ``y`` is not of an integer dtype
      (floating-point and boolean labels included: cast them with ``y.astype(np.int32)``);
    - ``ValueError`` if ``x`` is empty or a scalar; if ``x`` holds NaN or ±inf (the message gives
      the first such index in row-major order, and its example); if ``x`` and ``y`` hold different
      numbers of examples; if ``input_shape`` is given and ``x.shape[1:]`` differs from it; if
      ``num_classes`` is given and ``y`` is not of shape ``(N,)`` or holds a label outside
      ``[0, num_classes)`` (the message gives the label and its index).

    With ``num_classes=None``, ``y`` is taken as targets of any numeric dtype and shape
    ``(N, ...)`` (regression values, one-hot rows): only their length and finiteness are checked.

    Args:
      x: inputs of shape ``(N, *input_shape)``: floating-point features, or integer ids (for an
        ``Embedding``), whose finiteness needs no check.
      y: labels of shape ``(N,)``, targets of shape ``(N, ...)``, or ``None`` for unlabeled data.
      num_classes: the number of classes when ``y`` holds integer class ids.
      name: what the data is, for the messages: ``"train"``, ``"validation"``, ``"test"``.
      input_shape: the per-example shape the model expects, if it should be checked.

    Returns:
      None. The arrays are not changed.

    Example::

        check_dataset(data.x_train, data.y_train, data.num_classes, name="train",
                      input_shape=data.input_shape)
    """
    if not isinstance(name, str):
        raise TypeError(f"check_dataset: name must be a string such as 'train', got {name!r}")
    x = as_numeric_array(x, f"{name} x")
    if x.ndim == 0:
        raise ValueError(f"{name} x must have an example axis first, got a scalar")
    if x.shape[0] == 0:
        raise ValueError(f"{name} x is empty: it has shape {x.shape}, with no examples")
    if input_shape is not None:
        sizes = (input_shape,) if isinstance(input_shape, numbers.Integral) else input_shape
        expected = tuple(int(size) for size in sizes)
        if tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"{name} x has per-example shape {tuple(x.shape[1:])} (ndim {x.ndim - 1}), "
                f"but input_shape is {expected} (ndim {len(expected)}); x must have shape (N, *input_shape)"
            )
    check_finite(x, f"{name} x")
    if num_classes is not None:
        num_classes = check_positive_int(num_classes, "num_classes", "check_dataset")
    if y is None:
        return
    y = as_numeric_array(y, f"{name} y")
    if y.ndim == 0:
        raise ValueError(f"{name} y must have an example axis first, got a scalar")
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name} x and y differ in length: x has {x.shape[0]} examples (shape {x.shape}), "
            f"y has {y.shape[0]} (shape {y.shape})"
        )
    if num_classes is None:
        check_finite(y, f"{name} y")
        return
    check_labels(y, num_classes, f"{name} y")


def check_labels(labels: np.ndarray, num_classes: int, what: str, *, vector: bool = True) -> None:
    """Raises unless ``labels`` are integer class ids in ``[0, num_classes)``, of shape (N,) if ``vector``."""
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        hint = ""
        if np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)) and np.all(
            labels == np.round(labels)
        ):
            hint = "; they are whole numbers, so cast them: y.astype(np.int32)"
        raise TypeError(f"{what} must hold integer class ids, got dtype {labels.dtype}{hint}")
    if vector and labels.ndim != 1:
        column = labels.shape[1:] == (1,) * (labels.ndim - 1)
        hint = "; flatten a label column with y.reshape(-1)" if column else ""
        raise ValueError(
            f"{what} must be class ids of shape (N,), got shape {labels.shape} (ndim {labels.ndim}){hint}"
        )
    outside = (labels < 0) | (labels >= num_classes)
    if outside.any():
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(outside)), labels.shape))
        index = index[0] if len(index) == 1 else index
        raise ValueError(
            f"{what}: label {labels[index].item()} at index {index} is outside [0, {num_classes})"
        )


def check_finite(array: np.ndarray, what: str) -> None:
    """Raises a ``ValueError`` giving the first NaN or ±inf of a floating-point ``array``."""
    if not np.issubdtype(array.dtype, np.inexact):
        return
    # A sum is finite only if every value is (IEEE 754: a NaN or an infinity makes it NaN or
    # infinite), and summing reads the array once without a flag array as large as itself: 1.2
    # ms instead of 1.6 for 8192 x 784 float32 values. A sum that overflows from finite values
    # falls through to the exact search below, which then finds nothing. Half-precision sums
    # overflow too soon (a thousand values of 255) to be worth trying.
    if array.dtype.itemsize >= 4:
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(np.sum(array)):
                return
    bad = ~np.isfinite(array)
    if not bad.any():
        return
    # argmax of a boolean array is its first True in row-major order.
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), array.shape))
    value = array[index].item()
    value = "NaN" if math.isnan(value) else value
    shown = index[0] if len(index) == 1 else index
    where = f"index {shown}" if len(index) == 1 else f"index {shown} (example {index[0]})"
    raise ValueError(f"{what} contains {value} at {where}; inputs and targets must be finite")


def as_numeric_array(value: Any, what: str) -> np.ndarray:
    """``value`` as a NumPy array of booleans or real numbers, else a ``TypeError`` naming ``what``."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be an array of numbers, got {type(value).__name__}") from None
    if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer) or np.issubdtype(
        array.dtype, np.floating
    ):
        return array
    raise TypeError(f"{what} must be an array of real numbers, got dtype {array.dtype}")


# --------------------------------------------------------------------------------------------
# Argument checks shared by the data functions.


def fraction_count(fraction: Any, total: int, argument: str, function: str) -> int:
    """The number of examples ``fraction`` of ``total`` gives, rounded half up; at least 1, at most total - 1.

    Raises unless ``fraction`` is a real number in ``(0, 1)`` that leaves examples on both sides.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise TypeError(f"{function}: {argument} must be a float in (0, 1), got {fraction!r}")
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"{function}: {argument} must be in (0, 1), got {fraction}")
    count = math.floor(float(fraction) * total + 0.5)
    if not 1 <= count <= total - 1:
        raise ValueError(
            f"{function}: {argument}={fraction} of {total} examples gives {count} of them to one side "
            f"and {total - count} to the other; both sides need at least one"
        )
    return count


def make_rng(seed: Any, argument: str, function: str) -> np.random.Generator:
    """A NumPy generator from an int seed, a tuple of ints, a JAX PRNG key or a generator.

    A generator is returned as is (so it advances across calls); everything else seeds a new one,
    so the same value always gives the same draws.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if _is_jax_key(seed):
        if jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
            seed = jax.random.key_data(seed)
        return np.random.default_rng([int(word) for word in np.asarray(seed).ravel()])
    words = seed if isinstance(seed, (tuple, list)) else (seed,)
    if all(isinstance(word, numbers.Integral) and not isinstance(word, bool) and word >= 0 for word in words):
        return np.random.default_rng([int(word) for word in words])
    raise TypeError(
        f"{function}: {argument} must be a non-negative int, a tuple of them, a JAX PRNG key or a "
        f"numpy.random.Generator, got {seed!r}"
    )


def _is_jax_key(value: Any) -> bool:
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
    if dtype is None or isinstance(value, np.ndarray):
        return False
    typed = jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ()
    raw = dtype == np.uint32 and shape == (2,)
    return typed or raw
