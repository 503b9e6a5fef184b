"""Combinators: layers made of layers. ``Sequential``, ``Residual`` and ``Concat``.

Each is a layer itself, so they nest. A combinator declares every option its children take and
passes each child the options that child declares, so ``mask=`` given to a ``Sequential`` of
Transformer blocks reaches the attention inside every block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxnn._dtypes import compute_dtype
from jaxnn.core.inputs import as_shape, check_array, split_key
from jaxnn.core.layer import (
    Layer,
    LayerTypeError,
    LayerValueError,
    apply_child,
    declared_options,
    init_child,
    make_layer,
)


def named_children(layers: Sequence[Layer] | Mapping[str, Layer]) -> list[tuple[str, Layer]]:
    """``(name, layer)`` pairs: a dict's own names, or ``f"{layer.name}_{i}"`` for a list."""
    if isinstance(layers, Layer):
        raise LayerTypeError("expected a list or dict of layers, got a single Layer; wrap it: [layer]")
    if isinstance(layers, (str, bytes)) or not isinstance(layers, (Mapping, Sequence)):
        raise LayerTypeError(f"expected a list or dict of layers, got {type(layers).__name__}")
    if isinstance(layers, Mapping):
        children = list(layers.items())
        for child_name, _ in children:
            if not isinstance(child_name, str) or not child_name or "/" in child_name:
                raise LayerValueError(f"child names must be non-empty strings without '/', got {child_name!r}")
    else:
        layers = list(layers)
        children = [(f"{layer.name}_{i}" if isinstance(layer, Layer) else str(i), layer)
                    for i, layer in enumerate(layers)]
    for child_name, layer in children:
        if not isinstance(layer, Layer):
            raise LayerTypeError(
                f"{child_name!r} is a {type(layer).__name__}, not a Layer; "
                "call the constructor, e.g. jaxnn.Relu() rather than jaxnn.Relu"
            )
    if not children:
        raise LayerValueError("expected at least one layer")
    return children


def check_children_present(what: str, tree: Any, children: Sequence[tuple[str, Layer]]) -> None:
    """Raises unless ``tree`` (params or state) is a dict with an entry for every child."""
    if not isinstance(tree, Mapping):
        raise LayerTypeError(f"expected {what} to be a dict keyed by child name, got {type(tree).__name__}")
    missing = [child_name for child_name, _ in children if child_name not in tree]
    if missing:
        raise LayerValueError(
            f"{what} has no entry for {', '.join(missing)}; it has {sorted(tree)}. "
            f"Were these {what} made by the same model's init?"
        )


def Sequential(layers: Sequence[Layer] | Mapping[str, Layer]) -> Layer:
    """Applies layers one after another: ``y = f_n(... f_1(f_0(x)))``.

    A list names its children ``f"{layer.name}_{i}"`` (``dense_0``, ``relu_1``, ...); a dict uses
    its keys. ``params`` and ``state`` are dicts keyed by those names. The PRNG key is split once
    per child and ``state`` is threaded through. Options given to ``apply`` reach every child that
    takes them.

    Example::

        model = Sequential([Dense(128), Relu(), Dense(10)])
        output_shape, params, state = model.init(jax.random.key(0), (784,))
        logits, state = model.apply(params, state, images)
    """
    children = named_children(layers)

    def init(key, input_shape):
        shape = as_shape(input_shape)
        params, state = {}, {}
        for (child_name, layer), child_key in zip(children, jax.random.split(key, len(children))):
            shape, params[child_name], state[child_name] = init_child(child_name, layer, child_key, shape)
        return shape, params, state

    def apply(params, state, x, *, key=None, train=False, **options):
        check_children_present("params", params, children)
        check_children_present("state", state, children)
        new_state = {}
        for (child_name, layer), child_key in zip(children, split_key(key, len(children))):
            x, new_state[child_name] = apply_child(child_name, layer, params[child_name], state[child_name],
                                                   x, key=child_key, train=train, **options)
        return x, new_state

    # Only the first child sees the model's input.
    return make_layer("sequential", init, apply, options=declared_options(layer for _, layer in children),
                      input_check=children[0][1].input_check)


