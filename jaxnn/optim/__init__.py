"""Optimizers written from their equations, as gradient transformations over pytrees.

Each optimizer is a :class:`GradientTransformation` ``(init, update)`` of the same shape as
optax's, so the two libraries' pieces compose in either's ``chain``::

    optimizer = jaxnn.optim.adam(1e-3)
    opt_state = optimizer.init(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = jaxnn.optim.apply_updates(params, updates)
"""

from jaxnn.optim.adagrad import ScaleByRssState, adagrad, scale_by_rss
from jaxnn.optim.adam import ScaleByAdamState, adam, adamw, scale_by_adam
from jaxnn.optim.base import (
    EmptyState,
    GradientTransformation,
    ScaleByScheduleState,
    WeightDecayState,
    add_decayed_weights,
    apply_updates,
    chain,
    global_norm,
    identity,
    scale,
    scale_by_learning_rate,
)
from jaxnn.optim.clip import clip, clip_by_global_norm
from jaxnn.optim.partition import (
    MaskedState,
    MultiTransformState,
    masked,
    multi_transform,
    path_labels,
    set_to_zero,
)
from jaxnn.optim.rmsprop import ScaleByRmsState, rmsprop, scale_by_rms
from jaxnn.optim.schedules import (
    constant_schedule,
    cosine_decay_schedule,
    exponential_decay,
    join_schedules,
    linear_schedule,
    piecewise_constant_schedule,
    polynomial_schedule,
    warmup_cosine_decay_schedule,
)
from jaxnn.optim.sgd import TraceState, sgd, trace
from jaxnn.optim.wrappers import (
    AccumulateGradientsState,
    SkipNonFiniteState,
    accumulate_gradients,
    skip_non_finite,
)

__all__ = [
    "AccumulateGradientsState",
    "EmptyState",
    "GradientTransformation",
    "MaskedState",
    "MultiTransformState",
    "ScaleByAdamState",
    "ScaleByRmsState",
    "ScaleByRssState",
    "ScaleByScheduleState",
    "SkipNonFiniteState",
    "TraceState",
    "WeightDecayState",
    "accumulate_gradients",
    "adagrad",
    "adam",
    "adamw",
    "add_decayed_weights",
    "apply_updates",
    "chain",
    "clip",
    "clip_by_global_norm",
    "constant_schedule",
    "cosine_decay_schedule",
    "exponential_decay",
    "global_norm",
    "identity",
    "join_schedules",
    "linear_schedule",
    "masked",
    "multi_transform",
    "path_labels",
    "piecewise_constant_schedule",
    "polynomial_schedule",
    "rmsprop",
    "scale",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_rss",
    "set_to_zero",
    "sgd",
    "skip_non_finite",
    "trace",
    "warmup_cosine_decay_schedule",
]
