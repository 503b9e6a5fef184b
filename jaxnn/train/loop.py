"""``fit`` and ``evaluate``: a thin epoch loop around the compiled steps.

The whole training set goes to the device once. Each epoch draws a permutation from the train
state's key (``jax.random.permutation``'s, its sort done on the host, where it is faster), and the
compiled step gathers its batches from the device-resident arrays, so no data crosses from the
host during an epoch, only the epoch's order. Full batches run ``steps_per_call`` at a time inside
one ``lax.scan``; the last partial batch has its own shape, compiled once and reused every epoch.
Metric sums stay on the device and are read by the host once per epoch, and by the progress bar
(a callback, :class:`~jaxnn.train.callbacks.ProgressBar`) once per logging interval.

``fit`` is put together from small pieces, as Keras's is: the batch plan (how an epoch is cut
into compiled calls), the placement of the data and train state on the device, one epoch of
training steps, and the callbacks that everything else (progress, checkpoints, early stopping)
is made of.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from jaxnn import parallel
from jaxnn._checks import check_bool, check_int, check_positive_int, check_real
from jaxnn.core import first_out_of_range
from jaxnn.data.checks import check_dataset
from jaxnn.train.callbacks import Callback, ProgressBar
from jaxnn.train.history import History
from jaxnn.optim.base import check_transformation
from jaxnn.train.state import TrainState, check_model, check_train_state
from jaxnn.train.step import (
    NO_BAD_STEP,
    add_sums,
    averages,
    eval_sums,
    one_step,
    resolve_loss,
    resolve_metrics,
    scan_steps,
    zero_sums,
)


class NonFiniteLossError(FloatingPointError):
    """The training loss, or the parameters a step produced, became NaN or infinite; ``step`` is
    the first optimizer step where they did."""

    def __init__(self, step: int, epoch: int):
        super().__init__(f"the training loss or the parameters became NaN or infinite at step {step} "
                         f"(epoch {epoch}); training stopped and the last checkpoint, if any, holds the "
                         "last good state. Try a smaller learning rate, gradient clipping, or check the data.")
        self.step, self.epoch = step, epoch


def _classes(model, train_state: TrainState, x: np.ndarray) -> int | None:
    """The number of model outputs (classes), found by tracing one example: no computation.

    The trace is cached by the shapes and dtypes involved, since it takes longer than many
    training steps of a small model and every call of ``fit`` and ``evaluate`` needs it.
    """
    leaves, structure = jax.tree.flatten((train_state.params, train_state.state))
    signature = tuple((tuple(leaf.shape), str(leaf.dtype)) for leaf in leaves)
    return call_cached(_traced_classes, model, structure, signature, x.shape[1:], str(x.dtype))


@functools.lru_cache(maxsize=32)
def _traced_classes(model, structure, signature, example_shape, example_dtype) -> int | None:
    abstract = [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in signature]
    params, state = jax.tree.unflatten(structure, abstract)
    shape = jax.eval_shape(lambda p, s, e: model.apply(p, s, e)[0], params, state,
                           jax.ShapeDtypeStruct(example_shape, example_dtype)).shape
    return shape[-1] if shape else None


def check_data(data: Any, name: str, model, train_state, loss) -> tuple[np.ndarray, np.ndarray]:
    """``data`` as NumPy arrays ``(x, y)`` (floating inputs as float32), checked for ``model`` and
    ``loss``: a ``TypeError`` or ``ValueError`` naming ``name`` and what is wrong, before XLA
    sees anything."""
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{name} data must be a pair (x, y) of arrays, got {type(data).__name__}")
    x, y = np.asarray(data[0]), np.asarray(data[1])
    num_classes = _classes(model, train_state, x) if loss == "cross_entropy" and x.ndim > 0 else None
    if num_classes is not None and (np.issubdtype(y.dtype, np.integer) or y.ndim == 1):
        check_dataset(x, y, num_classes, name=name)
    else:
        check_dataset(x, y, name=name)
    if loss == "binary_cross_entropy":
        _check_probabilities(y, name)
    if model.input_check is not None:
        # The compiled step cannot see values a layer cannot take (an Embedding clamps ids out
        # of range under jit): the model checks all of the data here, once.
        try:
            model.input_check(x)
        except ValueError as error:
            raise ValueError(f"{name} data: {error}") from None
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32, copy=False)
    return x, y


def _check_probabilities(y: np.ndarray, name: str) -> None:
    """Binary cross-entropy's targets are probabilities: 0 and 1 labels, or values between."""
    outside = first_out_of_range(y, 0, 1, closed=True)
    if outside is not None:
        index, value = outside
        raise ValueError(f"{name} targets of binary_cross_entropy must be in [0, 1] (labels 0 and 1, or "
                         f"probabilities), got {value} at index {index[0] if len(index) == 1 else index}")


