"""Learning-rate schedules: functions from the step count (int32, starting at 0) to a value.

A schedule is called with the optimizer's count *before* the update, so the first step uses
``schedule(0)``. Formulas and values are optax's; each is a pure ``jnp`` function, safe under
``jit`` and ``vmap``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp

from jaxnn._checks import check_int, check_positive_int, check_real
from jaxnn.optim.base import Schedule


def constant_schedule(value: float) -> Schedule:
    """:math:`\\eta(t) = \\text{value}`."""
    check_real(value, "value", "constant_schedule")
    return lambda count: jnp.full(jnp.shape(count), value, jnp.float32)


def polynomial_schedule(init_value: float, end_value: float, power: float, transition_steps: int,
                        transition_begin: int = 0) -> Schedule:
    r"""Polynomial interpolation from ``init_value`` to ``end_value``.

    .. math::
        s = \operatorname{clip}(t - t_0, 0, T), \qquad
        \eta(t) = (\eta_0 - \eta_T) (1 - s/T)^p + \eta_T
    """
    name = "polynomial_schedule"
    check_real(init_value, "init_value", name)
    check_real(end_value, "end_value", name)
    check_real(power, "power", name, low=0, low_open=True)
    check_positive_int(transition_steps, "transition_steps", name)
    check_int(transition_begin, "transition_begin", name, low=0)

    def schedule(count):
        steps = jnp.clip(jnp.asarray(count) - transition_begin, 0, transition_steps)
        fraction = 1 - steps / transition_steps
        return (init_value - end_value) * fraction ** power + end_value

    return schedule


def linear_schedule(init_value: float, end_value: float, transition_steps: int,
                    transition_begin: int = 0) -> Schedule:
    r"""Linear ramp from ``init_value`` (until step :math:`t_0`) to ``end_value`` (from :math:`t_0 + T`).

    .. math:: \eta(t) = \eta_0 + (\eta_T - \eta_0)\, \operatorname{clip}(t - t_0, 0, T) / T
    """
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def exponential_decay(init_value: float, transition_steps: int, decay_rate: float,
                      transition_begin: int = 0, staircase: bool = False,
                      end_value: float | None = None) -> Schedule:
    r"""Exponential decay by ``decay_rate`` every ``transition_steps`` steps.

    .. math::
        p = (t - t_0) / T \ \ (\lfloor\cdot\rfloor \text{ if staircase}), \qquad
        \eta(t) = \eta_0 \ \text{ for } t \le t_0, \quad \eta_0\, r^{p} \text{ after}

    clipped at ``end_value`` when given (from below when :math:`r < 1`, from above when
    :math:`r > 1`).
    """
    name = "exponential_decay"
    check_real(init_value, "init_value", name)
    check_positive_int(transition_steps, "transition_steps", name)
    check_real(decay_rate, "decay_rate", name, low=0, low_open=True)
    check_int(transition_begin, "transition_begin", name, low=0)
    if end_value is not None:
        check_real(end_value, "end_value", name)
    bound = jnp.maximum if decay_rate < 1 else jnp.minimum

    def schedule(count):
        steps = jnp.asarray(count) - transition_begin
        exponent = steps / transition_steps
        if staircase:
            exponent = jnp.floor(exponent)
        value = jnp.where(steps <= 0, init_value, init_value * jnp.power(decay_rate, exponent))
        return value if end_value is None else bound(value, end_value)

    return schedule


def cosine_decay_schedule(init_value: float, decay_steps: int, alpha: float = 0.0,
                          exponent: float = 1.0) -> Schedule:
    r"""Cosine decay from ``init_value`` to ``alpha * init_value`` over ``decay_steps`` (Loshchilov & Hutter, 2017).

    .. math::
        s = \min(t, T), \qquad
        \eta(t) = \eta_0 \left[(1-\alpha) \left(\tfrac{1}{2}(1 + \cos(\pi s / T))\right)^{e} + \alpha\right]
    """
    name = "cosine_decay_schedule"
    check_real(init_value, "init_value", name)
    check_positive_int(decay_steps, "decay_steps", name)
    check_real(alpha, "alpha", name)
    check_real(exponent, "exponent", name, low=0, low_open=True)

    def schedule(count):
        # In float: an int32 product could overflow for long runs.
        steps = jnp.minimum(jnp.asarray(count, jnp.float32), float(decay_steps))
        cosine = 0.5 * (1 + jnp.cos(jnp.pi * steps / decay_steps))
        return init_value * ((1 - alpha) * cosine ** exponent + alpha)

    return schedule


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Use ``schedules[i]`` from ``boundaries[i-1]`` on, called with the steps since that boundary."""
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(f"join_schedules: {len(schedules)} schedules need {len(schedules) - 1} "
                         f"boundaries, got {len(boundaries)}")

    def schedule(count):
        value = schedules[0](count)
        for boundary, later in zip(boundaries, schedules[1:]):
            value = jnp.where(count < boundary, value, later(count - boundary))
        return value

    return schedule


def warmup_cosine_decay_schedule(init_value: float, peak_value: float, warmup_steps: int,
                                 decay_steps: int, end_value: float = 0.0,
                                 exponent: float = 1.0) -> Schedule:
    r"""Linear warm-up from ``init_value`` to ``peak_value``, then cosine decay to ``end_value``.

    .. math::
        \eta(t) = \eta_0 + (\eta_{peak} - \eta_0)\, t / W \quad (t < W), \qquad
        \eta(t) = \text{cosine\_decay}(\eta_{peak}, D - W, \alpha = \eta_{end}/\eta_{peak})(t - W)

    ``decay_steps`` :math:`D` counts the warm-up, as in optax: the schedule reaches
    ``end_value`` at step :math:`D`.
    """
    name = "warmup_cosine_decay_schedule"
    check_real(peak_value, "peak_value", name)
    check_int(warmup_steps, "warmup_steps", name, low=0)
    check_positive_int(decay_steps, "decay_steps", name)
    if decay_steps <= warmup_steps:
        raise ValueError(f"{name}: `decay_steps` (={decay_steps}) counts the warm-up and must exceed "
                         f"`warmup_steps` (={warmup_steps})")
    alpha = 0.0 if peak_value == 0 else end_value / peak_value
    warmup = (linear_schedule(init_value, peak_value, warmup_steps) if warmup_steps > 0
              else constant_schedule(peak_value))
    return join_schedules([warmup, cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent)],
                          [warmup_steps])


def piecewise_constant_schedule(init_value: float, boundaries_and_scales: Mapping[int, float] | None = None) -> Schedule:
    r"""Multiply the value by ``scale`` from each boundary step on.

    .. math:: \eta(t) = \eta_0 \prod_{b \le t} s_b

    ``{1000: 0.1, 2000: 0.1}`` divides the rate by 10 at step 1000 and again at 2000 (PyTorch's
    ``MultiStepLR`` with ``milestones=[1000, 2000], gamma=0.1``, counted in steps).
    """
    name = "piecewise_constant_schedule"
    check_real(init_value, "init_value", name)
    items = sorted((boundaries_and_scales or {}).items())
    for boundary, scale in items:
        check_int(boundary, "boundary", name, low=0)
        check_real(scale, f"boundaries_and_scales[{boundary}]", name, low=0)

    def schedule(count):
        value = jnp.asarray(init_value, jnp.float32)
        for boundary, scale in items:
            value = jnp.where(jnp.asarray(count) >= boundary, value * scale, value)
        return value

    return schedule
