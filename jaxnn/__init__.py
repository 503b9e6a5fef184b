"""jaxnn: neural networks for JAX built from pure functions over plain pytrees.

The top level holds every layer (``jaxnn.layers``), the combinators, ``summary`` and the
subpackages; its exports are derived from ``jaxnn.layers.__all__``, so a new layer needs no edit
here.
"""

from jaxnn import data, init, interop, lab, layers, losses, metrics, models, optim, parallel, train, viz
from jaxnn.core import Concat, Layer, Residual, Sequential
from jaxnn.layers import *  # noqa: F403
from jaxnn.summary import summary

__version__ = "0.1.0"

__all__ = sorted(
    layers.__all__
    + ["Concat", "Layer", "Residual", "Sequential", "__version__", "summary"]
    + ["data", "init", "interop", "lab", "layers", "losses", "metrics", "models", "optim", "parallel", "train",
       "viz"]
)