def Residual(layer: Layer) -> Layer:
    """Adds a layer's output to its input: ``y = x + f(x)``.

    ``params`` and ``state`` are those of ``layer`` itself; its output shape must equal its input
    shape. It takes the options ``layer`` takes.
    """
    if not isinstance(layer, Layer):
        raise LayerTypeError(f"Residual expects a Layer, got {type(layer).__name__}")

    def init(key, input_shape):
        shape = as_shape(input_shape)
        output_shape, params, state = layer.init(key, shape)
        if tuple(output_shape) != shape:
            raise LayerValueError(
                f"the wrapped {layer.name} maps {shape} to {tuple(output_shape)}; "
                "a residual connection needs equal input and output shapes"
            )
        return shape, params, state

    def apply(params, state, x, *, key=None, train=False, **options):
        x = check_array(x)
        y, state = layer.apply(params, state, x, key=key, train=train, **options)
        dtype = compute_dtype(x.dtype, y.dtype)
        return x.astype(dtype) + y.astype(dtype), state

    return make_layer("residual", init, apply, options=layer.options, input_check=layer.input_check)


def Concat(layers: Sequence[Layer] | Mapping[str, Layer], *, axis: int = -1) -> Layer:
    """Applies every layer to the same input and concatenates their outputs along ``axis``.

    ``y = concatenate([f_0(x), f_1(x), ...], axis)``. ``axis`` is negative, counted from the end of
    each output, so that it means the same with any number of leading batch axes. Children are
    named, and options routed, as in :func:`Sequential`.
    """
    children = named_children(layers)
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise LayerTypeError(f"Concat: `axis` must be a negative int, got {axis!r}")
    if axis >= 0:
        raise LayerValueError(f"Concat takes a negative axis, counted from the end of each output, got {axis}")

    def init(key, input_shape):
        shape = as_shape(input_shape)
        output_shapes, params, state = [], {}, {}
        for (child_name, layer), child_key in zip(children, jax.random.split(key, len(children))):
            output_shape, params[child_name], state[child_name] = init_child(child_name, layer, child_key, shape)
            output_shapes.append(tuple(output_shape))
        first_name, first = children[0][0], output_shapes[0]
        if len(first) < -axis:
            raise LayerValueError(f"axis {axis} is out of range for outputs of shape {first}")
        position = len(first) + axis
        for (child_name, _), output_shape in zip(children, output_shapes):
            if len(output_shape) != len(first) or (
                output_shape[:position] + output_shape[position + 1:] != first[:position] + first[position + 1:]
            ):
                raise LayerValueError(
                    f"cannot concatenate along axis {axis}: {first_name} gives {first} "
                    f"but {child_name} gives {output_shape}"
                )
        total = sum(output_shape[position] for output_shape in output_shapes)
        return first[:position] + (total,) + first[position + 1:], params, state

    def apply(params, state, x, *, key=None, train=False, **options):
        check_children_present("params", params, children)
        check_children_present("state", state, children)
        outputs, new_state = [], {}
        for (child_name, layer), child_key in zip(children, split_key(key, len(children))):
            y, new_state[child_name] = apply_child(child_name, layer, params[child_name], state[child_name],
                                                   x, key=child_key, train=train, **options)
            outputs.append(y)
        dtype = compute_dtype(*[y.dtype for y in outputs])
        return jnp.concatenate([y.astype(dtype) for y in outputs], axis=axis), new_state

    return make_layer("concat", init, apply, options=declared_options(layer for _, layer in children),
                      input_check=all_input_checks(layer for _, layer in children))


def all_input_checks(layers) -> Any:
    """One ``input_check`` running those of ``layers`` that have one, or None if none has."""
    checks = [layer.input_check for layer in layers if layer.input_check is not None]
    if not checks:
        return None

    def check(x):
        for child_check in checks:
            child_check(x)

    return check
