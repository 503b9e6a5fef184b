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
from jaxnn.layers.attention import (
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    SinusoidalPositionalEmbedding,
    TransformerEncoderBlock,
)
from jaxnn.layers.conv import Conv1D, Conv2D
from jaxnn.layers.dense import Dense, Embedding, Flatten, Reshape
from jaxnn.layers.dropout import Dropout
from jaxnn.layers.normalization import BatchNorm, LayerNorm
from jaxnn.layers.pooling import AvgPool1D, AvgPool2D, GlobalAvgPool, MaxPool1D, MaxPool2D
from jaxnn.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN

__all__ = [
    "GRU",
    "LSTM",
    "AvgPool1D",
    "AvgPool2D",
    "BatchNorm",
    "Bidirectional",
    "Conv1D",
    "Conv2D",
    "Dense",
    "Dropout",
    "Elu",
    "Embedding",
    "Flatten",
    "Gelu",
    "GlobalAvgPool",
    "LayerNorm",
    "LeakyRelu",
    "LearnedPositionalEmbedding",
    "LogSoftmax",
    "MaxPool1D",
    "MaxPool2D",
    "MultiHeadAttention",
    "Relu",
    "Reshape",
    "Sigmoid",
    "SimpleRNN",
    "SinusoidalPositionalEmbedding",
    "Softmax",
    "Swish",
    "Tanh",
    "TransformerEncoderBlock",
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
