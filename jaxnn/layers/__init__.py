"""Layers: each constructor returns a :class:`jaxnn.core.Layer` (an ``init``/``apply`` pair).

One module per family of layers; each lists what it exports in ``__all__``, and this package
exports exactly those names. A new layer is its module's definition and an ``__all__`` entry.
"""

from jaxnn.layers import (
    activations,
    attention,
    conv,
    dense,
    dropout,
    normalization,
    pooling,
    recurrent,
    upsample,
)
from jaxnn.layers.activations import *  # noqa: F403
from jaxnn.layers.attention import *  # noqa: F403
from jaxnn.layers.conv import *  # noqa: F403
from jaxnn.layers.dense import *  # noqa: F403
from jaxnn.layers.dropout import *  # noqa: F403
from jaxnn.layers.normalization import *  # noqa: F403
from jaxnn.layers.pooling import *  # noqa: F403
from jaxnn.layers.recurrent import *  # noqa: F403
from jaxnn.layers.upsample import *  # noqa: F403

__all__ = sorted(
    activations.__all__ + attention.__all__ + conv.__all__ + dense.__all__ + dropout.__all__
    + normalization.__all__ + pooling.__all__ + recurrent.__all__ + upsample.__all__
)
