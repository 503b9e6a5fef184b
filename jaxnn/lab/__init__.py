"""The lab: the textbook's lessons as code that measures them.

- :func:`capture`: every layer's output of a forward pass, by path.
- :func:`backprop`: backpropagation by hand (the δ rules) for ``Dense`` networks, equal to
  ``jax.grad``, with a number-by-number :meth:`~BackpropRecord.explain`.
- :func:`gradient_flow` and :class:`GradientFlowLogger`: gradient norms per layer, activation
  statistics (saturation, dead units), once or along training.
"""

from jaxnn.lab.backprop import BackpropRecord, NetworkLayer, backprop
from jaxnn.lab.capture import CapturedLayer, capture, capture_layers
from jaxnn.lab.flow import GradientFlow, GradientFlowLogger, activation_statistics, gradient_flow

__all__ = [
    "BackpropRecord",
    "CapturedLayer",
    "GradientFlow",
    "GradientFlowLogger",
    "NetworkLayer",
    "activation_statistics",
    "backprop",
    "capture",
    "capture_layers",
    "gradient_flow",
]
