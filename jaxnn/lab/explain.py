"""The text of :meth:`jaxnn.lab.backprop.BackpropRecord.explain`: a small network's
backpropagation written out number by number, in the textbook's notation (layers numbered from
1, one row per example)."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxnn._checks import check_int

INDENT = "  "
# The losses whose derivative is written out by hand (as in jaxnn.lab.backprop).
LOSS_NAMES = ("cross_entropy", "binary_cross_entropy", "mse", "mae")

DERIVATIVE_FORMULAS = {
    "sigmoid": "a[{l}] ⊙ (1 − a[{l}])",
    "tanh": "1 − a[{l}]²",
    "relu": "1 where z[{l}] > 0, else 0",
    "leaky_relu": "1 where z[{l}] > 0, else {slope:g}",
}


def explain_backprop(record: Any, *, decimals: int, max_units: int, max_examples: int) -> str:
    """The explanation of a :class:`~jaxnn.lab.backprop.BackpropRecord` (see its ``explain``)."""
    where = "BackpropRecord.explain"
    decimals = check_int(decimals, "decimals", where, low=0)
    max_units = check_int(max_units, "max_units", where, low=1)
    max_examples = check_int(max_examples, "max_examples", where, low=1)

    def show(label: str, array, *, rows_are_units: bool = False) -> list[str]:
        return _assign(label, array, decimals, max_units, max_units if rows_are_units else max_examples)

    layers = record.layers
    last = len(layers)
    inputs = np.asarray(record.inputs)
    examples = _rows(inputs).shape[0]
    sizes = [inputs.shape[-1]] + [np.shape(record.pre_activations[layer.dense])[-1] for layer in layers]
    chain = ", ".join(f"{layer.dense} → {layer.activation}" if layer.activation else layer.dense
                      for layer in layers)
    lines = [
        f"Backpropagation through a {'-'.join(map(str, sizes))} network ({chain}), "
        f"{examples} example{'s' * (examples != 1)}.",
        "One row per example: z[l] = a[l−1] W[l] + b[l], a[l] = σ(z[l]), "
        "W[l] of shape (units in, units out);",
        "δ[l] = ∂L/∂z[l].",
        "",
        "Forward pass",
    ]
    lines += [INDENT + line for line in show("a[0] = x = ", inputs)]
    for number, layer in enumerate(layers, start=1):
        params = record.params[layer.dense]
        then = f"then {layer.activation}" if layer.activation else "no activation"
        lines.append(f"{INDENT}Layer {number}: {layer.dense}, {then}")
        body = show(f"W[{number}] = ", params["w"], rows_are_units=True)
        bias = f" + b[{number}]" if "b" in params else ""
        if "b" in params:
            body += show(f"b[{number}] = ", params["b"])
        body += show(f"z[{number}] = a[{number - 1}] W[{number}]{bias} = ",
                     record.pre_activations[layer.dense])
        if layer.activation:
            body += show(f"a[{number}] = {layer.kind}(z[{number}]) = ", record.activations[layer.dense])
        else:
            body.append(f"a[{number}] = z[{number}]")
        lines += [2 * INDENT + line for line in body]
    targets = np.asarray(record.targets)
    lines += [INDENT + line for line in show("y = ", targets)]
    # A loss function reduces its own values when it returns a scalar: the reduction is shown
    # for the loss names only.
    reduced = f", reduction {record.reduction!r}" if record.loss_name in LOSS_NAMES else ""
    lines.append(f"{INDENT}L = {record.loss_name}(a[{last}], y){reduced}: "
                 f"L = {float(record.loss):.{decimals}f}")
    lines += ["", "Backward pass"]
    for number in range(last, 0, -1):
        layer = layers[number - 1]
        name = layer.dense
        lines.append(f"{INDENT}Layer {number}")
        body = []
        if number == last:
            body += _loss_gradient_lines(record, show, last)
        else:
            body += show(f"∂L/∂a[{number}] = δ[{number + 1}] W[{number + 1}]ᵀ = ",
                         record.activation_grads[name])
        body += _delta_lines(record, layer, number, show)
        body += show(f"∂L/∂W[{number}] = a[{number - 1}]ᵀ δ[{number}] = ", record.grads[name]["w"],
                     rows_are_units=True)
        if "b" in record.grads[name]:
            body += show(f"∂L/∂b[{number}] = Σ over examples of δ[{number}] = ", record.grads[name]["b"])
        lines += [2 * INDENT + line for line in body]
    return "\n".join(lines)


def _loss_gradient_lines(record, show, last: int) -> list[str]:
    """How ∂L/∂a[L] comes from the loss, with its numbers."""
    outputs = np.asarray(record.activations[record.layers[-1].dense], np.float64)
    targets = np.asarray(record.targets)
    mean = record.reduction == "mean"
    lines = []
    if record.loss_name == "cross_entropy":
        classes = outputs.shape[-1]
        if np.issubdtype(targets.dtype, np.integer):
            targets = (targets[..., None] == np.arange(classes)).astype(np.float64)
            lines += show("y one-hot = ", targets)
        shifted = np.exp(outputs - outputs.max(axis=-1, keepdims=True))
        lines += show(f"p = softmax(a[{last}]) = ", shifted / shifted.sum(axis=-1, keepdims=True))
        count = outputs.size // classes
        formula = f"(p − y) / {count} (examples)" if mean else "p − y"
    elif record.loss_name == "binary_cross_entropy":
        lines += show(f"p = sigmoid(a[{last}]) = ", 1 / (1 + np.exp(-outputs)))
        formula = f"(p − y) / {outputs.size} (output values)" if mean else "p − y"
    elif record.loss_name == "mse":
        formula = f"2 (a[{last}] − y) / {outputs.size} (output values)" if mean else f"2 (a[{last}] − y)"
    elif record.loss_name == "mae":
        formula = (f"sign(a[{last}] − y) / {outputs.size} (output values)" if mean
                   else f"sign(a[{last}] − y)")
    else:
        formula = f"the gradient of {record.loss_name} at a[{last}] (jax.grad)"
    return lines + show(f"∂L/∂a[{last}] = {formula} = ", record.activation_grads[record.layers[-1].dense])


def _delta_lines(record, layer, number: int, show) -> list[str]:
    """δ[l] from ∂L/∂a[l] through the layer's activation."""
    delta = record.deltas[layer.dense]
    if layer.kind is None:
        lines = [f"a[{number}] = z[{number}], so δ[{number}] = ∂L/∂a[{number}]"]
        if number == len(record.layers) and record.loss_name in ("cross_entropy", "binary_cross_entropy"):
            inside = "softmax" if record.loss_name == "cross_entropy" else "sigmoid"
            lines[0] += f": the {inside} is inside the loss, and δ[{number}] is the shortcut p − y"
        return lines + show(f"δ[{number}] = ", delta)
    if layer.kind == "softmax":
        return show(f"δ[{number}] = a[{number}] ⊙ (∂L/∂a[{number}] − Σ_j (∂L/∂a[{number}])_j a[{number}]_j) "
                    "(the softmax's Jacobian) = ", delta)
    if layer.kind == "log_softmax":
        return show(f"δ[{number}] = ∂L/∂a[{number}] − softmax(z[{number}]) Σ_j (∂L/∂a[{number}])_j = ", delta)
    formula = DERIVATIVE_FORMULAS[layer.kind].format(l=number, slope=layer.slope or 0.0)
    return (show(f"σ'(z[{number}]) = {formula} = ", record.derivatives[layer.dense])
            + show(f"δ[{number}] = ∂L/∂a[{number}] ⊙ σ'(z[{number}]) = ", delta))


