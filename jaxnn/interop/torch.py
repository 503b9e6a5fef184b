"""PyTorch weights into jaxnn and back, with a report that runs both models and compares them.

The mapping is the README's porting table, kind by kind (``jaxnn/interop/_mapping.py``). Matching
is by order: the i-th jaxnn layer with params (or state) takes the i-th PyTorch module with
parameters, where a module of a known type (``nn.Linear``, ``nn.LSTM``, ``nn.MultiheadAttention``,
``nn.TransformerEncoderLayer``, ...) counts as one and is not looked into, and modules without
parameters (``nn.ReLU``, ``nn.Dropout``, ``nn.Flatten``) are skipped. torch is an optional
dependency, imported only when these functions run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.core import Layer, record_outputs
from jaxnn.interop._mapping import TO_JAXNN, MappingError, to_pytorch
from jaxnn.interop._units import ModelLayout, Unit, model_layout, path_name

__all__ = ["ConversionReport", "LayerCheck", "from_torch", "to_torch"]


def import_torch():
    try:
        import torch
    except ImportError:
        raise ImportError("jaxnn.interop.from_torch/to_torch need PyTorch: pip install 'jaxnn[torch]'") from None
    return torch


# PyTorch module class name -> the jaxnn kinds it can port to.
MODULE_KINDS = {
    "Linear": {"dense"},
    "Conv1d": {"conv1d"},
    "Conv2d": {"conv2d"},
    "ConvTranspose1d": {"conv_transpose1d"},
    "ConvTranspose2d": {"conv_transpose2d"},
    "Embedding": {"embedding"},
    "BatchNorm1d": {"batch_norm"},
    "BatchNorm2d": {"batch_norm"},
    "LayerNorm": {"layer_norm"},
    "GroupNorm": {"group_norm"},
    "RMSNorm": {"rms_norm"},
    "RNN": {"simple_rnn"},
    "LSTM": {"lstm"},
    "GRU": {"gru"},
    "MultiheadAttention": {"multi_head_attention"},
    "TransformerEncoderLayer": {"transformer_encoder_block"},
}


class TorchUnit(NamedTuple):
    """A PyTorch module with parameters (or a group of a state dict's entries sharing a prefix)."""

    name: str            # its name in the model, "" for the model itself
    type_name: str       # "Linear", or for a state dict "tensors"
    kinds: set           # jaxnn kinds it fits
    tensors: dict        # local name -> NumPy array
    module: Any          # the torch module, None for a state dict


def module_units(model) -> list[TorchUnit]:
    """The modules of ``model`` with parameters, in registration order (the usual forward order)."""
    units: list[TorchUnit] = []

    def visit(module, name):
        type_name = type(module).__name__
        own = dict(module.named_parameters(recurse=False)) | dict(module.named_buffers(recurse=False))
        known = next((k for cls in type(module).__mro__ if (k := MODULE_KINDS.get(cls.__name__))), None)
        if known is not None or own:
            kinds = set(known or ())
            if type_name in ("RNN", "LSTM", "GRU") and getattr(module, "bidirectional", False):
                kinds = {"bidirectional"}
            # A known module ports whole; another module with tensors of its own ports only those,
            # its children being units of their own.
            source = module.state_dict() if known is not None else own
            tensors = {key: value.detach().cpu().numpy() for key, value in source.items()}
            if tensors:
                units.append(TorchUnit(name, type_name, kinds, tensors, module))
            if known is not None:
                return
        for child_name, child in module.named_children():
            visit(child, f"{name}.{child_name}" if name else child_name)

    visit(model, "")
    return units


def state_dict_units(state_dict: Mapping) -> list[TorchUnit]:
    """A state dict's entries grouped by module prefix, kinds guessed from their names and shapes."""
    groups: dict[str, dict] = {}
    first_key: dict[str, int] = {}   # where each group starts: the order to match in
    for index, (key, value) in enumerate(state_dict.items()):
        prefix, _, local = key.rpartition(".")
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        groups.setdefault(prefix, {})[local] = array
        first_key.setdefault(prefix, index)

    def child(parent: str, name: str) -> str:
        return f"{parent}.{name}" if parent else name

    def fold(parent: str, names: tuple[str, ...]) -> None:
        """Moves the groups ``parent.name`` into ``parent``'s, their tensors as ``name.local``."""
        merged = groups.get(parent, {})
        for name in names:
            merged.update({f"{name}.{local}": array for local, array in groups.pop(child(parent, name)).items()})
        first_key[parent] = min(first_key.get(parent, len(state_dict)),
                                *(first_key[child(parent, name)] for name in names))
        groups[parent] = merged

    # Multi-head attention keeps its output projection in a child module.
    for prefix in list(groups):
        if prefix in groups and {"in_proj_weight", "q_proj_weight"} & set(groups[prefix]) \
                and child(prefix, "out_proj") in groups:
            fold(prefix, ("out_proj",))
    # A TransformerEncoderLayer: self_attn, linear1, linear2, norm1, norm2 under one prefix.
    parts = ("self_attn", "linear1", "linear2", "norm1", "norm2")
    for prefix in list(groups):
        parent, _, name = prefix.rpartition(".")
        if name == "self_attn" and parent not in groups and all(child(parent, part) in groups for part in parts):
            fold(parent, parts)
    return [TorchUnit(prefix, "tensors", guess_kinds(tensors), tensors, None)
            for prefix, tensors in sorted(groups.items(), key=lambda item: first_key[item[0]])]


def guess_kinds(tensors: dict) -> set:
    names = set(tensors)
    if "self_attn.in_proj_weight" in names or "self_attn.q_proj_weight" in names:
        return {"transformer_encoder_block"}
    if "in_proj_weight" in names or "q_proj_weight" in names:
        return {"multi_head_attention"}
    if "weight_ih_l0" in names:
        if "weight_ih_l0_reverse" in names:
            return {"bidirectional"}
        gates = tensors["weight_ih_l0"].shape[0] // tensors["weight_hh_l0"].shape[1]
        return {{1: "simple_rnn", 3: "gru", 4: "lstm"}.get(gates, "recurrent")}
    if "running_mean" in names:
        return {"batch_norm"}
    weight = tensors.get("weight")
    if weight is None:
        return set()
    if weight.ndim == 1:
        return {"layer_norm", "group_norm", "rms_norm"}
    if weight.ndim == 2:
        return {"dense"} if "bias" in names else {"dense", "embedding"}
    return {f"conv{weight.ndim - 2}d", f"conv_transpose{weight.ndim - 2}d"}


def describe_unit(unit: Unit) -> str:
    leaves = jax.tree_util.tree_flatten_with_path(unit.params)[0]
    if not leaves:
        return f"{unit.kind}"
    # The weight matrix (most axes) says the most about a layer's shape.
    path, leaf = max(leaves, key=lambda entry: len(entry[1].shape))
    name = "/".join(str(getattr(entry, "key", entry)) for entry in path)
    return f"{unit.kind}, {name} {tuple(leaf.shape)}"


def describe_torch(unit: TorchUnit) -> str:
    name, array = next(iter(unit.tensors.items()))
    return f"{unit.type_name}, {name} {tuple(array.shape)}"


def mismatch(unit: Unit, torch_unit: TorchUnit, why: str) -> ValueError:
    return ValueError(f"layer '{path_name(unit.path) or unit.kind}' ({describe_unit(unit)}) does not fit torch "
                      f"module '{torch_unit.name}' ({describe_torch(torch_unit)}): {why}")


def convert_unit(unit: Unit, torch_unit: TorchUnit, *, gradients: bool = False, tensors=None):
    """The unit's params and state from the module's tensors, checked against the unit's template."""
    tensors = torch_unit.tensors if tensors is None else tensors
    if unit.kind not in TO_JAXNN:
        raise ValueError(f"layer '{path_name(unit.path)}' is a {unit.kind}, which jaxnn cannot port from PyTorch")
    if unit.kind not in torch_unit.kinds:
        wanted = ", ".join(sorted(torch_unit.kinds)) or "no jaxnn layer"
        raise mismatch(unit, torch_unit, f"a {torch_unit.type_name} ports to {wanted}, not {unit.kind}")
    if unit.kind == "bidirectional" and (any("_l1" in name for name in tensors) or "wi" not in unit.params["forward"]):
        raise mismatch(unit, torch_unit, STACKED_BIDIRECTIONAL)
    used: set = set()
    try:
        flat_params, flat_state = TO_JAXNN[unit.kind](tensors, unit, used, gradients)
    except MappingError as error:
        raise mismatch(unit, torch_unit, f"the module {error}") from None
    extra = sorted(set(tensors) - used)
    if extra and not gradients:
        raise mismatch(unit, torch_unit, f"jaxnn has no place for its tensors {', '.join(extra)}")
    return (rebuild(unit, torch_unit, unit.params, flat_params, "params"),
            rebuild(unit, torch_unit, unit.state, flat_state, "state"))


STACKED_BIDIRECTIONAL = (
    "a stacked bidirectional layer does not port as one: in PyTorch's RNN/LSTM/GRU with bidirectional=True "
    "and num_layers=N > 1, layer k > 0 of each direction reads both directions of layer k-1 (2H features), "
    "while jaxnn's Bidirectional(GRU(H, num_layers=N)) runs each direction through a stack of its own. The "
    "jaxnn equivalent of the PyTorch module is a Sequential of N Bidirectional(GRU(H, return_sequences=True)) "
    "single layers (the last with the return_sequences you need); port it from a torch model of N "
    "single-layer bidirectional modules, the k-th taking the module's _l{k} and _l{k}_reverse tensors as "
    "its _l0 and _l0_reverse")


def rebuild(unit: Unit, torch_unit: TorchUnit, template, flat: dict, what: str):
    """``flat`` as a tree shaped like ``template``, each entry checked for shape and cast to its dtype."""
    leaves, structure = jax.tree_util.tree_flatten_with_path(template)
    values = []
    for path, leaf in leaves:
        key = tuple(str(getattr(entry, "key", entry)) for entry in path)
        name = "/".join(key)
        if key not in flat:
            raise mismatch(unit, torch_unit, f"nothing in the module gives {what} '{name}' {tuple(leaf.shape)}")
        array, source = flat[key]
        if tuple(array.shape) != tuple(leaf.shape):
            raise mismatch(unit, torch_unit, f"{what} '{name}' must be {tuple(leaf.shape)}, but {source} "
                                             f"gives {tuple(array.shape)}")
        values.append(jnp.asarray(np.asarray(array), leaf.dtype))
    return jax.tree_util.tree_unflatten(structure, values)


def set_subtree(tree, path, value):
    if not path:
        return value
    tree = dict(tree)
    tree[path[0]] = set_subtree(tree[path[0]], path[1:], value)
    return tree


def match_units(layout: ModelLayout, torch_units: list[TorchUnit]) -> list[tuple[Unit, TorchUnit]]:
    for index in range(max(len(layout.units), len(torch_units))):
        if index >= len(torch_units):
            unit = layout.units[index]
            raise ValueError(f"layer '{path_name(unit.path)}' ({describe_unit(unit)}) has no torch counterpart: the "
                             f"jaxnn model has {len(layout.units)} layers with parameters, the torch model "
                             f"{len(torch_units)} modules with parameters")
        if index >= len(layout.units):
            torch_unit = torch_units[index]
            raise ValueError(f"torch module '{torch_unit.name}' ({describe_torch(torch_unit)}) has no jaxnn "
                             f"counterpart: the jaxnn model has {len(layout.units)} layers with parameters, the "
                             f"torch model {len(torch_units)} modules with parameters")
    return list(zip(layout.units, torch_units))


def check_hyperparameters(unit: Unit, torch_unit: TorchUnit) -> None:
    """A ValueError for a module setting the jaxnn layer is known not to have (its weights fitting)."""
    module = torch_unit.module
    if torch_unit.type_name == "TransformerEncoderLayer" and module is not None:
        activation = {1: "relu", 2: "gelu"}.get(getattr(module, "activation_relu_or_gelu", 0))
        if activation is None:
            function = getattr(module, "activation", None)
            activation = getattr(function, "__name__", type(function).__name__).lower()
        if activation != "gelu":
            raise mismatch(unit, torch_unit, f"its activation is {activation}, jaxnn's TransformerEncoderBlock's "
                                             "is gelu (exact): build the torch layer with activation='gelu'")


def notes_for(torch_unit: TorchUnit) -> list[str]:
    module, notes = torch_unit.module, []
    if module is None:
        if torch_unit.kinds & {"multi_head_attention", "transformer_encoder_block", "group_norm"}:
            notes.append(f"'{torch_unit.name or '(state dict)'}': a state dict does not hold num_heads, num_groups "
                         "or eps, and no check ran: make sure the jaxnn layer's match the module's")
        return notes
    if torch_unit.type_name.startswith("BatchNorm"):
        momentum = module.momentum
        if momentum is None:
            notes.append(f"'{torch_unit.name}': BatchNorm momentum=None (cumulative average) has no jaxnn "
                         "equivalent; the running statistics are ported as they are")
        else:
            notes.append(f"'{torch_unit.name}': PyTorch BatchNorm momentum={momentum:g} (weight of the batch) is "
                         f"jaxnn BatchNorm(momentum={1 - momentum:g}) (weight of the running value)")
        if not module.track_running_stats:
            notes.append(f"'{torch_unit.name}': track_running_stats=False normalizes with batch statistics "
                         "even in eval mode; jaxnn's BatchNorm uses its running statistics")
    name = torch_unit.name or "(model)"
    if torch_unit.type_name == "MultiheadAttention":
        notes.append(f"'{name}': num_heads={module.num_heads}, which its weights do not show: the jaxnn "
                     f"MultiHeadAttention must have heads={module.num_heads}")
    if torch_unit.type_name == "GroupNorm":
        notes.append(f"'{name}': num_groups={module.num_groups}, which its weights do not show: the jaxnn "
                     f"GroupNorm must have groups={module.num_groups}")
    if torch_unit.type_name in ("BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm") and module.eps != 1e-5:
        notes.append(f"'{name}': eps={module.eps:g}, not jaxnn's default 1e-05: pass eps={module.eps:g} to "
                     f"the jaxnn layer")
    if torch_unit.type_name == "RMSNorm" and module.eps is not None:
        notes.append(f"'{name}': eps={module.eps:g}: pass eps={module.eps:g} to the jaxnn RMSNorm")
    if torch_unit.type_name == "TransformerEncoderLayer":
        attention = module.self_attn
        notes.append(f"'{name}': nhead={attention.num_heads}, norm_first={module.norm_first}, which its weights do "
                     f"not show: the jaxnn TransformerEncoderBlock must have heads={attention.num_heads}, "
                     f"pre_norm={module.norm_first}")
        if module.norm1.eps != 1e-5 or module.norm2.eps != 1e-5:
            notes.append(f"'{name}': layer_norm_eps={module.norm1.eps:g}, jaxnn's TransformerEncoderBlock "
                         "normalizes with eps=1e-05")
    if torch_unit.type_name in ("RNN", "LSTM", "GRU", "MultiheadAttention") and not module.batch_first:
        notes.append(f"'{torch_unit.name}': batch_first=False: its inputs are (T, N, ...), jaxnn's (N, T, ...)")
    if torch_unit.type_name in ("RNN", "LSTM") and not torch_unit.kinds & {"gru"}:
        notes.append(f"'{torch_unit.name}': bias_ih + bias_hh are summed into jaxnn's b")
    return notes


# --------------------------------------------------------------------------------------------
# The report.


class LayerCheck(NamedTuple):
    """One matched pair and, when the check ran, how far apart their outputs and gradients are."""

    layer: str
    kind: str
    module: str
    module_type: str
    output_abs: float | None = None
    output_rel: float | None = None
    grad_abs: float | None = None
    grad_rel: float | None = None
    passed: bool | None = None


class ConversionReport:
    """The layer-by-layer correspondence of a port and, with a module, the check's measurements.

    ``rows`` holds one :class:`LayerCheck` per matched layer plus, when checked, a final
    ``(model output)`` row. Gradients are those of ``sum(r * output)`` for a fixed random ``r`` of the
    output's shape (a plain sum is constant after a softmax or a normalization). Differences are ``max |jaxnn - torch|`` (``_abs``) and that divided by
    ``max |torch|`` (``_rel``); a value passes when ``abs <= atol + rtol * max |torch|``.
    ``passed`` is True when every comparison that ran passed (and the check ran: ``checked``).
    ``notes`` are conventions to know, such as BatchNorm's momentum.
    """

    def __init__(self, rows: list[LayerCheck], notes: list[str], checked: bool, atol: float, rtol: float):
        self.rows, self.notes, self.checked, self.atol, self.rtol = rows, notes, checked, atol, rtol

    @property
    def passed(self) -> bool:
        return self.checked and all(row.passed is not False for row in self.rows)

    def __str__(self) -> str:
        def number(value):
            return "-" if value is None else f"{value:.2e}"

        header = ("layer", "kind", "torch module", "out abs", "out rel", "grad abs", "grad rel", "ok")
        table = [header] + [
            (row.layer, row.kind, f"{row.module} ({row.module_type})" if row.module_type else row.module,
             number(row.output_abs), number(row.output_rel), number(row.grad_abs), number(row.grad_rel),
             "-" if row.passed is None else ("yes" if row.passed else "NO"))
            for row in self.rows
        ]
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
        lines.insert(1, "-" * len(lines[0]))
        verdict = ("passed" if self.passed else "FAILED") if self.checked else "not checked (no module to run)"
        lines.append(f"check: {verdict} (atol={self.atol:g}, rtol={self.rtol:g})")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<ConversionReport passed={self.passed} layers={len(self.rows)}>\n{self}"


# --------------------------------------------------------------------------------------------
# Public functions.


def from_torch(model: Layer, source, input_shape, *, check: bool = True, probe=None, batch_size: int = 4,
               seed: int = 0, atol: float = 1e-5, rtol: float = 1e-4):
    """Port a PyTorch model's weights to ``model``: returns ``(params, state, report)``.

    ``source`` is a ``torch.nn.Module`` or its ``state_dict()``. The i-th layer of ``model``
    with params (or state) takes the tensors of the i-th PyTorch module with parameters, each
    by the porting table of the README (``w = weight.T`` for ``Dense``, ``weight.permute(2, 3,
    1, 0)`` for ``Conv2D``, ``b = bias_ih + bias_hh`` for ``LSTM``, the rows of
    ``in_proj_weight`` for attention, ...). A ``Dense`` right after a ``Flatten`` of a
    convolutional feature map also has its input rows reordered from PyTorch's channels-first
    flattening to jaxnn's channels-last one. Any mismatch (count, kind, name or shape) is a
    ``ValueError`` naming the first jaxnn layer and PyTorch module that do not fit; so is a
    setting jaxnn is known not to have (a ``TransformerEncoderLayer`` whose activation is not
    GELU) and a bidirectional module with ``num_layers > 1`` (port it as single layers). Settings
    the weights do not show (``num_heads``, ``num_groups``, ``eps``, ``norm_first``) are report
    notes, to match in the jaxnn layer; the check compares their effect.

    With a module and ``check=True``, both models run (the module in eval mode, restored after)
    on a seeded random batch of ``batch_size`` examples of ``input_shape`` (jaxnn's layout:
    channels last; it is transposed for PyTorch when the model's first layer that is not a
    norm, an activation or dropout is a convolution, pooling or upsampling), or on ``probe`` if
    given; a bare ``nn.MultiheadAttention`` runs as self-attention, ``module(x, x, x)``. If the
    module cannot run on that input, a ``ValueError`` says which layout was assumed. The report
    compares each layer's own output (for a layer inside ``Residual``, the layer's, not the sum;
    from ``jaxnn.core.record_outputs``), the model's output, and each layer's parameter gradients
    of ``sum(r * output)``, ``r`` a fixed random array of the output's shape.

    Args:
      model: the jaxnn model the weights are for.
      source: a ``torch.nn.Module`` or a state dict (name -> tensor or array).
      input_shape: the per-example input shape of ``model`` (no batch axis).
      check: run both models and compare (needs a module).
      probe: the input to check with, in jaxnn's layout, instead of a random batch.
      batch_size, seed: size and seed of the random probe batch.
      atol, rtol: the tolerance: ``max |jaxnn - torch| <= atol + rtol * max |torch|``.

    Returns:
      ``(params, state, report)``: ``report`` is a :class:`ConversionReport`, printable as a
      table, with ``report.passed``.

    Example (the PyTorch model ``nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))``)::

        model = jaxnn.Sequential([jaxnn.Dense(8), jaxnn.Relu(), jaxnn.Dense(3)])
        params, state, report = jaxnn.interop.from_torch(model, torch_model, (4,))
        print(report)
        assert report.passed
    """
    torch = import_torch()
    layout = model_layout(model, input_shape)
    if isinstance(source, torch.nn.Module):
        torch_units = module_units(source)
    elif isinstance(source, Mapping):
        torch_units = state_dict_units(source)
    else:
        raise TypeError(f"from_torch: source must be a torch.nn.Module or a state dict, got {type(source).__name__}")
    pairs = match_units(layout, torch_units)
    params = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), layout.params)
    state = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), layout.state)
    notes: list[str] = []
    for unit, torch_unit in pairs:
        unit_params, unit_state = convert_unit(unit, torch_unit)
        check_hyperparameters(unit, torch_unit)
        params = set_subtree(params, unit.path, unit_params)
        state = set_subtree(state, unit.path, unit_state)
        notes += notes_for(torch_unit)
    rows = [LayerCheck(path_name(unit.path) or unit.kind, unit.kind, torch_unit.name or "(model)", torch_unit.type_name)
            for unit, torch_unit in pairs]
    checked = False
    if check and isinstance(source, torch.nn.Module):
        rows = run_check(model, params, state, source, layout, pairs, probe, batch_size, seed, atol, rtol)
        checked = True
    return params, state, ConversionReport(rows, notes, checked, atol, rtol)


