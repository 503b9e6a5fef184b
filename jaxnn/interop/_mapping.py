"""The weight mapping between PyTorch modules and jaxnn layers, kind by kind, as NumPy arrays.

Each kind has a converter in :data:`TO_JAXNN`, ``convert(tensors, unit, used, gradients)``, giving
the unit's params and state as flat dicts ``{("w",): (array, "weight")}`` (the PyTorch name each
entry came from, for error messages) and adding the names it read to ``used``; and
:func:`to_pytorch` ``(unit, params, state, previous)`` gives the module's tensors back by their
names, ``previous`` being the target module's current tensors (kept where jaxnn has no
counterpart: ``num_batches_tracked``, and the split of a summed recurrent bias).

``gradients=True`` maps *gradients* rather than values: where jaxnn sums two PyTorch parameters
into one (``b = bias_ih + bias_hh``), the gradient of the sum equals that of either part, so it is
taken from ``bias_ih`` instead of summing.
"""

from __future__ import annotations

import numpy as np

from jaxnn.interop._units import Unit

Flat = dict  # tuple path inside the unit -> (array, PyTorch name)


class MappingError(ValueError):
    """A PyTorch module whose tensors do not fit the jaxnn unit (missing or extra names)."""


def take(tensors: dict, name: str, used: set) -> np.ndarray:
    if name not in tensors:
        raise MappingError(f"has no tensor '{name}' (it has {', '.join(sorted(tensors)) or 'none'})")
    used.add(name)
    return tensors[name]


def dense_weight_to_jaxnn(weight: np.ndarray, flattened_from) -> np.ndarray:
    """``weight.T``; after a flattened feature map ``(*spatial, C)``, PyTorch's rows (channels
    first, ``C·H·W``) are reordered to jaxnn's (channels last, ``H·W·C``)."""
    if flattened_from is not None:
        *spatial, channels = flattened_from
        out = weight.shape[0]
        weight = weight.reshape(out, channels, *spatial)
        weight = np.moveaxis(weight, 1, -1).reshape(out, -1)
    return weight.T


def dense_weight_to_pytorch(w: np.ndarray, flattened_from) -> np.ndarray:
    weight = w.T
    if flattened_from is not None:
        *spatial, channels = flattened_from
        out = weight.shape[0]
        weight = np.moveaxis(weight.reshape(out, *spatial, channels), -1, 1).reshape(out, -1)
    return weight


# --------------------------------------------------------------------------------------------
# Per kind: PyTorch tensors -> jaxnn flat params/state.


def dense(tensors, unit: Unit, used, gradients, prefix=""):
    del gradients
    params = {("w",): (dense_weight_to_jaxnn(take(tensors, prefix + "weight", used), unit.flattened_from),
                       prefix + "weight")}
    if "b" in unit.params:
        params[("b",)] = (take(tensors, prefix + "bias", used), prefix + "bias")
    return params, {}


def convolution(tensors, unit, used, gradients):
    del gradients
    weight = take(tensors, "weight", used)
    # Conv (out, in/groups, *k) -> (*k, in/groups, out); ConvTranspose (in, out/groups, *k) ->
    # (*k, in, out/groups): both move the kernel axes first and keep (or swap) the other two.
    order = tuple(range(2, weight.ndim)) + ((0, 1) if unit.kind.startswith("conv_transpose") else (1, 0))
    params = {("w",): (np.transpose(weight, order), "weight")}
    if "b" in unit.params:
        params[("b",)] = (take(tensors, "bias", used), "bias")
    return params, {}


def embedding(tensors, unit, used, gradients):
    del unit, gradients
    return {("table",): (take(tensors, "weight", used), "weight")}, {}


def normalization(tensors, unit, used, gradients, prefix=""):
    del gradients
    params = {("scale",): (take(tensors, prefix + "weight", used), prefix + "weight")}
    if "bias" in unit.params:
        params[("bias",)] = (take(tensors, prefix + "bias", used), prefix + "bias")
    state = {}
    if unit.kind == "batch_norm":
        state = {("mean",): (take(tensors, "running_mean", used), "running_mean"),
                 ("var",): (take(tensors, "running_var", used), "running_var")}
        used.add("num_batches_tracked")
    return params, state


