"""The layers ported from PyTorch against PyTorch itself, with the same weights.

For each layer: PyTorch's module gets random weights, they are ported by the transposes and
permutations the layers' docstrings give, and the outputs, the input gradients and the parameter
gradients of a random linear function of the output must agree (the gradients ported by the
same permutations). Skipped when torch is not installed.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.layers import (
    GRU,
    LSTM,
    ConvTranspose1D,
    ConvTranspose2D,
    GroupNorm,
    MultiHeadAttention,
    RMSNorm,
    SimpleRNN,
    Upsample,
)

torch = pytest.importorskip("torch")


def channels_first(array):
    """``(N, *spatial, C)`` -> ``(N, C, *spatial)``, NumPy or torch."""
    order = (0, array.ndim - 1) + tuple(range(1, array.ndim - 1))
    return array.permute(*order) if isinstance(array, torch.Tensor) else np.transpose(array, order)


def channels_last(array):
    """``(N, C, *spatial)`` -> ``(N, *spatial, C)``, NumPy or torch."""
    order = (0,) + tuple(range(2, array.ndim)) + (1,)
    return array.permute(*order) if isinstance(array, torch.Tensor) else np.transpose(array, order)


def identity(array):
    return array


def randomize(module, seed=0):
    """Gives every parameter of ``module`` random values (PyTorch's defaults have ones and zeros)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return module


def assert_parity(layer, port, module, inputs, *, to_torch=identity, from_torch=identity, forward=None,
                  options=None, rtol=1e-4, atol=1e-5):
    """Output, input gradients and parameter gradients of ``layer`` equal ``module``'s.

    ``inputs`` are NumPy arrays in jaxnn's layout: the first is ``x``, the rest are passed as
    ``options`` names them (``options`` maps option name -> index in ``inputs``), or after ``x``
    to ``forward(module, *torch_inputs)``. ``to_torch``/``from_torch`` convert layouts;
    ``port(tensors, gradient)`` maps PyTorch's named parameters (or their gradients) to params.
    """
    options = options or {}
    forward = forward or (lambda module, x: module(x))
    named = dict(module.named_parameters())
    params = port({name: p.detach().numpy() for name, p in named.items()}, False)
    _, _, state = layer.init(jax.random.key(0), inputs[0].shape[1:])

    def run(params, *arrays):
        given = {option: arrays[index] for option, index in options.items()}
        return layer.apply(params, state, arrays[0], **given)[0]

    y, pullback = jax.vjp(jax.jit(run), params, *[jnp.asarray(a) for a in inputs])
    cotangent = np.random.default_rng(1).normal(size=y.shape).astype(np.float32)
    param_grads, *input_grads = pullback(jnp.asarray(cotangent))

    torch_inputs = [torch.tensor(to_torch(a), requires_grad=True) for a in inputs]
    expected = from_torch(forward(module, *torch_inputs))
    (expected * torch.from_numpy(cotangent)).sum().backward()
    np.testing.assert_allclose(y, expected.detach().numpy(), rtol=rtol, atol=atol)
    for got, tensor in zip(input_grads, torch_inputs):
        np.testing.assert_allclose(got, from_torch(tensor.grad).numpy(), rtol=rtol, atol=atol)
    expected_grads = port({name: p.grad.numpy() for name, p in named.items()}, True)
    assert jax.tree_util.tree_structure(param_grads) == jax.tree_util.tree_structure(expected_grads)
    for got, want in zip(jax.tree_util.tree_leaves(param_grads), jax.tree_util.tree_leaves(expected_grads)):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def normal(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Normalization.


def test_group_norm_matches_pytorch():
    module = randomize(torch.nn.GroupNorm(3, 6))
    x = normal(2, 5, 4, 6) * 2 + 1

    def port(tensors, gradient):
        return {"scale": tensors["weight"], "bias": tensors["bias"]}

    assert_parity(GroupNorm(3), port, module, [x], to_torch=channels_first, from_torch=channels_last)


@pytest.mark.parametrize("eps", [None, 0.1])
def test_rms_norm_matches_pytorch(eps):
    # eps=None is the machine epsilon of the input's dtype in both.
    module = randomize(torch.nn.RMSNorm(8, eps=eps))
    x = normal(2, 3, 8) * 0.1

    def port(tensors, gradient):
        return {"scale": tensors["weight"]}

    assert_parity(RMSNorm(eps=eps), port, module, [x])


# --------------------------------------------------------------------------------------------
# Transposed convolutions and upsampling.


def port_conv_transpose(tensors, gradient):
    # PyTorch's weight (in, out / groups, *k) -> (*k, in, out / groups).
    weight = tensors["weight"]
    order = tuple(range(2, weight.ndim)) + (0, 1)
    return {"w": np.transpose(weight, order), "b": tensors["bias"]}


@pytest.mark.parametrize("arguments", [
    pytest.param(dict(kernel_size=3, stride=2, padding=1, output_padding=1), marks=pytest.mark.slow),
    dict(kernel_size=(3, 2), stride=(2, 3), padding=(2, 0), output_padding=(0, 2), dilation=(2, 1), groups=2),
])
def test_conv_transpose2d_matches_pytorch(arguments):
    module = randomize(torch.nn.ConvTranspose2d(4, 6, **arguments))
    x = normal(2, 5, 4, 4)
    layer = ConvTranspose2D(6, **arguments)
    assert layer.init(jax.random.key(0), x.shape[1:])[0] == channels_last(
        module(torch.from_numpy(channels_first(x)))).shape[1:]
    assert_parity(layer, port_conv_transpose, module, [x], to_torch=channels_first, from_torch=channels_last)


def test_conv_transpose1d_matches_pytorch():
    arguments = dict(kernel_size=4, stride=3, padding=2, output_padding=1, dilation=2, groups=2)
    module = randomize(torch.nn.ConvTranspose1d(4, 2, **arguments))
    assert_parity(ConvTranspose1D(2, **arguments), port_conv_transpose, module, [normal(3, 6, 4)],
                  to_torch=channels_first, from_torch=channels_last)


@pytest.mark.parametrize("arguments", [
    dict(scale_factor=2, mode="nearest"),
    dict(scale_factor=2, mode="bilinear"),
    dict(size=(7, 3), mode="bilinear"),   # up in one axis, down in the other
    dict(scale_factor=1.5, mode="nearest"),
])
def test_upsample_matches_pytorch(arguments):
    module = torch.nn.Upsample(**arguments)
    assert_parity(Upsample(**arguments), lambda tensors, gradient: {}, module, [normal(2, 4, 5, 3)],
                  to_torch=channels_first, from_torch=channels_last)


def test_upsample_1d_linear_matches_pytorch():
    module = torch.nn.Upsample(size=9, mode="linear")
    assert_parity(Upsample(size=9, mode="linear"), lambda tensors, gradient: {}, module, [normal(2, 4, 3)],
                  to_torch=channels_first, from_torch=channels_last)


# --------------------------------------------------------------------------------------------
# Stacked recurrent layers.


def port_recurrent(kind, num_layers):
    def port(tensors, gradient):
        params = {}
        for k in range(num_layers):
            wi, wh = tensors[f"weight_ih_l{k}"].T, tensors[f"weight_hh_l{k}"].T
            bi, bh = tensors[f"bias_ih_l{k}"], tensors[f"bias_hh_l{k}"]
            if kind == "gru":
                params[f"layer_{k}"] = {"wi": wi, "wh": wh, "bi": bi, "bh": bh}
            else:
                # b = bias_ih + bias_hh, so either bias's gradient is b's.
                params[f"layer_{k}"] = {"wi": wi, "wh": wh, "b": bi if gradient else bi + bh}
        return params

    return port


@pytest.mark.parametrize("kind, return_sequences", [
    ("gru", False),
    pytest.param("lstm", True, marks=pytest.mark.slow),
    pytest.param("rnn", True, marks=pytest.mark.slow),
])
def test_stacked_recurrent_layers_match_pytorch(kind, return_sequences):
    module_class = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind]
    constructor = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}[kind]
    module = randomize(module_class(3, 4, num_layers=2, batch_first=True))
    x, h0, c0 = normal(2, 4, 3), normal(2, 2, 4, seed=2), normal(2, 2, 4, seed=3)
    layer = constructor(4, num_layers=2, dropout=0.3, return_sequences=return_sequences)
    initial = [(h0[k], c0[k]) if kind == "lstm" else h0[k] for k in range(2)]

    def forward(module, x):
        state = (torch.from_numpy(h0), torch.from_numpy(c0)) if kind == "lstm" else torch.from_numpy(h0)
        output, _ = module(x, state)
        return output if return_sequences else output[:, -1]

    class WithInitialState:  # the initial states are constants, not differentiated
        name, options = layer.name, layer.options

        @staticmethod
        def init(key, shape):
            return layer.init(key, shape)

        @staticmethod
        def apply(params, state, x):
            return layer.apply(params, state, x, initial_state=initial)

    assert_parity(WithInitialState, port_recurrent(kind, 2), module, [x], forward=forward)


