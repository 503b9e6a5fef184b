"""Callbacks: early stopping, checkpoints and learning-rate logging, called by ``fit`` after each epoch."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxnn.train.checkpoint import save_checkpoint
from jaxnn.train.state import TrainState


class Callback:
    """Base class. ``fit`` calls these hooks; each may return a new train state (or ``None`` to keep it).

    Set ``self.stop_training = True`` in ``on_epoch_end`` to end training after that epoch.
    """

    stop_training: bool = False

    def on_train_begin(self, train_state: TrainState) -> TrainState | None:
        return None

    def on_epoch_end(self, epoch: int, logs: dict[str, float], train_state: TrainState) -> TrainState | None:
        return None

    def on_train_end(self, train_state: TrainState) -> TrainState | None:
        return None


def _check_mode(mode: str, monitor: str, where: str) -> str:
    if mode == "auto":
        return "max" if "accuracy" in monitor else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"{where}: mode must be 'min', 'max' or 'auto', got {mode!r}")
    return mode


def _monitored(logs: Mapping[str, float], monitor: str, where: str) -> float:
    if monitor not in logs:
        raise ValueError(f"{where}: monitored metric {monitor!r} is not in this epoch's metrics "
                         f"{sorted(logs)}; pass validation data for 'val_' metrics")
    return float(logs[monitor])


def _copy_to_host(tree: Any) -> Any:
    # A host copy survives the donation of the device buffers by the next train step.
    return jax.device_get(tree)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    An epoch improves on the best so far when ``value < best - min_delta`` (mode ``"min"``) or
    ``value > best + min_delta`` (``"max"``; ``"auto"`` picks max for accuracies, min otherwise).
    With ``restore_best=True`` the best epoch's params and layer state are put back at the end of
    training, whether or not it stopped early. ``best_epoch`` (1-based) and ``stopped_epoch`` say
    what happened.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto", restore_best: bool = True):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be a non-negative int, got {patience!r}")
        if not isinstance(min_delta, (int, float)) or min_delta < 0:
            raise ValueError(f"EarlyStopping: min_delta must be a non-negative number, got {min_delta!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, float(min_delta)
        self.mode = _check_mode(mode, monitor, "EarlyStopping")
        self.restore_best = restore_best
        self.on_train_begin(None)

    def on_train_begin(self, train_state):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        self.best_weights = None
        self.wait = 0
        self.stopped_epoch = None
        self.stop_training = False

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs, train_state):
        value = _monitored(logs, self.monitor, "EarlyStopping")
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            if self.restore_best:
                self.best_weights = _copy_to_host((train_state.params, train_state.state))
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch + 1
                self.stop_training = True

    def on_train_end(self, train_state):
        if self.restore_best and self.best_weights is not None:
            params, state = jax.tree.map(jnp.asarray, self.best_weights)
            return train_state._replace(params=params, state=state)
        return None


class Checkpoint(Callback):
    """Save the whole train state to ``path`` every ``every`` epochs, or only when ``monitor`` improves.

    Each save replaces the file atomically, so the file always holds a complete checkpoint: the
    last one, or with ``best_only=True`` the best so far. The metadata records ``epoch``, ``step``,
    this epoch's metrics and whatever ``metadata`` was given (e.g. the model's description).
    """

    def __init__(self, path: str | os.PathLike, every: int = 1, best_only: bool = False,
                 monitor: str = "val_loss", mode: str = "auto", metadata: Mapping | None = None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"Checkpoint: every must be a positive int, got {every!r}")
        self.path, self.every, self.best_only, self.monitor = os.fspath(path), every, best_only, monitor
        self.mode = _check_mode(mode, monitor, "Checkpoint")
        self.metadata = dict(metadata or {})
        self.best = math.inf if self.mode == "min" else -math.inf
        self.saved_epochs: list[int] = []

    def on_epoch_end(self, epoch, logs, train_state):
        if (epoch + 1) % self.every:
            return
        if self.best_only:
            value = _monitored(logs, self.monitor, "Checkpoint")
            better = value < self.best if self.mode == "min" else value > self.best
            if not better:
                return
            self.best = value
        metadata = {**self.metadata, "epoch": epoch + 1, "step": int(train_state.step), "metrics": dict(logs)}
        save_checkpoint(self.path, train_state, metadata)
        self.saved_epochs.append(epoch + 1)
        return


class LearningRateLogger(Callback):
    """Record the learning rate in each epoch's metrics as ``"lr"``: ``schedule(step)`` after the epoch.

    ``schedule`` is the float or schedule the optimizer was built with; the value logged is the
    rate the next step will use.
    """

    def __init__(self, schedule):
        self.schedule = schedule

    def on_epoch_end(self, epoch, logs, train_state):
        rate = self.schedule(train_state.step) if callable(self.schedule) else self.schedule
        logs["lr"] = float(rate)
