"""Tests of Conv1D and Conv2D against a NumPy float64 loop written in PyTorch's NCHW layout, XLA's
own convolution, hand-worked values and finite differences; both formulations (CPU and generic)
are checked against these and against each other."""

import functools
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

from jaxnn import init as initializers
from jaxnn.layers import _conv_kernels as kernels
from jaxnn.layers._conv_kernels import conv_cpu, conv_xla
from jaxnn.layers.conv import Conv1D, Conv2D



def conv_cpu_in_blocks(x, w, *args, **kwargs):
    """The CPU formulation with XLA's forward pass and derivatives from blocks of patches, which
    it picks for batches whose patches exceed WHOLE_BATCH_PATCH_BYTES (decided when traced)."""
    saved = kernels.WHOLE_BATCH_PATCH_BYTES
    kernels.WHOLE_BATCH_PATCH_BYTES = -1
    try:
        return conv_cpu(x, w, *args, **kwargs)
    finally:
        kernels.WHOLE_BATCH_PATCH_BYTES = saved


FORMULATIONS = {"cpu": conv_cpu, "cpu_in_blocks": conv_cpu_in_blocks, "xla": conv_xla}


def zeros_from_numpy(key, shape, dtype):
    """A kernel initializer for tests that replace or ignore the values: jax.random would compile
    once per kernel shape."""
    return np.zeros(shape, dtype)


