"""Dropout: zeroes random elements in training and rescales the rest, so that evaluation is the
identity."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from jaxnn.core import (
    Layer,
    LayerTypeError,
    LayerValueError,
    as_shape,
    check_array,
    check_floating,
    compute_dtype,
    make_layer,
)
from jaxnn.layers._arguments import dropout_hint, positional_limit

__all__ = ["Dropout"]


@positional_limit(dropout_hint)
def Dropout(rate: float) -> Layer:
    """Drops each element with probability ``rate`` in training (inverted dropout).

    ``rate`` is the probability of *dropping* an element (as in PyTorch and Keras), not of keeping
    it. With ``train=True``::

        mask ~ Bernoulli(1 - rate), elementwise
        y    = x * mask / (1 - rate)      (computed as x * mask * (1 / (1 - rate)))

    with the product taken in at least float32 and rounded to ``x``'s dtype once, so that
    ``E[y] = x`` up to that rounding, in half precision too; ``rate == 1`` gives zeros. With
    ``train=False``, or ``rate == 0``, ``y = x`` and no key is needed. Training with ``rate > 0``
    needs a PRNG ``key``. There are no ``params`` and no ``state``.

    A ``rate`` that is not a real number raises a ``TypeError``; one outside ``[0, 1]``, or NaN, a
    ``ValueError``. ``rate`` is the only argument: PyTorch's ``Dropout(0.5, True)`` (in place) is a
    ``TypeError`` saying it is ``Dropout(0.5)`` here.

    Under ``vmap`` over examples, pass one key per example (``jax.random.split(key, n)``) so that
    the examples get independent masks.

    Example::

        layer = Dropout(0.1)
        output_shape, params, state = layer.init(jax.random.key(0), (128,))
        y, state = layer.apply(params, state, x, key=jax.random.key(1), train=True)
    """
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise LayerTypeError(
            f"Dropout: `rate` (={rate!r}) is the probability of dropping an element and must be "
            f"a real number in [0, 1], got {type(rate).__name__}"
        )
    if not 0 <= rate <= 1:
        raise LayerValueError(
            f"Dropout: `rate` (={rate!r}) is the probability of dropping an element and must be "
            "a number in [0, 1]"
        )
    rate = float(rate)

    def init(key, input_shape):
        del key
        return as_shape(input_shape), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del params
        x = check_array(x)
        check_floating(x)
        if not train or rate == 0:
            return x, state
        if key is None:
            raise LayerValueError(
                "train=True needs a PRNG key: "
                "apply(params, state, x, key=jax.random.key(0), train=True)"
            )
        if rate == 1:
            return jnp.zeros_like(x), state
        keep = jax.random.bernoulli(key, 1 - rate, x.shape)
        # A multiplication by the rounded 1 / (1 - rate), not a division: XLA's CPU division is not
        # correctly rounded, while a multiplication is on every backend, so kept values are
        # reproducible (and within an ulp of x / (1 - rate)). Rounding the scale to bfloat16 would
        # bias every kept value the same way (1/0.9 becomes 1.109375, 0.16% low), so the product
        # is taken in at least float32 and rounded once.
        wide = compute_dtype(x.dtype, jnp.float32)
        scaled = (x.astype(wide) * jnp.asarray(1 / (1 - rate), wide)).astype(x.dtype)
        return jnp.where(keep, scaled, jnp.zeros((), x.dtype)), state

    return make_layer("dropout", init, apply)
