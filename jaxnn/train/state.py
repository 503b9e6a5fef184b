"""The training state: everything a run needs to continue, as one pytree."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class TrainState(NamedTuple):
    """Model parameters and state, optimizer state, step count and random key, as one pytree.

    Because it is a plain pytree, a whole train step ``(train_state, batch) -> (train_state,
    metrics)`` can be jitted with the state donated, scanned over, and checkpointed leaf by leaf.

    Attributes:
      params: trainable parameters (nested dicts of arrays).
      state: non-trainable layer state, such as BatchNorm's running statistics.
      opt_state: the optimizer's state.
      step: int32 scalar, the number of optimizer steps taken.
      key: typed PRNG key; each step splits off what it uses, so a resumed run draws the same
        dropout masks as one that never stopped.
    """

    params: Any
    state: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array


def create_train_state(model, optimizer, key: jax.Array, input_shape) -> TrainState:
    """Initialize ``model`` for per-example ``input_shape`` and ``optimizer`` for its params.

    ``key`` is split in two: one half initializes the model, the other seeds the run (dropout).
    """
    init_key, run_key = jax.random.split(key)
    _, params, state = model.init(init_key, input_shape)
    return TrainState(params=params, state=state, opt_state=optimizer.init(params),
                      step=jnp.zeros((), jnp.int32), key=run_key)
