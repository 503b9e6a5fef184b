"""The textbook networks, ready to train: builders used by ``jaxnn train --model`` and the examples.

Each builder returns a :class:`jaxnn.Layer` mapping one example of the given shape to
``num_classes`` logits. They are ordinary compositions of jaxnn layers, meant to be read and
copied as much as called.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from jaxnn.core import Layer, Sequential
from jaxnn.layers.activations import Relu
from jaxnn.layers.attention import LearnedPositionalEmbedding, TransformerEncoderBlock
from jaxnn.layers.conv import Conv1D, Conv2D
from jaxnn.layers.dense import Dense, Flatten
from jaxnn.layers.dropout import Dropout
from jaxnn.layers.normalization import LayerNorm
from jaxnn.layers.pooling import GlobalAvgPool, MaxPool1D, MaxPool2D
from jaxnn.layers.recurrent import GRU, LSTM, SimpleRNN


def mlp(num_classes: int, input_shape: tuple[int, ...] = (), hidden: tuple[int, ...] = (128, 128),
        dropout: float = 0.0) -> Layer:
    """A multilayer perceptron: ``Flatten``, then ``Dense -> ReLU (-> Dropout)`` per hidden width, then ``Dense``."""
    layers = [Flatten()]
    for width in hidden:
        layers += [Dense(width), Relu()]
        if dropout:
            layers.append(Dropout(dropout))
    layers.append(Dense(num_classes))
    return Sequential(layers)


def cnn(num_classes: int, input_shape: tuple[int, ...], channels: tuple[int, int] = (32, 64)) -> Layer:
    """LeNet-style: two ``conv 3 (or 5 in 1-D) -> ReLU -> max-pool 2`` blocks, then ``Dense 128 -> ReLU -> Dense``.

    ``(H, W, C)`` inputs get :func:`Conv2D`, ``(L, C)`` inputs :func:`Conv1D`. Convolutions pad
    ``"SAME"`` so that small inputs (8×8 digits) survive two poolings.
    """
    if len(input_shape) == 3:
        conv, pool, kernel = Conv2D, MaxPool2D, 3
    elif len(input_shape) == 2:
        conv, pool, kernel = Conv1D, MaxPool1D, 5
    else:
        raise ValueError(f"cnn: expected (H, W, C) images or (L, C) signals, got examples of shape {input_shape}")
    layers = []
    for features in channels:
        layers += [conv(features, kernel, padding="SAME"), Relu(), pool(2)]
    return Sequential(layers + [Flatten(), Dense(128), Relu(), Dense(num_classes)])


def _recurrent(cell):
    def build(num_classes: int, input_shape: tuple[int, ...] = (), hidden: int = 128) -> Layer:
        return Sequential([cell(hidden), Dense(num_classes)])

    build.__name__ = cell.__name__.lower()
    build.__doc__ = (f"A {cell.__name__} over ``(T, features)`` sequences; its last hidden state feeds a "
                     "``Dense`` classifier.")
    return build


rnn, lstm, gru = _recurrent(SimpleRNN), _recurrent(LSTM), _recurrent(GRU)


def transformer(num_classes: int, input_shape: tuple[int, ...], width: int = 64, heads: int = 4,
                depth: int = 2, dropout: float = 0.1) -> Layer:
    """A small Transformer encoder classifier over ``(T, features)`` sequences.

    ``Dense(width)`` embeds each step, a learned positional embedding is added, ``depth``
    pre-norm :func:`TransformerEncoderBlock` s follow, then ``LayerNorm``, the mean over time
    steps and a ``Dense`` classifier.
    """
    if len(input_shape) != 2:
        raise ValueError(f"transformer: expected (T, features) sequences, got examples of shape {input_shape}")
    blocks = [TransformerEncoderBlock(heads, dropout=dropout) for _ in range(depth)]
    return Sequential([Dense(width), LearnedPositionalEmbedding(input_shape[0]), *blocks, LayerNorm(),
                       GlobalAvgPool(), Dense(num_classes)])


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

# name -> (builder(num_classes, input_shape) -> Layer, the per-example input layout it needs):
# "flat" (features,), "image" (H, W, C) or (L, C), "sequence" (T, features).
MODELS: dict[str, tuple[Callable[[int, tuple[int, ...]], Layer], str]] = {
    "mlp": (mlp, "flat"),
    "cnn": (cnn, "image"),
    "rnn": (rnn, "sequence"),
    "lstm": (lstm, "sequence"),
    "gru": (gru, "sequence"),
    "transformer": (transformer, "sequence"),
}
