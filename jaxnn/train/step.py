"""Compiled train and eval steps: one optimizer step, or N of them in one ``lax.scan``.

A train step is the pure function ``(train_state, batch) -> (train_state, metrics)``, jitted once
with the train state donated, so its buffers are reused in place. Metrics are sums over the
examples a call saw (plus their count), so they add up exactly across calls and batch sizes;
:func:`averages` turns them into means on the host.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxnn import losses as losses_module
from jaxnn import parallel
from jaxnn._checks import check_bool, check_callable, check_positive_int
from jaxnn._dtypes import at_least_float32
from jaxnn.optim import apply_updates
from jaxnn.optim.base import check_transformation
from jaxnn.train.state import TrainState, check_model

LossFn = Callable[[jax.Array, jax.Array], jax.Array]
MetricFn = Callable[[jax.Array, jax.Array], jax.Array]

# The step number of the first step whose loss or new parameters were not finite, or this when
# every step was finite.
NO_BAD_STEP = jnp.iinfo(jnp.int32).max


def correct(outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example accuracy: 1.0 where ``argmax(outputs) == labels``, else 0.0."""
    return (jnp.argmax(outputs, axis=-1) == labels).astype(jnp.float32)


LOSSES: dict[str, LossFn] = {
    "cross_entropy": functools.partial(losses_module.cross_entropy, reduction="none"),
    "binary_cross_entropy": functools.partial(losses_module.binary_cross_entropy, reduction="none"),
    "mse": functools.partial(losses_module.mse, reduction="none"),
    "mae": functools.partial(losses_module.mae, reduction="none"),
}


def resolve_loss(loss: str | LossFn, argument: str, where: str) -> LossFn:
    """A loss name from :data:`LOSSES`, or a function ``(outputs, targets) -> per-example losses``.

    Anything else is a ``TypeError``, and a name not in :data:`LOSSES` a ``ValueError``, each
    naming ``argument`` of ``where``.
    """
    if callable(loss):
        return loss
    if not isinstance(loss, str):
        raise TypeError(f"{where}: `{argument}` must be a name in {sorted(LOSSES)} or a function "
                        f"(outputs, targets) -> per-example losses, got {loss!r}")
    if loss not in LOSSES:
        raise ValueError(f"{where}: unknown loss {loss!r} for `{argument}`; expected one of {sorted(LOSSES)} "
                         "or a function (outputs, targets) -> per-example losses")
    return LOSSES[loss]


# Metrics that may be given by name: accuracy, and every loss, as per-example values.
METRICS: dict[str, MetricFn] = {"accuracy": correct, **LOSSES}

# Keys of the metric sums that are not metrics: a metric of one of these names would overwrite them.
SUM_KEYS = ("loss", "count", "first_bad_step")


def resolve_metrics(metrics: Mapping[str, MetricFn] | None, loss: str | LossFn,
                    where: str) -> dict[str, MetricFn]:
    """``metrics`` as a new dict ``name -> (outputs, targets) -> per-example values``.

    Each value is such a function or the name of one in :data:`METRICS` (``{"acc": "accuracy"}``).
    ``None`` gives the default: accuracy for the loss named ``"cross_entropy"``, nothing for other
    losses. A ``metrics`` that is not a dict of functions by name is a ``TypeError``; a metric
    named ``"loss"``, ``"count"`` or ``"first_bad_step"`` (the names of the sums kept beside the
    metrics) is a ``ValueError``.
    """
    if metrics is None:
        return {"accuracy": correct} if loss == "cross_entropy" else {}
    if not isinstance(metrics, Mapping):
        raise TypeError(f"{where}: `metrics` must be a dict of per-example metric functions by name "
                        f"({{'name': fn}}), got {metrics!r}")
    resolved = {}
    for name, metric in metrics.items():
        if not isinstance(name, str):
            raise TypeError(f"{where}: `metrics` must be keyed by metric names (str), got the key {name!r}")
        if name in SUM_KEYS:
            raise ValueError(f"{where}: `metrics` may not name a metric {name!r}; {', '.join(SUM_KEYS)} "
                             "are kept beside the metrics")
        if isinstance(metric, str):
            if metric not in METRICS:
                raise ValueError(f"{where}: unknown metric {metric!r} for `metrics[{name!r}]`; known metrics "
                                 f"are {sorted(METRICS)}, or pass a function (outputs, targets) -> "
                                 "per-example values")
            metric = METRICS[metric]
        resolved[name] = check_callable(metric, f"metrics[{name!r}]", where,
                                        "a metric name or a function (outputs, targets) -> per-example values")
    return resolved


