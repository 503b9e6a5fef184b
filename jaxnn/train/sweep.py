"""Sweeps: a hyperparameter grid × seeds × cross-validation folds, trained as one vmapped program.

Every member of a sweep is a training run. The members' train states are stacked along a new
leading axis and one compiled step, ``jax.vmap`` of :func:`~jaxnn.train.step.one_step`, trains
them all at once; the hyperparameters that vary are traced values of that program (the
optimizer is built inside it from them), so the whole sweep compiles once for each shape of its
calls. Each member reproduces :func:`~jaxnn.train.fit` exactly as a separate run would do it:
the same initial train state, the same permutation each epoch, the same batch plan (the last
partial batch included) and the same dropout keys.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxnn._checks import check_bool, check_callable, check_int, check_positive_int
from jaxnn.optim.base import check_transformation, identity
from jaxnn.train.folds import Member, check_grid, check_seeds, fold_indices, make_optimizer, members
from jaxnn.train.history import History
from jaxnn.train.loop import batch_plan, call_cached, check_data, evaluation_batch, gathered_steps
from jaxnn.train.state import TrainState, check_model, create_train_state
from jaxnn.train.sweep_result import SweepResult
from jaxnn.train.step import (
    NO_BAD_STEP,
    add_sums,
    eval_sums,
    one_step,
    resolve_loss,
    resolve_metrics,
    zero_sums,
)

# --------------------------------------------------------------------------------------------
# The compiled program.


def _member_optimizer(optimizer_fn, constants, traced):
    return make_optimizer(optimizer_fn, {**constants, **traced})


@functools.lru_cache(maxsize=8)
def _compiled(model, optimizer_fn, constant_items, input_shape, loss_fn, metric_items):
    """The jitted pieces of a sweep: the optimizers' states, an epoch's start, training calls and
    evaluation, each vmapped over the members. Cached, so a second sweep of the same model and
    optimizer_fn reuses the compiled code."""
    constants = dict(constant_items)
    metric_fns = dict(metric_items)
    metric_names = tuple(metric_fns)

    def init_optimizers(params, traced):
        def member(member_params, hyperparameters):
            return _member_optimizer(optimizer_fn, constants, hyperparameters).init(member_params)
        return jax.vmap(member)(params, traced)

    def start_epoch(keys, train_indices):
        # fit's epoch start, per member: its order over the member's own training examples.
        def member(key, indices):
            shuffle_key, run_key = jax.random.split(key)
            order = indices[jax.random.permutation(shuffle_key, indices.shape[0])]
            return run_key, order, zero_sums(metric_names)
        return jax.vmap(member)(keys, train_indices)

    def run_steps(train_states, totals, traced, x_all, y_all, orders, start, *, count, size):
        def member(train_state, member_totals, hyperparameters, order):
            optimizer = _member_optimizer(optimizer_fn, constants, hyperparameters)
            step = one_step(model, loss_fn, optimizer, metric_fns)
            return gathered_steps(step, metric_fns, train_state, member_totals, x_all, y_all, order, start,
                                  count, size)
        return jax.vmap(member)(train_states, totals, traced, orders)

    evaluate_batch = eval_sums(model, loss_fn, metric_fns)

    def evaluate(params, state, x_all, y_all, indices, *, shared):
        def member(member_params, member_state, member_indices):
            return evaluate_batch(member_params, member_state, x_all[member_indices], y_all[member_indices])
        return jax.vmap(member, in_axes=(0, 0, None if shared else 0))(params, state, indices)

    return (jax.jit(init_optimizers), jax.jit(start_epoch),
            jax.jit(run_steps, static_argnames=("count", "size"), donate_argnums=(0, 1)),
            jax.jit(evaluate, static_argnames=("shared",)))


class _SweepProgress:
    """One progress bar for the whole sweep (tqdm, when installed and stderr is a terminal), and
    one line on stderr as each compiled call's members finish."""

    def __init__(self, total_examples: int, members_count: int, enabled: bool):
        self.tqdm = None
        self.members_count = members_count
        self.done = 0
        self.enabled = enabled
        self.bar = None
        if not enabled:
            return
        try:
            from tqdm import autonotebook, std
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        terminal = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        if tqdm is not None and (autonotebook.tqdm is not std.tqdm or terminal):
            self.tqdm = tqdm
            self.bar = tqdm(total=total_examples, desc=f"sweep of {members_count} members", unit="ex",
                            leave=False, dynamic_ncols=True, file=sys.stderr)

    def advance(self, examples: int) -> None:
        if self.bar is not None:
            self.bar.update(examples)

    def call_done(self, count: int, seconds: float, metric: str, finals: list[float]) -> None:
        if not self.enabled:
            return
        self.done += count
        line = f"{count} members trained in {seconds:.1f} s ({self.done} of {self.members_count} done)"
        finite = [value for value in finals if value is not None and math.isfinite(value)]
        if finite:
            line += f"; final {metric} from {min(finite):.4f} to {max(finite):.4f}"
        if len(finite) < len(finals):
            line += f"; {len(finals) - len(finite)} diverged"
        (self.tqdm.write if self.tqdm is not None else print)(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _host_means(totals: Mapping[str, np.ndarray], position: int) -> dict[str, float]:
    """One member's means from the stacked sums of a call, read to the host."""
    count = max(int(totals["count"][position]), 1)
    return {name: float(values[position]) / count for name, values in totals.items()
            if name not in ("count", "first_bad_step")}


class _Calls(NamedTuple):
    """What every call of a sweep shares: the compiled pieces, the data on the device, the settings.

    Every array is committed to ``device``, as the calls' outputs are, so that each shape of
    call compiles once.
    """

    model: Any
    input_shape: tuple[int, ...]
    init_optimizers: Callable
    start_epoch: Callable
    run_steps: Callable
    evaluate: Callable
    metric_fns: dict
    device: Any
    x_all: jax.Array
    y_all: jax.Array
    x_eval: jax.Array | None      # the shared validation data, or x_all with folds, or None
    y_eval: jax.Array | None
    epochs: int
    batch_size: int
    steps_per_call: int

    def put(self, tree):
        return jax.device_put(tree, self.device)

    def initial_states(self, seeds: Sequence[int], traced) -> TrainState:
        """The members' train states, stacked: each seed's params, layer state and key exactly as
        ``create_train_state`` makes them, and the optimizer states of the traced hyperparameters.

        The model is initialized member by member, eagerly, as for ``fit``: its random
        initializers then compile once per shape for every sweep and run, where a vmapped
        initialization would compile anew for each sweep, and slowly.
        """
        states = [create_train_state(self.model, identity(), jax.random.key(seed), self.input_shape)
                  for seed in seeds]
        params, layer_state = jax.tree.map(lambda *leaves: np.stack(leaves),
                                           *[jax.device_get((s.params, s.state)) for s in states])
        keys = jax.random.wrap_key_data(np.stack([np.asarray(jax.random.key_data(s.key)) for s in states]),
                                        impl=jax.random.key_impl(states[0].key))
        params, layer_state, keys = self.put((params, layer_state, keys))
        opt_state = self.put(self.init_optimizers(params, traced))
        return TrainState(params=params, state=layer_state, opt_state=opt_state,
                          step=self.put(np.zeros(len(seeds), np.int32)), key=keys)

    def train_epoch(self, train_states: TrainState, traced, indices, plan, advance):
        """One epoch of every member of the call, as ``fit`` trains one: ``(train_states, sums on
        the host, seconds)``."""
        started = time.perf_counter()
        run_keys, orders, totals = self.put(self.start_epoch(train_states.key, indices))
        train_states = train_states._replace(key=run_keys)
        for first, steps, size in plan:
            train_states, totals = self.run_steps(train_states, totals, traced, self.x_all, self.y_all,
                                                  orders, first, count=steps, size=size)
            advance(indices.shape[0] * steps * size)
        totals = jax.device_get(totals)
        return train_states, totals, time.perf_counter() - started

    def validate(self, train_states: TrainState, val_indices, shared: bool):
        """Every member's validation sums on the host, over batches of the size ``fit`` takes."""
        batch = evaluation_batch(self.batch_size, None)
        totals = None  # the first batch's sums start the totals: no eager additions to compile
        for start in range(0, int(val_indices.shape[-1]), batch):
            sums = self.evaluate(train_states.params, train_states.state, self.x_eval, self.y_eval,
                                 val_indices[..., start:start + batch], shared=shared)
            totals = sums if totals is None else add_sums(totals, sums)
        return jax.device_get(totals if totals is not None else zero_sums(self.metric_fns))


# --------------------------------------------------------------------------------------------
# The sweep.


def sweep(model, optimizer_fn: Callable, train_data, *, grid: Mapping[str, Sequence[float]] | None = None,
          seeds: int | Sequence[int] = 1, folds: int | None = None, epochs: int, batch_size: int = 128,
          loss="cross_entropy", metrics=None, validation_data=None, steps_per_call: int = 1,
          members_per_call: int | None = None, progress: bool = True) -> SweepResult:
    r"""Train every member of ``grid`` × ``seeds`` × ``folds`` in one vmapped compiled program.

    A member with hyperparameters :math:`h`, seed :math:`s` and fold :math:`f` is the run

    .. code-block:: python

        optimizer = make_optimizer(optimizer_fn, h)            # optimizer_fn(**h), plus "l2"
        state = create_train_state(model, optimizer, jax.random.key(s), x.shape[1:])
        fit(model, optimizer, state, (x[train_f], y[train_f]), validation_data=(x[val_f], y[val_f]),
            epochs=epochs, batch_size=batch_size, steps_per_call=steps_per_call, ...)

    and its history and final train state equal that run's within float tolerance: the same
    permutations, batches (the last partial one included) and dropout keys. A member whose loss
    or parameters stop being finite, where ``fit`` would raise ``NonFiniteLossError``, goes on
    without stopping the others: :attr:`SweepResult.diverged_at_step` names the step, and every
    metric of the member (``val_`` ones too) is NaN from that step's epoch on. All members train
    together: their train states are stacked, and ``jax.vmap`` of the train step runs them in
    one program, with the hyperparameters that take several values in ``grid`` as traced
    values, so that the program compiles once (once per training-set size: k folds of N
    examples have at most two sizes, and once per size of a call when ``members_per_call``
    does not divide the members).

    Args:
      model: a :class:`jaxnn.Layer`.
      optimizer_fn: ``optimizer_fn(**hyperparameters) -> optimizer``, such as
        ``lambda learning_rate, weight_decay: jaxnn.optim.adamw(learning_rate,
        weight_decay=weight_decay)`` or just ``jaxnn.optim.adam``. It is called with concrete
        numbers once per configuration (so that the optimizer checks them) and with traced
        ones inside the program.
      train_data: ``(x, y)`` arrays, checked as in ``fit``.
      grid: ``name -> list of values`` (``{"learning_rate": [1e-3, 1e-2], "b1": [0.9, 0.95]}``),
        every combination a configuration; names are keywords of ``optimizer_fn``, and
        ``"l2"`` adds an L2 penalty (see :func:`make_optimizer`). Values are finite real
        numbers; a name with one value is passed as that number, not traced. ``None``: one
        configuration, ``optimizer_fn()``.
      seeds: a count ``n`` (seeds ``0 .. n-1``) or a list of seeds, each a member.
      folds: ``k`` for stratified k-fold cross-validation (integer labels; plain k-fold for
        other targets): each member trains on ``k - 1`` folds and validates on the one held
        out (:attr:`SweepResult.folds`). Conflicts with ``validation_data``.
      epochs: epochs per member.
      batch_size, loss, metrics, validation_data, steps_per_call: as in ``fit``.
      members_per_call: train at most this many members in one call (the rest in later calls)
        when all of them at once would not fit in memory; by default all.
      progress: one progress bar (tqdm, on a terminal) for the whole sweep, and a line on
        stderr as each call's members finish.

    Returns:
      A :class:`SweepResult`.

    Raises:
      TypeError: an argument of the wrong type, a grid name that ``optimizer_fn`` does not
        take, or a grid value that is not a real number.
      ValueError: an empty grid list, a non-finite or repeated grid value, ``folds`` below 2 or
        above the smallest class's count, ``folds`` together with ``validation_data``, a value
        the optimizer refuses (naming the configuration), or bad data.

    Example::

        result = sweep(model, jaxnn.optim.adam, (x, y), grid={"learning_rate": [1e-3, 1e-2]},
                       seeds=2, folds=5, epochs=10, progress=False)
        best = result.best("val_accuracy")
        print(best.hyperparameters, best.score)
    """
    where = "sweep"
    check_model(model, where)
    check_callable(optimizer_fn, "optimizer_fn", where, "a function hyperparameters -> optimizer")
    epochs = check_int(epochs, "epochs", where, low=0)
    batch_size = check_positive_int(batch_size, "batch_size", where)
    steps_per_call = check_positive_int(steps_per_call, "steps_per_call", where)
    if members_per_call is not None:
        members_per_call = check_positive_int(members_per_call, "members_per_call", where)
    progress = check_bool(progress, "progress", where)
    grid = check_grid(grid, optimizer_fn, where)
    seed_list = check_seeds(seeds, where)
    if folds is not None and validation_data is not None:
        raise ValueError(f"{where}: `folds` and `validation_data` conflict: with folds each member validates "
                         "on the fold it holds out; pass one of them")
    loss_fn = resolve_loss(loss, "loss", where)
    metric_fns = resolve_metrics(metrics, loss, where)
    if not (isinstance(train_data, (tuple, list)) and len(train_data) == 2):
        raise TypeError(f"{where}: `train_data` must be a pair (x, y) of arrays, "
                        f"got {type(train_data).__name__}")
    input_shape = tuple(np.shape(train_data[0])[1:])

    # Every configuration's optimizer is built once with concrete numbers, so that the
    # optimizer's own checks see them; the first one also gives the template train state that
    # the data is checked against.
    configurations = [member.hyperparameters for member in members(grid, [0], None)]
    optimizers = []
    for configuration in configurations:
        try:
            optimizers.append(make_optimizer(optimizer_fn, configuration))
        except (TypeError, ValueError) as error:
            raise type(error)(f"{where}: configuration {configuration}: {error}") from None
        check_transformation(optimizers[-1], f"optimizer_fn(**{configuration})", where)
    # Shapes alone: the data checks trace the model, and nothing needs to run (or compile) yet.
    template = jax.eval_shape(
        lambda: create_train_state(model, optimizers[0], jax.random.key(0), input_shape))
    x, y = check_data(train_data, "train", model, template, loss)
    fold_pairs = fold_indices(folds, y, where)
    if validation_data is not None:
        validation = check_data(validation_data, "validation", model, template, loss)
    all_members = members(grid, seed_list, None if fold_pairs is None else len(fold_pairs))

    traced_names = [name for name, values in grid.items() if len(values) > 1]
    constants = {name: values[0] for name, values in grid.items() if len(values) == 1}
    compiled = call_cached(
        _compiled, model, optimizer_fn, tuple(constants.items()), input_shape, loss_fn,
        tuple(metric_fns.items()))

    device = jax.devices()[0]
    x_all, y_all = jax.device_put((x, y), device)
    if fold_pairs is not None:
        x_eval, y_eval = x_all, y_all
    elif validation_data is not None:
        x_eval, y_eval = jax.device_put(validation, device)
    else:
        x_eval = y_eval = None
    calls = _Calls(model, input_shape, *compiled, metric_fns, device, x_all, y_all, x_eval, y_eval, epochs,
                   batch_size, steps_per_call)

    def train_indices(member: Member) -> np.ndarray:
        return np.arange(x.shape[0]) if member.fold is None else fold_pairs[member.fold][0]

    # Members with training sets of the same size share the shapes of their calls.
    groups: dict[int, list[int]] = {}
    for index, member in enumerate(all_members):
        groups.setdefault(train_indices(member).shape[0], []).append(index)
    chunk = members_per_call or len(all_members)
    chunks = [indices[i:i + chunk] for indices in groups.values() for i in range(0, len(indices), chunk)]

    histories = [History() for _ in all_members]
    states: list[tuple[TrainState, int] | None] = [None] * len(all_members)
    diverged: list[int | None] = [None] * len(all_members)
    total_examples = sum(len(c) * train_indices(all_members[c[0]]).shape[0] * epochs for c in chunks)
    bar = _SweepProgress(total_examples, len(all_members), progress)
    recorded = ["loss", *metric_fns]
    if x_eval is not None:
        recorded += [f"val_{name}" for name in recorded]
    watched = next(name for name in ("val_accuracy", "val_loss", "accuracy", "loss") if name in recorded)
    try:
        for chunk_members in chunks:
            started = time.perf_counter()
            chosen = [all_members[i] for i in chunk_members]
            traced = calls.put({name: np.asarray([m.hyperparameters[name] for m in chosen], np.float32)
                                for name in traced_names})
            train_states = calls.initial_states([m.seed for m in chosen], traced)
            indices = calls.put(np.stack([train_indices(m) for m in chosen]).astype(np.int32))
            if fold_pairs is not None:
                val_indices = calls.put(np.stack([fold_pairs[m.fold][1] for m in chosen]).astype(np.int32))
            elif x_eval is not None:
                val_indices = calls.put(np.arange(x_eval.shape[0], dtype=np.int32))
            plan = batch_plan(int(indices.shape[1]), batch_size, steps_per_call)
            for _ in range(epochs):
                train_states, totals, seconds = calls.train_epoch(train_states, traced, indices, plan,
                                                                  bar.advance)
                validation_totals = None
                if x_eval is not None:
                    validation_totals = calls.validate(train_states, val_indices, shared=fold_pairs is None)
                for position, index in enumerate(chunk_members):
                    logs = _host_means(totals, position)
                    bad = int(totals["first_bad_step"][position])
                    if bad != int(NO_BAD_STEP) and diverged[index] is None:
                        diverged[index] = bad
                    if validation_totals is not None:
                        logs.update({f"val_{name}": value
                                     for name, value in _host_means(validation_totals, position).items()})
                    if diverged[index] is not None:
                        # fit stops at that step: from its epoch on the member has no result, and
                        # its NaN parameters may still score (a NaN logit row's argmax is class 0).
                        logs = dict.fromkeys(logs, math.nan)
                    logs["epoch_seconds"] = seconds
                    logs["samples_per_second"] = len(chunk_members) * int(indices.shape[1]) / seconds
                    histories[index].append(logs)
            for position, index in enumerate(chunk_members):
                states[index] = (train_states, position)
            finals = [math.nan if diverged[i] is not None or watched not in histories[i]
                      else histories[i][watched][-1] for i in chunk_members]
            bar.call_done(len(chunk_members), time.perf_counter() - started, watched, finals)
    finally:
        bar.close()
    return SweepResult(all_members, histories, states, fold_pairs, diverged, optimizer_fn)
