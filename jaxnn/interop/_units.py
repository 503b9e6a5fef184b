"""The parameterised units of a jaxnn model, in order: what PyTorch modules are matched against.

A unit is a leaf layer with params or state (``dense_0``), or a layer whose insides jaxnn builds
from children but PyTorch keeps in one module: ``MultiHeadAttention`` (children ``q, k, v, o``),
``Bidirectional`` (``forward, backward``) and ``TransformerEncoderBlock``. Alongside, each unit
carries the input layout facts a port needs: whether a ``Dense`` reads a flattened
channels-last feature map (whose rows PyTorch orders channels first).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import jax

from jaxnn.core import Layer, as_shape, leaf_layers

# Layers built from children by jaxnn that PyTorch holds as one module, told apart by their
# params' keys.
COMPOSITE_KINDS = {
    frozenset({"q", "k", "v", "o"}): "multi_head_attention",
    frozenset({"forward", "backward"}): "bidirectional",
    frozenset({"norm_1", "attention", "norm_2", "dense_1", "dense_2"}): "transformer_encoder_block",
}

# Kinds whose output keeps spatial axes with channels last in jaxnn and channels first in PyTorch.
SPATIAL_KINDS = {"conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "max_pool1d", "max_pool2d",
                 "avg_pool1d", "avg_pool2d", "upsample"}
# Kinds after which the features are plain (no channel axis to move).
PLAIN_KINDS = {"dense", "embedding", "simple_rnn", "lstm", "gru", "bidirectional", "multi_head_attention",
               "transformer_encoder_block", "global_avg_pool", "flatten", "reshape",
               "sinusoidal_positional_embedding", "learned_positional_embedding"}


# Kinds whose output keeps their input's layout: they do not tell whether a model reads images
# (a BatchNorm before the first convolution normalizes a channels-last image all the same).
LAYOUT_PRESERVING_KINDS = {"batch_norm", "layer_norm", "group_norm", "rms_norm", "dropout", "relu", "gelu", "elu",
                           "leaky_relu", "sigmoid", "swish", "tanh"}

RECURRENT_KINDS = {"simple_rnn", "lstm", "gru"}
STACKED_NAME = re.compile(r"^layer_[0-9]+$")


def is_stacked(node) -> bool:
    return isinstance(node, dict) and bool(node) and all(STACKED_NAME.match(str(name)) for name in node)


class Unit(NamedTuple):
    """One parameterised unit: its path into params/state, kind, templates and layout facts."""

    path: tuple[str, ...]
    kind: str
    params: Any
    state: Any
    output_shape: tuple[int, ...]
    spatial_input: bool          # its input is channels-last in jaxnn, channels-first in PyTorch
    spatial_output: bool
    flattened_from: tuple[int, ...] | None  # a Dense after Flatten of this (*spatial, C) shape


class ModelLayout(NamedTuple):
    input_shape: tuple[int, ...]
    units: list[Unit]
    params: Any
    state: Any
    output_shape: tuple[int, ...]
    spatial_input: bool
    spatial_output: bool
    first_kind: str


def path_name(path: tuple[str, ...]) -> str:
    return "/".join(path)


def subtree(tree: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        tree = tree[name]
    return tree


def model_layout(model: Layer, input_shape) -> ModelLayout:
    """The units of ``model`` for per-example ``input_shape``, found with ``jax.eval_shape`` (no
    parameters are allocated)."""
    if not isinstance(model, Layer):
        raise TypeError(f"expected a jaxnn Layer as the model, got {type(model).__name__}")
    input_shape = as_shape(input_shape)
    rows, output_shape, params, state = leaf_layers(model, input_shape)

    units: list[Unit] = []
    seen: set[tuple[str, ...]] = set()
    # The model reads channels-last images when the first layer that does not keep its input's
    # layout is spatial (a norm or an activation before the first convolution keeps it).
    deciding = next((row[1] for row in rows if row[1] not in LAYOUT_PRESERVING_KINDS), None)
    spatial = deciding in SPATIAL_KINDS
    spatial_model_input = spatial
    previous_kind, previous_shape, before_flatten = None, tuple(input_shape), None
    first_kind = None
    for path, kind, row_shape, _, _ in rows:
        unit_path, unit_kind = tuple(path), kind
        for depth in range(len(path)):
            node = subtree(params, tuple(path[:depth]))
            if isinstance(node, dict) and frozenset(node) in COMPOSITE_KINDS:
                unit_path, unit_kind = tuple(path[:depth]), COMPOSITE_KINDS[frozenset(node)]
                break
            if kind in RECURRENT_KINDS and is_stacked(node):
                # LSTM(H, num_layers=N): one PyTorch module, params {"layer_0": ..., "layer_N-1": ...}.
                unit_path = tuple(path[:depth])
                break
        if first_kind is None:
            first_kind = unit_kind
        if unit_path in seen:
            # A later child of a composite unit already recorded: only the output shape moves on.
            units[-1] = units[-1]._replace(output_shape=tuple(row_shape))
            previous_shape = tuple(row_shape)
            continue
        seen.add(unit_path)
        spatial_input = spatial
        if unit_kind in SPATIAL_KINDS:
            spatial = True
        elif unit_kind in PLAIN_KINDS:
            spatial = False
        if unit_kind == "flatten":
            before_flatten = previous_shape if spatial_input and len(previous_shape) >= 2 else None
        unit_params, unit_state = subtree(params, unit_path), subtree(state, unit_path)
        if jax.tree.leaves((unit_params, unit_state)):
            flattened_from = before_flatten if (unit_kind == "dense" and previous_kind == "flatten") else None
            units.append(Unit(unit_path, unit_kind, unit_params, unit_state, tuple(row_shape),
                              spatial_input, spatial, flattened_from))
        previous_kind, previous_shape = unit_kind, tuple(row_shape)
    return ModelLayout(tuple(input_shape), units, params, state, tuple(output_shape), spatial_model_input, spatial,
                       first_kind)
