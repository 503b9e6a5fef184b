"""Gradient flow: how large each layer's gradient is, and how its activations are spread
(saturated sigmoids and tanhs, dead ReLUs), once or along training.

Vanishing gradients show as norms shrinking towards the input layers, saturation as activations
pinned at their limits: the measurements behind the textbook's lessons on initialization and
activation functions.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._checks import check_bool, check_positive_int
from jaxnn.core import Layer
from jaxnn.lab.capture import capture_layers
from jaxnn.train.callbacks import Callback
from jaxnn.train.step import resolve_loss

# Outputs beyond these are saturated: the derivative there is below 0.01 (sigmoid) or 0.02 (tanh).
SIGMOID_SATURATION = (0.01, 0.99)
TANH_SATURATION = 0.99


class GradientFlow(NamedTuple):
    """One measurement of :func:`gradient_flow`.

    Attributes:
      loss: the mean loss over the examples, as ``fit`` minimizes it.
      grad_norms: for each layer with parameters, by path, in the order the layers ran, the L2
        norm of the gradient of all its parameters: :math:`\\sqrt{\\sum_p \\lVert \\partial L /
        \\partial p \\rVert_F^2}`.
      param_grad_norms: path -> ``{param name: L2 norm of its gradient}`` (``{"w": ..., "b": ...}``).
      activations: for every captured output (:func:`~jaxnn.lab.capture`), by path: ``mean``
        and ``std`` over all its values; for sigmoid and tanh layers ``saturated``, the fraction of
        outputs outside ``(0.01, 0.99)`` (sigmoid) or with ``|a| > 0.99`` (tanh); for ReLU layers
        ``dead``, the fraction of outputs equal to 0, and ``dead_units``, the fraction of units
        (the last axis) that are 0 for every example.
    """

    loss: float
    grad_norms: OrderedDict
    param_grad_norms: OrderedDict
    activations: OrderedDict


def flow_function(model: Layer, loss: str | Callable = "cross_entropy", *,
                  train: bool = False) -> tuple[Callable, dict[str, str]]:
    """The traceable computation behind :func:`gradient_flow`.

    Returns ``(measure, kinds)``: ``measure(params, state, x, y, key) -> (loss, grads,
    outputs)``, and a dict from captured path to layer kind that ``measure`` fills in when it is
    first traced. Jit ``measure`` to measure the same model many times.
    """
    where = "gradient_flow"
    if not isinstance(model, Layer):
        raise TypeError(f"{where}: `model` must be a jaxnn Layer, got {type(model).__name__}")
    loss_fn = resolve_loss(loss, "loss", where)
    train = check_bool(train, "train", where)
    kinds: dict[str, str] = {}

    def measure(params, state, x, y, key):
        def objective(params):
            captured = capture_layers(model, params, state, x, train=train, key=key)
            kinds.update((entry.path, entry.kind) for entry in captured)
            outputs = OrderedDict((entry.path, entry.output) for entry in captured)
            # The mean of per-example (or per-element) losses, as fit minimizes.
            return jnp.mean(jnp.asarray(loss_fn(captured[-1].output, y))), outputs

        (value, outputs), grads = jax.value_and_grad(objective, has_aux=True)(params)
        return value, grads, outputs

    return measure, kinds


def gradient_flow(model: Layer, params, state, x, y, loss: str | Callable = "cross_entropy", *,
                  train: bool = False, key=None) -> GradientFlow:
    r"""Per-layer gradient norms and activation statistics of one batch.

    Runs the model once under ``jax.grad`` of the mean loss
    :math:`L = \frac{1}{B}\sum_i \ell(f(x_i), y_i)` (as ``fit`` does), capturing every layer's
    output (:func:`~jaxnn.lab.capture`); see :class:`GradientFlow` for what is measured.

    Args:
      model, params, state: the model and its parameters and state.
      x, y: a batch of inputs and targets.
      loss: a name in ``jaxnn.train.LOSSES`` or ``(outputs, targets) -> per-example losses``,
        as for ``fit``.
      train: training mode (dropout, BatchNorm batch statistics); needs ``key`` for dropout.
      key: PRNG key for ``train=True``.

    Returns:
      A :class:`GradientFlow`, its numbers Python floats.

    Example::

        flow = gradient_flow(model, params, state, x, y)
        for path, norm in flow.grad_norms.items():
            print(f"{path:10s} {norm:.2e}")
    """
    try:
        measure, kinds = compiled_flow_function(model, loss, train)
    except TypeError:  # a loss object that cannot be hashed: compile it for this call alone
        measure, kinds = flow_function(model, loss, train=train)
        measure = jax.jit(measure)
    value, grads, outputs = measure(params, state, x, y, key)
    return summarize_flow(value, grads, outputs, kinds)


@functools.lru_cache(maxsize=16)
def compiled_flow_function(model: Layer, loss: str | Callable, train: bool):
    """:func:`flow_function`, jitted, and kept for the next measurement of the same model."""
    measure, kinds = flow_function(model, loss, train=train)
    return jax.jit(measure), kinds


def summarize_flow(value, grads, outputs: Mapping[str, Any], kinds: Mapping[str, str]) -> GradientFlow:
    """A :class:`GradientFlow` from the loss, the gradient tree and the captured outputs."""
    value, grads, outputs = jax.device_get((value, grads, outputs))
    param_norms: OrderedDict = OrderedDict()
    # The model's own params sit at the root of the tree, where its captured output is the last.
    model_path = list(outputs)[-1]
    for path in list(outputs) + _parameterised_paths(grads):
        node = grads if path in ("", model_path) and _holds_arrays(grads) else _node(grads, path)
        label = path or model_path
        if label in param_norms or not isinstance(node, Mapping) or not _holds_arrays(node):
            continue
        param_norms[label] = {name: float(np.sqrt(np.sum(np.square(np.asarray(leaf, np.float64)))))
                              for name, leaf in node.items() if not isinstance(leaf, Mapping)}
    grad_norms = OrderedDict((path, float(np.sqrt(sum(norm ** 2 for norm in norms.values()))))
                             for path, norms in param_norms.items())
    activations = OrderedDict((path, activation_statistics(output, kinds.get(path, "")))
                              for path, output in outputs.items())
    return GradientFlow(float(value), grad_norms, param_norms, activations)


def activation_statistics(output, kind: str) -> dict[str, float]:
    """``mean`` and ``std`` of ``output``, plus ``saturated`` for a sigmoid or tanh ``kind`` and
    ``dead``, ``dead_units`` for a relu (see :class:`GradientFlow`)."""
    values = np.asarray(output, np.float64)
    statistics = {"mean": float(values.mean()), "std": float(values.std())}
    if kind == "sigmoid":
        low, high = SIGMOID_SATURATION
        statistics["saturated"] = float(np.mean((values <= low) | (values >= high)))
    elif kind == "tanh":
        statistics["saturated"] = float(np.mean(np.abs(values) > TANH_SATURATION))
    elif kind == "relu":
        zero = values == 0
        statistics["dead"] = float(zero.mean())
        units = zero.reshape(-1, zero.shape[-1]) if zero.ndim else zero.reshape(1, 1)
        statistics["dead_units"] = float(np.all(units, axis=0).mean())
    return statistics


def _holds_arrays(node) -> bool:
    return isinstance(node, Mapping) and any(not isinstance(value, Mapping) for value in node.values())


def _node(tree, path: str):
    for name in path.split("/"):
        if not isinstance(tree, Mapping) or name not in tree:
            return None
        tree = tree[name]
    return tree


def _parameterised_paths(tree, prefix: str = "") -> list[str]:
    """Paths of the dicts in ``tree`` that hold arrays directly, in the tree's order: the layers
    with parameters that no captured output names."""
    paths = [prefix] if _holds_arrays(tree) else []
    for name, value in tree.items():
        if isinstance(value, Mapping):
            paths += _parameterised_paths(value, f"{prefix}/{name}" if prefix else name)
    return paths


class GradientFlowLogger(Callback):
    """Records a :class:`GradientFlow` of a fixed batch along training with ``fit``.

    Measures once before the first epoch, then after every ``every``-th epoch, with the train
    state's params and layer state (``train=False``: no dropout). ``epochs[i]`` is the number of
    epochs done when ``flows[i]`` was measured (0 before training, or ``initial_epoch`` when
    resuming).

    Args:
      x, y: the batch to measure on (keep it small: it runs once per measurement).
      loss: as for ``fit``: a name in ``jaxnn.train.LOSSES`` or a function of per-example losses.
      every: measure after every ``every``-th epoch.
      model: the model being trained (``fit`` does not give callbacks the model).

    Example::

        logger = GradientFlowLogger(x[:256], y[:256], every=1, model=model)
        fit(model, optimizer, train_state, (x, y), epochs=10, callbacks=[logger])
        table = logger.grad_norm_table()  # epochs x layers, columns logger.paths
    """

    def __init__(self, x, y, loss: str | Callable = "cross_entropy", every: int = 1, *, model: Layer):
        where = "GradientFlowLogger"
        if not isinstance(model, Layer):
            raise TypeError(f"{where}: `model` must be the jaxnn Layer being trained, "
                            f"got {type(model).__name__}")
        self.every = check_positive_int(every, "every", where)
        self.x, self.y = x, y
        self._measure, self._kinds = compiled_flow_function(model, loss, False)
        self.epochs: list[int] = []
        self.flows: list[GradientFlow] = []
        self._pending: GradientFlow | None = None

    def _flow(self, train_state) -> GradientFlow:
        value, grads, outputs = self._measure(train_state.params, train_state.state, self.x, self.y, None)
        return summarize_flow(value, grads, outputs, self._kinds)

    def _record(self, epoch: int, flow: GradientFlow) -> None:
        if self.epochs and self.epochs[-1] == epoch:  # resumed where the last training ended
            self.flows[-1] = flow
            return
        self.epochs.append(epoch)
        self.flows.append(flow)

    def on_train_begin(self, train_state):
        # The epoch count is known only when the first epoch begins (``initial_epoch``).
        self._pending = self._flow(train_state)

    def on_epoch_begin(self, epoch):
        if self._pending is not None:
            self._record(epoch, self._pending)
            self._pending = None

    def on_epoch_end(self, epoch, logs, train_state):
        if (epoch + 1) % self.every == 0:
            self._record(epoch + 1, self._flow(train_state))

    def on_train_end(self, train_state):
        if self._pending is not None:  # no epoch ran
            self._record(self.epochs[-1] if self.epochs else 0, self._pending)
            self._pending = None

    @property
    def paths(self) -> list[str]:
        """The layers with parameters, the columns of :meth:`grad_norm_table`."""
        paths: list[str] = []
        for flow in self.flows:
            paths += [path for path in flow.grad_norms if path not in paths]
        return paths

    def grad_norm_table(self) -> np.ndarray:
        """Gradient norms as a ``(len(epochs), len(paths))`` array: row ``i`` is ``flows[i]``,
        column ``j`` the layer ``paths[j]``."""
        paths = self.paths
        return np.array([[flow.grad_norms.get(path, np.nan) for path in paths] for flow in self.flows],
                        dtype=np.float64).reshape(len(self.flows), len(paths))
