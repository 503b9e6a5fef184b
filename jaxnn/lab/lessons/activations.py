r"""Lesson ``activations``: each activation function and its derivative, and where it saturates.

The derivative is taken by ``jax.grad``, not written by hand. A function *saturates* where its
derivative is tiny against its largest value, :math:`|f'(x)| < 0.01 \max_x |f'(x)|`: there the
gradient that backpropagation sends through the unit all but vanishes. The largest derivative
bounds how much a chain of :math:`L` such units can pass back: for the sigmoid,
:math:`\sigma'(x) = \sigma(x)(1 - \sigma(x)) \le 0.25`, so :math:`L` sigmoid layers scale a
gradient by at most :math:`0.25^L` (times the weights).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn
from jaxnn.lab.lessons.report import Report
from jaxnn.viz import new_figure

SATURATION_FRACTION = 0.01

FUNCTIONS: dict[str, Callable] = {
    "sigmoid": jaxnn.sigmoid,
    "tanh": jaxnn.tanh,
    "relu": jaxnn.relu,
    "leaky_relu": jaxnn.leaky_relu,
    "elu": jaxnn.elu,
    "gelu": jaxnn.gelu,
    "swish": jaxnn.swish,
}


def values_and_derivatives(x: np.ndarray, functions: dict[str, Callable] = FUNCTIONS) -> dict[str, tuple]:
    """``name -> (f(x), f'(x))`` as NumPy arrays, each derivative by ``jax.vmap(jax.grad(f))``."""
    inputs = jnp.asarray(x, jnp.float32)
    result = {}
    for name, function in functions.items():
        derivative = jax.vmap(jax.grad(lambda t, f=function: f(t)))(inputs)
        result[name] = (np.asarray(function(inputs)), np.asarray(derivative))
    return result


def saturated_intervals(x: np.ndarray, derivative: np.ndarray,
                        fraction: float = SATURATION_FRACTION) -> list[tuple[float, float]]:
    r"""The intervals of the sampled ``x`` where :math:`|f'(x)| < \text{fraction} \cdot \max|f'|`,
    as ``(first, last)`` sample pairs, in order."""
    magnitude = np.abs(derivative)
    saturated = magnitude < fraction * magnitude.max()
    intervals = []
    start = None
    for index, flag in enumerate(saturated):
        if flag and start is None:
            start = index
        if start is not None and (not flag or index == len(saturated) - 1):
            end = index if flag else index - 1
            intervals.append((float(x[start]), float(x[end])))
            start = None
    return intervals


def describe_intervals(intervals: list[tuple[float, float]], low: float, high: float) -> str:
    """``x ≤ -6.9 and x ≥ 6.9`` style text; an interval at the edge of ``[low, high]`` is open-ended."""
    if not intervals:
        return f"none in [{low:g}, {high:g}]"
    parts = []
    for first, last in intervals:
        if first <= low and last >= high:
            parts.append("everywhere")
        elif first <= low:
            parts.append(f"x ≤ {last:.2f}")
        elif last >= high:
            parts.append(f"x ≥ {first:.2f}")
        else:
            parts.append(f"{first:.2f} ≤ x ≤ {last:.2f}")
    return " and ".join(parts)


def run(out: Path, *, quick: bool = False, log=print) -> Path:
    low, high = -8.0, 8.0
    x = np.linspace(low, high, 801 if quick else 3201, dtype=np.float32)
    log("differentiating the activation functions with jax.grad")
    curves = values_and_derivatives(x)

    report = Report(out, "Activation functions and their derivatives")
    report.text(f"Each function f on [{low:g}, {high:g}] and its derivative f' computed by `jax.grad`. "
                f"A function is *saturated* where |f'(x)| < {SATURATION_FRACTION} · max|f'|: a gradient "
                f"passing back through such a unit is multiplied by almost nothing.")
    rows, max_derivatives = [], {}
    for name, (_, derivative) in curves.items():
        peak = float(np.abs(derivative).max())
        max_derivatives[name] = peak
        where = float(x[np.argmax(np.abs(derivative))])
        rows.append([name, peak, f"{where:.2f}",
                     describe_intervals(saturated_intervals(x, derivative), low, high)])
    report.table(["function", "max |f'|", "at x", "saturated where"], rows)
    sigmoid_peak = max_derivatives["sigmoid"]
    report.text(f"The sigmoid's derivative peaks at {sigmoid_peak:.4f} (at x = 0): a chain of L sigmoid "
                f"layers multiplies the gradient by at most {sigmoid_peak:.4f}^L times the weights. "
                f"tanh's peaks at {max_derivatives['tanh']:.4f}, "
                f"{max_derivatives['tanh'] / sigmoid_peak:.1f}× the sigmoid's; ReLU passes gradients with "
                f"slope {max_derivatives['relu']:.4f} wherever x > 0 and none at all where x < 0.")
    depths = [1, 5, 10, 20]
    report.table(["layers L"] + [f"max |f'|^L, {name}" for name in ("sigmoid", "tanh", "relu")],
                 [[depth] + [max_derivatives[name] ** depth for name in ("sigmoid", "tanh", "relu")]
                  for depth in depths])

    figure = new_figure(11, 6.5)
    axes = figure.subplots(2, 4).ravel()
    for axis, (name, (values, derivative)) in zip(axes, curves.items()):
        axis.plot(x, values, label="f(x)")
        axis.plot(x, derivative, label="f'(x) (jax.grad)")
        for index, (first, last) in enumerate(saturated_intervals(x, derivative)):
            axis.axvspan(first, last, color="grey", alpha=0.25, label="saturated" if index == 0 else None)
        axis.set(title=name, xlabel="x", ylabel="value")
        axis.legend(fontsize=7, loc="upper left")
    axes[-1].set_title("max |f'| per function")
    axes[-1].bar(range(len(max_derivatives)), list(max_derivatives.values()), label="max |f'|")
    axes[-1].set_xticks(range(len(max_derivatives)), list(max_derivatives), rotation=45, fontsize=7)
    axes[-1].set_xlabel("function")
    axes[-1].set_ylabel("max |f'(x)|")
    axes[-1].legend(fontsize=7)
    figure.suptitle("Activation functions, their derivatives and saturated regions (grey)")
    report.figure(figure, "activations.png", "Each activation function, its derivative and saturation")

    figure = new_figure(6, 4)
    axis = figure.subplots()
    layers = np.arange(1, 21)
    for name in ("sigmoid", "tanh", "relu"):
        axis.semilogy(layers, max_derivatives[name] ** layers, marker="o", markersize=3, label=name)
    axis.set(title="Largest possible gradient factor after L activations (weights aside)",
             xlabel="layers L", ylabel="max |f'|^L")
    axis.legend()
    report.figure(figure, "depth_factor.png", "max |f'|^L against depth")
    return report.write()
