"""Tests of MaxPool, AvgPool and GlobalAvgPool against NumPy float64 loops, hand-worked values and
finite differences, in both formulations (CPU and generic)."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxnn.layers import _conv_kernels as kernels
from jaxnn.layers.pooling import AvgPool1D, AvgPool2D, GlobalAvgPool, MaxPool1D, MaxPool2D

CONSTRUCTORS = {("max", 1): MaxPool1D, ("max", 2): MaxPool2D, ("avg", 1): AvgPool1D, ("avg", 2): AvgPool2D}


def normal(seed, shape):
    """Standard normal float32 values from NumPy: jax.random would compile once per shape."""
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@pytest.fixture(params=["cpu", "xla"])
def formulation(request, monkeypatch):
    """Runs a test with each formulation, whatever the backend."""
    monkeypatch.setattr(kernels, "use_cpu_formulation", lambda: request.param == "cpu")
    return request.param


def resolved_pads(padding, sizes, window, stride):
    if padding == "VALID":
        return [(0, 0)] * len(sizes)
    if padding == "SAME":
        pads = []
        for n, k, s in zip(sizes, window, stride):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return pads
    if isinstance(padding, int):
        return [(padding, padding)] * len(sizes)
    return [tuple(pair) for pair in padding]


def windows_of(x, window, stride, pads, fill):
    """Yields ``(output position, window slices into the padded array, padded array)``."""
    padded = np.pad(x, [(0, 0)] + pads + [(0, 0)], constant_values=fill)
    out = [(padded.shape[1 + i] - window[i]) // stride[i] + 1 for i in range(len(window))]
    for position in np.ndindex(*out):
        yield position, tuple(slice(p * s, p * s + k) for p, s, k in zip(position, stride, window)), padded


def pool_reference(x, kind, window, stride, padding):
    """The documented pooling in float64: max with -inf padding; average dividing by the window
    size, or with ``"SAME"`` by the number of unpadded elements in the window."""
    x = np.asarray(x, np.float64)
    ndim = len(window)
    pads = resolved_pads(padding, x.shape[1:-1], window, stride)
    real = np.pad(np.ones(x.shape), [(0, 0)] + pads + [(0, 0)])
    results = {}
    for position, slices, padded in windows_of(x, window, stride, pads, -np.inf if kind == "max" else 0.0):
        values = padded[(slice(None),) + slices]
        axes = tuple(range(1, 1 + ndim))
        if kind == "max":
            results[position] = values.max(axis=axes)
        else:
            divisor = real[(slice(None),) + slices].sum(axis=axes) if padding == "SAME" else math.prod(window)
            results[position] = values.sum(axis=axes) / divisor
    out = tuple(max(p[i] for p in results) + 1 for i in range(ndim))
    y = np.zeros((x.shape[0],) + out + (x.shape[-1],))
    for position, value in results.items():
        y[(slice(None),) + position] = value
    return y


def max_pool_gradient_reference(x, g, window, stride, padding):
    """Each output's cotangent goes to the first maximum of its window in row-major order."""
    x = np.asarray(x, np.float64)
    pads = resolved_pads(padding, x.shape[1:-1], window, stride)
    padded_sizes = tuple(n + low + high for n, (low, high) in zip(x.shape[1:-1], pads))
    grad = np.zeros((x.shape[0],) + padded_sizes + (x.shape[-1],))
    for position, slices, padded in windows_of(x, window, stride, pads, -np.inf):
        values = padded[(slice(None),) + slices].reshape(x.shape[0], -1, x.shape[-1])
        first = values.argmax(axis=1)  # NumPy's argmax returns the first of tied maxima
        for n, c in np.ndindex(x.shape[0], x.shape[-1]):
            offset = np.unravel_index(first[n, c], window)
            source = tuple(s.start + o for s, o in zip(slices, offset))
            grad[(n,) + source + (c,)] += g[(n,) + position + (c,)]
    crop = tuple(slice(low, low + n) for (low, _), n in zip(pads, x.shape[1:-1]))
    return grad[(slice(None),) + crop]


