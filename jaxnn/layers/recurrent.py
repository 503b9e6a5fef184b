"""Recurrent layers: SimpleRNN, LSTM and GRU over ``(*batch, time, features)``, and the
Bidirectional combinator that runs two of them, one each way along time.

The formulas are PyTorch's (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``), so weights port by transposing
and, for the LSTM, summing PyTorch's two biases; ``num_layers`` stacks layers as PyTorch's
argument of that name does. The loop over time and its derivative are in
``jaxnn.layers._recurrence``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxnn import init as initializers
from jaxnn._checks import check_bool, check_positive_int, check_real
from jaxnn.core import (
    Layer,
    LayerTypeError,
    LayerValueError,
    apply_child,
    as_shape,
    check_array,
    check_entries,
    check_entry,
    check_floating,
    check_initializer,
    check_min_ndim,
    check_param_dtype,
    compute_dtype,
    declared_options,
    init_child,
    make_layer,
    split_key,
)
from jaxnn.layers._arguments import positional_limit, recurrent_hint
from jaxnn.layers._recurrence import CELLS, recurrence
from jaxnn.layers.dropout import Dropout

__all__ = ["GRU", "LSTM", "Bidirectional", "SimpleRNN"]


def _check_input(x: Any, in_features: int) -> jax.Array:
    x = check_array(x)
    check_floating(x)
    if x.ndim < 2:
        raise LayerValueError(f"expected an input of shape (*batch, time, features), got {x.shape}")
    if x.shape[-1] != in_features:
        raise LayerValueError(f"expected last axis (features) {in_features}, got {x.shape[-1]}")
    if x.shape[-2] == 0:
        raise LayerValueError(f"expected at least one time step, got an input of shape {x.shape}")
    return x


def _check_state_array(value: Any, expected: tuple[int, ...], what: str) -> jax.Array:
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise LayerTypeError(f"{what} must be an array, got {type(value).__name__}")
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise LayerTypeError(f"{what} must be floating-point, got dtype {value.dtype}")
    if tuple(value.shape) != expected:
        raise LayerValueError(f"{what} has shape {tuple(value.shape)}, expected {expected} (*batch, hidden)")
    return value


def _recurrent_layer(name: str, label: str, cell_name: str, hidden: int, settings: dict) -> Layer:
    """Builds SimpleRNN, LSTM and GRU: one layer, or ``settings["num_layers"]`` stacked ones."""
    num_layers = check_positive_int(settings["num_layers"], "num_layers", label)
    rate = check_real(settings["dropout"], "dropout", label, low=0.0, high=1.0, high_open=True)
    if num_layers == 1:
        if rate:
            raise LayerValueError(f"{label}: `dropout` (={settings['dropout']}) acts between stacked layers "
                                  "and needs num_layers > 1; for dropout on the output, add a Dropout layer")
        return _single_layer(name, label, cell_name, hidden, settings)
    return_sequences = check_bool(settings["return_sequences"], "return_sequences", label)
    inner = _single_layer(name, label, cell_name, hidden, {**settings, "return_sequences": True})
    last = _single_layer(name, label, cell_name, hidden, settings) if not return_sequences else inner
    return _stacked(name, [inner] * (num_layers - 1) + [last], rate)


def _stacked(name: str, layers: list[Layer], rate: float) -> Layer:
    """Layers run one after the other, each reading the sequence of hidden states of the one before,
    with dropout between them (not after the last), as PyTorch's ``num_layers``/``dropout``."""
    names = [f"layer_{k}" for k in range(len(layers))]
    dropout = Dropout(rate)

    def init(key, input_shape):
        shape = as_shape(input_shape)
        check_min_ndim(shape, 2, "(time, features)")
        params, state = {}, {}
        for child_name, layer, child_key in zip(names, layers, jax.random.split(key, len(layers))):
            shape, params[child_name], state[child_name] = init_child(child_name, layer, child_key, shape)
        return shape, params, state

    def apply(params, state, x, *, key=None, train=False, initial_state=None):
        for what, tree in (("params", params), ("state", state)):
            check_entries(tree, names, what)
        if initial_state is not None and (not isinstance(initial_state, (tuple, list))
                                          or len(initial_state) != len(layers)):
            got = f"a sequence of {len(initial_state)}" if isinstance(initial_state, (tuple, list)) \
                else type(initial_state).__name__
            raise LayerTypeError(f"initial_state of {len(layers)} stacked layers must be a sequence of "
                                 f"{len(layers)} per-layer initial states, got {got}")
        keys = split_key(key, len(layers) - 1) + [None]
        new_state = {}
        for index, (child_name, layer) in enumerate(zip(names, layers)):
            options = {} if initial_state is None else {"initial_state": initial_state[index]}
            x, new_state[child_name] = apply_child(
                child_name, layer, params[child_name], state[child_name], x, train=train, **options)
            if index < len(layers) - 1 and train and rate > 0:
                x, _ = apply_child(f"dropout_{index}", dropout, {}, {}, x, key=keys[index], train=True)
        return x, new_state

    return make_layer(name, init, apply, options=("initial_state",))


