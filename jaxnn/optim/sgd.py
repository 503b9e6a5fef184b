"""Stochastic gradient descent, with heavy-ball or Nesterov momentum."""

from __future__ import annotations

from typing import NamedTuple

import jax

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


class TraceState(NamedTuple):
    """The momentum buffer ``m``, one array per parameter."""

    trace: PyTree


def trace(decay: float, nesterov: bool = False) -> GradientTransformation:
    r"""Momentum: keep a decaying sum of past updates.

    .. math::
        m_t = g_t + \mu\, m_{t-1}, \qquad m_{-1} = 0 \\
        u_t = m_t \ \text{(heavy ball)} \quad\text{or}\quad u_t = g_t + \mu\, m_t \ \text{(Nesterov)}

    This is PyTorch's ``torch.optim.SGD`` buffer with ``dampening=0`` and optax's ``trace``.
    """
    check_hyperparameter(decay, "momentum", "trace")
    nesterov = check_flag(nesterov, "nesterov", "trace")

    def init(params):
        return TraceState(trace=jax.tree.map(jax.numpy.zeros_like, params))

    def update(updates, state, params=None):
        del params
        check_state(state, TraceState, "trace")
        check_same_tree(updates, state.trace, "gradients", "momentum buffers")
        new_trace = jax.tree.map(lambda g, m: g + decay * m, updates, state.trace)
        if nesterov:
            updates = jax.tree.map(lambda g, m: g + decay * m, updates, new_trace)
        else:
            updates = new_trace
        return updates, TraceState(trace=new_trace)

    return GradientTransformation(init, update)


def sgd(learning_rate: ScalarOrSchedule, momentum: float = 0.0, nesterov: bool = False) -> GradientTransformation:
    r"""Stochastic gradient descent, optionally with momentum.

    With gradient :math:`g_t`, learning rate :math:`\eta_t` and momentum :math:`\mu`:

    .. math::
        m_t = g_t + \mu\, m_{t-1}, \qquad m_{-1} = 0 \\
        \theta_{t+1} = \theta_t - \eta_t\, m_t \quad\text{or, with Nesterov,}\quad
        \theta_{t+1} = \theta_t - \eta_t\,(g_t + \mu\, m_t)

    With ``momentum=0`` no buffer is kept and this is plain :math:`\theta_{t+1} = \theta_t -
    \eta_t g_t`. The same rule as ``optax.sgd`` and as ``torch.optim.SGD`` with ``dampening=0``:
    the buffer accumulates raw gradients and the rate multiplies it afterwards, so a schedule
    changes the step size without rescaling the history.

    Args:
      learning_rate: a non-negative float, or a schedule ``count -> rate``.
      momentum: :math:`\mu` in ``[0, 1)``.
      nesterov: use Nesterov's look-ahead form.

    Returns:
      A :class:`GradientTransformation`; its state is ``(TraceState, ScaleByScheduleState)``, or
      ``(ScaleByScheduleState,)`` without momentum.

    Example::

        optimizer = jaxnn.optim.sgd(0.1, momentum=0.9)
        opt_state = optimizer.init(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = jaxnn.optim.apply_updates(params, updates)
    """
    check_hyperparameter(learning_rate, "learning_rate", "sgd", schedule_ok=True)
    check_hyperparameter(momentum, "momentum", "sgd", high=1.0, high_open=True)
    nesterov = check_flag(nesterov, "nesterov", "sgd")
    # A traced momentum (a sweep over it) always keeps a buffer: its value is not known here.
    no_momentum = not isinstance(momentum, jax.core.Tracer) and momentum == 0
    if nesterov and no_momentum:
        raise ValueError("sgd: nesterov=True needs momentum > 0")
    if no_momentum:
        return chain(scale_by_learning_rate(learning_rate))
    return chain(trace(momentum, nesterov), scale_by_learning_rate(learning_rate))
