"""Adam and AdamW: adaptive moment estimation, with decoupled weight decay for AdamW."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxnn._dtypes import at_least_float32, compute_dtype
from jaxnn.optim.base import (
    GradientTransformation,
    PyTree,
    ScalarOrSchedule,
    add_decayed_weights,
    chain,
    check_flag,
    check_hyperparameter,
    check_same_tree,
    check_state,
    safe_increment,
    scale_by_learning_rate,
    zero_count,
)


class ScaleByAdamState(NamedTuple):
    """Adam's step count and its first and second moment estimates."""

    count: jax.Array
    mu: PyTree
    nu: PyTree


def bias_correction(moment: PyTree, decay: float, count: jax.Array) -> PyTree:
    """Divide an exponential moving average started at 0 by ``1 - decay**count``."""
    leaves = jax.tree.leaves(moment)
    # In at least float32, then cast: decay**count rounds to 1 in bfloat16, and float64 moments
    # get a float64 correction.
    dtype = compute_dtype(*[leaf.dtype for leaf in leaves], jnp.float32)
    correction = 1.0 - decay ** count.astype(dtype)
    return jax.tree.map(lambda m: m / correction.astype(m.dtype), moment)


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
                  *, nesterov: bool = False) -> GradientTransformation:
    r"""Rescale gradients by Adam's bias-corrected moment estimates.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\, g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2, \qquad m_0 = v_0 = 0 \\
        \hat m_t = \frac{m_t}{1-\beta_1^t}, \qquad \hat v_t = \frac{v_t}{1-\beta_2^t}, \qquad
        u_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}

    for :math:`t = 1, 2, \dots`. With ``nesterov=True`` (NAdam, Dozat 2016) the numerator is
    :math:`\beta_1 m_t / (1-\beta_1^{t+1}) + (1-\beta_1)\, g_t / (1-\beta_1^t)`.

    The moments are stored in the parameters' dtype; the final division is done in at least
    float32, so that low-precision parameters with zero gradients give a zero update, not NaN.
    """
    check_hyperparameter(b1, "b1", "scale_by_adam", high=1.0, high_open=True)
    check_hyperparameter(b2, "b2", "scale_by_adam", high=1.0, high_open=True)
    check_hyperparameter(eps, "eps", "scale_by_adam")
    check_hyperparameter(eps_root, "eps_root", "scale_by_adam")
    nesterov = check_flag(nesterov, "nesterov", "scale_by_adam")

    def init(params):
        # Two separate trees: buffers shared between mu and nu could not both be donated.
        return ScaleByAdamState(count=zero_count(), mu=jax.tree.map(jnp.zeros_like, params),
                                nu=jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        check_state(state, ScaleByAdamState, "scale_by_adam")
        check_same_tree(updates, state.mu, "gradients", "Adam moments")
        mu = jax.tree.map(lambda g, m: (1 - b1) * g + b1 * m, updates, state.mu)
        nu = jax.tree.map(lambda g, v: (1 - b2) * jnp.square(g) + b2 * v, updates, state.nu)
        count = safe_increment(state.count)
        if nesterov:
            mu_hat = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g,
                                  bias_correction(mu, b1, safe_increment(count)),
                                  bias_correction(updates, b1, count))
        else:
            mu_hat = bias_correction(mu, b1, count)
        nu_hat = bias_correction(nu, b2, count)

        def ratio(m, v):
            step = at_least_float32(m) / (jnp.sqrt(at_least_float32(v) + eps_root) + eps)
            return step.astype(m.dtype)

        return jax.tree.map(ratio, mu_hat, nu_hat), ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init, update)


def adam(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         eps_root: float = 0.0, nesterov: bool = False) -> GradientTransformation:
    r"""Adam (Kingma & Ba, 2015).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\, g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 \\
        \theta_{t} = \theta_{t-1} - \eta_{t-1}\,
            \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon}

    Defaults are optax's and PyTorch's (``torch.optim.Adam``: ``betas=(0.9, 0.999)``,
    ``eps=1e-8``), and so are the numbers. ``nesterov=True`` gives NAdam.

    Args:
      learning_rate: a non-negative float or a schedule; step ``t`` uses ``schedule(t - 1)``.
      b1, b2: decay rates of the first and second moments, each in ``[0, 1)``.
      eps: added to the root of the second moment.
      eps_root: added inside the root (useful when differentiating through the update).
      nesterov: use Nesterov momentum (NAdam).

    Returns:
      A :class:`GradientTransformation` with state ``(ScaleByAdamState, ScaleByScheduleState)``.

    Example::

        optimizer = jaxnn.optim.adam(1e-3)
    """
    check_hyperparameter(learning_rate, "learning_rate", "adam", schedule_ok=True)
    return chain(scale_by_adam(b1, b2, eps, eps_root, nesterov=nesterov),
                 scale_by_learning_rate(learning_rate))


def adamw(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          eps_root: float = 0.0, weight_decay: ScalarOrSchedule = 1e-4,
          mask: Any | Callable[[PyTree], Any] | None = None,
          nesterov: bool = False) -> GradientTransformation:
    r"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    .. math::
        \theta_{t} = \theta_{t-1} - \eta_{t-1} \left(
            \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon} + \lambda\, \theta_{t-1}\right)

    with :math:`\hat m_t, \hat v_t` as in :func:`adam`. The decay is multiplied by the learning
    rate, as in optax and ``torch.optim.AdamW``. The default :math:`\lambda = 10^{-4}` is
    optax's; PyTorch's is ``1e-2``, so pass ``weight_decay=1e-2`` to reproduce a PyTorch run.

    Args:
      learning_rate: a non-negative float or a schedule.
      b1, b2, eps, eps_root, nesterov: as in :func:`adam`.
      weight_decay: :math:`\lambda \ge 0`, a float or a schedule.
      mask: which parameters to decay, as in :func:`add_decayed_weights` (commonly, not biases
        or normalization scales).
    """
    check_hyperparameter(learning_rate, "learning_rate", "adamw", schedule_ok=True)
    return chain(scale_by_adam(b1, b2, eps, eps_root, nesterov=nesterov),
                 add_decayed_weights(weight_decay, mask),
                 scale_by_learning_rate(learning_rate))