def _single_layer(name: str, label: str, cell_name: str, hidden: int, settings: dict) -> Layer:
    """Builds one SimpleRNN, LSTM or GRU layer, which differ only in their cell and bias layout.

    ``settings`` are the constructor's keyword arguments; ``label`` is the constructor's name, for
    error messages.
    """
    hidden = check_positive_int(hidden, "hidden", label)
    return_sequences = check_bool(settings["return_sequences"], "return_sequences", label)
    reverse = check_bool(settings["reverse"], "reverse", label)
    unroll = check_positive_int(settings["unroll"], "unroll", label)
    wi_init, wh_init, b_init = settings["wi_init"], settings["wh_init"], settings["b_init"]
    check_initializer(wi_init, "wi_init", label)
    check_initializer(wh_init, "wh_init", label)
    check_initializer(b_init, "b_init", label)
    param_dtype = check_param_dtype(settings["param_dtype"], label)
    forget_bias = settings.get("forget_bias", 0.0)
    cell = CELLS[cell_name]
    gates = cell.gates
    width = gates * hidden
    is_gru, is_lstm = cell_name == "gru", cell_name == "lstm"
    bias_names = ("bi", "bh") if is_gru else ("b",)

    def init(key, input_shape):
        shape = as_shape(input_shape)
        check_min_ndim(shape, 2, "(time, features)")
        wi_key, wh_key, b_key = jax.random.split(key, 3)
        # One orthogonal (H, H) block per gate, as Flax does: an orthogonal (H, G*H) matrix would
        # only make each row a unit vector, leaving every gate's own map non-orthogonal.
        wh = jnp.concatenate(
            [wh_init(gate_key, (hidden, hidden), param_dtype) for gate_key in jax.random.split(wh_key, gates)],
            axis=1,
        )
        params = {"wi": wi_init(wi_key, (shape[-1], width), param_dtype), "wh": wh}
        for bias_name, bias_key in zip(bias_names, jax.random.split(b_key, len(bias_names))):
            params[bias_name] = b_init(bias_key, (width,), param_dtype)
        if is_lstm and forget_bias:
            params["b"] = params["b"].at[hidden:2 * hidden].add(jnp.asarray(forget_bias, param_dtype))
        output_shape = shape[:-1] + (hidden,) if return_sequences else shape[:-2] + (hidden,)
        return output_shape, params, {}

    def apply(params, state, x, *, key=None, train=False, initial_state=None):
        del key, train
        wi, wh, *biases = check_entries(params, ("wi", "wh") + bias_names)
        wi = check_entry(wi, "params['wi']", ("in", width))
        wh = check_entry(wh, "params['wh']", (hidden, width))
        biases = [check_entry(b, f"params['{n}']", (width,)) for b, n in zip(biases, bias_names)]
        x = _check_input(x, wi.shape[0])
        batch_shape, (time, features) = x.shape[:-2], x.shape[-2:]
        dtype = compute_dtype(x.dtype, wi.dtype, wh.dtype, *[b.dtype for b in biases])
        carry0 = _initial_carry(initial_state, batch_shape, dtype)
        # math.prod, not int(np.prod(...)): under jax.export the batch size may be a symbol.
        batch = math.prod(batch_shape)
        # Time-major, batch flattened: scan walks the leading axis.
        x_time_major = jnp.swapaxes(x.reshape(batch, time, features), 0, 1).astype(dtype)
        # Biases as (1, G*H) rows, to broadcast against (N, G*H) without rank promotion.
        biases = tuple(b.astype(dtype)[None, :] for b in biases)
        carry0 = tuple(part.reshape(batch, hidden) for part in carry0)
        y = recurrence(cell, reverse, unroll, return_sequences, x_time_major,
                        wi.astype(dtype), wh.astype(dtype), biases, carry0)
        if return_sequences:
            return jnp.swapaxes(y, 0, 1).reshape(batch_shape + (time, hidden)), state
        return y.reshape(batch_shape + (hidden,)), state

    def _initial_carry(initial_state, batch_shape, dtype):
        expected = tuple(batch_shape) + (hidden,)
        if initial_state is None:
            zeros = jnp.zeros(expected, dtype)
            return (zeros, zeros) if is_lstm else (zeros,)
        if is_lstm:
            if not isinstance(initial_state, (tuple, list)) or len(initial_state) != 2:
                raise LayerTypeError(
                    f"initial_state of an LSTM must be a tuple (h, c), got {type(initial_state).__name__}"
                )
            parts = [_check_state_array(part, expected, f"initial_state[{i}] ({'hc'[i]})")
                     for i, part in enumerate(initial_state)]
        else:
            parts = [_check_state_array(initial_state, expected, "initial_state")]
        return tuple(part.astype(dtype) for part in parts)

    return make_layer(name, init, apply, options=("initial_state",))