def _per_example(values: jax.Array, batch_size: int, what: str) -> jax.Array:
    values = jnp.asarray(values)
    if values.ndim == 0:
        raise ValueError(f"{what} returned a scalar; it must return one value per example (shape "
                         f"({batch_size},)), e.g. jaxnn.losses.cross_entropy(..., reduction='none')")
    # Regression losses come per output element: average them within each example.
    return values.reshape(values.shape[0], -1).mean(axis=1) if values.ndim > 1 else values


# Leaves up to this many values are checked together in one reduction; larger ones one by one.
SMALL_LEAF = 16384


def all_finite(tree) -> jax.Array:
    """Whether every floating-point value in ``tree`` is finite (no NaN, no infinity).

    Computed as sums of ``value * 0``: zero for finite values, and NaN as soon as one value is
    infinite or NaN (IEEE 754: ``inf * 0`` and ``nan * 0`` are NaN). A sum reads each value once,
    in vectorized code; ``jnp.isfinite`` reduced with ``all`` took four times as long on CPU,
    where a train step checks every parameter.
    """
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
    if not leaves:
        return jnp.asarray(True)
    # A zero XLA cannot see through: with fast math on, it folds ``value * 0`` to 0, which would
    # hide every NaN and infinity.
    opaque_zero = jax.lax.optimization_barrier(jnp.zeros((), jnp.float32))
    zeros = []
    for leaf in leaves:
        leaf = jnp.asarray(leaf)
        zero = leaf * opaque_zero.astype(leaf.dtype)
        zeros.append((zero.real + zero.imag if jnp.iscomplexobj(zero) else zero).astype(jnp.float32))
    small = [zero.ravel() for zero in zeros if zero.size <= SMALL_LEAF]
    large = [zero for zero in zeros if zero.size > SMALL_LEAF]
    sums = [jnp.sum(zero) for zero in large]
    if small:
        # One reduction over the small leaves together, where one per leaf is a kernel per leaf.
        # The barrier keeps XLA from splitting the reduction of the concatenation back into one
        # per leaf.
        sums.append(jnp.sum(jax.lax.optimization_barrier(jnp.concatenate(small))))
    return jnp.isfinite(functools.reduce(jnp.add, sums))


def batch_size_on_device(batch_size: int, step: jax.Array) -> jax.Array:
    """``batch_size`` as an int32 computed on the device from the integer ``step``, whatever its value.

    Not the constant itself: XLA folds it into a constant output, which made each call of a small
    model's step 10 to 17% slower on CPU. Nor a count of the examples: those reductions added
    kernels that cost compile time (about 20 ms of an MNIST MLP's first step).
    """
    size = jnp.asarray(batch_size, jnp.int32)
    zero = jnp.zeros((), jnp.int32)
    return jnp.where(step < 0, size, zero) + jnp.where(step >= 0, size, zero)


def _batch_sums(outputs, targets, losses, metric_fns, step, finite=True) -> dict[str, jax.Array]:
    # A step is bad when its loss, or (``finite``) the parameters it produced, are not finite. A
    # NaN or infinite loss makes the sum non-finite, and so does a sum that overflows (then the
    # mean of float32 or float64 losses, the loss minimized, overflows too). The sum is in the
    # losses' own precision, at least float32, so that float64 losses past float32's range pass.
    loss_sum = jnp.sum(at_least_float32(losses))
    good = jnp.isfinite(loss_sum) & finite
    sums = {"loss": loss_sum.astype(jnp.float32),
            "count": batch_size_on_device(losses.shape[0], step),
            "first_bad_step": jnp.where(good, NO_BAD_STEP, step)}
    for name, metric in metric_fns.items():
        values = _per_example(metric(outputs, targets), losses.shape[0], f"metric {name!r}")
        sums[name] = jnp.sum(values.astype(jnp.float32))
    return sums


