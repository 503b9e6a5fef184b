"""Callbacks, the hooks of ``fit``: early stopping, checkpoints, learning-rate logging and the
progress bar.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import jax

from jaxnn import parallel
from jaxnn._checks import check_bool, check_choice, check_int, check_positive_int, check_real, is_real
from jaxnn.train.checkpoint import save_checkpoint
from jaxnn.train.state import TrainState
from jaxnn.train.step import averages


class Callback:
    """Base class. ``fit`` calls these hooks, in this order, on every callback in its list:

    - ``on_train_begin(train_state)`` once, before the first epoch;
    - per epoch, ``on_epoch_begin(epoch)``, then ``on_steps_end(examples, totals)`` after each
      compiled call of the epoch's training steps, then ``on_epoch_end(epoch, logs,
      train_state)`` once the epoch's metrics (and validation metrics) are known;
    - ``on_train_end(train_state)`` once, after the last epoch;
    - ``on_train_error(error)`` instead of whatever was left, when training stops with an
      exception (which ``fit`` then re-raises).

    ``epoch`` counts from 0. The hooks that receive a train state may return a new one (or
    ``None`` to keep it). Set ``self.stop_training = True`` in ``on_epoch_end`` to end training
    after that epoch.
    """

    stop_training: bool = False

    def on_train_begin(self, train_state: TrainState) -> TrainState | None:
        return None

    def on_epoch_begin(self, epoch: int) -> None:
        return None

    def on_steps_end(self, examples: int, totals: Mapping[str, jax.Array]) -> None:
        """After each compiled call: ``examples`` trained on so far this epoch, and the epoch's
        running metric sums (see :func:`~jaxnn.train.step.averages`).

        The sums are still on the device, and the next call takes over their buffers: read them
        here or not at all. Reading them waits for the device to finish the call, so a callback
        that reads them every time makes the host wait on every call: read them rarely.
        """
        return None

    def on_epoch_end(self, epoch: int, logs: dict[str, float], train_state: TrainState) -> TrainState | None:
        return None

    def on_train_end(self, train_state: TrainState) -> TrainState | None:
        return None

    def on_train_error(self, error: BaseException) -> None:
        """Training stopped with ``error`` (a :class:`~jaxnn.train.loop.NonFiniteLossError`, an
        interrupt, ...), which ``fit`` re-raises after this hook: release what the callback holds."""
        return None


def _check_monitor(monitor: Any, where: str) -> str:
    if not isinstance(monitor, str):
        raise TypeError(f"{where}: `monitor` must be the name of a metric, such as 'val_loss', "
                        f"got {monitor!r}")
    return monitor


def _check_mode(mode: Any, monitor: str, where: str) -> str:
    check_choice(mode, "mode", where, ("min", "max", "auto"))
    if mode == "auto":
        return "max" if "accuracy" in monitor else "min"
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
        where = "EarlyStopping"
        self.monitor = _check_monitor(monitor, where)
        self.patience = check_int(patience, "patience", where, low=0)
        self.min_delta = check_real(min_delta, "min_delta", where, low=0.0, finite=False)
        self.mode = _check_mode(mode, monitor, where)
        self.restore_best = check_bool(restore_best, "restore_best", where)
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
            # Back on the devices the current weights are on: one device, or replicated on a mesh.
            params, state = jax.tree.map(lambda best, current: parallel.place(best, current.sharding),
                                         self.best_weights, (train_state.params, train_state.state))
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
        where = "Checkpoint"
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"{where}: `path` must be a file path (str or os.PathLike), got {path!r}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"{where}: `metadata` must be a dict (or None), got {type(metadata).__name__}")
        self.path = os.fspath(path)
        self.every = check_positive_int(every, "every", where)
        self.best_only = check_bool(best_only, "best_only", where)
        self.monitor = _check_monitor(monitor, where)
        self.mode = _check_mode(mode, monitor, where)
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
        if not (callable(schedule) or is_real(schedule)):
            raise TypeError("LearningRateLogger: `schedule` must be a learning rate (a number) or a schedule "
                            f"(a function of the step count), got {schedule!r}")
        self.schedule = schedule

    def on_epoch_end(self, epoch, logs, train_state):
        rate = self.schedule(train_state.step) if callable(self.schedule) else self.schedule
        logs["lr"] = float(rate)


class ProgressBar(Callback):
    """A tqdm bar per epoch on stderr (examples done, running loss and metrics, examples per
    second), then one line per epoch with the epoch's metrics and seconds; without tqdm, or where
    a bar cannot redraw itself, the lines alone.

    ``fit(..., progress=True)`` adds one after the other callbacks, so each line also shows what
    they added to the epoch's metrics (``lr``). The running metrics are sums on the device, and
    reading them waits for it: the bar reads them at most once per ``log_every_seconds``, and
    once when the epoch's last call is done, never once per step.

    Args:
      epochs: the epoch training stops after, shown as ``epoch 3/30``.
      examples_per_epoch: training examples in an epoch, the length of the bar.
      log_every_seconds: the least time between two reads of the running metrics.
      bar: draw the bar: ``None`` (the default) where it redraws itself in place, on a terminal
        or as a notebook widget, and not when stderr goes to a file or a pipe, where every redraw
        would stay behind (as Keras' ``verbose=2``); ``False`` for the lines alone.
    """

    def __init__(self, epochs: int, examples_per_epoch: int, log_every_seconds: float = 0.5,
                 bar: bool | None = None):
        where = "ProgressBar"
        self.epochs = check_int(epochs, "epochs", where, low=0)
        self.examples_per_epoch = check_positive_int(examples_per_epoch, "examples_per_epoch", where)
        self.log_every_seconds = check_real(log_every_seconds, "log_every_seconds", where, low=0.0)
        if bar is not None:
            bar = check_bool(bar, "bar", where)
        try:
            from tqdm import autonotebook, std
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None and bar is None:
            # tqdm.auto draws a widget in a notebook, where stderr is no terminal.
            bar = autonotebook.tqdm is not std.tqdm or self._is_terminal(sys.stderr)
        self.tqdm = tqdm if bar else None
        self.bar = None

    def on_epoch_begin(self, epoch):
        self.started = self.last_read = time.perf_counter()
        self.shown = 0  # examples the bar counts so far
        if self.tqdm is not None:
            self.bar = self.tqdm(total=self.examples_per_epoch, desc=f"epoch {epoch + 1}/{self.epochs}",
                                 unit="ex", leave=False, dynamic_ncols=True, file=sys.stderr)

    def on_steps_end(self, examples, totals):
        if self.bar is None:
            return
        now = time.perf_counter()
        # At the epoch's end fit reads the sums anyway, so reading them here costs no extra wait,
        # and the bar stands full during validation.
        if examples == self.examples_per_epoch or now - self.last_read >= self.log_every_seconds:
            means = averages(totals)
            now = time.perf_counter()
            # The postfix first: the update redraws the bar, with it.
            self.bar.set_postfix({**{name: f"{value:.4f}" for name, value in means.items()},
                                  "ex/s": f"{examples / (now - self.started):,.0f}"}, refresh=False)
            self.bar.update(examples - self.shown)
            self.shown, self.last_read = examples, now

    def on_epoch_end(self, epoch, logs, train_state):
        self._close_bar()
        timing = ("epoch_seconds", "samples_per_second")
        # The loss first, then the other metrics; validation ones after the training ones.
        names = sorted((name for name in logs if name not in timing),
                       key=lambda name: (name.startswith("val_"), name.removeprefix("val_") != "loss"))
        shown = [f"{name} {logs[name]:.4f}" for name in names]
        if "epoch_seconds" in logs:
            shown.append(f"{logs['epoch_seconds']:.2f} s")
        if "samples_per_second" in logs:
            shown.append(f"{logs['samples_per_second']:,.0f} ex/s")
        line = "  ".join([f"epoch {epoch + 1}/{self.epochs}", *shown])
        (self.tqdm.write if self.tqdm is not None else print)(line, file=sys.stderr)

    def on_train_error(self, error):
        self._close_bar()

    def _close_bar(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    @staticmethod
    def _is_terminal(stream) -> bool:
        try:
            return stream is not None and stream.isatty()
        except (AttributeError, ValueError):  # no isatty, or a closed stream
            return False