def to_torch(model: Layer, params, state, target, input_shape) -> dict:
    """The state dict of ``target`` (a ``torch.nn.Module`` or its state dict) filled from jaxnn's
    ``params`` and ``state``: the inverse of :func:`from_torch`, so
    ``target.load_state_dict(to_torch(...))`` loads a trained jaxnn model into PyTorch.

    Returns an ordered dict of torch tensors with ``target``'s names, dtypes and order. Entries
    jaxnn has no counterpart for keep ``target``'s values (``num_batches_tracked``); a summed
    recurrent bias ``b`` is split as ``bias_hh`` = ``target``'s, ``bias_ih = b - bias_hh``, so a
    round trip through jaxnn gives back the original tensors: exactly, except ``bias_ih``, which
    comes back as ``(bias_ih + bias_hh) - bias_hh``, equal within float32 rounding (about 1e-7
    relative to the biases).
    """
    torch = import_torch()
    layout = model_layout(model, input_shape)
    if isinstance(target, torch.nn.Module):
        torch_units, original = module_units(target), target.state_dict()
    elif isinstance(target, Mapping):
        torch_units, original = state_dict_units(target), target
    else:
        raise TypeError(f"to_torch: target must be a torch.nn.Module or a state dict, got {type(target).__name__}")
    result = {key: value.detach().clone() if hasattr(value, "detach") else torch.as_tensor(np.asarray(value))
              for key, value in original.items()}
    for unit, torch_unit in match_units(layout, torch_units):
        convert_unit(unit, torch_unit)  # the same structural checks as from_torch
        unit_params = jax.tree.map(np.asarray, subtree_or_fail(params, unit, "params"))
        unit_state = jax.tree.map(np.asarray, subtree_or_fail(state, unit, "state"))
        for local, array in to_pytorch(unit, unit_params, unit_state, torch_unit.tensors).items():
            key = f"{torch_unit.name}.{local}" if torch_unit.name else local
            if key not in result:
                raise ValueError(f"to_torch: torch module '{torch_unit.name}' has no tensor '{local}'")
            reference = result[key]
            if tuple(reference.shape) != tuple(array.shape):
                raise ValueError(f"to_torch: layer '{path_name(unit.path)}' gives {key} the shape "
                                 f"{tuple(array.shape)}, the torch model's is {tuple(reference.shape)}")
            result[key] = torch.from_numpy(np.array(array, order="C", copy=True)).to(reference.dtype)
    return result