def add_sums(totals: Mapping[str, jax.Array], sums: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Accumulate metric sums: counts and sums add, the first bad step is the earliest."""
    return {name: jnp.minimum(totals[name], value) if name == "first_bad_step" else totals[name] + value
            for name, value in sums.items()}


def zero_sums(metric_names) -> dict[str, jax.Array]:
    totals = {"loss": jnp.zeros((), jnp.float32), "count": jnp.zeros((), jnp.int32),
              "first_bad_step": jnp.asarray(NO_BAD_STEP, jnp.int32)}
    totals.update({name: jnp.zeros((), jnp.float32) for name in metric_names})
    return totals


def averages(totals: Mapping[str, Any]) -> dict[str, float]:
    """Host-side means of accumulated sums: ``{"loss": ..., "accuracy": ...}``."""
    totals = jax.device_get(dict(totals))
    count = max(int(totals["count"]), 1)
    return {name: float(value) / count for name, value in totals.items()
            if name not in ("count", "first_bad_step")}


# The stream the dropout keys come from: step ``t`` draws from
# ``fold_in(fold_in(key, DROPOUT_STREAM), t)``. Not from ``fold_in(key, t)`` itself: ``fit``
# splits the train state's key for each epoch, and ``jax.random.split`` hashes the counters 0 and
# 1, as ``fold_in(key, 0)`` and ``fold_in(key, 1)`` do, so steps 0 and 1 would draw their masks
# from the next epoch's shuffle and run keys.
DROPOUT_STREAM = 0x64726F70  # "drop"


def step_key(key: jax.Array, step) -> jax.Array:
    """The key training step ``step`` draws its randomness (dropout) from, given the train state's key."""
    return jax.random.fold_in(jax.random.fold_in(key, DROPOUT_STREAM), step)


def one_step(model, loss_fn: LossFn, optimizer, metric_fns: Mapping[str, MetricFn]):
    """The un-jitted single optimizer step ``(train_state, x, y) -> (train_state, sums)``."""

    def step(train_state: TrainState, x, y):
        # The step's key is derived, and the train state's key left as it is: a model without
        # dropout then computes no key at all (XLA drops the unused hash), and the step returns
        # no new key. Returning a new key from each step, a tiny output written apart from the
        # rest, took about 40% of a small model's step on CPU.
        key = step_key(train_state.key, train_state.step)

        def objective(params):
            outputs, new_state = model.apply(params, train_state.state, x, key=key, train=True)
            losses = _per_example(loss_fn(outputs, y), x.shape[0], "loss_fn")
            return jnp.mean(losses), (outputs, new_state, losses)

        grads, (outputs, new_state, losses) = jax.grad(objective, has_aux=True)(train_state.params)
        updates, opt_state = optimizer.update(grads, train_state.opt_state, train_state.params)
        params = apply_updates(train_state.params, updates)
        # An update can overflow the parameters while the loss it came from was finite: that step
        # is bad too, so that no callback ever sees (or saves) non-finite parameters.
        sums = _batch_sums(outputs, y, losses, metric_fns, train_state.step, all_finite(params))
        new_train_state = TrainState(params=params, state=new_state, opt_state=opt_state,
                                     step=train_state.step + 1, key=train_state.key)
        return new_train_state, sums

    return step


def scan_steps(step, metric_names):
    """Run ``step`` over a leading axis of batches in one ``lax.scan``, summing the metrics."""

    def many(train_state, xs, ys):
        def body(carry, batch):
            train_state, totals = carry
            train_state, sums = step(train_state, *batch)
            return (train_state, add_sums(totals, sums)), None

        (train_state, totals), _ = jax.lax.scan(body, (train_state, zero_sums(metric_names)), (xs, ys))
        return train_state, totals

    return many


def make_train_step(model, loss_fn: str | LossFn, optimizer, *, steps_per_call: int = 1,
                    metrics: Mapping[str, MetricFn] | None = None, donate: bool = True, mesh=None):
    r"""Compile ``(train_state, (x, y)) -> (train_state, metrics)``: ``steps_per_call`` optimizer steps.

    Step ``t`` draws its randomness (dropout) from :func:`step_key` of the train state's key and
    ``t``, so that a resumed run draws what the uninterrupted run would; it computes

    .. math:: \theta \leftarrow \theta + \text{optimizer}\Big(\nabla_\theta \tfrac{1}{B}\textstyle\sum_i
              \ell(f_\theta(x_i), y_i)\Big)

    and counts the step. With ``steps_per_call = N > 1``, ``x`` and ``y`` carry a leading axis
    of N batches and the N steps run inside one ``lax.scan``: the same parameters as N calls
    with one batch each, with Python out of the loop.

    Args:
      model: a :class:`jaxnn.Layer`.
      loss_fn: a name in :data:`LOSSES` or ``(outputs, targets) -> per-example losses``.
      optimizer: a gradient transformation (``jaxnn.optim`` or optax).
      steps_per_call: optimizer steps per call, at least 1.
      metrics: per-example metric functions ``(outputs, targets) -> values``; by default
        accuracy for ``"cross_entropy"``.
      donate: donate the train state's buffers (its old arrays are deleted after the call).
      mesh: a :class:`~jax.sharding.Mesh` with a ``"data"`` axis (:func:`jaxnn.parallel.data_mesh`)
        to train on several devices: the train state must be replicated on it
        (:func:`jaxnn.parallel.replicate`) and each batch is split over ``"data"`` (its batch
        axis, after the steps axis when ``steps_per_call > 1``), so the global batch size must be
        divisible by the number of devices. Gradients, losses, metrics and BatchNorm statistics
        are those of the global batch.

    Returns:
      A jitted function. Its metrics are sums over the call's examples — ``"loss"``, each
      metric, ``"count"`` — and ``"first_bad_step"``, the first step whose loss or new
      parameters were not finite (int32 max if none); :func:`averages` gives means.

    Raises:
      TypeError: an argument of the wrong type (``steps_per_call=2.0``, ``loss_fn=3``, metrics
        that are not a dict of functions by name), naming the argument.
      ValueError: a value out of range (``steps_per_call=0``) or an unknown loss name.

    Example::

        train_step = make_train_step(model, "cross_entropy", jaxnn.optim.adam(1e-3))
        for x, y in batches:
            train_state, sums = train_step(train_state, (x, y))
    """
    where = "make_train_step"
    check_model(model, where)
    check_transformation(optimizer, "`optimizer`", where)
    steps_per_call = check_positive_int(steps_per_call, "steps_per_call", where)
    donate = check_bool(donate, "donate", where)
    loss = resolve_loss(loss_fn, "loss_fn", where)
    metric_fns = resolve_metrics(metrics, loss_fn, where)
    step = one_step(model, loss, optimizer, metric_fns)
    donate_argnums = (0,) if donate else ()

    if steps_per_call == 1:
        def train_step(train_state, batch):
            x, y = batch
            return step(train_state, x, y)
    else:
        many = scan_steps(step, metric_fns)

        def train_step(train_state, batch):
            xs, ys = batch
            if jnp.shape(xs)[0] != steps_per_call:
                raise ValueError(f"with steps_per_call={steps_per_call} the batch needs a leading axis "
                                 f"of {steps_per_call} batches, got x of shape {jnp.shape(xs)}")
            return many(train_state, xs, ys)

    if mesh is None:
        return jax.jit(train_step, donate_argnums=donate_argnums)
    mesh = parallel.check_mesh(mesh, where)
    leading_axes = 0 if steps_per_call == 1 else 1
    return jax.jit(train_step, donate_argnums=donate_argnums,
                   in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh, leading_axes)),
                   out_shardings=parallel.replicated(mesh))