def _check_callbacks(callbacks: Any) -> list[Callback]:
    if not isinstance(callbacks, Sequence) or isinstance(callbacks, str):
        raise TypeError(f"fit: `callbacks` must be a list of Callback objects, "
                        f"got {type(callbacks).__name__}")
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise TypeError(f"fit: `callbacks` must hold Callback objects (subclasses of "
                            f"jaxnn.train.Callback), got {callback!r}")
    return list(callbacks)


@functools.lru_cache(maxsize=8)
def _compiled_steps(model, optimizer, loss_fn, metric_items, mesh):
    """The jitted ``run_steps`` for one model, optimizer, loss, metrics and mesh (or None).

    Cached, so that calling ``fit`` again with the same model and optimizer (another fold, more
    epochs) reuses the compiled code instead of tracing and compiling it again.
    """
    metric_fns = dict(metric_items)
    step = one_step(model, loss_fn, optimizer, metric_fns)

    # Donating the train state and the totals lets XLA update them in place.
    def run_steps(train_state, totals, x_all, y_all, order, start, *, count, size):
        def split_over_devices(batch, leading_axes):
            # The gathered batch is split over the mesh's devices, where it divides evenly; a last
            # partial batch that does not stays whole on every device (the same result, unsplit).
            if mesh is None or size % parallel.data_devices(mesh):
                return batch
            return jax.lax.with_sharding_constraint(batch, parallel.batch_sharding(mesh, leading_axes))

        return gathered_steps(step, metric_fns, train_state, totals, x_all, y_all, order, start,
                              count, size, place_batch=split_over_devices)

    shardings = {} if mesh is None else {"out_shardings": parallel.replicated(mesh)}
    return jax.jit(run_steps, static_argnames=("count", "size"), donate_argnums=(0, 1), **shardings)


def gathered_steps(step, metric_fns, train_state, totals, x_all, y_all, order, start, count: int, size: int,
                   place_batch=None):
    """``count`` optimizer steps on batches of ``size`` examples gathered on the device.

    The batches are ``x_all`` and ``y_all`` (the whole training set, resident on the device) at
    the positions ``order[start : start + count * size]``, so a call sends the device only the
    position of its first batch. One step, or ``count`` of them in one ``lax.scan``; their metric
    sums are added to ``totals``. ``place_batch(batch, leading_axes)``, if given, places each
    gathered batch (``fit`` splits it over a mesh's devices).

    Returns ``(train_state, totals)``.
    """
    place_batch = place_batch or (lambda batch, leading_axes: batch)
    indices = jax.lax.dynamic_slice_in_dim(order, start, count * size).reshape(count, size)
    if count == 1:
        batch = place_batch((x_all[indices[0]], y_all[indices[0]]), 0)
        train_state, sums = step(train_state, *batch)
    else:
        batch = place_batch((x_all[indices], y_all[indices]), 1)
        train_state, sums = scan_steps(step, metric_fns)(train_state, *batch)
    return train_state, add_sums(totals, sums)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _start_epoch(key, n, metric_names):
    """One dispatch per epoch: the next run key, the random sort keys of this epoch's shuffle
    (:func:`_epoch_order`), zeroed metric sums."""
    shuffle_key, run_key = jax.random.split(key)
    rounds = []
    for _ in range(_shuffle_rounds(n)):
        shuffle_key, round_key = jax.random.split(shuffle_key)
        rounds.append(jax.random.bits(round_key, (n,), jnp.uint32))
    sort_keys = jnp.stack(rounds) if rounds else jnp.zeros((0, n), jnp.uint32)
    return run_key, sort_keys, zero_sums(metric_names)


def _shuffle_rounds(n: int) -> int:
    """The rounds of sorting by random 32-bit keys that ``jax.random.permutation`` makes for ``n``
    items, enough that ties between keys do not bias the order."""
    return int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))