def normal(seed, shape):
    """Standard normal float32 values from NumPy: jax.random would compile once per shape."""
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def torch_layout_reference(x, weight, bias, stride, pads, dilation, groups):
    """PyTorch's ``conv{1,2}d`` as loops in float64: x ``(N, C, *spatial)``, weight ``(O, C/g, *k)``."""
    x, weight = np.asarray(x, np.float64), np.asarray(weight, np.float64)
    ndim = x.ndim - 2
    channels, features = x.shape[1], weight.shape[0]
    kernel = weight.shape[2:]
    padded = np.pad(x, [(0, 0), (0, 0)] + [tuple(pair) for pair in pads])
    out = [(padded.shape[2 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(ndim)]
    y = np.zeros((x.shape[0], features, *out))
    group_in, group_out = channels // groups, features // groups
    for o in range(features):
        group = o // group_out
        for position in np.ndindex(*out):
            for offset in np.ndindex(*kernel):
                source = tuple(position[i] * stride[i] + offset[i] * dilation[i] for i in range(ndim))
                window = padded[(slice(None), slice(group * group_in, (group + 1) * group_in)) + source]
                y[(slice(None), o) + position] += window @ weight[(o, slice(None)) + offset]
        y[:, o] += 0.0 if bias is None else bias[o]
    return y


def same_pads(sizes, kernel, stride, dilation):
    """XLA's SAME padding, worked out from its definition: ceil(n / s) outputs, extra at the end."""
    pads = []
    for n, k, s, d in zip(sizes, kernel, stride, dilation):
        total = max((math.ceil(n / s) - 1) * s + (d * (k - 1) + 1) - n, 0)
        pads.append((total // 2, total - total // 2))
    return pads


def expected_size(n, k, s, d, padding):
    if padding == "SAME":
        return math.ceil(n / s)
    low, high = (0, 0) if padding == "VALID" else padding
    return (n + low + high - d * (k - 1) - 1) // s + 1


def port_from_torch(weight):
    """``w = weight.permute(2, 3, 1, 0)`` (2D) or ``permute(2, 1, 0)`` (1D), as the docstring says."""
    ndim = weight.ndim - 2
    return jnp.asarray(np.transpose(weight, tuple(range(2, 2 + ndim)) + (1, 0)))


def to_channels_last(x):
    return np.moveaxis(np.asarray(x), 1, -1)


class Spec(NamedTuple):
    ndim: int
    spatial: tuple
    channels: int
    features: int
    kernel: tuple
    stride: tuple
    padding: object  # "VALID", "SAME" or (low, high) pairs
    dilation: tuple
    groups: int

    @property
    def pads(self):
        if self.padding == "SAME":
            return tuple(same_pads(self.spatial, self.kernel, self.stride, self.dilation))
        return ((0, 0),) * self.ndim if self.padding == "VALID" else tuple(self.padding)

    def problem(self, batch=2, seed=0):
        """Random input ``(N, C, *spatial)``, weight ``(O, C/g, *k)`` and bias, in PyTorch's layout."""
        rng = np.random.default_rng(seed)
        x_torch = rng.normal(size=(batch, self.channels) + self.spatial).astype(np.float32)
        weight_shape = (self.features, self.channels // self.groups) + self.kernel
        weight = rng.normal(size=weight_shape).astype(np.float32)
        return x_torch, weight, rng.normal(size=self.features).astype(np.float32)

    def arguments(self):
        return self.stride, self.pads, self.dilation, self.groups


SPECS = [
    Spec(2, (7, 6), 3, 4, (3, 3), (1, 1), "VALID", (1, 1), 1),
    Spec(2, (7, 6), 4, 6, (3, 2), (2, 1), "SAME", (1, 1), 2),
    Spec(2, (8, 9), 4, 4, (3, 3), (2, 3), ((1, 2), (0, 1)), (2, 1), 4),
    Spec(2, (6, 6), 2, 3, (2, 2), (1, 1), ((2, 2), (2, 2)), (1, 1), 1),
    Spec(2, (9, 5), 6, 4, (1, 3), (3, 1), "SAME", (1, 2), 2),
    Spec(2, (5, 5), 1, 3, (5, 5), (1, 1), "VALID", (1, 1), 1),
    Spec(1, (11,), 3, 5, (3,), (1,), "VALID", (1,), 1),
    Spec(1, (11,), 4, 4, (4,), (2,), "SAME", (2,), 2),
    Spec(1, (10,), 2, 2, (3,), (3,), ((1, 3),), (1,), 2),
]


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_layer_matches_the_torch_layout_loop_with_ported_weights(spec):
    x_torch, weight, bias = spec.problem()
    expected = to_channels_last(torch_layout_reference(x_torch, weight, bias, *spec.arguments()))
    constructor = (Conv1D, Conv2D)[spec.ndim - 1]
    layer = constructor(spec.features, spec.kernel, stride=spec.stride, padding=spec.padding,
                        dilation=spec.dilation, groups=spec.groups, w_init=zeros_from_numpy)
    output_shape, params, state = layer.init(jax.random.key(0), spec.spatial + (spec.channels,))
    params = {"w": port_from_torch(weight), "b": jnp.asarray(bias)}
    assert params["w"].shape == spec.kernel + (spec.channels // spec.groups, spec.features)
    y = jax.jit(lambda p, x: layer.apply(p, state, x)[0])(params, jnp.asarray(to_channels_last(x_torch)))
    assert y.shape[1:] == tuple(output_shape) == expected.shape[1:]
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", FORMULATIONS)
def test_formulations_match_the_loop_and_xla_string_padding(name):
    conv = FORMULATIONS[name]
    for spec in SPECS:
        x_torch, weight, _ = spec.problem(batch=3, seed=1)
        x, w = jnp.asarray(to_channels_last(x_torch)), port_from_torch(weight)
        y = jax.jit(functools.partial(conv, strides=spec.stride, pads=spec.pads, dilations=spec.dilation,
                                      groups=spec.groups))(x, w)
        expected = torch_layout_reference(x_torch, weight, None, *spec.arguments())
        np.testing.assert_allclose(y, to_channels_last(expected), rtol=1e-4, atol=1e-4, err_msg=str(spec))
        if isinstance(spec.padding, str):
            # XLA's own reading of the padding string, in PyTorch's layout: a second oracle.
            names = "DHW"[3 - spec.ndim:]
            xla = lax.conv_general_dilated(
                jnp.asarray(x_torch), jnp.asarray(weight), spec.stride, spec.padding,
                rhs_dilation=spec.dilation, dimension_numbers=(f"NC{names}", f"OI{names}", f"NC{names}"),
                feature_group_count=spec.groups, precision=lax.Precision.HIGHEST)
            np.testing.assert_allclose(y, to_channels_last(xla), rtol=1e-4, atol=1e-4, err_msg=str(spec))


def _value_gradients_and_tangent(conv, spec, x, w, out_weights):
    def loss(x, w):
        return jnp.sum(conv(x, w, *spec.arguments()) * out_weights)

    value, grads = jax.value_and_grad(loss, argnums=(0, 1))(x, w)
    _, tangent = jax.jvp(loss, (x, w), (jnp.cos(x), jnp.sin(w)))
    return value, grads, tangent


def test_the_two_formulations_agree_in_value_and_both_derivatives():
    for spec in SPECS:
        x_torch, weight, _ = spec.problem(batch=3, seed=2)
        x, w = jnp.asarray(to_channels_last(x_torch)), port_from_torch(weight)
        out_weights = normal(3, conv_xla(x, w, *spec.arguments()).shape)
        results = [jax.jit(functools.partial(_value_gradients_and_tangent, conv, spec))(x, w, out_weights)
                   for conv in (conv_cpu, conv_cpu_in_blocks, conv_xla)]
        for ours in results[:2]:
            for a, b in zip(*map(jax.tree_util.tree_leaves, (ours, results[2]))):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3, err_msg=str(spec))


@pytest.mark.parametrize("name", FORMULATIONS)
def test_gradients_against_finite_differences_in_float64(name):
    conv = FORMULATIONS[name]
    with jax.enable_x64(True):
        # Second order for the CPU formulations: the one in blocks differentiates its own
        # derivative rule; the generic one is differentiated by JAX's own rules.
        for spec, order in [(SPECS[2], 2 if name.startswith("cpu") else 1), (SPECS[7], 1)]:
            x_torch, weight, _ = spec.problem(batch=2, seed=4)
            x = jnp.asarray(to_channels_last(x_torch), jnp.float64)
            w = jnp.asarray(port_from_torch(weight), jnp.float64)
            # jit: the finite differences call the function many times, each call then compiled once.
            check_grads(jax.jit(functools.partial(conv, strides=spec.stride, pads=spec.pads,
                                                  dilations=spec.dilation, groups=spec.groups)),
                        (x, w), order=order, modes=["fwd", "rev"], atol=1e-5, rtol=1e-5)


def test_blocks_of_examples_with_a_remainder_and_an_empty_batch(monkeypatch):
    # Small blocks, so that 5 examples make two full blocks of 2 and a remainder of 1.
    example_bytes = 6 * 7 * 9 * 3 * 4
    monkeypatch.setattr(kernels, "WHOLE_BATCH_PATCH_BYTES", -1)
    monkeypatch.setattr(kernels, "BLOCK_BYTES", 2 * example_bytes)
    x = normal(0, (5, 6, 7, 3))
    w = normal(1, (3, 3, 3, 4))
    args = ((1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    dy = normal(2, (5, 6, 7, 4))
    def gradients(conv, x, w, dy):
        return jax.vjp(lambda x, w: conv(x, w, *args), x, w)[1](dy)

    grads = [jax.jit(functools.partial(gradients, conv))(x, w, dy) for conv in (conv_cpu, conv_xla)]
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    empty = jnp.zeros((0, 6, 7, 3))
    assert conv_cpu(empty, w, *args).shape == (0, 6, 7, 4)
    grad_w = jax.grad(lambda w: conv_cpu(empty, w, *args).sum())(w)
    np.testing.assert_array_equal(grad_w, np.zeros(w.shape))


def test_the_cpu_formulation_takes_one_product_of_the_whole_batch_up_to_its_size_limit(monkeypatch):
    def primitives(x, w):
        jaxpr = jax.make_jaxpr(lambda x, w: conv_cpu(x, w, (1, 1), ((0, 0), (0, 0)), (1, 1), 1))(x, w)
        return {str(equation.primitive) for equation in jaxpr.jaxpr.eqns}

    x, w = jnp.zeros((4, 8, 8, 3)), jnp.zeros((3, 3, 3, 5))
    whole = primitives(x, w)
    assert "dot_general" in whole and "conv_general_dilated" not in whole
    # 4 examples of 6 x 6 outputs of 3 x 3 x 3 patches, float32: 15,552 bytes. One byte less,
    # and XLA's forward pass (inside the custom derivative rule's call) takes over.
    monkeypatch.setattr(kernels, "WHOLE_BATCH_PATCH_BYTES", 4 * 6 * 6 * 27 * 4 - 1)
    assert "dot_general" not in primitives(x, w)
    assert "conv_general_dilated" in str(jax.make_jaxpr(
        lambda x, w: conv_cpu(x, w, (1, 1), ((0, 0), (0, 0)), (1, 1), 1))(x, w))


def test_symbolic_spatial_sizes_take_xla_forward_pass():
    from jax import export

    h = export.symbolic_shape("3, h, 8, 4")
    exported = export.export(jax.jit(lambda x, w: conv_cpu(x, w, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)))(
        jax.ShapeDtypeStruct(h, jnp.float32), jax.ShapeDtypeStruct((3, 3, 4, 6), jnp.float32))
    x, w = normal(5, (3, 7, 8, 4)), normal(6, (3, 3, 4, 6))
    np.testing.assert_allclose(exported.call(x, w), conv_xla(x, w, (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
                               rtol=1e-5, atol=1e-5)


def test_output_shapes_over_a_grid_of_arguments():
    # Traced only (eval_shape), so that the grid costs no compilation.
    sizes = (7, 8)
    for ndim in (1, 2):
        constructor = (Conv1D, Conv2D)[ndim - 1]
        grid = itertools.product((1, 2, 3), (1, 2, 3), ("VALID", "SAME", 0, 2, (1, 3)), (1, 2), (1, 2))
        # Zero, one and two batch axes in turn.
        batch_shapes = ((), (3,), (2, 3))
        for count, (kernel, stride, padding, dilation, groups) in enumerate(grid):
            layer = constructor(4, kernel, stride=stride,
                                padding=((padding,) * ndim if isinstance(padding, tuple) else padding),
                                dilation=dilation, groups=groups, w_init=zeros_from_numpy)
            input_shape = sizes[:ndim] + (4,)
            output_shape, params, state = layer.init(jax.random.key(0), input_shape)
            pair = (padding, padding) if isinstance(padding, int) else padding
            expected = tuple(expected_size(n, kernel, stride, dilation, pair) for n in sizes[:ndim])
            assert tuple(output_shape) == expected + (4,), (ndim, kernel, stride, padding, dilation, groups)
            assert params["w"].shape == (kernel,) * ndim + (4 // groups, 4)
            batch_shape = batch_shapes[count % len(batch_shapes)]
            y, _ = jax.eval_shape(layer.apply, params, state,
                                  jax.ShapeDtypeStruct(batch_shape + input_shape, jnp.float32))
            assert y.shape == batch_shape + tuple(output_shape)


def test_values_by_hand_with_ones_initializers():
    layer = Conv2D(2, 2, w_init=initializers.ones(), b_init=initializers.constant(0.5))
    _, params, state = layer.init(jax.random.key(0), (3, 3, 1))
    x = jnp.arange(9.0).reshape(3, 3, 1)  # [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    y, _ = layer.apply(params, state, x)
    # Each output is the sum of a 2x2 window plus 0.5, the same in both output channels.
    np.testing.assert_allclose(y[..., 0], [[8.5, 12.5], [20.5, 24.5]])
    np.testing.assert_allclose(y[..., 1], y[..., 0])

    layer = Conv1D(1, 2, stride=2, padding=1, dilation=2, w_init=initializers.ones(), use_bias=False)
    _, params, state = layer.init(jax.random.key(0), (5, 2))
    x = jnp.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [5.0, 50.0]])
    y, _ = layer.apply(params, state, x)
    # Padded: [0, 1, 2, 3, 4, 5, 0] (channel 0); taps 2 apart, windows 2 apart: (0, 2), (2, 4),
    # (4, 0) in channel 0 plus ten times that in channel 1.
    np.testing.assert_allclose(y[:, 0], [11 * 2.0, 11 * 6.0, 11 * 4.0])


def test_groups_keep_channel_groups_apart():
    # Two groups with ones kernels: output channel 0 sums input channels 0-1, channel 1 sums 2-3.
    layer = Conv2D(2, 1, groups=2, w_init=initializers.ones(), use_bias=False)
    _, params, state = layer.init(jax.random.key(0), (1, 1, 4))
    assert params["w"].shape == (1, 1, 2, 2)
    y, _ = layer.apply(params, state, jnp.array([[[1.0, 2.0, 30.0, 40.0]]]))
    np.testing.assert_allclose(y, [[[3.0, 70.0]]])


def test_batch_axes_and_vmap_agree_with_single_examples():
    layer = Conv2D(5, 3, stride=2, padding="SAME", groups=1)
    _, params, state = layer.init(jax.random.key(0), (9, 8, 3))
    x = normal(1, (2, 3, 9, 8, 3))

    def output(params, x):
        return layer.apply(params, state, x)[0]

    batched = jax.jit(output)(params, x)
    assert batched.shape == (2, 3, 5, 4, 5)
    one = jax.jit(output)  # compiled once for the single-example shape
    single = np.stack([np.stack([one(params, x[i, j]) for j in range(3)]) for i in range(2)])
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5)
    vmapped = jax.jit(jax.vmap(jax.vmap(output, in_axes=(None, 0)), in_axes=(None, 0)))(params, x)
    np.testing.assert_allclose(vmapped, batched, rtol=1e-5, atol=1e-5)
    # Per-example kernel gradients add up to the batch gradient.
    def total(params, x):
        return output(params, x).sum()

    per_example = jax.jit(jax.vmap(jax.grad(total), in_axes=(None, 0)))(params, x[0])
    batch = jax.jit(jax.grad(total))(params, x[0])
    np.testing.assert_allclose(per_example["w"].sum(0), batch["w"], rtol=1e-4, atol=1e-4)


def test_layer_uses_the_generic_formulation_off_cpu(monkeypatch):
    # Forcing the accelerator path on CPU checks that the layer wires it up the same way.
    layer = Conv1D(4, 3, padding="SAME", dilation=2)
    _, params, state = layer.init(jax.random.key(0), (9, 2))
    x = normal(1, (3, 9, 2))
    on_cpu, _ = layer.apply(params, state, x)
    monkeypatch.setattr(kernels, "use_cpu_formulation", lambda: False)
    generic, _ = layer.apply(params, state, x)
    np.testing.assert_allclose(on_cpu, generic, rtol=1e-5, atol=1e-5)


def test_default_kernel_init_is_he_normal_with_the_grouped_fan_in():
    layer = Conv2D(256, 3, groups=2)
    _, params, _ = layer.init(jax.random.key(0), (8, 8, 64))
    values = np.asarray(params["w"])
    assert values.shape == (3, 3, 32, 256)
    fan_in = 3 * 3 * 64 // 2  # PyTorch's: prod(kernel) * in_channels / groups
    assert abs(values.std() / math.sqrt(2 / fan_in) - 1) < 0.02
    assert abs(values.mean()) < 5 * math.sqrt(2 / fan_in / values.size)
    np.testing.assert_array_equal(params["b"], np.zeros(256))


def test_mixed_precision_promotes_and_float64_numpy_inputs_are_canonicalized():
    layer = Conv1D(2, 3)
    _, params, state = layer.init(jax.random.key(0), (5, 3))
    y, _ = layer.apply(params, state, jnp.ones((2, 5, 3), jnp.bfloat16))
    assert y.dtype == jnp.float32
    y, _ = layer.apply(params, state, np.ones((2, 5, 3)))
    assert y.dtype == jax.dtypes.canonicalize_dtype(np.float64)
    _, params16, _ = Conv1D(2, 3, param_dtype=jnp.bfloat16).init(jax.random.key(0), (5, 3))
    y, _ = layer.apply(params16, state, jnp.ones((2, 5, 3), jnp.bfloat16))
    assert y.dtype == jnp.bfloat16


def test_bad_inputs_are_named():
    layer = Conv2D(4, 3, groups=2)
    _, params, state = layer.init(jax.random.key(0), (5, 5, 6))
    with pytest.raises(ValueError, match=r"^conv2d: input channels \(=5\) must be divisible by `groups` \(=2\)"):
        layer.init(jax.random.key(0), (5, 5, 5))
    with pytest.raises(ValueError, match=r"^conv2d: expected a per-example input_shape \(H, W, C\) with 2 spatial "
                                         r"axes and channels last, got \(5, 6\)"):
        layer.init(jax.random.key(0), (5, 6))
    with pytest.raises(ValueError, match=r"^conv2d: spatial axis 1 of the input has size 2, but the kernel is 3"):
        layer.init(jax.random.key(0), (5, 2, 6))
    with pytest.raises(ValueError, match=r"spatial axis 0 of the input has size 4 \(padded to 6\), but the "
                                         r"dilated kernel spans 7"):
        Conv2D(4, 3, padding=1, dilation=3).init(jax.random.key(0), (4, 9, 2))
    with pytest.raises(ValueError, match=r"^conv2d: expected 6 input channels \(params\['w'\] has 3 per group, "
                                         r"groups=2\) in the last axis of an input \(\*batch, H, W, C\), got shape "
                                         r"\(2, 5, 5, 4\)"):
        layer.apply(params, state, jnp.ones((2, 5, 5, 4)))
    with pytest.raises(ValueError, match=r"^conv2d: expected an input of shape \(\*batch, H, W, C\), got \(5, 6\)"):
        layer.apply(params, state, jnp.ones((5, 6)))
    with pytest.raises(ValueError, match=r"^conv2d: spatial axis 0 of the input has size 2, but the kernel is 3; "
                                         r"the input spatial shape is \(2, 5\)"):
        layer.apply(params, state, jnp.ones((2, 5, 6)))
    with pytest.raises(TypeError, match="^conv2d: expected a floating-point input, got dtype int32"):
        layer.apply(params, state, jnp.ones((5, 5, 6), jnp.int32))
    with pytest.raises(ValueError, match=r"^conv2d: params\['w'\] has shape \(3, 3, 3\), expected "
                                         r"\(3, 3, in / groups, 4\)"):
        layer.apply({"w": jnp.ones((3, 3, 3)), "b": jnp.ones(4)}, state, jnp.ones((5, 5, 6)))
    with pytest.raises(ValueError, match=r"^conv1d: expected a per-example input_shape \(L, C\) with 1 spatial "
                                         r"axis"):
        Conv1D(2, 3).init(jax.random.key(0), (4, 5, 6))
    jitted = jax.jit(lambda x: layer.apply(params, state, x)[0])
    with pytest.raises(ValueError, match=r"conv2d: expected 6 input channels"):
        jitted(jnp.ones((5, 5, 3)))


def test_bad_constructor_arguments():
    for argument in ("kernel_size", "stride", "dilation"):
        for value in (0, -1, (3, 0)):
            with pytest.raises(ValueError, match=rf"^Conv2D: `{argument}` \(=.*\) must be a positive int or a "
                                                 r"tuple of 2 positive ints"):
                Conv2D(4, **{"kernel_size": 3, argument: value})
        for value in (2.0, "3", (3,), (3, 3, 3), None, True):
            with pytest.raises(TypeError, match=rf"^Conv2D: `{argument}` must be a positive int or a tuple of 2 "
                                                rf"positive ints, got"):
                Conv2D(4, **{"kernel_size": 3, argument: value})
    with pytest.raises(ValueError, match=r"^Conv1D: `kernel_size` \(=0\) must be a positive int"):
        Conv1D(4, 0)
    with pytest.raises(ValueError, match=r"^Conv2D: `padding` must be 'VALID', 'SAME', an int, a tuple of 2 ints "
                                         r"or 2 \(low, high\) pairs, got 'FULL'"):
        Conv2D(4, 3, padding="FULL")
    with pytest.raises(ValueError, match=r"^Conv2D: `padding` \(=-1\) must not be negative"):
        Conv2D(4, 3, padding=-1)
    with pytest.raises(TypeError, match=r"^Conv2D: `padding` must be .*, got \(1, 2, 3\)"):
        Conv2D(4, 3, padding=(1, 2, 3))
    with pytest.raises(TypeError, match=r"^Conv1D: `padding` .* got \(1, 2\); \(low, high\) padding of one axis "
                                        r"is written \(\(1, 2\),\)"):
        Conv1D(4, 3, padding=(1, 2))
    with pytest.raises(ValueError, match=r"^Conv2D: `features` \(=6\) must be divisible by `groups` \(=4\)"):
        Conv2D(6, 3, groups=4)
    with pytest.raises(ValueError, match=r"^Conv2D: `groups` \(=0\) must be a positive int"):
        Conv2D(6, 3, groups=0)
    with pytest.raises(ValueError, match=r"^Conv2D: `features` \(=0\) must be a positive int"):
        Conv2D(0, 3)
    with pytest.raises(TypeError, match=r"^Conv2D: `features` must be a positive int, got 2.5"):
        Conv2D(2.5, 3)
    with pytest.raises(TypeError, match=r"^Conv2D: `w_init` must be an initializer .*call it: "
                                        r"w_init=jaxnn.init.he_normal\(\)"):
        Conv2D(4, 3, w_init=initializers.he_normal)
    with pytest.raises(TypeError, match=r"^Conv2D: `use_bias` must be True or False"):
        Conv2D(4, 3, use_bias=1)
    # Strings are read without regard to case, as lax does.
    assert Conv2D(4, 3, padding="same").init(jax.random.key(0), (5, 5, 1))[0] == (5, 5, 4)
