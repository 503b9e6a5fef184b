"""Layers: each constructor returns a :class:`jaxnn.core.Layer` (an ``init``/``apply`` pair)."""