def subtree_or_fail(tree, unit: Unit, what: str):
    try:
        for name in unit.path:
            tree = tree[name]
    except (KeyError, TypeError):
        raise ValueError(f"to_torch: {what} has no entry '{path_name(unit.path)}' for the model's "
                         f"{unit.kind} layer") from None
    return tree


# --------------------------------------------------------------------------------------------
# The check: both models on one probe batch.


def run_check(model, params, state, module, layout: ModelLayout, pairs, probe, batch_size, seed, atol, rtol):
    torch = import_torch()
    x = make_probe(layout, probe, batch_size, seed)
    to_torch_layout = (lambda a: np.moveaxis(a, -1, 1)) if layout.spatial_input and x.ndim >= 3 else (lambda a: a)

    # Gradients of a random projection of the output, not of its plain sum: the sum is constant
    # after a softmax or a normalization, and its gradients would be rounding noise.
    weights = jax.random.normal(jax.random.fold_in(jax.random.key(seed), 1), (x.shape[0],) + layout.output_shape)
    torch_weights = np.asarray(weights)
    if layout.spatial_output and torch_weights.ndim >= 3:
        torch_weights = np.moveaxis(torch_weights, -1, 1)

    def summed_output(p):
        y, _ = model.apply(p, state, x)
        return jnp.sum(y.astype(jnp.float32) * weights), (y, capture_outputs(model, p, state, x, pairs))

    # One compiled program for the output, every layer's output and the gradients.
    (_, (y_jax, captured)), grads = jax.jit(jax.value_and_grad(summed_output, has_aux=True))(params)
    y_jax = np.asarray(y_jax)

    outputs: dict[str, Any] = {}
    hooks = [torch_unit.module.register_forward_hook(
        lambda mod, args, out, name=torch_unit.name: outputs.__setitem__(name, out))
        for _, torch_unit in pairs]
    was_training = module.training
    module.eval()
    try:
        x_torch = torch.from_numpy(np.array(to_torch_layout(np.asarray(x)), order="C", copy=True))
        y_torch = torch_forward(module, x_torch, layout, tuple(x.shape))
        # autograd.grad, not backward(): the module's own .grad buffers are left as they were.
        trainable = {id(parameter): parameter for parameter in module.parameters() if parameter.requires_grad}
        projected = (y_torch.float() * torch.from_numpy(np.array(torch_weights, order="C", copy=True))).sum()
        found = torch.autograd.grad(projected, list(trainable.values()), allow_unused=True)
        torch_grad_of = {key: (np.zeros(tuple(parameter.shape), np.float32) if grad is None
                               else grad.detach().cpu().numpy())
                         for key, parameter, grad in zip(trainable, trainable.values(), found)}
    finally:
        for hook in hooks:
            hook.remove()
        module.train(was_training)

    rows = []
    for unit, torch_unit in pairs:
        out_abs = out_rel = None
        name = path_name(unit.path)
        passed = True
        if name in captured and torch_unit.name in outputs:
            reference = torch_output_in_jaxnn_layout(outputs[torch_unit.name], unit, torch_unit)
            out_abs, out_rel, ok = compare(np.asarray(captured[name]), reference, atol, rtol)
            passed &= ok
        grad_abs = grad_rel = None
        named = dict(torch_unit.module.named_parameters())
        if all(id(parameter) in torch_grad_of for parameter in named.values()):  # none frozen in torch
            # Buffers (running statistics) fill the state entries, which have no gradient.
            tensors = torch_unit.tensors | {key: torch_grad_of[id(parameter)] for key, parameter in named.items()}
            unit_grads, _ = convert_unit(unit, torch_unit, gradients=True, tensors=tensors)
            grad_abs, grad_rel, ok = compare_trees(subtree_or_fail(grads, unit, "gradients"), unit_grads, atol, rtol)
            passed &= ok
        rows.append(LayerCheck(name or unit.kind, unit.kind, torch_unit.name or "(model)", torch_unit.type_name,
                               out_abs, out_rel, grad_abs, grad_rel, bool(passed)))
    y_reference = y_torch.detach().cpu().numpy()
    if layout.spatial_output and y_reference.ndim >= 3:
        y_reference = np.moveaxis(y_reference, 1, -1)
    out_abs, out_rel, ok = compare(y_jax, y_reference, atol, rtol)
    rows.append(LayerCheck("(model output)", "", "(model)", "", out_abs, out_rel, None, None, ok))
    return rows


