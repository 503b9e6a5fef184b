"""Wrappers around an optimizer: gradient accumulation over micro-batches, and skipping non-finite steps."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxnn._dtypes import compute_dtype
from jaxnn.optim.base import (
    GradientTransformation,
    PyTree,
    check_same_tree,
    check_state,
    check_transformation,
    safe_increment,
    zero_count,
)


class AccumulateGradientsState(NamedTuple):
    """Micro-batches seen since the last step, their running mean gradient, and the inner state."""

    micro_step: jax.Array
    mean_gradient: PyTree
    inner_state: Any


def accumulate_gradients(inner: GradientTransformation, every_k: int) -> GradientTransformation:
    r"""Average gradients over ``every_k`` micro-batches, then take one step of ``inner``.

    .. math::
        \bar g_j = \bar g_{j-1} + (g_j - \bar g_{j-1}) / j, \qquad j = 1, \dots, k

    On calls ``1..k-1`` of each group the updates are zero and ``inner``'s state is untouched; on
    call ``k`` the update is ``inner`` applied to :math:`\bar g_k` (the mean, so the step equals
    one step on a batch ``k`` times larger). The running mean (Welford's form) is kept in float32
    and does not overflow. The same numbers as ``optax.MultiSteps(inner, every_k)``.

    Args:
      inner: the optimizer to step with the averaged gradient.
      every_k: number of micro-batches per step, at least 1.
    """
    check_transformation(inner, "inner", "accumulate_gradients")
    if isinstance(every_k, bool) or not isinstance(every_k, int):
        raise TypeError(f"accumulate_gradients: every_k must be an int, got {type(every_k).__name__}")
    if every_k < 1:
        raise ValueError(f"accumulate_gradients: every_k must be at least 1, got {every_k}")

    def init(params):
        mean = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), compute_dtype(jnp.result_type(p), jnp.float32)), params)
        return AccumulateGradientsState(micro_step=zero_count(), mean_gradient=mean, inner_state=inner.init(params))

    def update(updates, state, params=None):
        check_state(state, AccumulateGradientsState, "accumulate_gradients")
        check_same_tree(updates, state.mean_gradient, "gradients", "accumulated gradients")
        count = (state.micro_step + 1).astype(jnp.float32)
        mean = jax.tree.map(lambda g, m: m + (g.astype(m.dtype) - m) / count.astype(m.dtype),
                            updates, state.mean_gradient)
        averaged = jax.tree.map(lambda m, g: m.astype(g.dtype), mean, updates)

        def step(_):
            new_updates, inner_state = inner.update(averaged, state.inner_state, params)
            return new_updates, AccumulateGradientsState(zero_count(), jax.tree.map(jnp.zeros_like, mean), inner_state)

        def accumulate(_):
            shapes, _ = jax.eval_shape(lambda: inner.update(averaged, state.inner_state, params))
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            return zeros, AccumulateGradientsState(state.micro_step + 1, mean, state.inner_state)

        return jax.lax.cond(state.micro_step == every_k - 1, step, accumulate, None)

    return GradientTransformation(init, update)


class SkipNonFiniteState(NamedTuple):
    """Skips in total and in a row, and the inner optimizer's state."""

    skipped: jax.Array
    consecutive_skips: jax.Array
    inner_state: Any


def skip_non_finite(inner: GradientTransformation) -> GradientTransformation:
    r"""Skip a step whose gradients hold a NaN or an infinity, and count the skips.

    When every gradient is finite the update is ``inner``'s; otherwise it is zero and ``inner``'s
    state is left as it was, so one bad batch cannot poison Adam's moments. ``state.skipped``
    counts skipped steps in total and ``state.consecutive_skips`` those in a row (reset by a good
    step), for a training loop to report or to stop on. Like ``optax.apply_if_finite`` with no
    limit on consecutive skips.
    """
    check_transformation(inner, "inner", "skip_non_finite")

    def init(params):
        return SkipNonFiniteState(skipped=zero_count(), consecutive_skips=zero_count(),
                                  inner_state=inner.init(params))

    def update(updates, state, params=None):
        check_state(state, SkipNonFiniteState, "skip_non_finite")
        finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(updates)]))

        def step(_):
            return inner.update(updates, state.inner_state, params)

        def skip(_):
            shapes, _ = jax.eval_shape(lambda: inner.update(updates, state.inner_state, params))
            return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), state.inner_state

        new_updates, inner_state = jax.lax.cond(finite, step, skip, None)
        skipped = jnp.where(finite, state.skipped, safe_increment(state.skipped))
        consecutive = jnp.where(finite, zero_count(), safe_increment(state.consecutive_skips))
        return new_updates, SkipNonFiniteState(skipped, consecutive, inner_state)

    return GradientTransformation(init, update)
