"""Sharing models with other frameworks: PyTorch weights, safetensors files, ``jax.export`` programs.

- :func:`from_torch` / :func:`to_torch`: weights from a ``torch.nn.Module`` (or its state dict)
  into a jaxnn model and back, with a :class:`ConversionReport` that runs both and compares
  outputs and gradients layer by layer (needs ``pip install 'jaxnn[torch]'``).
- :func:`save_weights` / :func:`load_weights`: params and state in the safetensors format, read
  and written by jaxnn itself (the ``safetensors`` package is needed only by other readers).
- :func:`export` / :func:`load_exported`: a model with its weights as a serialized StableHLO
  program that runs without jaxnn (needs ``pip install 'jaxnn[export]'``, for flatbuffers).

torch and flatbuffers are imported only when the functions that need them run.
"""

from jaxnn.interop.export import export, load_exported
from jaxnn.interop.safetensors import load_weights, save_weights
from jaxnn.interop.torch import ConversionReport, LayerCheck, from_torch, to_torch

__all__ = ["ConversionReport", "LayerCheck", "export", "from_torch", "load_exported", "load_weights",
           "save_weights", "to_torch"]
