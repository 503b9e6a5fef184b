"""Every layer's output of one forward pass, by the layer's path.

The paths are those of the parameter trees, of error messages and of ``jaxnn.summary``
(``"dense_0"``, ``"transformer_encoder_block_2/attention/q"``): a model's layers record their
outputs while it runs (:func:`jaxnn.core.layer.record_outputs`), so nothing here knows how any
combinator is built.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

from jaxnn.core import Layer, record_outputs


class CapturedLayer(NamedTuple):
    """One layer's output: its ``path``, its ``kind`` (``"dense"``, ``"relu"``), the
    :class:`~jaxnn.core.Layer` that computed it, and the ``output`` itself."""

    path: str
    kind: str
    layer: Layer
    output: Any


def capture_layers(model: Layer, params, state, x, *, train: bool = False, key=None,
                   **options) -> list[CapturedLayer]:
    """The outputs of :func:`capture` with the kind and :class:`~jaxnn.core.Layer` of each.

    One :class:`CapturedLayer` per path, in the order the outputs were computed; the rules are
    :func:`capture`'s.
    """
    if not isinstance(model, Layer):
        raise TypeError(f"capture: `model` must be a jaxnn Layer, got {type(model).__name__}")
    with record_outputs() as rows:
        y, _ = model.apply(params, state, x, key=key, train=train, **options)
    by_path: dict[str, CapturedLayer] = {}
    for path, layer, output in rows:
        # Rows at the empty path are the model itself, or layers it calls without a name of
        # their own; the model's output is added below.
        if not path:
            continue
        name = "/".join(path)
        # A layer wrapping another under the same path (Residual) finishes last: its output is
        # the path's, in the place where it was computed.
        by_path.pop(name, None)
        by_path[name] = CapturedLayer(name, layer.name, layer, output)
    captured = list(by_path.values())
    if not captured or captured[-1].output is not y:
        name = model.name if model.name not in by_path else f"{model.name}_output"
        captured.append(CapturedLayer(name, model.name, model, y))
    return captured


def capture(model: Layer, params, state, x, *, train: bool = False, key=None,
            **options) -> OrderedDict[str, Any]:
    """Runs ``model`` on ``x`` and returns every layer's output by path, in the order computed.

    ``y, _ = model.apply(params, state, x, key=key, train=train, **options)`` runs once; each
    layer applied inside the model under a name (a combinator's child, at any depth) gives an
    entry ``path -> output``, ``path`` being the child names joined by ``"/"``, the same string
    that indexes the parameter tree and names the layer in errors and in ``jaxnn.summary``.

    - Combinators appear too, after their children: ``"block_1/dense_0"``, ``"block_1/relu_1"``,
      then ``"block_1"`` (the block's output).
    - The last entry is the model's output ``y``. A ``Sequential`` model's output is its last
      child's, which is then the last entry; any other model (a ``Residual`` or ``Concat`` at the
      top, or a single layer) adds a last entry under its kind (``"residual"``, ``"dense"``).
    - A layer that wraps another without a name of its own (``Residual(Dense(4))`` as
      ``"residual_1"``) holds the wrapper's output. A path that runs twice keeps its last output.
    - Layers called inside a layer's own ``lax.scan`` or ``vmap`` body cannot be captured: their
      outputs would be tracers of that body. jaxnn's layers call none there.

    Works under ``jax.jit`` and ``jax.vmap`` (the entries are then traced values returned by the
    transformed function), with any number of batch axes, and with the model's options
    (``mask=``), routed to the layers that take them as in ``model.apply``.

    Args:
      model: a :class:`~jaxnn.core.Layer`.
      params, state: the model's, as its ``init`` made them.
      x: the input, ``(*batch, *input_shape)``.
      train: training mode (dropout active, BatchNorm using batch statistics).
      key: PRNG key, needed with ``train=True`` for dropout.
      **options: the model's options (``mask=``, ``initial_state=``).

    Returns:
      An ``OrderedDict`` from path to output, ordered as the outputs were computed. JAX keeps
      an ``OrderedDict``'s order through ``jit`` and ``vmap``, where it sorts a plain dict's keys.

    Example::

        model = Sequential([Dense(4), Relu(), Dense(2)])
        outputs = capture(model, params, state, x)
        list(outputs)  # ['dense_0', 'relu_1', 'dense_2']
    """
    return OrderedDict((entry.path, entry.output)
                       for entry in capture_layers(model, params, state, x, train=train, key=key, **options))
