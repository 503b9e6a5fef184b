"""jaxnn: neural networks for JAX built from pure functions over plain pytrees."""

from jaxnn import init, losses, metrics
from jaxnn.core import Concat, Layer, Residual, Sequential
from jaxnn.layers import (
    BatchNorm,
    Dense,
    Dropout,
    Elu,
    Embedding,
    Flatten,
    Gelu,
    LayerNorm,
    LeakyRelu,
    LogSoftmax,
    Relu,
    Reshape,
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
from jaxnn.summary import summary

__version__ = "0.1.0"
