"""Geometry of windows over spatial axes, shared by the convolution and pooling layers.

The checks of their ``kernel_size``/``window``, ``stride``, ``padding`` and ``dilation`` arguments,
padding resolved to ``(low, high)`` pairs, output sizes by PyTorch's formula, and the reshapes
between ``(*batch, *spatial, C)`` inputs and the one-batch-axis arrays the kernels take.
"""

from __future__ import annotations

import math

import jax

from jaxnn._checks import is_int
from jaxnn.core import LayerTypeError, LayerValueError, check_array, check_floating

Pairs = tuple[tuple[int, int], ...]


def int_tuple(value, ndim: int, argument: str, constructor: str, *, low: int) -> tuple[int, ...]:
    """``value`` (an int, or a tuple of ``ndim`` ints) as a tuple of ``ndim`` ints of at least
    ``low`` (1: positive, 0: non-negative)."""
    kind = {1: "positive", 0: "non-negative"}[low]
    expected = f"a {kind} int" + (f" or a tuple of {ndim} {kind} ints" if ndim > 1 else "")
    if is_int(value):
        values = (int(value),) * ndim
    elif isinstance(value, (tuple, list)) and len(value) == ndim and all(map(is_int, value)):
        values = tuple(int(v) for v in value)
    else:
        raise LayerTypeError(f"{constructor}: `{argument}` must be {expected}, got {value!r}")
    if any(v < low for v in values):
        raise LayerValueError(f"{constructor}: `{argument}` (={value!r}) must be {expected}")
    return values


def positive_tuple(value, ndim: int, argument: str, constructor: str) -> tuple[int, ...]:
    """``value`` (an int, or a tuple of ``ndim`` ints) as a tuple of ``ndim`` positive ints."""
    return int_tuple(value, ndim, argument, constructor, low=1)


def padding_spec(padding, ndim: int, constructor: str) -> str | Pairs:
    """Normalizes ``padding`` to ``"VALID"``, ``"SAME"`` or ``ndim`` ``(low, high)`` pairs."""
    if isinstance(padding, str):
        if padding.upper() in ("VALID", "SAME"):
            return padding.upper()
        raise LayerValueError(
            f"{constructor}: `padding` must be 'VALID', 'SAME', an int, a tuple of {ndim} ints or "
            f"{ndim} (low, high) pairs, got {padding!r}"
        )
    if is_int(padding):
        pairs = ((int(padding), int(padding)),) * ndim
    elif isinstance(padding, (tuple, list)) and len(padding) == ndim and all(map(is_int, padding)):
        pairs = tuple((int(p), int(p)) for p in padding)
    elif isinstance(padding, (tuple, list)) and len(padding) == ndim and all(
        isinstance(pair, (tuple, list)) and len(pair) == 2 and all(map(is_int, pair)) for pair in padding
    ):
        pairs = tuple((int(low), int(high)) for low, high in padding)
    else:
        hint = (f"; (low, high) padding of one axis is written (({padding[0]}, {padding[1]}),)"
                if ndim == 1 and isinstance(padding, (tuple, list)) and len(padding) == 2 else "")
        raise LayerTypeError(
            f"{constructor}: `padding` must be 'VALID', 'SAME', an int, a tuple of {ndim} ints or "
            f"{ndim} (low, high) pairs, got {padding!r}{hint}"
        )
    if any(p < 0 for pair in pairs for p in pair):
        raise LayerValueError(f"{constructor}: `padding` (={padding!r}) must not be negative")
    return pairs


def resolve_padding(padding: str | Pairs, sizes, windows, strides, dilations=None) -> Pairs:
    """``(low, high)`` pairs for each spatial axis of the given ``sizes``.

    ``"SAME"`` is XLA's: the output has ``ceil(n / stride)`` positions and the total padding
    ``max((out - 1) * stride + dilated_window - n, 0)`` is split with the extra element, if any,
    at the high end (as PyTorch's ``padding="same"`` does).
    """
    if dilations is None:
        dilations = (1,) * len(sizes)
    if padding == "VALID":
        return ((0, 0),) * len(sizes)
    if padding == "SAME":
        pairs = []
        for n, k, s, d in zip(sizes, windows, strides, dilations):
            out = -(-n // s)
            total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
            pairs.append((total // 2, total - total // 2))
        return tuple(pairs)
    return padding


def output_sizes(sizes, windows, strides, dilations, pads: Pairs) -> tuple[int, ...]:
    """``floor((n + low + high - dilation * (k - 1) - 1) / stride) + 1`` per axis (PyTorch's)."""
    return tuple((n + low + high - d * (k - 1) - 1) // s + 1
                 for n, k, s, d, (low, high) in zip(sizes, windows, strides, dilations, pads))


def check_spatial_fit(sizes, windows, dilations, pads: Pairs, what: str = "kernel") -> None:
    """Raises unless every padded spatial size holds at least one (dilated) window."""
    for axis, (n, k, d, (low, high)) in enumerate(zip(sizes, windows, dilations, pads)):
        span = d * (k - 1) + 1
        if n + low + high < span:
            padded = f" (padded to {n + low + high})" if low or high else ""
            dilated = f"dilated {what} spans {span}" if d > 1 else f"{what} is {k}"
            raise LayerValueError(
                f"spatial axis {axis} of the input has size {n}{padded}, but the {dilated}; "
                f"the input spatial shape is {tuple(sizes)}"
            )


def spatial_input(x, ndim: int, layout: str) -> jax.Array:
    """Checks that ``x`` has at least ``ndim`` spatial axes and a channel axis; returns it as an array."""
    x = check_array(x)
    check_floating(x)
    if x.ndim < ndim + 1:
        raise LayerValueError(f"expected an input of shape (*batch, {layout}), got {x.shape}")
    return x


def flatten_batch(x: jax.Array, ndim: int) -> tuple[jax.Array, tuple[int, ...]]:
    """Reshapes ``(*batch, *spatial, C)`` to ``(prod(batch), *spatial, C)``; returns the batch shape."""
    batch_shape = x.shape[: x.ndim - ndim - 1]
    return x.reshape((math.prod(batch_shape),) + x.shape[x.ndim - ndim - 1:]), batch_shape
