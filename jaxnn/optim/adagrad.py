"""Adagrad: per-parameter step sizes that shrink with the sum of squared gradients (Duchi et al., 2011)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnn._dtypes import at_least_float32
from jaxnn.optim.base import (
    GradientTransformation,
    PyTree,
    ScalarOrSchedule,
    chain,
    check_hyperparameter,
    check_same_tree,
    check_state,
    scale_by_learning_rate,
)


class ScaleByRssState(NamedTuple):
    """Sum of squared gradients so far, plus the initial accumulator value."""

    sum_of_squares: PyTree


def scale_by_rss(initial_accumulator_value: float = 0.1, eps: float = 1e-7) -> GradientTransformation:
    r"""Divide gradients by the root of the sum of all squared gradients so far.

    .. math::
        G_t = G_{t-1} + g_t^2, \qquad G_0 = \text{initial\_accumulator\_value}, \qquad
        u_t = g_t / \sqrt{G_t + \epsilon} \ \ (0 \text{ where } G_t = 0)
    """
    check_hyperparameter(initial_accumulator_value, "initial_accumulator_value", "scale_by_rss")
    check_hyperparameter(eps, "eps", "scale_by_rss")

    def init(params):
        return ScaleByRssState(jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params))

    def update(updates, state, params=None):
        del params
        check_state(state, ScaleByRssState, "scale_by_rss")
        check_same_tree(updates, state.sum_of_squares, "gradients", "Adagrad accumulators")
        sums = jax.tree.map(lambda g, s: jnp.square(g) + s, updates, state.sum_of_squares)

        def scaled(g, s):
            s = at_least_float32(s)
            inverse_root = jnp.where(s > 0, jax.lax.rsqrt(s + eps), 0.0)
            return (inverse_root * at_least_float32(g)).astype(g.dtype)

        return jax.tree.map(scaled, updates, sums), ScaleByRssState(sums)

    return GradientTransformation(init, update)


def adagrad(learning_rate: ScalarOrSchedule, initial_accumulator_value: float = 0.1,
            eps: float = 1e-7) -> GradientTransformation:
    r"""Adagrad.

    .. math::
        G_t = G_{t-1} + g_t^2, \qquad \theta_{t+1} = \theta_t - \eta_t\, g_t / \sqrt{G_t + \epsilon}

    Defaults and numbers are optax's (:math:`G_0 = 0.1`, :math:`\epsilon = 10^{-7}` inside the
    root). ``torch.optim.Adagrad`` starts from :math:`G_0 = 0` and adds ``eps=1e-10`` outside
    the root: ``adagrad(lr, initial_accumulator_value=0.0, eps=0.0)`` equals
    ``Adagrad(lr, eps=0)`` exactly, and PyTorch's default step is this one times
    :math:`\sqrt{G}/(\sqrt{G} + 10^{-10})`, a relative difference of :math:`10^{-10}/\sqrt{G}`
    (negligible unless gradients are below about :math:`10^{-8}`).

    Args:
      learning_rate: a non-negative float or a schedule.
      initial_accumulator_value: :math:`G_0 \ge 0`.
      eps: :math:`\epsilon \ge 0`.
    """
    check_hyperparameter(learning_rate, "learning_rate", "adagrad", schedule_ok=True)
    return chain(scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate))