def recurrent_direction(tensors, used, gradients, kind: str, suffix: str, path: tuple):
    """One direction of one layer of ``nn.RNN/LSTM/GRU``: ``suffix`` is ``_l0``, ``_l1_reverse``..."""
    names = {part: f"{part}{suffix}" for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    params = {path + ("wi",): (take(tensors, names["weight_ih"], used).T, names["weight_ih"]),
              path + ("wh",): (take(tensors, names["weight_hh"], used).T, names["weight_hh"])}
    bias_ih, bias_hh = take(tensors, names["bias_ih"], used), take(tensors, names["bias_hh"], used)
    if kind == "gru":
        params[path + ("bi",)] = (bias_ih, names["bias_ih"])
        params[path + ("bh",)] = (bias_hh, names["bias_hh"])
    elif gradients:
        params[path + ("b",)] = (bias_ih, names["bias_ih"])
    else:
        params[path + ("b",)] = (bias_ih + bias_hh, f"{names['bias_ih']} + {names['bias_hh']}")
    return params


def stacked_paths(unit_params) -> list[tuple[tuple[str, ...], int]]:
    """``[((), 0)]`` for one layer, ``[(("layer_0",), 0), (("layer_1",), 1), ...]`` when stacked."""
    if "wi" in unit_params:
        return [((), 0)]
    layers = sorted((name for name in unit_params if name.startswith("layer_")), key=lambda n: int(n[6:]))
    return [((name,), int(name[6:])) for name in layers]


def recurrent(tensors, unit, used, gradients):
    params = {}
    for path, layer in stacked_paths(unit.params):
        params.update(recurrent_direction(tensors, used, gradients, unit.kind, f"_l{layer}", path))
    return params, {}


def bidirectional(tensors, unit, used, gradients):
    if "wi" not in unit.params["forward"]:
        raise MappingError("is one bidirectional layer, while the jaxnn Bidirectional wraps a stacked layer")
    kind = unit_kind_of_recurrent(unit.params["forward"])
    params = {}
    for direction, suffix in (("forward", "_l0"), ("backward", "_l0_reverse")):
        params.update(recurrent_direction(tensors, used, gradients, kind, suffix, (direction,)))
    return params, {}


def unit_kind_of_recurrent(params) -> str:
    if "bi" in params:
        return "gru"
    return "lstm" if params["wi"].shape[1] == 4 * params["wh"].shape[0] else "simple_rnn"


def attention(tensors, unit, used, gradients, prefix=""):
    del gradients
    params = {}
    if prefix + "in_proj_weight" in tensors:
        packed = take(tensors, prefix + "in_proj_weight", used)
        blocks = np.split(packed, 3, axis=0)
        for name, block in zip("qkv", blocks):
            params[(name, "w")] = (block.T, f"{prefix}in_proj_weight[{name}]")
    else:
        for name in "qkv":
            source = f"{prefix}{name}_proj_weight"
            params[(name, "w")] = (take(tensors, source, used).T, source)
    if "b" in unit.params["q"]:
        biases = np.split(take(tensors, prefix + "in_proj_bias", used), 3, axis=0)
        for name, block in zip("qkv", biases):
            params[(name, "b")] = (block, f"{prefix}in_proj_bias[{name}]")
    params[("o", "w")] = (take(tensors, prefix + "out_proj.weight", used).T, prefix + "out_proj.weight")
    if "b" in unit.params["o"]:
        params[("o", "b")] = (take(tensors, prefix + "out_proj.bias", used), prefix + "out_proj.bias")
    return params, {}


def transformer_block(tensors, unit, used, gradients):
    params = {}
    parts = (("attention", "self_attn.", attention), ("dense_1", "linear1.", dense), ("dense_2", "linear2.", dense),
             ("norm_1", "norm1.", normalization), ("norm_2", "norm2.", normalization))
    for child, prefix, convert in parts:
        child_unit = unit._replace(kind="layer_norm" if child.startswith("norm") else child,
                                   params=unit.params[child], flattened_from=None)
        child_params, _ = convert(tensors, child_unit, used, gradients, prefix=prefix)
        params.update({(child,) + path: entry for path, entry in child_params.items()})
    return params, {}


TO_JAXNN = {
    "dense": dense,
    "conv1d": convolution,
    "conv2d": convolution,
    "conv_transpose1d": convolution,
    "conv_transpose2d": convolution,
    "embedding": embedding,
    "batch_norm": normalization,
    "layer_norm": normalization,
    "group_norm": normalization,
    "rms_norm": normalization,
    "simple_rnn": recurrent,
    "lstm": recurrent,
    "gru": recurrent,
    "bidirectional": bidirectional,
    "multi_head_attention": attention,
    "transformer_encoder_block": transformer_block,
}


# --------------------------------------------------------------------------------------------
# jaxnn params/state -> PyTorch tensors: the inverse of the above, entry by entry.


def to_pytorch(unit: Unit, params, state, previous: dict) -> dict:
    """The tensors of the module matched to ``unit``, by their names in its ``state_dict``."""
    tensors: dict = {}
    kind = unit.kind
    if kind == "dense":
        tensors["weight"] = dense_weight_to_pytorch(params["w"], unit.flattened_from)
        if "b" in params:
            tensors["bias"] = params["b"]
    elif kind.startswith("conv"):
        w = params["w"]
        spatial = tuple(range(w.ndim - 2))
        tail = (w.ndim - 2, w.ndim - 1) if kind.startswith("conv_transpose") else (w.ndim - 1, w.ndim - 2)
        tensors["weight"] = np.transpose(w, tail + spatial)
        if "b" in params:
            tensors["bias"] = params["b"]
    elif kind == "embedding":
        tensors["weight"] = params["table"]
    elif kind in ("batch_norm", "layer_norm", "group_norm", "rms_norm"):
        tensors["weight"] = params["scale"]
        if "bias" in params:
            tensors["bias"] = params["bias"]
        if kind == "batch_norm":
            tensors["running_mean"], tensors["running_var"] = state["mean"], state["var"]
            if "num_batches_tracked" in previous:
                tensors["num_batches_tracked"] = previous["num_batches_tracked"]
    elif kind in ("simple_rnn", "lstm", "gru"):
        for path, layer in stacked_paths(params):
            layer_params = params[path[0]] if path else params
            tensors.update(recurrent_to_pytorch(layer_params, f"_l{layer}", previous))
    elif kind == "bidirectional":
        tensors.update(recurrent_to_pytorch(params["forward"], "_l0", previous))
        tensors.update(recurrent_to_pytorch(params["backward"], "_l0_reverse", previous))
    elif kind == "multi_head_attention":
        tensors.update(attention_to_pytorch(params, "", previous))
    elif kind == "transformer_encoder_block":
        tensors.update(attention_to_pytorch(params["attention"], "self_attn.", previous))
        for child, prefix in (("dense_1", "linear1."), ("dense_2", "linear2.")):
            tensors[prefix + "weight"] = params[child]["w"].T
            tensors[prefix + "bias"] = params[child]["b"]
        for child, prefix in (("norm_1", "norm1."), ("norm_2", "norm2.")):
            tensors[prefix + "weight"] = params[child]["scale"]
            tensors[prefix + "bias"] = params[child]["bias"]
    else:
        raise MappingError(f"jaxnn has no PyTorch mapping for layers of kind '{kind}'")
    return tensors


def recurrent_to_pytorch(params, suffix: str, previous: dict) -> dict:
    tensors = {f"weight_ih{suffix}": params["wi"].T, f"weight_hh{suffix}": params["wh"].T}
    if "bi" in params:
        tensors[f"bias_ih{suffix}"], tensors[f"bias_hh{suffix}"] = params["bi"], params["bh"]
    else:
        # jaxnn keeps only the sum: keep the target's bias_hh and put the rest in bias_ih, so a
        # round trip through jaxnn gives back the module's own tensors (bias_ih within float32
        # rounding: (bias_ih + bias_hh) - bias_hh).
        bias_hh = previous.get(f"bias_hh{suffix}")
        bias_hh = np.zeros_like(params["b"]) if bias_hh is None else bias_hh.astype(params["b"].dtype)
        tensors[f"bias_ih{suffix}"], tensors[f"bias_hh{suffix}"] = params["b"] - bias_hh, bias_hh
    return tensors


def attention_to_pytorch(params, prefix: str, previous: dict) -> dict:
    tensors = {}
    if prefix + "in_proj_weight" in previous or prefix + "q_proj_weight" not in previous:
        tensors[prefix + "in_proj_weight"] = np.concatenate([params[name]["w"].T for name in "qkv"], axis=0)
    else:
        for name in "qkv":
            tensors[f"{prefix}{name}_proj_weight"] = params[name]["w"].T
    if "b" in params["q"]:
        tensors[prefix + "in_proj_bias"] = np.concatenate([params[name]["b"] for name in "qkv"], axis=0)
    tensors[prefix + "out_proj.weight"] = params["o"]["w"].T
    if "b" in params["o"]:
        tensors[prefix + "out_proj.bias"] = params["o"]["b"]
    return tensors