@positional_limit(recurrent_hint("SimpleRNN", "RNN"))
def SimpleRNN(
    hidden: int,
    *,
    num_layers: int = 1,
    dropout: float = 0.0,
    nonlinearity: str = "tanh",
    return_sequences: bool = False,
    reverse: bool = False,
    unroll: int = 1,
    wi_init=initializers.glorot_uniform(),
    wh_init=initializers.orthogonal(),
    b_init=initializers.zeros(),
    param_dtype=jnp.float32,
) -> Layer:
    """An Elman recurrent layer, PyTorch's ``nn.RNN``: for each time step ``t``::

        h_t = act(x_t @ wi + b + h_{t-1} @ wh),      act = tanh (or relu), h_{-1} = 0

    Params ``wi (in, H)``, ``wh (H, H)``, ``b (H,)``. Input ``(*batch, time, in)`` with any number
    of leading batch axes (zero included); output the last state ``(*batch, H)`` or, with
    ``return_sequences=True``, every state ``(*batch, time, H)``.

    ``apply(params, state, x, *, key=None, train=False, initial_state=None)``: ``initial_state`` is
    ``h_{-1}``, of shape ``(*batch, H)``; zeros by default.

    With ``reverse=True`` the sequence is processed from the last step to the first: ``h_t`` depends
    on ``x_t, ..., x_{T-1}``; the last state returned is then ``h_0``, and the sequence output
    stays aligned with the input (its position ``t`` holds ``h_t``).

    Porting from PyTorch: ``wi = weight_ih_l0.T``, ``wh = weight_hh_l0.T``,
    ``b = bias_ih_l0 + bias_hh_l0``.

    Stacked layers, as PyTorch's ``num_layers``: with ``num_layers=N > 1``, layer ``k`` reads the
    sequence of hidden states of layer ``k - 1`` (layer 0 reads ``x``), and only the last layer's
    output is returned (its last state, or every state with ``return_sequences=True``)::

        h^0 = layer_0(x)        h^k = layer_k(dropout(h^{k-1}))        y = h^{N-1}

    where ``dropout`` acts only with ``train=True`` (then ``apply`` needs ``key``, split in
    ``N - 1`` keys, one per dropout), between layers and not after the last, as in PyTorch.
    Params are then ``{"layer_0": {...}, ..., "layer_{N-1}": {...}}``, each the params of one
    layer; PyTorch's ``*_l{k}`` weights port to ``layer_{k}`` as above. ``initial_state`` is then
    a sequence of ``N`` per-layer initial states (PyTorch's ``h_0[k]``), each as for one layer.
    ``reverse=True`` runs every layer backward in time. PyTorch's ``bidirectional=True`` with
    ``num_layers > 1`` feeds each layer both directions of the one before, which is a
    ``Sequential`` of :func:`Bidirectional` layers with ``return_sequences=True`` here (each
    direction's own ``num_layers=N`` would stack the directions apart).

    Args:
      hidden: size ``H`` of the hidden state.
      num_layers: number of stacked layers, ``N``.
      dropout: probability of dropping each element of the sequence between stacked layers in
        training, in ``[0, 1)``; only with ``num_layers > 1``.
      nonlinearity: ``"tanh"`` or ``"relu"``.
      return_sequences: return every hidden state instead of the last.
      reverse: run from the last time step to the first.
      unroll: time steps per iteration of the compiled loop (``lax.scan``'s ``unroll``); it changes
        speed, not the formulas. On the CPU 1 was fastest (LSTM and GRU, H=128, T=40, batch 64).
      wi_init, b_init: initializers ``(key, shape, dtype) -> array``; ``wi`` defaults to Glorot
        uniform over ``(in, H)``, as Keras.
      wh_init: initializer of ``wh``, orthogonal by default.
      param_dtype: dtype of the parameters. The recurrence runs in the promoted dtype of the input
        and the parameters.
    """
    if nonlinearity not in ("tanh", "relu"):
        raise LayerValueError(f"SimpleRNN: `nonlinearity` must be 'tanh' or 'relu', got {nonlinearity!r}")
    settings = {"num_layers": num_layers, "dropout": dropout,
                "return_sequences": return_sequences, "reverse": reverse, "unroll": unroll,
                "wi_init": wi_init, "wh_init": wh_init, "b_init": b_init, "param_dtype": param_dtype}
    return _recurrent_layer("simple_rnn", "SimpleRNN", nonlinearity, hidden, settings)


