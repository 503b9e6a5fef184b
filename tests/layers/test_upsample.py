"""Tests for Upsample: hand-worked values of PyTorch's formulas, shapes and errors (its parity with
PyTorch, gradients included, is in test_torch_parity.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.layers import Upsample


def run(layer, x):
    _, params, state = layer.init(jax.random.key(0), x.shape[1:])
    return layer.apply(params, state, x)[0]


def test_nearest_repeats_each_element():
    x = jnp.arange(6.0).reshape(1, 2, 3, 1)
    y = run(Upsample(2), x)[0, ..., 0]
    np.testing.assert_array_equal(y, np.repeat(np.repeat(np.arange(6.0).reshape(2, 3), 2, 0), 2, 1))
    # size=5 from 3: source index floor(j * 3 / 5) = 0, 0, 1, 1, 2.
    np.testing.assert_array_equal(run(Upsample(size=5), jnp.arange(3.0).reshape(1, 3, 1))[0, :, 0], [0, 0, 1, 1, 2])


def test_linear_samples_half_pixel_centres_without_aligning_corners():
    # From [0, 1] to 4 positions: sources (j + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25
    # (the upper neighbour clamped to the last element): 0, 0.25, 0.75, 1.
    y = run(Upsample(2, mode="linear"), jnp.asarray([0.0, 1.0]).reshape(1, 2, 1))
    np.testing.assert_allclose(y[0, :, 0], [0, 0.25, 0.75, 1])
    # Bilinear is linear along each axis in turn: an outer product stays one.
    rows, cols = jnp.asarray([0.0, 1.0]), jnp.asarray([0.0, 2.0, 4.0])
    y = run(Upsample((2, 1), mode="bilinear"), (rows[:, None] * cols[None, :]).reshape(1, 2, 3, 1))
    np.testing.assert_allclose(y[0, :, :, 0], np.outer([0, 0.25, 0.75, 1], [0, 2, 4]), rtol=1e-6)


def test_any_number_of_batch_axes_and_dtype_kept():
    layer = Upsample(size=(3, 4), mode="bilinear")
    output_shape, params, state = layer.init(jax.random.key(0), (2, 2, 5))
    assert output_shape == (3, 4, 5) and params == {}
    x = jax.random.normal(jax.random.key(0), (2, 3, 2, 2, 5)).astype(jnp.bfloat16)
    y, _ = layer.apply(params, state, x)
    assert y.shape == (2, 3, 3, 4, 5) and y.dtype == jnp.bfloat16
    single, _ = layer.apply(params, state, x[1, 2])
    np.testing.assert_array_equal(single, y[1, 2])


def test_errors():
    with pytest.raises(ValueError, match=r"^Upsample: give exactly one of `scale_factor` and `size`"):
        Upsample()
    with pytest.raises(ValueError, match=r"^Upsample: give exactly one of `scale_factor` and `size`"):
        Upsample(2, size=4)
    with pytest.raises(ValueError, match=r"^Upsample: `mode` must be one of 'nearest', 'linear', 'bilinear', "
                                         r"got 'bicubic'"):
        Upsample(2, mode="bicubic")
    with pytest.raises(ValueError, match=r"^Upsample: `scale_factor` \(=0\) must be positive"):
        Upsample(0)
    with pytest.raises(ValueError, match=r"^upsample: mode='bilinear' takes a per-example input \(H, W, C\), "
                                         r"got input_shape \(4, 3\)"):
        Upsample(2, mode="bilinear").init(jax.random.key(0), (4, 3))
    with pytest.raises(ValueError, match=r"^upsample: `size` has 3 entries for 2 spatial axes"):
        Upsample(size=(2, 3, 4)).init(jax.random.key(0), (4, 3, 1))
    with pytest.raises(TypeError, match=r"^Upsample takes scale_factor positionally .* PyTorch's "
                                        r"Upsample\(None, 2, 'bilinear'\) is Upsample\(2, mode='bilinear'\) here"):
        Upsample(None, 2, "bilinear")