def _epoch_order(sort_keys: np.ndarray) -> np.ndarray:
    """The order of ``jax.random.permutation(shuffle_key, n)``, bit for bit, from the random keys
    it sorts by (``(rounds, n)``): each round a stable sort by that round's keys.

    Sorted on the host: XLA's CPU sort of 16,384 keys took 3 ms a round, as long as 50 steps of
    a small MLP. A stable sort by key is a sort of the distinct pairs (key, position), here packed
    into one 64-bit integer each, which NumPy sorts ten times faster than a stable argsort.
    """
    count = sort_keys.shape[1]
    order = np.arange(count, dtype=np.int32)
    positions = np.arange(count, dtype=np.uint64)
    for keys in sort_keys:
        pairs = (keys.astype(np.uint64) << np.uint64(32)) | positions
        pairs.sort()
        order = order[(pairs & np.uint64(0xFFFFFFFF)).astype(np.int64)]
    return order


def batch_plan(num_examples: int, batch_size: int, steps_per_call: int) -> list[tuple[int, int, int]]:
    """The compiled calls of one epoch, as ``(first position in the epoch's order, steps, batch size)``.

    Full batches go ``steps_per_call`` to a call; the full batches left over go one to a call,
    and the last partial batch, if any, is a call of its own size. The plan is the same every
    epoch, so an epoch has at most three call shapes, each compiled once for the whole run. For
    14 examples in batches of 4, two steps per call: ``[(0, 2, 4), (8, 1, 4), (12, 1, 2)]``.
    """
    full_batches, remainder = divmod(num_examples, batch_size)
    calls = [(start * batch_size, steps_per_call, batch_size)
             for start in range(0, full_batches - steps_per_call + 1, steps_per_call)]
    calls += [(start * batch_size, 1, batch_size)
              for start in range(len(calls) * steps_per_call, full_batches)]
    if remainder:
        calls.append((full_batches * batch_size, 1, remainder))
    return calls


def _place_on_device(train_state: TrainState, x: np.ndarray, y: np.ndarray, mesh):
    """A private copy of ``train_state``, and ``x`` and ``y``, committed to the train state's device,
    or with a mesh replicated on every device of the mesh.

    The copy keeps the caller's train state valid (the steps donate their input) and separates
    leaves that share one buffer, since a buffer can be donated only once. Committing everything
    to one placement makes each call shape compile once. With a mesh, every device holds the
    whole training set, and each step's batch, gathered from it, is split over the devices.
    """
    if mesh is not None:
        sharding = parallel.replicated(mesh)
        copied = _copy_tree(train_state) if jax.process_count() == 1 else train_state
        return (parallel.replicate(copied, mesh), parallel.place(x, sharding), parallel.place(y, sharding))
    device = next(iter(train_state.step.devices()))
    train_state = jax.device_put(_copy_tree(train_state), device)
    return train_state, jax.device_put(x, device), jax.device_put(y, device)


# A copy of every leaf in one compiled call: one dispatch, where a copy per leaf is one each.
_copy_tree = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


def _train_epoch(run_steps, train_state: TrainState, x_all, y_all, plan, metric_names, callbacks):
    """One epoch of training steps: ``(train_state, the epoch's metric sums on the host, seconds)``.

    Nothing waits for the device until the end, where the sums are read once; callbacks see
    them, still on the device, after each call.
    """
    run_key, sort_keys, totals = _start_epoch(train_state.key, x_all.shape[0], metric_names)
    order = parallel.place(_epoch_order(np.asarray(sort_keys)), x_all.sharding)
    train_state = train_state._replace(key=run_key)
    started = time.perf_counter()
    seen = 0
    for first, steps, size in plan:
        train_state, totals = run_steps(train_state, totals, x_all, y_all, order, first,
                                        count=steps, size=size)
        seen += steps * size
        for callback in callbacks:
            callback.on_steps_end(seen, totals)
    totals = jax.device_get(totals)
    seconds = time.perf_counter() - started
    if jax.process_count() > 1:
        # Process 0's time, so that the history is the same on every process.
        seconds = float(multihost_utils.broadcast_one_to_all(np.float64(seconds)))
    return train_state, totals, seconds