@positional_limit(recurrent_hint("LSTM", "LSTM"))
def LSTM(
    hidden: int,
    *,
    num_layers: int = 1,
    dropout: float = 0.0,
    return_sequences: bool = False,
    reverse: bool = False,
    unroll: int = 1,
    forget_bias: float = 0.0,
    wi_init=initializers.glorot_uniform(),
    wh_init=initializers.orthogonal(),
    b_init=initializers.zeros(),
    param_dtype=jnp.float32,
) -> Layer:
    """A long short-term memory layer, PyTorch's ``nn.LSTM``: for each time step ``t``::

        [a_i, a_f, a_g, a_o] = x_t @ wi + h_{t-1} @ wh + b      (split in four blocks of H)
        i = sigmoid(a_i)    f = sigmoid(a_f)    g = tanh(a_g)    o = sigmoid(a_o)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)                                       h_{-1} = c_{-1} = 0

    Params ``wi (in, 4H)``, ``wh (H, 4H)``, ``b (4H,)``, gates in PyTorch's order i, f, g, o.
    Input ``(*batch, time, in)`` with any number of leading batch axes (zero included); output the
    last hidden state ``h`` ``(*batch, H)`` or, with ``return_sequences=True``, every ``h_t``
    ``(*batch, time, H)``.

    ``apply(params, state, x, *, key=None, train=False, initial_state=None)``: ``initial_state`` is
    the tuple ``(h_{-1}, c_{-1})``, each ``(*batch, H)``; zeros by default. With ``reverse=True`` the
    sequence runs from the last step to the first, as in :func:`SimpleRNN`.

    Porting from PyTorch: ``wi = weight_ih_l0.T``, ``wh = weight_hh_l0.T``,
    ``b = bias_ih_l0 + bias_hh_l0`` (the two biases only ever appear summed).

    Stacked layers (``num_layers=N > 1``, with ``dropout`` between them) as in :func:`SimpleRNN`:
    params ``{"layer_0": ..., ..., "layer_{N-1}": ...}``, PyTorch's ``*_l{k}`` weights ported to
    ``layer_{k}``; ``initial_state`` a sequence of ``N`` tuples ``(h, c)`` (PyTorch's
    ``(h_0[k], c_0[k])``).

    Args:
      hidden: size ``H`` of the hidden and cell states.
      num_layers, dropout: stacked layers and the dropout between them, as in :func:`SimpleRNN`.
      return_sequences, reverse, unroll: as in :func:`SimpleRNN`.
      forget_bias: added to the forget-gate block of ``b`` at initialization (Jozefowicz et al. use
        1.0); the formula is unchanged, so trained weights still port to PyTorch.
      wi_init, b_init: initializers; ``wi`` defaults to Glorot uniform over ``(in, 4H)``, as Keras.
      wh_init: initializer called once per gate with shape ``(H, H)``; orthogonal by default.
      param_dtype: dtype of the parameters.
    """
    forget_bias = check_real(forget_bias, "forget_bias", "LSTM")
    settings = {"num_layers": num_layers, "dropout": dropout,
                "return_sequences": return_sequences, "reverse": reverse, "unroll": unroll,
                "forget_bias": forget_bias, "wi_init": wi_init, "wh_init": wh_init, "b_init": b_init,
                "param_dtype": param_dtype}
    return _recurrent_layer("lstm", "LSTM", "lstm", hidden, settings)