# (kind, ndim, spatial, window, stride, padding)
CONFIGS = [
    ("max", 2, (8, 6), (2, 2), None, "VALID"),
    ("max", 2, (7, 9), (2, 3), None, "VALID"),
    ("max", 2, (7, 7), (3, 3), (2, 2), "SAME"),
    ("max", 2, (6, 7), (3, 2), (1, 2), ((1, 2), (0, 1))),
    ("max", 2, (5, 5), (2, 2), (2, 2), 1),
    ("max", 1, (11,), (3,), (2,), "VALID"),
    ("max", 1, (9,), (2,), None, "SAME"),
    ("avg", 2, (8, 6), (2, 2), None, "VALID"),
    ("avg", 2, (7, 7), (3, 3), (2, 2), "SAME"),
    ("avg", 2, (7, 5), (2, 2), None, "SAME"),
    ("avg", 2, (6, 7), (3, 2), (1, 2), ((1, 2), (0, 1))),
    ("avg", 1, (10,), (4,), (3,), 2),
    ("avg", 1, (9,), (2,), None, "SAME"),
]


def make_layer(kind, ndim, window, stride, padding):
    return CONSTRUCTORS[(kind, ndim)](window, stride=stride, padding=padding)


def output_of(layer, params, state):
    """``x -> y`` of an initialized layer."""
    return lambda x: layer.apply(params, state, x)[0]


def tied_input(shape, seed=0):
    """Small integers, so that windows often hold several equal maxima."""
    return jnp.asarray(np.random.default_rng(seed).integers(-3, 4, size=shape), jnp.float32)


def test_pools_match_numpy_loops(formulation):
    for kind, ndim, spatial, window, stride, padding in CONFIGS:
        layer = make_layer(kind, ndim, window, stride, padding)
        output_shape, params, state = layer.init(jax.random.key(0), spatial + (3,))
        x = tied_input((2,) + spatial + (3,))
        y = jax.jit(output_of(layer, params, state))(x)
        expected = pool_reference(x, kind, window, stride or window, padding)
        assert y.shape[1:] == tuple(output_shape) == expected.shape[1:]
        np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6,
                                   err_msg=f"{kind} {spatial} {window} {padding}")


def test_max_pool_derivatives_go_to_the_first_maximum(formulation):
    for kind, ndim, spatial, window, stride, padding in CONFIGS:
        if kind != "max":
            continue
        layer = make_layer(kind, ndim, window, stride, padding)
        _, params, state = layer.init(jax.random.key(0), spatial + (3,))
        x = tied_input((2,) + spatial + (3,), seed=1)
        pool = output_of(layer, params, state)
        g = normal(2, pool(x).shape)
        grad = jax.jit(jax.grad(lambda x, g, pool=pool: jnp.sum(pool(x) * g)))(x, g)
        expected = max_pool_gradient_reference(x, np.asarray(g), window, stride or window, padding)
        np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-6,
                                   err_msg=f"{spatial} {window} {padding}")
        if formulation == "cpu":
            # Forward mode picks the same element: <jvp(t), g> = <t, vjp(g)> for any tangent t.
            # (XLA's forward mode of reduce_window can pick another of tied maxima when windows
            # are padded, so the generic formulation is held to reverse mode only.)
            tangent = normal(3, x.shape)
            _, y_dot = jax.jit(lambda x, t, pool=pool: jax.jvp(pool, (x,), (t,)))(x, tangent)
            np.testing.assert_allclose(jnp.sum(y_dot * g), jnp.sum(tangent * expected), rtol=1e-4, atol=1e-4)