# --------------------------------------------------------------------------------------------
# Cross-attention.


def test_cross_attention_with_other_context_features_matches_pytorch():
    # kdim = vdim != embed_dim: PyTorch keeps separate q, k, v projection weights.
    module = randomize(torch.nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True))
    x, context = normal(2, 5, 8), normal(2, 7, 6, seed=1)
    padding = np.array([[False] * 7, [False] * 4 + [True] * 3])  # PyTorch: True = padding

    def port(tensors, gradient):
        bq, bk, bv = np.split(tensors["in_proj_bias"], 3)
        return {"q": {"w": tensors["q_proj_weight"].T, "b": bq}, "k": {"w": tensors["k_proj_weight"].T, "b": bk},
                "v": {"w": tensors["v_proj_weight"].T, "b": bv},
                "o": {"w": tensors["out_proj.weight"].T, "b": tensors["out_proj.bias"]}}

    def forward(module, x, context):
        return module(x, context, context, key_padding_mask=torch.from_numpy(padding), need_weights=False)[0]

    class WithMask:
        layer = MultiHeadAttention(2, context_features=6)
        name, options = layer.name, layer.options
        init = layer.init

        @classmethod
        def apply(cls, params, state, x, *, context):
            return cls.layer.apply(params, state, x, context=context, mask=jnp.asarray(~padding))

    assert_parity(WithMask, port, module, [x, context], forward=forward, options={"context": 1})