@positional_limit(recurrent_hint("GRU", "GRU"))
def GRU(
    hidden: int,
    *,
    num_layers: int = 1,
    dropout: float = 0.0,
    return_sequences: bool = False,
    reverse: bool = False,
    unroll: int = 1,
    wi_init=initializers.glorot_uniform(),
    wh_init=initializers.orthogonal(),
    b_init=initializers.zeros(),
    param_dtype=jnp.float32,
) -> Layer:
    """A gated recurrent unit layer, PyTorch's ``nn.GRU``: for each time step ``t``::

        [i_r, i_z, i_n] = x_t @ wi + bi          [h_r, h_z, h_n] = h_{t-1} @ wh + bh
        r = sigmoid(i_r + h_r)      z = sigmoid(i_z + h_z)
        n = tanh(i_n + r * h_n)
        h_t = (1 - z) * n + z * h_{t-1}                            h_{-1} = 0

    Params ``wi (in, 3H)``, ``wh (H, 3H)``, ``bi (3H,)``, ``bh (3H,)``, gates in PyTorch's order
    r, z, n. The two biases are kept apart because ``bh``'s n block is multiplied by ``r``. Input,
    output, ``initial_state`` (``h_{-1}``, ``(*batch, H)``) and ``reverse`` as in :func:`SimpleRNN`.

    Porting from PyTorch: ``wi = weight_ih_l0.T``, ``wh = weight_hh_l0.T``, ``bi = bias_ih_l0``,
    ``bh = bias_hh_l0``.

    Stacked layers (``num_layers=N > 1``, with ``dropout`` between them) as in :func:`SimpleRNN`:
    params ``{"layer_0": ..., ..., "layer_{N-1}": ...}``, PyTorch's ``*_l{k}`` weights ported to
    ``layer_{k}``; ``initial_state`` a sequence of ``N`` arrays ``(*batch, H)``.

    Args:
      hidden: size ``H`` of the hidden state.
      num_layers, dropout: stacked layers and the dropout between them, as in :func:`SimpleRNN`.
      return_sequences, reverse, unroll: as in :func:`SimpleRNN`.
      wi_init, b_init: initializers; ``wi`` defaults to Glorot uniform over ``(in, 3H)``, as Keras;
        ``b_init`` initializes both ``bi`` and ``bh``.
      wh_init: initializer called once per gate with shape ``(H, H)``; orthogonal by default.
      param_dtype: dtype of the parameters.
    """
    settings = {"num_layers": num_layers, "dropout": dropout,
                "return_sequences": return_sequences, "reverse": reverse, "unroll": unroll,
                "wi_init": wi_init, "wh_init": wh_init, "b_init": b_init, "param_dtype": param_dtype}
    return _recurrent_layer("gru", "GRU", "gru", hidden, settings)


