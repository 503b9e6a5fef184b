"""``fit`` and ``evaluate``: a thin epoch loop around the compiled steps.

The whole training set goes to the device once. Each epoch draws a permutation from the train
state's key, and the compiled step gathers its batches from the device-resident arrays, so no
data crosses from the host during an epoch. Full batches run ``steps_per_call`` at a time inside
one ``lax.scan``; the last partial batch has its own shape, compiled once and reused every epoch.
Metric sums stay on the device and are read by the host once per logging interval.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.data.checks import check_dataset
from jaxnn.train.callbacks import Callback
from jaxnn.train.history import History
from jaxnn.train.state import TrainState
from jaxnn.train.step import (
    NO_BAD_STEP,
    add_sums,
    averages,
    default_metrics,
    eval_sums,
    one_step,
    resolve_loss,
    scan_steps,
    zero_sums,
)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; ``step`` is the first optimizer step where it did."""

    def __init__(self, step: int, epoch: int):
        super().__init__(f"the training loss became NaN or infinite at step {step} (epoch {epoch}); "
                         "training stopped and the last checkpoint, if any, holds the last good "
                         "state. Try a smaller learning rate, gradient clipping, or check the data.")
        self.step, self.epoch = step, epoch


def _classes(model, train_state: TrainState, x: np.ndarray) -> int | None:
    """The number of model outputs (classes), found by tracing one example: no computation."""
    shape = jax.eval_shape(lambda p, s, e: model.apply(p, s, e)[0], train_state.params, train_state.state,
                           jax.ShapeDtypeStruct(x.shape[1:], x.dtype)).shape
    return shape[-1] if shape else None


def _check_data(data: Any, name: str, model, train_state, loss) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{name} data must be a pair (x, y) of arrays, got {type(data).__name__}")
    x, y = np.asarray(data[0]), np.asarray(data[1])
    num_classes = _classes(model, train_state, x) if loss == "cross_entropy" and x.ndim > 0 else None
    if num_classes is not None and (np.issubdtype(y.dtype, np.integer) or y.ndim == 1):
        check_dataset(x, y, num_classes, name=name)
    else:
        check_dataset(x, y, name=name)
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32, copy=False)
    return x, y


@functools.lru_cache(maxsize=8)
def _compiled_steps(model, optimizer, loss_fn, metric_items):
    """The jitted ``run_steps`` for one model, optimizer, loss and metrics.

    Cached, so that calling ``fit`` again with the same model and optimizer (another fold, more
    epochs) reuses the compiled code instead of tracing and compiling it again.
    """
    metric_fns = dict(metric_items)
    step = one_step(model, loss_fn, optimizer, metric_fns)
    many = scan_steps(step, metric_fns)

    # Batches are gathered on the device from the resident arrays and this epoch's order, so a
    # call sends the device only the position of its first batch. Donating the train state and
    # the totals lets XLA update them in place.
    @functools.partial(jax.jit, static_argnames=("count", "size"), donate_argnums=(0, 1))
    def run_steps(train_state, totals, x_all, y_all, order, start, *, count, size):
        indices = jax.lax.dynamic_slice_in_dim(order, start, count * size).reshape(count, size)
        if count == 1:
            train_state, sums = step(train_state, x_all[indices[0]], y_all[indices[0]])
        else:
            train_state, sums = many(train_state, x_all[indices], y_all[indices])
        return train_state, add_sums(totals, sums)

    return run_steps


@functools.partial(jax.jit, static_argnums=(1, 2))
def _start_epoch(key, n, metric_names):
    """One dispatch per epoch: the next run key, this epoch's order, zeroed metric sums."""
    shuffle_key, run_key = jax.random.split(key)
    return run_key, jax.random.permutation(shuffle_key, n), zero_sums(metric_names)


