"""The textbook networks, ready to train: builders used by ``jaxnn train --model`` and the examples.

Each builder returns a :class:`jaxnn.Layer` mapping one example of the given shape to
``num_classes`` logits. They are ordinary compositions of jaxnn layers, meant to be read and
copied as much as called.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from jaxnn.core import Layer, Sequential
from jaxnn.layers import Dense, Dropout, Flatten, Relu


def mlp(num_classes: int, hidden: tuple[int, ...] = (128, 128), dropout: float = 0.0) -> Layer:
    """A multilayer perceptron: ``Flatten``, then ``Dense -> ReLU (-> Dropout)`` per hidden width, then ``Dense``."""
    layers = [Flatten()]
    for width in hidden:
        layers += [Dense(width), Relu()]
        if dropout:
            layers.append(Dropout(dropout))
    layers.append(Dense(num_classes))
    return Sequential(layers)


def _flat(shape):
    return (math.prod(shape),)


def _image(shape):
    """(H, W, 1) for square images given flat, (L, 1) for 1-D signals, else the shape as it is."""
    if len(shape) == 1:
        side = math.isqrt(shape[0])
        return (side, side, 1) if side * side == shape[0] and side > 2 else ((shape[0], 1) if shape[0] > 2 else None)
    return shape


def _sequence(shape):
    """(T, features): image rows as time steps, a 1-D signal as T steps of one value."""
    image = _image(shape)
    if image is None:
        return None
    return image[:-1] if len(image) == 3 and image[-1] == 1 else image


# How each layout reshapes a dataset's examples (None: the data has no such form).
LAYOUT_SHAPES = {"flat": _flat, "image": _image, "sequence": _sequence}

# name -> (builder(num_classes) -> Layer, the per-example input layout it needs):
# "flat" (features,), "image" (H, W, C) or (L, C), "sequence" (T, features).
MODELS: dict[str, tuple[Callable[[int], Layer], str]] = {
    "mlp": (mlp, "flat"),
}
