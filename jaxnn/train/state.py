"""The training state: everything a run needs to continue, as one pytree; and the checks that
every training entry point makes of the model, optimizer and train state it is given.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.core import Layer
from jaxnn.optim.base import check_transformation


class TrainState(NamedTuple):
    """Model parameters and state, optimizer state, step count and random key, as one pytree.

    Because it is a plain pytree, a whole train step ``(train_state, batch) -> (train_state,
    metrics)`` can be jitted with the state donated, scanned over, and checkpointed leaf by leaf.

    Attributes:
      params: trainable parameters (nested dicts of arrays).
      state: non-trainable layer state, such as BatchNorm's running statistics.
      opt_state: the optimizer's state.
      step: int32 scalar, the number of optimizer steps taken.
      key: typed PRNG key; step ``t`` draws from a key folded from it and ``t``
        (:func:`jaxnn.train.step.step_key`) and leaves it as it is, so a resumed run draws the
        same dropout masks as one that never stopped.
    """

    params: Any
    state: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array


def create_train_state(model, optimizer, key: jax.Array, input_shape) -> TrainState:
    """Initialize ``model`` for per-example ``input_shape`` and ``optimizer`` for its params.

    ``key`` is split in two: one half initializes the model, the other seeds the run (dropout).
    ``input_shape`` is checked by the model's ``init``.
    """
    check_model(model, "create_train_state")
    check_transformation(optimizer, "`optimizer`", "create_train_state")
    if not isinstance(key, (jax.Array, np.ndarray)):
        raise TypeError(f"create_train_state: `key` must be a PRNG key such as jax.random.key(0), "
                        f"got {key!r}")
    init_key, run_key = jax.random.split(key)
    _, params, state = model.init(init_key, input_shape)
    return TrainState(params=params, state=state, opt_state=optimizer.init(params),
                      step=jnp.zeros((), jnp.int32), key=run_key)


def check_model(model: Any, where: str) -> Layer:
    """Returns ``model``, raising a ``TypeError`` unless it is a :class:`jaxnn.Layer`."""
    if not isinstance(model, Layer):
        raise TypeError(f"{where}: `model` must be a jaxnn.Layer (such as jaxnn.Sequential([...])), "
                        f"got {type(model).__name__}")
    return model


def check_train_state(train_state: Any, where: str) -> TrainState:
    """Returns ``train_state``, raising a ``TypeError`` unless it is a :class:`TrainState`."""
    if not isinstance(train_state, TrainState):
        raise TypeError(f"{where}: `train_state` must be a TrainState (from create_train_state or "
                        f"restore_checkpoint), got {type(train_state).__name__}")
    return train_state