@positional_limit()
def Bidirectional(forward: Layer, backward: Layer | None = None) -> Layer:
    """Runs one recurrent layer forward and another backward in time and concatenates their outputs.

    ``backward`` reads the sequence from its last step to its first. Given explicitly, it is a
    layer built to do so, such as ``GRU(64, reverse=True)`` beside ``forward=GRU(64)``; left out,
    it is ``forward``'s kind run on the time-reversed input, its sequence output reversed back,
    which computes the same as a copy of ``forward`` built with ``reverse=True``. Params
    ``{"forward": ..., "backward": ...}``, each the params of that layer, initialized with
    different keys. The output is ``concatenate([forward(x), backward(x)], axis=-1)``:

    - with ``return_sequences=True``, position ``t`` holds ``[h_fwd_t, h_bwd_t]``, where
      ``h_fwd_t`` has read ``x_0 .. x_t`` and ``h_bwd_t`` has read ``x_{T-1} .. x_t``: outputs are
      aligned with input positions, as in PyTorch's ``bidirectional=True`` output;
    - otherwise it is the last state of each direction, ``[h_fwd_{T-1}, h_bwd_0]``, as PyTorch's
      ``h_n`` of the two directions (not ``output[:, -1]``, whose backward half has read only
      the last step).

    ``apply(params, state, x, *, key=None, train=False, initial_state=None)``: ``initial_state``,
    if given, is a dict ``{"forward": s, "backward": s}`` of each direction's initial state.

    Porting from PyTorch: the ``*_l0`` weights go to ``forward`` and the ``*_l0_reverse`` weights
    to ``backward``, each as the wrapped layer's docstring says.

    Example::

        layer = Bidirectional(LSTM(64, return_sequences=True))
        same = Bidirectional(LSTM(64, return_sequences=True), LSTM(64, return_sequences=True, reverse=True))
    """
    for argument, layer in (("forward", forward), ("backward", backward)):
        if not isinstance(layer, Layer) and not (argument == "backward" and layer is None):
            raise LayerTypeError(f"Bidirectional: `{argument}` must be a Layer, got {type(layer).__name__}")
    # Without an explicit backward layer the forward kind reads the sequence reversed.
    flip_backward = backward is None
    children = (("forward", forward), ("backward", forward if flip_backward else backward))

    def init(key, input_shape):
        shape = as_shape(input_shape)
        check_min_ndim(shape, 2, "(time, features)")
        params, state, output_shapes = {}, {}, []
        for (child_name, child), child_key in zip(children, jax.random.split(key, 2)):
            output_shape, params[child_name], state[child_name] = init_child(child_name, child, child_key, shape)
            output_shapes.append(tuple(output_shape))
        if output_shapes[0][:-1] != output_shapes[1][:-1]:
            raise LayerValueError(
                f"the two directions give outputs of shapes {output_shapes[0]} and {output_shapes[1]}, "
                "which cannot be concatenated along the last axis"
            )
        return output_shapes[0][:-1] + (output_shapes[0][-1] + output_shapes[1][-1],), params, state

    def apply(params, state, x, *, key=None, train=False, **options):
        for what, tree in (("params", params), ("state", state)):
            check_entries(tree, ("forward", "backward"), what)
        initial_state = options.pop("initial_state", None)
        if initial_state is not None:
            takes = sorted(name for name, child in children if "initial_state" in child.options)
            given = sorted(initial_state) if isinstance(initial_state, dict) else None
            if given != takes:
                got = given if given is not None else type(initial_state).__name__
                raise LayerValueError(f"initial_state must be a dict with an entry for each direction that "
                                      f"takes one, {takes}, got {got}")
        x = check_array(x)
        if x.ndim < 2:
            raise LayerValueError(f"expected an input of shape (*batch, time, features), got {x.shape}")
        outputs, new_state = [], {}
        for (child_name, child), child_key in zip(children, split_key(key, 2)):
            flip = flip_backward and child_name == "backward"
            child_options = dict(options)
            if initial_state is not None and child_name in initial_state:
                child_options["initial_state"] = initial_state[child_name]
            y, new_state[child_name] = apply_child(
                child_name, child, params[child_name], state[child_name], jnp.flip(x, -2) if flip else x,
                key=child_key, train=train, **child_options,
            )
            # A sequence output (as many axes as the input) is put back in input order.
            outputs.append(jnp.flip(y, -2) if flip and y.ndim == x.ndim else y)
        dtype = compute_dtype(*[y.dtype for y in outputs])
        return jnp.concatenate([y.astype(dtype) for y in outputs], axis=-1), new_state

    return make_layer("bidirectional", init, apply, options=declared_options(child for _, child in children))