def torch_forward(module, x_torch, layout: ModelLayout, jaxnn_shape):
    """``module(x)``, the output's first entry when it is a tuple; a bare attention module runs
    as self-attention, ``module(x, x, x)``. A failure is a ValueError naming the input layout the
    check assumed."""
    torch = import_torch()
    try:
        if isinstance(module, torch.nn.MultiheadAttention):
            return module(x_torch, x_torch, x_torch, need_weights=False)[0]
        y = module(x_torch)
    except Exception as error:  # noqa: BLE001: torch raises RuntimeError, TypeError, IndexError...
        if layout.spatial_input and len(jaxnn_shape) >= 3:
            assumed = (f"an image model (its first layer that is not a norm, an activation or dropout is "
                       f"a convolution, pooling or upsampling), so the probe {jaxnn_shape} (channels "
                       f"last) was given to torch as {tuple(x_torch.shape)} (channels first)")
        else:
            assumed = (f"a model that does not start with a convolution, so the probe {jaxnn_shape} was given "
                       f"to torch as it is, {tuple(x_torch.shape)}")
        raise ValueError(f"from_torch: the check could not run the torch model ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}). It assumed {assumed}; pass "
                         f"probe= (in jaxnn's layout) if the input is not that, or check=False to port "
                         f"without running the models") from error
    return y[0] if isinstance(y, tuple) else y