def eval_sums(model, loss_fn: LossFn, metric_fns: Mapping[str, MetricFn], *, with_outputs: bool = False):
    """The un-jitted ``(params, state, x, y) -> sums`` of an evaluation batch (``train=False``).

    With ``with_outputs=True`` it returns ``(sums, outputs)``: the model's outputs for the batch
    as well, from the same forward pass.
    """

    def evaluate_batch(params, state, x, y):
        outputs, _ = model.apply(params, state, x)
        losses = _per_example(loss_fn(outputs, y), x.shape[0], "loss_fn")
        sums = _batch_sums(outputs, y, losses, metric_fns, jnp.zeros((), jnp.int32))
        return (sums, outputs) if with_outputs else sums

    return evaluate_batch


def make_eval_step(model, loss_fn: str | LossFn, *, metrics: Mapping[str, MetricFn] | None = None,
                   mesh=None):
    """Compile ``(train_state, (x, y)) -> metric sums`` with ``train=False`` (no dropout, no state update).

    The sums add across batches of any size; :func:`averages` gives the means. With ``mesh``, as
    in :func:`make_train_step`: the train state replicated on the mesh, each batch split over
    ``"data"``.
    """
    where = "make_eval_step"
    check_model(model, where)
    loss = resolve_loss(loss_fn, "loss_fn", where)
    evaluate_batch = eval_sums(model, loss, resolve_metrics(metrics, loss_fn, where))

    def eval_step(train_state, batch):
        x, y = batch
        return evaluate_batch(train_state.params, train_state.state, x, y)

    if mesh is None:
        return jax.jit(eval_step)
    mesh = parallel.check_mesh(mesh, where)
    return jax.jit(eval_step, in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                   out_shardings=parallel.replicated(mesh))