def test_cross_attention_with_a_mask_per_query_matches_pytorch():
    # kdim = embed_dim: PyTorch packs the three projections in in_proj_weight (3D, D).
    module = randomize(torch.nn.MultiheadAttention(4, 2, batch_first=True))
    x, context = normal(2, 3, 4), normal(2, 6, 4, seed=1)
    blocked = np.random.default_rng(2).random((3, 6)) < 0.4  # PyTorch's attn_mask: True = not allowed
    blocked[:, 0] = False  # every query keeps a key (PyTorch gives NaN otherwise)

    def port(tensors, gradient):
        (wq, wk, wv), (bq, bk, bv) = np.split(tensors["in_proj_weight"], 3), np.split(tensors["in_proj_bias"], 3)
        return {"q": {"w": wq.T, "b": bq}, "k": {"w": wk.T, "b": bk}, "v": {"w": wv.T, "b": bv},
                "o": {"w": tensors["out_proj.weight"].T, "b": tensors["out_proj.bias"]}}

    def forward(module, x, context):
        return module(x, context, context, attn_mask=torch.from_numpy(blocked), need_weights=False)[0]

    class WithMask:
        layer = MultiHeadAttention(2)
        name, options = layer.name, layer.options
        init = layer.init

        @classmethod
        def apply(cls, params, state, x, *, context):
            mask = jnp.broadcast_to(jnp.asarray(~blocked), (2, 3, 6))
            return cls.layer.apply(params, state, x, context=context, mask=mask)

    assert_parity(WithMask, port, module, [x, context], forward=forward, options={"context": 1})
