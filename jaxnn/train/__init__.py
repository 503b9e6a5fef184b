"""Training: the train state, compiled steps, the ``fit`` loop, callbacks, checkpoints and sweeps.

``TrainState(params, state, opt_state, step, key)`` is one pytree; a train step
is ``(train_state, batch) -> (train_state, metrics)``, jitted once with the state donated.
"""

from jaxnn.train.callbacks import Callback, Checkpoint, EarlyStopping, LearningRateLogger, ProgressBar
from jaxnn.train.checkpoint import read_metadata, restore_checkpoint, save_checkpoint
from jaxnn.train.folds import make_optimizer
from jaxnn.train.history import History
from jaxnn.train.loop import NonFiniteLossError, evaluate, fit
from jaxnn.train.state import TrainState, create_train_state
from jaxnn.train.step import LOSSES, averages, make_eval_step, make_train_step
from jaxnn.train.sweep import sweep
from jaxnn.train.sweep_result import BestConfiguration, SweepResult

__all__ = [
    "LOSSES",
    "BestConfiguration",
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "History",
    "LearningRateLogger",
    "NonFiniteLossError",
    "ProgressBar",
    "SweepResult",
    "TrainState",
    "averages",
    "create_train_state",
    "evaluate",
    "fit",
    "make_eval_step",
    "make_optimizer",
    "make_train_step",
    "read_metadata",
    "restore_checkpoint",
    "save_checkpoint",
    "sweep",
]