def fit(model, optimizer, train_state: TrainState, train_data, *, epochs: int, batch_size: int = 128,
        loss="cross_entropy", metrics=None, validation_data=None, steps_per_call: int = 1,
        callbacks: Sequence[Callback] = (), progress: bool = True, initial_epoch: int = 0,
        history: History | None = None, log_every_seconds: float = 0.5,
        mesh=None) -> tuple[TrainState, History]:
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
      callbacks: :class:`Callback` objects; their hooks are called in list order (see
        :class:`Callback` for when).
      progress: show a progress bar (tqdm, if installed) and one line per epoch on stderr: a
        :class:`~jaxnn.train.callbacks.ProgressBar` called after ``callbacks``.
      initial_epoch: epochs already done (when resuming).
      history: a history to continue (when resuming).
      log_every_seconds: how often the progress bar reads the running metrics from the device.
      mesh: train on the devices of a :class:`~jax.sharding.Mesh` with a ``"data"`` axis
        (:func:`jaxnn.parallel.data_mesh`): the train state is replicated on every device and
        each step's batch split over them; ``batch_size`` is the global batch and must be
        divisible by the number of devices. The run equals the run on one device within float
        tolerance (the same permutations and dropout masks; BatchNorm statistics of the global
        batch). Under several processes, call ``fit`` in each with the same arguments: metrics
        and history are global and the same on every process, and only process 0 shows
        progress.

    Raises:
      NonFiniteLossError: the loss became NaN or infinite; names the step. Callbacks have
        not seen the bad epoch, so the last checkpoint holds finite weights.
      TypeError: an argument of the wrong type (``epochs="3"``, ``batch_size=2.5``, a callback
        that is not a :class:`Callback`, ``loss=3``), naming the argument; or data that is not
        a pair ``(x, y)``, or labels of the wrong dtype.
      ValueError: a value out of range (``batch_size=0``), an unknown loss name, or bad data.
    """
    where = "fit"
    check_model(model, where)
    check_transformation(optimizer, "`optimizer`", where)
    check_train_state(train_state, where)
    epochs = check_int(epochs, "epochs", where, low=0)
    batch_size = check_positive_int(batch_size, "batch_size", where)
    steps_per_call = check_positive_int(steps_per_call, "steps_per_call", where)
    initial_epoch = check_int(initial_epoch, "initial_epoch", where, low=0)
    progress = check_bool(progress, "progress", where)
    log_every_seconds = check_real(log_every_seconds, "log_every_seconds", where, low=0.0)
    callbacks = _check_callbacks(callbacks)
    if mesh is not None:
        mesh = parallel.check_mesh(mesh, where)
        parallel.check_batch_size(batch_size, mesh, where)
    if history is not None and not isinstance(history, History):
        raise TypeError(f"fit: `history` must be a History (or None), got {type(history).__name__}")
    loss_fn = resolve_loss(loss, "loss", where)
    metric_fns = resolve_metrics(metrics, loss, where)
    x, y = check_data(train_data, "train", model, train_state, loss)
    validation = None if validation_data is None else check_data(validation_data, "validation", model,
                                                                   train_state, loss)

    run_steps = call_cached(_compiled_steps, model, optimizer, loss_fn, tuple(metric_fns.items()), mesh)
    train_state, x_all, y_all = _place_on_device(train_state, x, y, mesh)
    plan = batch_plan(x.shape[0], batch_size, steps_per_call)
    history = History() if history is None else history
    if progress and parallel.is_main_process():
        callbacks.append(ProgressBar(epochs, x.shape[0], log_every_seconds))

    try:
        for callback in callbacks:
            train_state = callback.on_train_begin(train_state) or train_state
        for epoch in range(initial_epoch, epochs):
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            train_state, totals, seconds = _train_epoch(run_steps, train_state, x_all, y_all, plan,
                                                        tuple(metric_fns), callbacks)
            first_bad = int(totals["first_bad_step"])
            if first_bad != int(NO_BAD_STEP):
                raise NonFiniteLossError(first_bad, epoch + 1)
            logs = averages(totals)
            if validation is not None:
                validation_means = _evaluate(model, train_state, validation, loss_fn, metric_fns,
                                             evaluation_batch(batch_size, mesh), mesh=mesh)
                logs.update({f"val_{name}": value for name, value in validation_means.items()})
            logs["epoch_seconds"] = seconds
            logs["samples_per_second"] = x.shape[0] / seconds
            for callback in callbacks:
                train_state = callback.on_epoch_end(epoch, logs, train_state) or train_state
            history.append(logs)
            if any(callback.stop_training for callback in callbacks):
                break
        for callback in callbacks:
            train_state = callback.on_train_end(train_state) or train_state
    except BaseException as error:
        for callback in callbacks:
            callback.on_train_error(error)
        raise
    return train_state, history


def evaluation_batch(batch_size: int, mesh) -> int:
    """Validation batches: at least 1024 examples; on a mesh a multiple of the (divisible) training
    batch, so that they split over the devices too."""
    if mesh is None:
        return max(batch_size, 1024)
    return batch_size * max(1, 1024 // batch_size)


@functools.lru_cache(maxsize=8)
def _compiled_eval(model, loss_fn, metric_items, with_outputs):
    return jax.jit(eval_sums(model, loss_fn, dict(metric_items), with_outputs=with_outputs))


def call_cached(builder, *args):
    """``builder(*args)`` through its cache, or uncached when an argument cannot be hashed."""
    try:
        return builder(*args)
    except TypeError as error:
        if "unhashable" not in str(error):
            raise
        return builder.__wrapped__(*args)


def _evaluate(model, train_state, data, loss_fn, metric_fns, batch_size, *, with_outputs=False, mesh=None):
    """Means of the loss and metrics over ``data``; with ``with_outputs``, ``(means, outputs)``,
    the model's outputs for every example gathered on the host from the same pass.

    With a mesh, the train state is replicated on it and each batch split over its devices where
    it divides evenly (and held whole on each device where it does not).
    """
    evaluate_batch = call_cached(_compiled_eval, model, loss_fn, tuple(metric_fns.items()), with_outputs)
    x, y = data
    params, state = train_state.params, train_state.state
    if mesh is not None:
        params, state = parallel.replicate((params, state), mesh)
    totals, outputs = zero_sums(metric_fns), []
    for start in range(0, x.shape[0], batch_size):
        batch = (x[start:start + batch_size], y[start:start + batch_size])
        if mesh is not None:
            divides = batch[0].shape[0] % parallel.data_devices(mesh) == 0
            batch = (parallel.shard_batch(batch, mesh) if divides
                     else parallel.replicate(batch, mesh))
        result = evaluate_batch(params, state, *batch)
        if with_outputs:
            sums, batch_outputs = result
            outputs.append(batch_outputs)
        else:
            sums = result
        totals = add_sums(totals, sums)
    if with_outputs:
        return averages(totals), np.concatenate(parallel.to_host(outputs))
    return averages(totals)


def evaluate(model, train_state: TrainState, data, *, loss="cross_entropy", metrics=None,
             batch_size: int = 1024, return_outputs: bool = False, mesh=None):
    """Mean loss and metrics of ``model`` on ``data = (x, y)``, with ``train=False``.

    The data is checked as in :func:`fit`; batches of ``batch_size`` are summed on the device
    and averaged over all examples, so the result does not depend on the batch size.

    Args:
      return_outputs: also return the model's outputs for every example (the logits, for a
        classifier), from the same forward pass, as one NumPy array of ``len(x)`` rows.
      mesh: evaluate on the devices of a mesh with a ``"data"`` axis, as :func:`fit` trains.

    Returns:
      ``{"loss": ..., "accuracy": ...}`` (accuracy for cross-entropy by default); with
      ``return_outputs=True``, the pair ``(that dict, outputs)``.

    Raises:
      TypeError: an argument of the wrong type (``batch_size=2.5``, ``loss=3``), naming it.
      ValueError: a value out of range (``batch_size=0``), an unknown loss name, or bad data.
    """
    where = "evaluate"
    check_model(model, where)
    check_train_state(train_state, where)
    batch_size = check_positive_int(batch_size, "batch_size", where)
    return_outputs = check_bool(return_outputs, "return_outputs", where)
    loss_fn = resolve_loss(loss, "loss", where)
    metric_fns = resolve_metrics(metrics, loss, where)
    if mesh is not None:
        mesh = parallel.check_mesh(mesh, where)
    x, y = check_data(data, "evaluation", model, train_state, loss)
    return _evaluate(model, train_state, (x, y), loss_fn, metric_fns, batch_size, with_outputs=return_outputs,
                     mesh=mesh)
