"""Tests for ConvTranspose1D and ConvTranspose2D beyond the PyTorch parity tests.

The oracle: a transposed convolution is the transpose of the convolution with the same stride,
padding and dilation, so its output equals ``jax.vjp`` of :func:`Conv2D` applied to the same
array, with the kernel's channel axes swapped per group.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.layers import Conv1D, Conv2D, ConvTranspose1D, ConvTranspose2D
from jaxnn.layers._conv_transpose import conv_transpose_xla


def test_transposed_convolution_is_the_transpose_of_the_convolution():
    # Conv2D: 4 -> 6 channels in 2 groups, on (9, 8) inputs; its outputs are (4, 4).
    arguments = dict(stride=(2, 3), dilation=(2, 1), groups=2)
    conv = Conv2D(6, (3, 2), padding=1, use_bias=False, **arguments)
    _, conv_params, _ = conv.init(jax.random.key(0), (9, 8, 4))
    w = conv_params["w"]  # (3, 2, 4 / 2, 6)
    x = jax.random.normal(jax.random.key(1), (2, 9, 8, 4))
    y, pullback = jax.vjp(lambda x: conv.apply(conv_params, {}, x)[0], x)
    cotangent = jax.random.normal(jax.random.key(2), y.shape)
    (expected,) = pullback(cotangent)
    # The transpose maps 6 -> 4 channels; per group its kernel is the convolution's with in/out swapped.
    w_transposed = jnp.concatenate([jnp.swapaxes(w[..., 3 * g:3 * (g + 1)], -1, -2) for g in range(2)], axis=-2)
    # output_padding recovers the sizes the strided convolution rounded away: (9 + 2 - 2*2 - 1) % 2 = 0 and
    # (8 + 2 - 1 - 1) % 3 = 2.
    layer = ConvTranspose2D(4, (3, 2), padding=1, output_padding=(0, 2), use_bias=False, **arguments)
    output_shape, params, _ = layer.init(jax.random.key(0), y.shape[1:])
    assert params["w"].shape == w_transposed.shape and output_shape == (9, 8, 4)
    got, _ = layer.apply({"w": w_transposed}, {}, cotangent)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # The accelerator formulation computes the same (the layer runs the CPU one here).
    strides, dilations = arguments["stride"], arguments["dilation"]
    xla = conv_transpose_xla(cotangent, w_transposed, strides, (1, 1), (0, 2), dilations, 2)
    np.testing.assert_allclose(xla, expected, rtol=1e-5, atol=1e-5)


def test_one_input_position_scatters_the_kernel_at_stride_spacing():
    # Hand-worked: x = [1, 0, 2], kernel [1, 10, 100], stride 2 -> y[i*2 + a] += x[i] * w[a].
    layer = ConvTranspose1D(1, 3, stride=2)
    params = {"w": jnp.asarray([1.0, 10.0, 100.0]).reshape(3, 1, 1), "b": jnp.asarray([0.5])}
    y, _ = layer.apply(params, {}, jnp.asarray([1.0, 0.0, 2.0]).reshape(3, 1))
    np.testing.assert_array_equal(y[:, 0], np.array([1, 10, 100 + 0, 0, 2, 20, 200]) + 0.5)


@pytest.mark.parametrize("size, kernel, stride, padding, output_padding, dilation", [
    (5, 3, 2, 1, 1, 1), (7, 4, 3, 0, 2, 1), (4, 3, 1, 2, 0, 2), (6, 2, 2, 0, 0, 3),
])
def test_output_size_is_pytorchs_and_inverts_the_convolutions(size, kernel, stride, padding, output_padding,
                                                               dilation):
    layer = ConvTranspose1D(2, kernel, stride=stride, padding=padding, output_padding=output_padding,
                            dilation=dilation)
    (out, _), _, _ = layer.init(jax.random.key(0), (size, 3))
    assert out == (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
    # The convolution with the same geometry maps the output size back to the input size.
    conv = Conv1D(2, kernel, stride=stride, padding=padding, dilation=dilation)
    assert conv.init(jax.random.key(0), (out, 3))[0] == (size, 2)


def test_errors_name_the_argument_and_values():
    with pytest.raises(ValueError, match=r"^ConvTranspose2D: `output_padding` \(=2\) must be smaller than either "
                                         r"`stride` \(=2\) or `dilation` \(=1\)"):
        ConvTranspose2D(4, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"^ConvTranspose1D: `output_padding` \(=1\) must be smaller"):
        ConvTranspose1D(4, 3, output_padding=1)
    ConvTranspose1D(4, 3, output_padding=1, dilation=2)  # smaller than the dilation: allowed, as PyTorch
    with pytest.raises(ValueError, match=r"^ConvTranspose2D: `padding` \(=-1\) must be a non-negative int"):
        ConvTranspose2D(4, 3, padding=-1)
    with pytest.raises(TypeError, match=r"^ConvTranspose2D: `padding` must be a non-negative int or a tuple of 2 "
                                        r"non-negative ints, got 'SAME'"):
        ConvTranspose2D(4, 3, padding="SAME")
    with pytest.raises(ValueError, match=r"^ConvTranspose2D: `features` \(=5\) must be divisible by `groups` \(=2\)"):
        ConvTranspose2D(5, 3, groups=2)
    layer = ConvTranspose2D(4, 3, groups=2)
    with pytest.raises(ValueError, match=r"^conv_transpose2d: input channels \(=3\) must be divisible by `groups`"):
        layer.init(jax.random.key(0), (5, 5, 3))
    with pytest.raises(ValueError, match=r"^conv_transpose1d: the input spatial shape \(2,\) gives an output of "
                                         r"spatial shape \(-3,\)"):
        ConvTranspose1D(1, 2, padding=3).init(jax.random.key(0), (2, 1))
    _, params, _ = layer.init(jax.random.key(0), (5, 5, 4))
    with pytest.raises(ValueError, match=r"^conv_transpose2d: expected 4 input channels .* got shape \(5, 5, 6\)"):
        layer.apply(params, {}, jnp.ones((5, 5, 6)))
    with pytest.raises(TypeError, match=r"^ConvTranspose2D takes \(features, kernel_size\) positionally .*; "
                                        r"PyTorch's ConvTranspose2d\(16, 8, 4, 2, 1\) is "
                                        r"ConvTranspose2D\(8, 4, stride=2, padding=1\) here"):
        ConvTranspose2D(16, 8, 4, 2, 1)
