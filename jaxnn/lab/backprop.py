r"""Backpropagation by hand for networks of ``Dense`` layers and activations: the δ rules of the
textbook, written with array operations alone, equal to ``jax.grad``.

The forward pass is the model's own (:func:`~jaxnn.lab.capture.capture_layers`); the backward
pass is matrix products and elementwise derivatives, so each number of it can be printed
(:meth:`BackpropRecord.explain`).
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import losses
from jaxnn._checks import check_choice
from jaxnn.core import Layer, compute_dtype
from jaxnn.lab.capture import CapturedLayer, capture_layers
from jaxnn.lab.explain import LOSS_NAMES, explain_backprop
from jaxnn.layers.activations import sigmoid, softmax

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "softmax", "log_softmax")
REDUCTIONS = ("mean", "sum")
WHERE = "backprop"


class NetworkLayer(NamedTuple):
    """Layer ``l`` of the network: its ``Dense`` path, and its activation's path, kind and (for a
    leaky ReLU) negative slope; ``None`` where the layer has no activation (``a = z``)."""

    dense: str
    activation: str | None
    kind: str | None
    slope: float | None


@dataclasses.dataclass(frozen=True)
class BackpropRecord:
    """What :func:`backprop` computed, each by the path of layer ``l``'s ``Dense``.

    Attributes:
      loss: the loss :math:`L`.
      inputs: :math:`a^{[0]} = x`.
      targets: ``y`` as given.
      pre_activations: :math:`z^{[l]}`, shaped as the ``Dense`` output.
      activations: :math:`a^{[l]}` (:math:`= z^{[l]}` for a layer without activation).
      activation_grads: :math:`\\partial L / \\partial a^{[l]}`.
      derivatives: :math:`\\sigma'(z^{[l]})` for the layers with an elementwise activation.
      deltas: :math:`\\delta^{[l]} = \\partial L / \\partial z^{[l]}`.
      grads: :math:`\\partial L / \\partial W^{[l]}`, :math:`\\partial L / \\partial b^{[l]}` in the
        tree of ``params`` (``{}`` for activations).
      params: the parameters the pass used.
      layers: the network's layers in order (:class:`NetworkLayer`).
      loss_name: the loss's name, or the function's name for a loss function.
      reduction: ``"mean"`` or ``"sum"``.

    A pytree: ``jax.jit(lambda p: backprop(model, p, state, x, y))`` returns one.
    """

    loss: jax.Array
    inputs: jax.Array
    targets: jax.Array
    pre_activations: OrderedDict
    activations: OrderedDict
    activation_grads: OrderedDict
    derivatives: OrderedDict
    deltas: OrderedDict
    grads: Any
    params: Any
    layers: tuple[NetworkLayer, ...]
    loss_name: str
    reduction: str

    def explain(self, decimals: int = 4, max_units: int = 6, max_examples: int = 4, *,
                show: bool = True) -> str:
        """The whole computation, number by number: the forward pass (``z`` and ``a`` of each
        layer), the loss, ``δ`` of the output layer, then each ``δ``, ``∂L/∂W`` and ``∂L/∂b``
        going back.

        Meant for small networks (2-2-2, 2-3-1) and one or two examples; larger arrays are cut
        to their first ``max_units`` rows and columns of units and ``max_examples`` examples,
        with ``…`` marking what was left out.

        Args:
          decimals: digits after the decimal point.
          max_units: units (matrix rows and columns) shown per axis.
          max_examples: examples shown.
          show: print the text as well as returning it.

        Returns:
          The text.
        """
        text = explain_backprop(self, decimals=decimals, max_units=max_units, max_examples=max_examples)
        if show:
            print(text)
        return text


jax.tree_util.register_dataclass(
    BackpropRecord,
    data_fields=["loss", "inputs", "targets", "pre_activations", "activations", "activation_grads",
                 "derivatives", "deltas", "grads", "params"],
    meta_fields=["layers", "loss_name", "reduction"],
)


def backprop(model: Layer, params, state, x, y, loss: str | Callable = "cross_entropy", *,
             reduction: str = "mean") -> BackpropRecord:
    r"""Backpropagation by hand through a ``Sequential`` of ``Dense`` layers and activations.

    The network is ``Dense`` layers :math:`l = 1 \dots L`, each followed by at most one
    activation :math:`\sigma^{[l]}` (sigmoid, tanh, relu, leaky relu, softmax or log-softmax over
    the last axis), or none (:math:`a^{[l]} = z^{[l]}`, the identity). Each row of :math:`x` is
    one example (jaxnn's layout, :math:`W^{[l]}` of shape ``(units in, units out)``); extra
    batch axes are flattened into the rows. Forward, with :math:`a^{[0]} = x`:

    .. math:: z^{[l]} = a^{[l-1]} W^{[l]} + b^{[l]}, \qquad a^{[l]} = \sigma^{[l]}(z^{[l]}).

    Backward, :math:`\delta^{[l]} = \partial L / \partial z^{[l]}`:

    .. math::
        \delta^{[L]} = \frac{\partial L}{\partial a^{[L]}} \odot \sigma'^{[L]}(z^{[L]}), \qquad
        \delta^{[l]} = \big(\delta^{[l+1]} W^{[l+1]\top}\big) \odot \sigma'^{[l]}(z^{[l]}),

    .. math::
        \frac{\partial L}{\partial W^{[l]}} = a^{[l-1]\top} \delta^{[l]}, \qquad
        \frac{\partial L}{\partial b^{[l]}} = \textstyle\sum_{\text{examples}} \delta^{[l]}.

    In the textbook's column convention (one example per column, :math:`\mathbf{W}^{[l]} =
    W^{[l]\top}` of shape ``(units out, units in)``) the same rules read
    :math:`z^{[l]} = \mathbf{W}^{[l]} a^{[l-1]} + b^{[l]}`,
    :math:`\delta^{[l]} = (\mathbf{W}^{[l+1]\top} \delta^{[l+1]}) \odot \sigma'(z^{[l]})`,
    :math:`\partial L / \partial \mathbf{W}^{[l]} = \delta^{[l]} a^{[l-1]\top}`.

    For a softmax activation the product with :math:`\sigma'` is the softmax's Jacobian,
    :math:`\delta = a \odot (g - \sum_j g_j a_j)` for :math:`g = \partial L / \partial a`; for a
    log-softmax, :math:`\delta = g - \operatorname{softmax}(z) \sum_j g_j`.

    :math:`\partial L / \partial a^{[L]}` comes from the loss, by hand for the named losses
    (:math:`B` examples, :math:`N` output values; ``reduction="sum"`` drops the division):

    - ``"cross_entropy"`` (softmax cross-entropy on logits, :func:`jaxnn.losses.cross_entropy`):
      :math:`(\operatorname{softmax}(a^{[L]}) - y) / B` with one-hot :math:`y`. With no
      activation on the last layer this is :math:`\delta^{[L]}` itself: the softmax with
      cross-entropy shortcut :math:`p - y`.
    - ``"binary_cross_entropy"`` (sigmoid on logits): :math:`(\sigma(a^{[L]}) - y) / N`.
    - ``"mse"``: :math:`2 (a^{[L]} - y) / N`;  ``"mae"``: :math:`\operatorname{sign}(a^{[L]} - y) / N`.
    - a function ``loss(outputs, targets)`` returning a scalar, or per-example or per-element
      values that ``reduction`` reduces: :math:`\partial L / \partial a^{[L]}` is ``jax.grad``
      of it, the one step not done by hand.

    Args:
      model: a ``Sequential`` of ``Dense`` layers, each followed by at most one activation.
      params, state: the model's.
      x: inputs ``(*batch, features)``.
      y: targets, as the loss takes them (class ids or one-hot rows for ``"cross_entropy"``).
      loss: one of ``"cross_entropy"``, ``"binary_cross_entropy"``, ``"mse"``, ``"mae"``, or a
        function ``(outputs, targets) -> loss``.
      reduction: ``"mean"`` or ``"sum"`` over the examples (over the output values for the
        elementwise losses), as in :mod:`jaxnn.losses`.

    Returns:
      A :class:`BackpropRecord`; ``record.grads`` equals ``jax.grad`` of the loss.

    Raises:
      ValueError: a model other than such a ``Sequential``, naming the layer path and what is
        supported; an unknown loss name or reduction.
      TypeError: a ``loss`` that is neither a name nor a function; a ``model`` that is no Layer.

    Example::

        model = Sequential([Dense(3), Sigmoid(), Dense(2)])
        record = backprop(model, params, state, x, labels, "cross_entropy")
        record.explain()
    """
    check_choice(reduction, "reduction", WHERE, REDUCTIONS)
    if isinstance(loss, str):
        check_choice(loss, "loss", WHERE, LOSS_NAMES)
    elif not callable(loss):
        raise TypeError(f"{WHERE}: `loss` must be one of {', '.join(map(repr, LOSS_NAMES))} or a function "
                        f"(outputs, targets) -> loss, got {loss!r}")
    if not isinstance(model, Layer):
        raise TypeError(f"{WHERE}: `model` must be a jaxnn Layer, got {type(model).__name__}")
    if model.name != "sequential":
        raise ValueError(f"{WHERE}: expected a Sequential model of Dense layers and activations, got a "
                         f"{model.name} layer; {_SUPPORTED}")
    captured = capture_layers(model, params, state, x)
    layers = _network_layers(captured)
    by_path = {entry.path: entry for entry in captured}
    inputs = jnp.asarray(x)

    pre_activations, activations = OrderedDict(), OrderedDict()
    for layer in layers:
        pre_activations[layer.dense] = by_path[layer.dense].output
        activations[layer.dense] = by_path[layer.activation or layer.dense].output
    outputs = activations[layers[-1].dense]
    loss_value, output_grad = _loss_and_gradient(loss, reduction, outputs, y)

    activation_grads, derivatives, deltas = OrderedDict(), OrderedDict(), OrderedDict()
    dense_grads = {}
    upstream = output_grad
    for index in reversed(range(len(layers))):
        layer = layers[index]
        z, a = pre_activations[layer.dense], activations[layer.dense]
        activation_grads[layer.dense] = upstream.reshape(a.shape)
        delta, derivative = _through_activation(layer, z, a, upstream.reshape(a.shape))
        if derivative is not None:
            derivatives[layer.dense] = derivative
        deltas[layer.dense] = delta
        previous = activations[layers[index - 1].dense] if index else inputs
        w = params[layer.dense]["w"]
        dtype = compute_dtype(previous.dtype, delta.dtype, w.dtype)
        delta_rows, previous_rows = _rows(delta).astype(dtype), _rows(previous).astype(dtype)
        dense_grads[layer.dense] = {"w": (previous_rows.T @ delta_rows).astype(w.dtype)}
        if "b" in params[layer.dense]:
            b = params[layer.dense]["b"]
            dense_grads[layer.dense]["b"] = jnp.sum(delta_rows, axis=0).astype(b.dtype)
        upstream = delta_rows @ w.astype(dtype).T

    grads = {name: dense_grads[name] if name in dense_grads else jax.tree.map(jnp.zeros_like, child)
             for name, child in params.items()}
    # Forward order for every mapping, as the explanation reads them.
    order = [layer.dense for layer in layers]
    return BackpropRecord(
        loss=loss_value, inputs=inputs, targets=jnp.asarray(y),
        pre_activations=pre_activations, activations=activations,
        activation_grads=OrderedDict((name, activation_grads[name]) for name in order),
        derivatives=OrderedDict((name, derivatives[name]) for name in order if name in derivatives),
        deltas=OrderedDict((name, deltas[name]) for name in order),
        grads=grads, params=params, layers=tuple(layers),
        loss_name=loss if isinstance(loss, str) else getattr(loss, "__name__", type(loss).__name__),
        reduction=reduction,
    )


_SUPPORTED = ("backprop supports Sequential models of Dense layers, each followed by at most one "
              f"activation ({', '.join(ACTIVATIONS)})")


def _network_layers(captured: list[CapturedLayer]) -> list[NetworkLayer]:
    """The network's layers from the model's children, or a ``ValueError`` naming the first
    child that does not fit ``Dense [activation] Dense [activation] ...``."""
    children = [entry for entry in captured if "/" not in entry.path]
    kinds = {entry.path: entry.kind for entry in children}
    nested = next((entry for entry in captured if "/" in entry.path), None)
    if nested is not None:
        name = nested.path.split("/")[0]
        raise ValueError(f"{WHERE}: `{name}` is a {kinds.get(name, 'nested')} layer made of layers; "
                         f"{_SUPPORTED}")
    layers: list[NetworkLayer] = []
    for entry in children:
        if entry.kind == "dense":
            layers.append(NetworkLayer(entry.path, None, None, None))
        elif entry.kind in ACTIVATIONS and layers and layers[-1].activation is None:
            layers[-1] = layers[-1]._replace(activation=entry.path, kind=entry.kind,
                                             slope=_activation_constant(entry))
        else:
            place = "before the first Dense layer" if not layers else "after an activation"
            what = (f"a {entry.kind} layer {place}" if entry.kind in ACTIVATIONS
                    else f"a {entry.kind} layer")
            raise ValueError(f"{WHERE}: `{entry.path}` is {what}; {_SUPPORTED}")
    return layers


def _activation_constant(entry: CapturedLayer) -> float | None:
    """A leaky ReLU's negative slope, read from the layer itself (its output at -1); for a
    softmax, a check that it runs over the last axis. Evaluated eagerly, even under ``jit``."""
    if entry.kind not in ("leaky_relu", "softmax", "log_softmax"):
        return None
    with jax.ensure_compile_time_eval():
        if entry.kind == "leaky_relu":
            probe, _ = entry.layer.apply({}, {}, jnp.full((1,), -1.0, jnp.float32))
            return -float(probe[0])
        probe, _ = entry.layer.apply({}, {}, jnp.asarray([[0.0, math.log(3.0)]], jnp.float32))
        if entry.kind == "log_softmax":
            probe = jnp.exp(probe)
        if not np.allclose(np.asarray(probe), [[0.25, 0.75]], atol=1e-5):
            raise ValueError(f"{WHERE}: `{entry.path}` takes the {entry.kind} over an axis other than the "
                             "last one, the units' axis; backprop supports it over axis=-1 only")
    return None


def _rows(array: jax.Array) -> jax.Array:
    """``(*batch, units)`` as ``(examples, units)``: one row per example."""
    return array.reshape(-1, array.shape[-1])


def _through_activation(layer: NetworkLayer, z, a, upstream):
    """``(δ, σ'(z))``: the gradient ``upstream`` = ∂L/∂a taken back through the activation to z;
    ``σ'(z)`` is None where the activation is not elementwise (softmax) or absent."""
    dtype = compute_dtype(a.dtype, upstream.dtype)
    a, upstream = a.astype(dtype), upstream.astype(dtype)
    if layer.kind is None:
        return upstream, None
    if layer.kind == "softmax":
        return a * (upstream - jnp.sum(upstream * a, axis=-1, keepdims=True)), None
    if layer.kind == "log_softmax":
        return upstream - jnp.exp(a) * jnp.sum(upstream, axis=-1, keepdims=True), None
    if layer.kind == "sigmoid":
        derivative = a * (1 - a)
    elif layer.kind == "tanh":
        derivative = 1 - a * a
    elif layer.kind == "relu":
        derivative = (z > 0).astype(dtype)
    else:  # leaky_relu; PyTorch's derivative at 0 is the slope
        derivative = jnp.where(z > 0, jnp.ones((), dtype), jnp.asarray(layer.slope, dtype))
    return upstream * derivative, derivative


def _loss_and_gradient(loss, reduction: str, outputs, targets):
    """``(L, ∂L/∂outputs)``: by hand for a loss name, by ``jax.grad`` for a loss function."""
    if callable(loss):
        def reduced(outputs):
            value = jnp.asarray(loss(outputs, targets))
            if value.ndim:
                value = jnp.mean(value) if reduction == "mean" else jnp.sum(value)
            return value

        value, gradient = jax.value_and_grad(reduced)(outputs)
        return value, gradient
    # The loss function checks the targets (shapes, class ids in range) and gives the value.
    value = getattr(losses, loss)(outputs, targets, reduction=reduction)
    dtype = value.dtype
    o = outputs.astype(dtype)
    targets = jnp.asarray(targets)
    if loss == "cross_entropy":
        classes = o.shape[-1]
        if jnp.issubdtype(targets.dtype, jnp.integer):
            classes_row = jnp.arange(classes).reshape((1,) * targets.ndim + (classes,))
            t = (targets[..., None] == classes_row).astype(dtype)
        else:
            t = targets.astype(dtype)
        gradient, count = softmax(o) - t, o.size // classes
    elif loss == "binary_cross_entropy":
        gradient, count = sigmoid(o) - targets.astype(dtype), o.size
    elif loss == "mse":
        gradient, count = 2 * (o - targets.astype(dtype)), o.size
    else:
        gradient, count = jnp.sign(o - targets.astype(dtype)), o.size
    if reduction == "mean":
        gradient = gradient / count
    return value, gradient
