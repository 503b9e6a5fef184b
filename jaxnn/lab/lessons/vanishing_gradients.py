r"""Lesson ``vanishing-gradients``: how the gradient reaching each layer of a deep MLP depends on the
activation, the initialization, normalization and residual connections.

Backpropagation multiplies the gradient by :math:`W^{(l)\top}` and by :math:`f'(z^{(l)})` once per
layer, :math:`\delta^{(l-1)} = (\delta^{(l)} W^{(l)\top}) \odot f'(z^{(l-1)})`, so over :math:`L`
layers its size changes roughly by the product of the per-layer factors. With the sigmoid
(:math:`f' \le 0.25`) and weights that do not make up for it, that product vanishes; Xavier
initialization (:math:`\mathrm{Var}\,W = 2/(n_\text{in} + n_\text{out})`) keeps tanh's factor near
1, He initialization (:math:`\mathrm{Var}\,W = 2/n_\text{in}`) does the same for ReLU, BatchNorm
rescales every layer's pre-activations, and a residual connection :math:`x + F(x)` adds an
identity path whose derivative is 1 whatever :math:`F` does.

The lesson reports the L2 norm of the gradient of each ``Dense`` kernel, measured with
``jaxnn.lab.gradient_flow`` on the training set at initialization and after training, and the
ratio of the first layer's to the last layer's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import jax

import jaxnn
from jaxnn import data, init, optim, train
from jaxnn.lab.lessons.report import Report
from jaxnn.viz import new_figure

WIDTH = 32
SIGMOID_STD = 1.0


def _dense_stack(depth: int, w_init, activation: Callable, *, batch_norm: bool = False) -> list:
    layers = []
    for _ in range(depth):
        layers.append(jaxnn.Dense(WIDTH, w_init=w_init))
        if batch_norm:
            layers.append(jaxnn.BatchNorm())
        layers.append(activation())
    return layers


def _residual_stack(depth: int) -> list:
    layers = [jaxnn.Dense(WIDTH, w_init=init.he_normal()), jaxnn.Relu()]
    for _ in range(depth - 1):
        layers.append(jaxnn.Residual(jaxnn.Sequential([jaxnn.Dense(WIDTH, w_init=init.he_normal()),
                                                       jaxnn.Relu()])))
    return layers


SETUPS: dict[str, Callable[[int], list]] = {
    f"sigmoid, N(0, {SIGMOID_STD:g}²)": lambda depth: _dense_stack(depth, init.normal(SIGMOID_STD),
                                                                   jaxnn.Sigmoid),
    "sigmoid, Xavier": lambda depth: _dense_stack(depth, init.glorot_normal(), jaxnn.Sigmoid),
    "tanh, Xavier": lambda depth: _dense_stack(depth, init.glorot_normal(), jaxnn.Tanh),
    "ReLU, He": lambda depth: _dense_stack(depth, init.he_normal(), jaxnn.Relu),
    "ReLU, He, BatchNorm": lambda depth: _dense_stack(depth, init.he_normal(), jaxnn.Relu, batch_norm=True),
    "ReLU, He, residual": _residual_stack,
}


def deep_mlp(setup: str, depth: int = 10, classes: int = 10):
    """``depth`` hidden layers of width 32 built as ``setup`` (a key of :data:`SETUPS`), then
    ``Dense(classes)``."""
    if setup not in SETUPS:
        raise ValueError(f"unknown setup {setup!r}; the setups are: {', '.join(SETUPS)}")
    return jaxnn.Sequential(SETUPS[setup](depth) + [jaxnn.Dense(classes)])


def dense_gradient_norms(model, params, state, x, y) -> dict[str, float]:
    """The gradient L2 norm of every ``Dense`` layer's params, in order from input to output, from
    ``jaxnn.lab.gradient_flow`` with ``train=True`` (BatchNorm with batch statistics, as in training)."""
    from jaxnn.lab import gradient_flow

    flow = gradient_flow(model, params, state, x, y, train=True)
    return {path: float(norm) for path, norm in flow.grad_norms.items()
            if path.rpartition("/")[2].startswith("dense")}


def train_setup(setup: str, dataset, *, depth: int, epochs: int, seed: int = 0) -> dict:
    """Gradient norms per ``Dense`` layer at initialization and after Adam (1e-3) training, and the
    history."""
    model = deep_mlp(setup, depth, dataset.num_classes)
    optimizer = optim.adam(1e-3)
    train_state = train.create_train_state(model, optimizer, jax.random.key(seed), dataset.input_shape)
    x, y = dataset.x_train, dataset.y_train
    before = dense_gradient_norms(model, train_state.params, train_state.state, x, y)
    train_state, history = train.fit(model, optimizer, train_state, (x, y), epochs=epochs, batch_size=64,
                                     validation_data=(dataset.x_test, dataset.y_test), progress=False)
    after = dense_gradient_norms(model, train_state.params, train_state.state, x, y)
    return {"before": before, "after": after, "history": history}


def first_to_last(norms: dict[str, float]) -> float:
    """The first ``Dense`` layer's gradient norm over the last one's."""
    values = list(norms.values())
    return values[0] / values[-1]


def run(out: Path, *, quick: bool = False, log=print) -> Path:
    depth, epochs = (6, 2) if quick else (10, 15)
    digits = data.digits()
    results = {}
    for setup in SETUPS:
        log(f"{setup}: {depth} hidden layers, {epochs} epochs")
        results[setup] = train_setup(setup, digits, depth=depth, epochs=epochs)

    report = Report(out, "Vanishing gradients in deep networks")
    report.text(f"MLPs with {depth} hidden layers of width {WIDTH} and a Dense(10) output on the digits "
                f"({len(digits.y_train)} training images), trained with Adam 1e-3 for {epochs} epochs, "
                f"batches of 64. The plain normal initialization draws every weight from "
                f"N(0, {SIGMOID_STD:g}²); Xavier is Glorot normal, He is He normal. Gradient norms are "
                f"those of each Dense layer's params (kernel and bias) for the mean cross-entropy over the "
                f"whole training set.")
    rows = []
    for setup, result in results.items():
        rows.append([setup, list(result["before"].values())[0], list(result["before"].values())[-1],
                     first_to_last(result["before"]), first_to_last(result["after"]),
                     result["history"]["loss"][-1], result["history"]["val_accuracy"][-1]])
    report.table(["setup", "first-layer ‖g‖ at init", "last-layer ‖g‖ at init", "first/last at init",
                  "first/last after training", "final training loss", "test accuracy"], rows)
    ratios = {row[0]: row[3] for row in rows}
    worst = min(ratios, key=ratios.get)
    sigmoid = next(iter(SETUPS))
    first_sigmoid = list(results[sigmoid]["before"].values())[0]
    first_relu = list(results["ReLU, He"]["before"].values())[0]
    chance = math.log(digits.num_classes)
    stuck = [setup for setup, result in results.items()
             if abs(result["history"]["loss"][-1] - chance) <= 0.02 * chance]
    report.text(f"At initialization the first layer of '{worst}' receives {ratios[worst]:.2e} of the last "
                f"layer's gradient, the smallest share of all setups. The first layer of '{sigmoid}' gets a "
                f"gradient of norm {first_sigmoid:.2e}, {first_relu / first_sigmoid:.0f}× less than the "
                f"first layer of 'ReLU, He' ({first_relu:.2e}). The residual network's first/last ratio is "
                f"{ratios['ReLU, He, residual']:.3g} and BatchNorm's {ratios['ReLU, He, BatchNorm']:.3g}. "
                + (f"After {epochs} epochs the training loss of {', '.join(repr(s) for s in stuck)} is still "
                   f"within 2% of ln {digits.num_classes} = {chance:.3f}, the loss of a uniform guess."
                   if stuck else f"After {epochs} epochs no setup's training loss is within 2% of "
                                 f"ln {digits.num_classes} = {chance:.3f}, the loss of a uniform guess."))

    figure = new_figure(12, 4.5)
    left, middle, right = figure.subplots(1, 3)
    for setup, result in results.items():
        for axis, moment in ((left, "before"), (middle, "after")):
            norms = list(result[moment].values())
            axis.semilogy(range(1, len(norms) + 1), norms, marker="o", markersize=3, label=setup)
        history = result["history"]
        right.semilogy(range(1, history.epochs + 1), history["loss"], marker=".", label=setup)
    for axis, title in ((left, "at init"), (middle, f"after {epochs} epochs")):
        axis.set(title=f"Gradient norm per layer, {title}",
                 xlabel="Dense layer (1 = input side)", ylabel="‖∂L/∂θ‖ (log scale)")
        axis.legend(fontsize=7)
    right.set(title="Training loss", xlabel="epoch", ylabel="cross-entropy (log scale)")
    right.legend(fontsize=7)
    report.figure(figure, "gradient_norms.png", "Gradient norm per layer and loss curves per setup")
    return report.write()