class _Progress:
    """A tqdm bar per epoch when tqdm is installed; one printed line per epoch otherwise."""

    def __init__(self, enabled: bool, epochs: int):
        self.enabled, self.epochs, self.bar = enabled, epochs, None
        self.tqdm = None
        if enabled:
            try:
                from tqdm.auto import tqdm
                self.tqdm = tqdm
            except ImportError:
                self.tqdm = None

    def start(self, epoch: int, total: int):
        if self.enabled and self.tqdm is not None:
            self.bar = self.tqdm(total=total, desc=f"epoch {epoch + 1}/{self.epochs}", unit="ex",
                                 leave=False, dynamic_ncols=True, file=sys.stderr)

    def update(self, examples: int, means: Mapping[str, float], rate: float):
        if self.bar is not None:
            self.bar.update(examples)
            self.bar.set_postfix({**{k: f"{v:.4f}" for k, v in means.items()}, "ex/s": f"{rate:,.0f}"},
                                 refresh=False)

    def end(self, epoch: int, logs: Mapping[str, float]):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.enabled:
            shown = "  ".join(f"{k} {v:.4f}" if k != "samples_per_second" else f"{v:,.0f} ex/s"
                              for k, v in logs.items() if k not in ("epoch_seconds",))
            line = f"epoch {epoch + 1}/{self.epochs}  {shown}"
            (self.tqdm.write if self.tqdm is not None else print)(line, file=sys.stderr)