def _rows(array: np.ndarray) -> np.ndarray:
    return array.reshape(-1, array.shape[-1]) if array.ndim else array.reshape(1, 1)


def _assign(label: str, array, decimals: int, max_units: int, max_examples: int) -> list[str]:
    """``label`` followed by the array, its later lines aligned under its first."""
    matrix = _format(np.asarray(array), decimals, max_units, max_examples)
    pad = " " * len(label)
    return [label + matrix[0]] + [pad + line for line in matrix[1:]]


def _format(array: np.ndarray, decimals: int, max_units: int, max_rows: int) -> list[str]:
    """A scalar, a vector ``[1.0000  2.0000]`` or a matrix ``[[...]\\n [...]]``, with ``…`` for
    the rows and columns beyond the limits."""
    if array.ndim == 0:
        return [_number(array, decimals)]
    vector = array.ndim == 1
    rows = array.reshape(1, -1) if vector else array.reshape(-1, array.shape[-1])
    cells = [[_number(value, decimals) for value in row[:max_units]] for row in rows[:max_rows]]
    width = max(len(cell) for row in cells for cell in row)
    more_columns = rows.shape[1] > max_units
    texts = ["  ".join(cell.rjust(width) for cell in row) + ("  …" if more_columns else "") for row in cells]
    if rows.shape[0] > max_rows:
        texts.append("…")
    if vector:
        return [f"[{texts[0]}]"]
    return [("[[" if i == 0 else " [") + text + ("]]" if i == len(texts) - 1 else "]")
            for i, text in enumerate(texts)]


def _number(value, decimals: int) -> str:
    value = np.asarray(value)
    if np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.bool_):
        return str(int(value))
    text = f"{float(value):.{decimals}f}"
    # A small negative number rounds to "-0.0000": the sign says nothing at this precision.
    return text[1:] if text.startswith("-") and float(text) == 0 else text