def test_tied_maxima_by_hand(formulation):
    layer = MaxPool2D(2)
    _, params, state = layer.init(jax.random.key(0), (2, 4, 1))
    x = jnp.array([[1.0, 1.0, 0.0, 2.0], [1.0, 1.0, 2.0, 2.0]]).reshape(2, 4, 1)
    y, _ = layer.apply(params, state, x)
    np.testing.assert_array_equal(y.ravel(), [1.0, 2.0])
    grad = jax.grad(lambda x: layer.apply(params, state, x)[0].sum())(x)
    # Row-major order inside each window: the top-left 1 and the top-right 2 take the gradient.
    np.testing.assert_array_equal(grad.reshape(2, 4), [[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])


def test_max_pool_gradient_survives_an_input_computed_twice(formulation):
    """A normalization before the pool: compiled without most optimizations (as this file is),
    XLA computes its output once for the pool and again for the derivative, rounding each
    differently, so a derivative that compared elements with the maximum for equality lost the
    gradient of whole windows (found porting a Conv2D, BatchNorm, MaxPool2D stack)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(1, 4, 4, 3)), jnp.float32)
    mean, inverse_std = (jnp.asarray(rng.uniform(0.5, 2.0, (1, 1, 1, 3)), jnp.float32) for _ in range(2))
    scale, bias = (jnp.asarray(rng.normal(size=(1, 1, 1, 3)), jnp.float32) for _ in range(2))
    layer = MaxPool2D(2)
    _, params, state = layer.init(jax.random.key(0), (4, 4, 3))
    g = normal(1, (1, 2, 2, 3))

    def loss(x):
        return jnp.sum(layer.apply(params, state, (x - mean) * inverse_std * scale + bias)[0] * g)

    compiled, eager = jax.jit(jax.grad(loss))(x), jax.grad(loss)(x)
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-5)
    # Each window passes on exactly one element's gradient.
    assert int(jnp.sum(compiled != 0)) == g.size


def test_values_by_hand():
    _, _, state = MaxPool2D(2).init(jax.random.key(0), (4, 4, 1))
    y, _ = MaxPool2D(2).apply({}, state, jnp.arange(16.0).reshape(4, 4, 1))
    np.testing.assert_array_equal(y[..., 0], [[5.0, 7.0], [13.0, 15.0]])
    x = jnp.array([1.0, 2.0, 3.0]).reshape(3, 1)
    # SAME pads [1, 2, 3] to [1, 2, 3, pad] and averages the real elements: 1.5 and 3.
    y, _ = AvgPool1D(2, padding="SAME").apply({}, {}, x)
    np.testing.assert_allclose(y.ravel(), [1.5, 3.0])
    # Explicit padding counts the zeros (count_include_pad): [0, 1], [2, 3] give 0.5 and 2.5.
    y, _ = AvgPool1D(2, padding=1).apply({}, {}, x)
    np.testing.assert_allclose(y.ravel(), [0.5, 2.5])
    # Max pooling's padding never wins, even against negative inputs.
    y, _ = MaxPool1D(2, padding=1).apply({}, {}, -x)
    np.testing.assert_allclose(y.ravel(), [-1.0, -2.0])


def test_gradients_against_finite_differences_in_float64(formulation):
    with jax.enable_x64(True):
        for kind, ndim, spatial, window, stride, padding in [CONFIGS[0], CONFIGS[3], CONFIGS[8], CONFIGS[11]]:
            layer = make_layer(kind, ndim, window, stride, padding)
            _, params, state = layer.init(jax.random.key(0), spatial + (2,))
            # Distinct values, so that max pooling is differentiable at the point checked.
            size = 2 * math.prod(spatial) * 2
            x = jnp.asarray(np.random.default_rng(0).permutation(size).reshape((2,) + spatial + (2,)) / size,
                            jnp.float64)
            check_grads(jax.jit(output_of(layer, params, state)), (x,), order=1, modes=["fwd", "rev"],
                        eps=1e-4, atol=1e-5, rtol=1e-5)


def test_output_shapes_over_a_grid_of_arguments():
    sizes = (7, 8)
    batch_shapes = ((), (3,), (2, 3))
    paddings = ("VALID", "SAME", 0, 1, (0, 1))
    grid = itertools.product(("max", "avg"), (1, 2), (1, 2, 3), (None, 1, 2, 3), paddings)
    for count, (kind, ndim, window, stride, padding) in enumerate(grid):
        if isinstance(padding, str):
            low, high = (0, 0)
        else:
            low, high = (padding, padding) if isinstance(padding, int) else padding
        if max(low, high) >= window:
            continue  # rejected by the constructor, tested below
        per_axis = (padding,) * ndim if isinstance(padding, tuple) else padding
        layer = make_layer(kind, ndim, window, stride, per_axis)
        input_shape = sizes[:ndim] + (4,)
        output_shape, params, state = layer.init(jax.random.key(0), input_shape)
        s = stride or window
        if padding == "SAME":
            expected = tuple(math.ceil(n / s) for n in sizes[:ndim])
        else:
            expected = tuple((n + low + high - window) // s + 1 for n in sizes[:ndim])
        assert tuple(output_shape) == expected + (4,), (kind, ndim, window, stride, padding)
        batch_shape = batch_shapes[count % len(batch_shapes)]
        x = jax.ShapeDtypeStruct(batch_shape + input_shape, jnp.float32)
        y, _ = jax.eval_shape(layer.apply, params, state, x)
        assert y.shape == batch_shape + tuple(output_shape)


def test_batch_axes_and_vmap_agree_with_single_examples(formulation):
    for layer in (MaxPool2D(3, stride=2, padding="SAME"), AvgPool2D(2)):
        _, params, state = layer.init(jax.random.key(0), (5, 6, 3))
        x = normal(1, (2, 3, 5, 6, 3))
        batched, _ = layer.apply(params, state, x)
        one = output_of(layer, params, state)
        single = np.stack([np.stack([one(x[i, j]) for j in range(3)]) for i in range(2)])
        np.testing.assert_allclose(batched, single, rtol=1e-6)
        vmapped = jax.vmap(jax.vmap(output_of(layer, params, state)))(x)
        np.testing.assert_allclose(vmapped, batched, rtol=1e-6)


def test_average_is_summed_in_float32_and_returned_in_the_input_dtype():
    x = jnp.full((64, 1), 1.0 + 2.0 ** -7, jnp.bfloat16)
    y, _ = AvgPool1D(64).apply({}, {}, x)
    assert y.dtype == jnp.bfloat16
    # A bfloat16 running sum of 64 such values would round away the 2**-7 part; float32 keeps it.
    assert float(y[0, 0]) == 1.0 + 2.0 ** -7
    y, _ = MaxPool1D(2).apply({}, {}, jnp.ones((4, 1), jnp.bfloat16))
    assert y.dtype == jnp.bfloat16


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match=r"^max_pool2d: expected a per-example input_shape \(H, W, C\) with 2 "
                                         r"spatial axes and channels last, got \(4, 4\)"):
        MaxPool2D(2).init(jax.random.key(0), (4, 4))
    with pytest.raises(ValueError, match=r"^avg_pool1d: spatial axis 0 of the input has size 2, but the window is 3"):
        AvgPool1D(3).init(jax.random.key(0), (2, 1))
    with pytest.raises(ValueError, match=r"^max_pool2d: expected an input of shape \(\*batch, H, W, C\), got \(4, 4\)"):
        MaxPool2D(2).apply({}, {}, jnp.ones((4, 4)))
    with pytest.raises(ValueError, match=r"^max_pool2d: spatial axis 1 of the input has size 1, but the window is 2"):
        MaxPool2D(2).apply({}, {}, jnp.ones((3, 4, 1, 2)))
    with pytest.raises(TypeError, match="^avg_pool2d: expected a floating-point input, got dtype int32"):
        AvgPool2D(2).apply({}, {}, jnp.ones((4, 4, 1), jnp.int32))
    with pytest.raises(ValueError, match=r"^MaxPool2D: `window` \(=0\) must be a positive int or a tuple of 2"):
        MaxPool2D(0)
    with pytest.raises(ValueError, match=r"^AvgPool1D: `stride` \(=-1\) must be a positive int"):
        AvgPool1D(2, stride=-1)
    with pytest.raises(TypeError, match=r"^MaxPool1D: `window` must be a positive int, got 2.0"):
        MaxPool1D(2.0)
    with pytest.raises(ValueError, match=r"^MaxPool2D: `padding` must be 'VALID', 'SAME', .* got 'FULL'"):
        MaxPool2D(2, padding="FULL")
    with pytest.raises(ValueError, match=r"^MaxPool2D: `padding` \(=\(\(2, 2\), \(2, 2\)\)\) must be smaller than "
                                         r"the window \(=\(2, 2\)\)"):
        MaxPool2D(2, padding=2)


# --------------------------------------------------------------------------------------------
# GlobalAvgPool


@pytest.mark.parametrize("input_shape", [(5, 3), (4, 5, 3), (2, 3, 4, 3)])
@pytest.mark.parametrize("batch_shape", [(), (2,), (2, 3)])
def test_global_avg_pool_means_over_spatial_axes(input_shape, batch_shape):
    layer = GlobalAvgPool()
    output_shape, params, state = layer.init(jax.random.key(0), input_shape)
    assert output_shape == (3,) and params == {}
    x = normal(1, batch_shape + input_shape)
    y, new_state = layer.apply(params, state, x)
    assert new_state == state
    spatial_axes = tuple(range(len(batch_shape), len(batch_shape) + len(input_shape) - 1))
    np.testing.assert_allclose(y, np.asarray(x, np.float64).mean(axis=spatial_axes), rtol=1e-5, atol=1e-6)


def test_global_avg_pool_vmap_and_hand_built_state():
    layer = GlobalAvgPool()
    _, params, state = layer.init(jax.random.key(0), (4, 5, 3))
    x = normal(1, (6, 4, 5, 3))
    batched, _ = layer.apply(params, state, x)
    np.testing.assert_allclose(jax.vmap(lambda e: layer.apply(params, state, e)[0])(x), batched, rtol=1e-6)
    # Without init's record the first axis alone is the batch axis, as x.mean(dim=(2, 3)) in PyTorch.
    fallback, _ = layer.apply({}, {}, x)
    np.testing.assert_allclose(fallback, batched, rtol=1e-6)
    y, _ = layer.apply(params, state, jnp.ones((4, 5, 3), jnp.bfloat16))
    assert y.dtype == jnp.bfloat16


def test_global_avg_pool_bad_inputs():
    layer = GlobalAvgPool()
    _, params, state = layer.init(jax.random.key(0), (4, 5, 3))
    with pytest.raises(ValueError, match=r"^global_avg_pool: expected input of shape \(\*batch, 4, 5, 3\), "
                                         r"got \(2, 5, 4, 3\)"):
        layer.apply(params, state, jnp.ones((2, 5, 4, 3)))
    with pytest.raises(ValueError, match=r"^global_avg_pool: expected an input of shape \(\*spatial, C\) with at "
                                         r"least one spatial axis, got input_shape \(3,\)"):
        layer.init(jax.random.key(0), (3,))
    with pytest.raises(TypeError, match="^global_avg_pool: expected a floating-point input, got dtype int32"):
        layer.apply(params, state, jnp.ones((4, 5, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"^global_avg_pool: expected an input of shape \(\*batch, \*spatial, C\) "
                                         r"with at least one spatial axis, got \(2, 3\)"):
        layer.apply({}, {}, jnp.ones((2, 3)))
