"""jaxnn: neural networks for JAX built from pure functions over plain pytrees."""

from jaxnn import init
from jaxnn.core import Concat, Layer, Residual, Sequential
from jaxnn.layers.dense import Dense, Embedding, Flatten, Reshape
from jaxnn.summary import summary

__version__ = "0.1.0"
