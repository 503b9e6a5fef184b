"""Layers: each constructor returns a :class:`jaxnn.core.Layer` (an ``init``/``apply`` pair)."""

from jaxnn.layers.activations import (
    Elu,
    Gelu,
    LeakyRelu,
    LogSoftmax,
    Relu,
    Sigmoid,
    Softmax,
    Swish,
    Tanh,
    elu,
    gelu,
    leaky_relu,
    log_softmax,
    relu,
    sigmoid,
    softmax,
    swish,
    tanh,
)
from jaxnn.layers.dense import Dense, Embedding, Flatten, Reshape
from jaxnn.layers.dropout import Dropout
from jaxnn.layers.normalization import BatchNorm, LayerNorm

__all__ = [
    "BatchNorm",
    "Dense",
    "Dropout",
    "Elu",
    "Embedding",
    "Flatten",
    "Gelu",
    "LayerNorm",
    "LeakyRelu",
    "LogSoftmax",
    "Relu",
    "Reshape",
    "Sigmoid",
    "Softmax",
    "Swish",
    "Tanh",
    "elu",
    "gelu",
    "leaky_relu",
    "log_softmax",
    "relu",
    "sigmoid",
    "softmax",
    "swish",
    "tanh",
]