def make_probe(layout: ModelLayout, probe, batch_size, seed):
    if probe is not None:
        return jnp.asarray(probe)
    key = jax.random.key(seed)
    input_shape = layout.input_shape
    if layout.first_kind == "embedding":
        vocab = layout.units[0].params["table"].shape[0]
        return jax.random.randint(key, (batch_size,) + input_shape, 0, vocab)
    return jax.random.normal(key, (batch_size,) + input_shape, jnp.float32)


def capture_outputs(model, params, state, x, pairs) -> dict:
    """Each unit's own output by path: the first output recorded at the unit's path by a layer of
    the unit's kind. ``jaxnn.lab.capture`` keeps one output per path, the last (that of a
    ``Residual`` wrapping the layer), so the rows are read here from the same recorder it reads
    (``jaxnn.core.record_outputs``). A unit with no such row has no per-layer comparison (the
    model's output is compared all the same)."""
    wanted = {tuple(unit.path): unit.kind for unit, _ in pairs}
    with record_outputs() as rows:
        model.apply(params, state, x)
    found: dict = {}
    for path, layer, output in rows:
        path = tuple(path)
        name = path_name(path)
        if wanted.get(path) == layer.name and name not in found and hasattr(output, "shape"):
            found[name] = output
    return found


def torch_output_in_jaxnn_layout(output, unit: Unit, torch_unit: TorchUnit) -> np.ndarray:
    """The module's output as the jaxnn layer gives it: channels last, and for a recurrent layer that
    returns its last state, PyTorch's ``h_n`` of the last layer (both directions, concatenated)."""
    if unit.kind in ("simple_rnn", "lstm", "gru", "bidirectional"):
        sequence, final = output
        if len(unit.output_shape) == 1:
            h_n = final[0] if isinstance(final, tuple) else final
            directions = 2 if unit.kind == "bidirectional" else 1
            return np.concatenate([h.detach().cpu().numpy() for h in h_n[-directions:]], axis=-1)
        return sequence.detach().cpu().numpy()
    if isinstance(output, tuple):
        output = output[0]
    array = output.detach().cpu().numpy()
    if unit.spatial_output and array.ndim >= 3:
        array = np.moveaxis(array, 1, -1)
    return array


def compare(ours: np.ndarray, reference: np.ndarray, atol: float, rtol: float):
    if ours.shape != reference.shape:
        return math.inf, math.inf, False
    difference = float(np.max(np.abs(ours.astype(np.float64) - reference.astype(np.float64)), initial=0.0))
    scale = float(np.max(np.abs(reference.astype(np.float64)), initial=0.0))
    relative = difference / scale if scale > 0 else (0.0 if difference == 0 else math.inf)
    return difference, relative, bool(difference <= atol + rtol * scale)


def compare_trees(ours, reference, atol, rtol):
    worst_abs = worst_rel = 0.0
    passed = True
    for mine, theirs in zip(jax.tree.leaves(ours), jax.tree.leaves(reference)):
        difference, relative, ok = compare(np.asarray(mine), np.asarray(theirs), atol, rtol)
        worst_abs, worst_rel, passed = max(worst_abs, difference), max(worst_rel, relative), passed and ok
    return worst_abs, worst_rel, passed