def fit(model, optimizer, train_state: TrainState, train_data, *, epochs: int, batch_size: int = 128,
        loss="cross_entropy", metrics=None, validation_data=None, steps_per_call: int = 1,
        callbacks: Sequence[Callback] = (), progress: bool = True, initial_epoch: int = 0,
        history: History | None = None, log_every_seconds: float = 0.5) -> tuple[TrainState, History]:
    """Train ``model`` for epochs ``initial_epoch + 1 .. epochs`` and return ``(train_state, history)``.

    Each epoch shuffles the training data with a key split from ``train_state.key`` (so a run
    resumed from a checkpoint draws the same permutations and dropout masks as one that never
    stopped), takes steps on batches of ``batch_size`` (the last partial batch included), then
    evaluates on ``validation_data`` if given. The history holds, per epoch, the training
    ``loss`` and metrics (means over the epoch's steps), ``val_`` versions, ``epoch_seconds`` and
    ``samples_per_second``, plus whatever callbacks add.

    Args:
      model: a :class:`jaxnn.Layer`.
      optimizer: a gradient transformation; ``train_state.opt_state`` must be its state.
      train_state: from :func:`create_train_state` or a restored checkpoint. Its buffers are
        donated to the compiled step: use the returned state, not the one passed in.
      train_data: ``(x, y)`` arrays; checked once at entry (NaN/inf, labels out of range,
        empty data, mismatched lengths).
      epochs: the epoch to stop after (counted from the start of the run, not from
        ``initial_epoch``).
      batch_size: examples per optimizer step.
      loss: a name (``"cross_entropy"``, ``"mse"``, ...) or ``(outputs, targets) -> per-example
        losses``.
      metrics: per-example metric functions by name; default accuracy for cross-entropy.
      validation_data: optional ``(x, y)`` evaluated after each epoch.
      steps_per_call: optimizer steps per compiled call, inside one ``lax.scan``.
      callbacks: :class:`Callback` objects, called in order after each epoch.
      progress: show a progress bar (tqdm, if installed) and one line per epoch on stderr.
      initial_epoch: epochs already done (when resuming).
      history: a history to continue (when resuming).
      log_every_seconds: how often the progress bar reads the running metrics from the device.

    Raises:
      NonFiniteLossError: the loss became NaN or infinite; names the step. Callbacks have
        not seen the bad epoch, so the last checkpoint holds finite weights.
    """
    for name, value, low in (("epochs", epochs, 0), ("batch_size", batch_size, 1),
                             ("steps_per_call", steps_per_call, 1), ("initial_epoch", initial_epoch, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"fit: {name} must be an int >= {low}, got {value!r}")
    loss_name = loss
    x, y = _check_data(train_data, "train", model, train_state, loss_name)
    validation = None if validation_data is None else _check_data(validation_data, "validation", model,
                                                                   train_state, loss_name)
    metric_fns = dict(default_metrics(loss_name) if metrics is None else metrics)
    loss_fn = resolve_loss(loss)
    run_steps = _cached(_compiled_steps, model, optimizer, loss_fn, tuple(metric_fns.items()))
    n = x.shape[0]
    # A private copy: the caller's train state stays valid (the steps donate their input), and
    # leaves that share one buffer are separated, since a buffer can be donated only once.
    # Everything on the train state's device, committed, so each call shape compiles once.
    device = next(iter(train_state.step.devices()))
    train_state = jax.device_put(jax.tree.map(jnp.copy, train_state), device)
    x_all, y_all = jax.device_put(x, device), jax.device_put(y, device)
    full_batches, remainder = divmod(n, batch_size)
    # (first example, steps, batch size) of each compiled call in an epoch: the same every epoch.
    calls = [(start * batch_size, steps_per_call, batch_size)
             for start in range(0, full_batches - steps_per_call + 1, steps_per_call)]
    calls += [(start * batch_size, 1, batch_size)
              for start in range(len(calls) * steps_per_call, full_batches)]
    if remainder:
        calls.append((full_batches * batch_size, 1, remainder))
    history = History() if history is None else history
    callbacks = list(callbacks)
    for callback in callbacks:
        train_state = callback.on_train_begin(train_state) or train_state
    progress_display = _Progress(progress, epochs)

    for epoch in range(initial_epoch, epochs):
        run_key, order, totals = _start_epoch(train_state.key, n, tuple(metric_fns))
        train_state = train_state._replace(key=run_key)
        progress_display.start(epoch, n)
        started = last_read = time.perf_counter()
        seen = reported = 0
        for first, count, size in calls:
            train_state, totals = run_steps(train_state, totals, x_all, y_all, order, first,
                                            count=count, size=size)
            seen += count * size
            now = time.perf_counter()
            if progress and now - last_read >= log_every_seconds:
                progress_display.update(seen - reported, averages(totals), seen / (now - started))
                reported, last_read = seen, now
        totals = jax.device_get(totals)  # the epoch's one read of the metrics
        means = averages(totals)
        elapsed = time.perf_counter() - started
        progress_display.update(seen - reported, means, seen / elapsed)
        first_bad = int(totals["first_bad_step"])
        if first_bad != int(NO_BAD_STEP):
            progress_display.end(epoch, {})
            raise NonFiniteLossError(first_bad, epoch + 1)
        logs = dict(means)
        if validation is not None:
            logs.update({f"val_{k}": v for k, v in
                         _evaluate(model, train_state, validation, loss_fn, metric_fns, max(batch_size, 1024)).items()})
        logs["epoch_seconds"] = elapsed
        logs["samples_per_second"] = n / elapsed
        for callback in callbacks:
            train_state = callback.on_epoch_end(epoch, logs, train_state) or train_state
        history.append(logs)
        progress_display.end(epoch, logs)
        if any(callback.stop_training for callback in callbacks):
            break

    for callback in callbacks:
        train_state = callback.on_train_end(train_state) or train_state
    return train_state, history


@functools.lru_cache(maxsize=8)
def _compiled_eval(model, loss_fn, metric_items):
    return jax.jit(eval_sums(model, loss_fn, dict(metric_items)))


def _cached(builder, *args):
    """``builder(*args)`` through its cache, or uncached when an argument cannot be hashed."""
    try:
        return builder(*args)
    except TypeError as error:
        if "unhashable" not in str(error):
            raise
        return builder.__wrapped__(*args)


def _evaluate(model, train_state, data, loss_fn, metric_fns, batch_size) -> dict[str, float]:
    evaluate_batch = _cached(_compiled_eval, model, loss_fn, tuple(metric_fns.items()))
    x, y = data
    totals = zero_sums(metric_fns)
    for start in range(0, x.shape[0], batch_size):
        sums = evaluate_batch(train_state.params, train_state.state, x[start:start + batch_size],
                              y[start:start + batch_size])
        totals = add_sums(totals, sums)
    return averages(totals)


def evaluate(model, train_state: TrainState, data, *, loss="cross_entropy", metrics=None,
             batch_size: int = 1024) -> dict[str, float]:
    """Mean loss and metrics of ``model`` on ``data = (x, y)``, with ``train=False``.

    The data is checked as in :func:`fit`; batches of ``batch_size`` are summed on the device
    and averaged over all examples, so the result does not depend on the batch size.

    Returns:
      ``{"loss": ..., "accuracy": ...}`` (accuracy for cross-entropy by default).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"evaluate: batch_size must be a positive int, got {batch_size!r}")
    x, y = _check_data(data, "evaluation", model, train_state, loss)
    metric_fns = dict(default_metrics(loss) if metrics is None else metrics)
    return _evaluate(model, train_state, (x, y), resolve_loss(loss), metric_fns, batch_size)
