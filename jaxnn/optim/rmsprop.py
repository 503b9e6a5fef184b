"""RMSProp: divide by a running root mean square of recent gradients (Hinton, 2012)."""

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
    check_flag,
    check_hyperparameter,
    check_same_tree,
    check_state,
    scale_by_learning_rate,
)
from jaxnn.optim.sgd import trace


class ScaleByRmsState(NamedTuple):
    """Running mean of squared gradients ``nu`` and, when centered, of gradients ``mu``."""

    mu: PyTree
    nu: PyTree


def scale_by_rms(decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
                 eps_in_sqrt: bool = True, centered: bool = False) -> GradientTransformation:
    r"""Divide gradients by the root of a running mean of their squares.

    .. math::
        v_t = \rho\, v_{t-1} + (1-\rho)\, g_t^2, \qquad v_0 = \text{initial\_scale} \\
        u_t = g_t / \sqrt{v_t + \epsilon} \quad (\text{eps\_in\_sqrt}) \quad\text{or}\quad
        u_t = g_t / (\sqrt{v_t} + \epsilon)

    Centered, :math:`v_t` is replaced by :math:`v_t - \bar g_t^2` with :math:`\bar g_t = \rho\,
    \bar g_{t-1} + (1-\rho)\, g_t`, an estimate of the variance rather than the second moment.
    """
    check_hyperparameter(decay, "decay", "scale_by_rms", high=1.0, high_open=True)
    check_hyperparameter(eps, "eps", "scale_by_rms")
    check_hyperparameter(initial_scale, "initial_scale", "scale_by_rms")
    eps_in_sqrt = check_flag(eps_in_sqrt, "eps_in_sqrt", "scale_by_rms")
    centered = check_flag(centered, "centered", "scale_by_rms")

    def init(params):
        mu = jax.tree.map(jnp.zeros_like, params) if centered else None
        return ScaleByRmsState(mu=mu, nu=jax.tree.map(lambda p: jnp.full_like(p, initial_scale), params))

    def update(updates, state, params=None):
        del params
        check_state(state, ScaleByRmsState, "scale_by_rms")
        check_same_tree(updates, state.nu, "gradients", "RMSProp accumulators")
        nu = jax.tree.map(lambda g, v: (1 - decay) * jnp.square(g) + decay * v, updates, state.nu)
        if centered:
            mu = jax.tree.map(lambda g, m: (1 - decay) * g + decay * m, updates, state.mu)
            variance = jax.tree.map(lambda m, v: at_least_float32(v) - jnp.square(at_least_float32(m)), mu, nu)
        else:
            mu, variance = None, jax.tree.map(at_least_float32, nu)

        # In at least float32, so that eps does not round to 0 for low-precision parameters.
        def scaled(g, v):
            denominator = jnp.sqrt(v + eps) if eps_in_sqrt else jnp.sqrt(v) + eps
            return (at_least_float32(g) / denominator).astype(g.dtype)

        return jax.tree.map(scaled, updates, variance), ScaleByRmsState(mu=mu, nu=nu)

    return GradientTransformation(init, update)


def rmsprop(learning_rate: ScalarOrSchedule, decay: float = 0.9, eps: float = 1e-8,
            momentum: float = 0.0, centered: bool = False, nesterov: bool = False,
            initial_scale: float = 0.0, eps_in_sqrt: bool = True) -> GradientTransformation:
    r"""RMSProp, optionally centered and with momentum.

    .. math::
        v_t = \rho\, v_{t-1} + (1-\rho)\, g_t^2, \qquad
        s_t = -\eta_t\, g_t / \sqrt{v_t + \epsilon} \\
        b_t = s_t + \mu\, b_{t-1}, \qquad \theta_{t+1} = \theta_t + b_t

    (with :math:`\mu = 0`, :math:`\theta_{t+1} = \theta_t + s_t`). Defaults and numbers are
    optax's: :math:`\rho = 0.9` and :math:`\epsilon` inside the root. ``torch.optim.RMSprop``
    differs in both: its ``alpha`` (our ``decay``) defaults to 0.99 and it adds ``eps`` outside
    the root; ``rmsprop(lr, decay=0.99, eps_in_sqrt=False)`` reproduces it (with a constant
    learning rate; PyTorch's momentum buffer holds unscaled steps).

    Args:
      learning_rate: a non-negative float or a schedule.
      decay: :math:`\rho` in ``[0, 1)``.
      eps: :math:`\epsilon \ge 0`.
      momentum: :math:`\mu` in ``[0, 1)``; 0 keeps no buffer.
      centered: divide by the estimated standard deviation instead of the root mean square.
      nesterov: Nesterov form of the momentum.
      initial_scale: :math:`v_0`.
      eps_in_sqrt: add :math:`\epsilon` inside the root (optax) or outside it (PyTorch).
    """
    check_hyperparameter(learning_rate, "learning_rate", "rmsprop", schedule_ok=True)
    check_hyperparameter(momentum, "momentum", "rmsprop", high=1.0, high_open=True)
    nesterov = check_flag(nesterov, "nesterov", "rmsprop")
    transforms = [scale_by_rms(decay, eps, initial_scale, eps_in_sqrt, centered),
                  scale_by_learning_rate(learning_rate)]
    # A traced momentum (a sweep over it) always keeps a buffer: its value is not known here.
    if isinstance(momentum, jax.core.Tracer) or momentum > 0:
        transforms.append(trace(momentum, nesterov))
    elif nesterov:
        raise ValueError("rmsprop: nesterov=True needs momentum > 0")
    return chain(*transforms)
