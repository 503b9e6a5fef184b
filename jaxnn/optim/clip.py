"""Gradient clipping: elementwise, and by the global norm of all gradients together.

Both thresholds may be ``inf``, which means no clipping: the updates pass unchanged, so a
configuration can turn clipping off without building another optimizer. Every other
hyperparameter in :mod:`jaxnn.optim` must be finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnn.optim.base import (
    EmptyState,
    GradientTransformation,
    check_hyperparameter,
    check_state,
    global_norm,
    init_empty_state,
)


def clip(max_delta: float) -> GradientTransformation:
    r"""Clip every element to :math:`[-\delta, \delta]`: :math:`u \leftarrow \min(\max(g, -\delta), \delta)`.

    PyTorch's ``torch.nn.utils.clip_grad_value_``. ``max_delta = inf`` clips nothing.
    """
    check_hyperparameter(max_delta, "max_delta", "clip", infinity_ok=True)

    def update(updates, state, params=None):
        del params
        check_state(state, EmptyState, "clip")
        return jax.tree.map(lambda g: jnp.clip(g, -max_delta, max_delta), updates), state

    return GradientTransformation(init_empty_state, update)


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    r"""Rescale all gradients together when their global norm exceeds ``max_norm``.

    .. math::
        \|g\| = \sqrt{\textstyle\sum_i \|g_i\|^2}, \qquad
        u_i = g_i \ \text{ if } \|g\| < c, \quad\text{else}\quad u_i = c\, g_i / \|g\|

    optax's rule. PyTorch's ``clip_grad_norm_`` multiplies by :math:`\min(1, c / (\|g\| +
    10^{-6}))`, which differs by that :math:`10^{-6}` only. ``max_norm = inf`` clips nothing, even
    gradients whose norm overflows to ``inf`` (the formula would give ``inf / inf = NaN`` there).
    """
    check_hyperparameter(max_norm, "max_norm", "clip_by_global_norm", infinity_ok=True)
    if max_norm == 0:
        raise ValueError("clip_by_global_norm: max_norm must be positive, got 0")

    def update(updates, state, params=None):
        del params
        check_state(state, EmptyState, "clip_by_global_norm")
        norm = global_norm(updates)
        keep = (norm < max_norm) | jnp.isposinf(jnp.asarray(max_norm))
        # select rather than a scale factor, so gradients below the threshold are untouched bit for bit.
        return jax.tree.map(lambda g: jnp.where(keep, g, (g / norm.astype(g.dtype)) * max_norm), updates), state

    return GradientTransformation(init_empty_state, update)
