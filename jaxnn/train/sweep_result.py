"""The outcome of a sweep: each member's history and final train state, a table of members, the
mean and spread per configuration, and the best configuration."""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxnn._checks import check_int
from jaxnn._files import write_atomically
from jaxnn.train.folds import Member, make_optimizer
from jaxnn.train.history import History
from jaxnn.train.state import TrainState

# Wall-clock measurements, kept in the histories but left out of the tables.
TIMING = ("epoch_seconds", "samples_per_second")


class BestConfiguration(NamedTuple):
    """What :meth:`SweepResult.best` found.

    Attributes:
      hyperparameters: the configuration with the best mean score over its seeds and folds;
        never one with a diverged member.
      score: that mean.
      optimizer: ``make_optimizer(optimizer_fn, hyperparameters)``, ready for a final ``fit``.
      member: the index of the configuration's best-scoring member.
      train_state: that member's final train state, ``SweepResult.train_state(member)``: its
        ``opt_state`` is laid out for ``optimizer``, so ``fit(model, optimizer, train_state, ...)``
        continues the member's training.
    """

    hyperparameters: dict[str, float]
    score: float
    optimizer: Any
    member: int
    train_state: TrainState


class SweepResult:
    """The outcome of :func:`sweep`: each member's history and final train state, and tables.

    Attributes:
      members: the :class:`~jaxnn.train.folds.Member` s, ``(hyperparameters, seed, fold)``, in order.
      histories: one :class:`History` per member, as :func:`~jaxnn.train.fit` would return it.
        ``epoch_seconds`` is the time of the epoch of the member's compiled call and
        ``samples_per_second`` counts every member of that call.
      folds: the ``(train_idx, val_idx)`` index pairs of the folds, or ``None``.
      diverged_at_step: per member, the first optimizer step whose loss or parameters were not
        finite, or ``None``. ``fit`` would have stopped there (``NonFiniteLossError``); the sweep
        lets the other members go on, and every metric of that member, ``val_`` ones included, is
        NaN from the epoch of that step on. :meth:`summary` counts such a member as NaN in every
        metric and :meth:`best` never chooses its configuration.
    """

    def __init__(self, members_: list[Member], histories: list[History], states: list[tuple[TrainState, int]],
                 folds, diverged_at_step: list[int | None], optimizer_fn: Callable):
        self.members = members_
        self.histories = histories
        self.folds = folds
        self.diverged_at_step = diverged_at_step
        self._states = states
        self._optimizer_fn = optimizer_fn

    def __len__(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        return (f"SweepResult({len(self.members)} members, {len(self.configurations())} configurations, "
                f"{self.histories[0].epochs if self.histories else 0} epochs)")

    def train_state(self, member: int) -> TrainState:
        """The final train state of member ``member`` (an index into :attr:`members`), for the
        optimizer of its configuration, ``make_optimizer(optimizer_fn, hyperparameters)``.

        In the sweep the varying hyperparameters are traced, and an optimizer may keep state
        there that its concrete twin leaves out: ``sgd`` and ``rmsprop`` with a traced momentum
        keep a momentum buffer, which ``momentum=0`` does not. A buffer of decay 0 holds only the
        last gradient and never changes an update, so the ``opt_state`` returned keeps, in
        order, the parts of the chain that the concrete optimizer's own ``init`` makes (step
        counts and moments carried over) and drops the others: ``fit(model, optimizer,
        train_state, ...)`` then continues the member as a separate ``fit`` would. Where the
        layouts cannot be matched that way (an ``optimizer_fn`` that branches on its values
        otherwise), the swept ``opt_state`` is returned as it is, with a warning.
        """
        where = "SweepResult.train_state"
        member = check_int(member, "member", where, low=0)
        if member >= len(self.members):
            raise ValueError(f"{where}: `member` (={member}) must be below the number of "
                             f"members, {len(self.members)}")
        stacked, position = self._states[member]
        state = _member_of(stacked, position)
        hyperparameters = self.members[member].hyperparameters
        wanted = jax.eval_shape(make_optimizer(self._optimizer_fn, hyperparameters).init, state.params)
        opt_state = _aligned(wanted, state.opt_state)
        if opt_state is None:
            warnings.warn(f"{where}: the optimizer state of member {member} ({hyperparameters}) is not laid "
                          "out as make_optimizer(optimizer_fn, hyperparameters).init makes it, and its parts "
                          "could not be matched; it is returned as the sweep left it", RuntimeWarning,
                          stacklevel=2)
            return state
        return state._replace(opt_state=opt_state)

    def configurations(self) -> list[dict[str, float]]:
        """The distinct hyperparameter configurations, in the members' order."""
        seen: list[dict[str, float]] = []
        for member in self.members:
            if member.hyperparameters not in seen:
                seen.append(member.hyperparameters)
        return seen

    def metric_names(self) -> list[str]:
        """The metrics the histories record, without the timings."""
        names = list(self.histories[0]) if self.histories else []
        return [name for name in names if name not in TIMING]

    @property
    def table(self) -> list[dict[str, Any]]:
        """One row per member: its hyperparameters, ``seed``, ``fold``, then ``final_NAME`` (the last
        epoch's value) and ``best_NAME`` (the highest for accuracies, the lowest otherwise, of the
        finite values: for a diverged member, of its epochs before the divergence) of each metric,
        and ``diverged_at_step``."""
        rows = []
        for member, history, diverged in zip(self.members, self.histories, self.diverged_at_step):
            row: dict[str, Any] = {**member.hyperparameters, "seed": member.seed, "fold": member.fold}
            for name in self.metric_names():
                values = np.asarray([math.nan if v is None else v for v in history[name]], np.float64)
                row[f"final_{name}"] = float(values[-1]) if values.size else math.nan
                finite = values[np.isfinite(values)]
                if finite.size == 0:
                    row[f"best_{name}"] = math.nan
                else:
                    row[f"best_{name}"] = float(finite.max() if _higher_is_better(name) else finite.min())
            row["diverged_at_step"] = diverged
            rows.append(row)
        return rows

    def to_csv(self, path) -> None:
        """Write :attr:`table` as CSV (a header, then one line per member), atomically.

        Empty cells stand for ``None`` (no fold, no divergence).
        """
        rows = self.table
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_atomically(path, lambda file: file.write(text.getvalue().encode()))

    def summary(self) -> list[dict[str, Any]]:
        r"""One row per configuration: its hyperparameters, ``members`` (seeds × folds), and for each
        metric the mean and the standard deviation of its final value over those members,
        ``NAME_mean`` and ``NAME_std``.

        The standard deviation is the sample one, :math:`\sqrt{\sum_i (v_i - \bar v)^2 / (n - 1)}`
        (0 for a single member, NaN for a NaN one). A diverged member (``diverged_at_step`` set)
        counts as NaN in every metric, so its configuration's means and deviations are NaN.
        """
        table = self.table
        rows = []
        for configuration in self.configurations():
            mine = [(row, diverged)
                    for row, member, diverged in zip(table, self.members, self.diverged_at_step)
                    if member.hyperparameters == configuration]
            row: dict[str, Any] = {**configuration, "members": len(mine)}
            for name in self.metric_names():
                values = np.asarray([math.nan if diverged is not None else r[f"final_{name}"]
                                     for r, diverged in mine], np.float64)
                row[f"{name}_mean"] = float(values.mean())
                if values.size > 1:
                    row[f"{name}_std"] = float(values.std(ddof=1))
                else:
                    row[f"{name}_std"] = math.nan if math.isnan(values[0]) else 0.0
            rows.append(row)
        return rows

    def best(self, metric: str | None = None, mode: str = "auto") -> BestConfiguration:
        """The configuration whose final ``metric``, averaged over its seeds and folds, is best.

        Args:
          metric: a metric of the histories; by default ``val_accuracy``, else ``val_loss``, else
            ``loss``, whichever was recorded.
          mode: ``"max"``, ``"min"``, or ``"auto"`` (max for accuracies, min otherwise).

        A configuration with a diverged member (:attr:`diverged_at_step` set), or with a NaN mean,
        is never chosen: its parameters are NaN, yet may still score (NaN logits predict class
        0). The best member is the configuration's best-scoring one, and the optimizer and train
        state returned work together with ``fit`` (see :meth:`train_state`).

        Raises:
          ValueError: an unrecorded ``metric``, a bad ``mode``, or no configuration to choose:
            every one has a diverged member or a NaN mean.
        """
        where = "SweepResult.best"
        names = self.metric_names()
        if metric is None:
            metric = next((name for name in ("val_accuracy", "val_loss", "loss") if name in names), None)
        if metric not in names:
            raise ValueError(f"{where}: `metric` {metric!r} is not recorded; the histories hold {names}")
        if mode not in ("max", "min", "auto"):
            raise ValueError(f"{where}: `mode` must be 'max', 'min' or 'auto', got {mode!r}")
        sign = 1.0 if (_higher_is_better(metric) if mode == "auto" else mode == "max") else -1.0

        def score(value: float | None) -> float:
            return -math.inf if value is None or math.isnan(value) else sign * value

        rows = self.summary()
        configurations = self.configurations()
        means = [row[f"{metric}_mean"] for row in rows]
        diverged = [any(d is not None for m, d in zip(self.members, self.diverged_at_step)
                        if m.hyperparameters == configuration) for configuration in configurations]
        eligible = [i for i in range(len(rows)) if not diverged[i] and score(means[i]) != -math.inf]
        if not eligible:
            if all(diverged):
                raise ValueError(f"{where}: every configuration has a diverged member (see "
                                 f"diverged_at_step: {self.diverged_at_step}); there is no best one")
            raise ValueError(f"{where}: no configuration has a finite mean {metric} and no diverged "
                             "member")
        chosen = max(eligible, key=lambda i: score(means[i]))
        configuration = configurations[chosen]
        candidates = [i for i, member in enumerate(self.members) if member.hyperparameters == configuration]
        member = max(candidates, key=lambda i: score(self.histories[i][metric][-1]))
        return BestConfiguration(dict(configuration), means[chosen],
                                 make_optimizer(self._optimizer_fn, configuration), member,
                                 self.train_state(member))


@jax.jit
def _member_of(stacked: TrainState, position) -> TrainState:
    """One member's train state from the stacked ones: one compiled program for the whole tree,
    where slicing leaf by leaf would compile two small ones for each shape of leaf."""
    return jax.tree.map(lambda leaf: leaf[position], stacked)


def _higher_is_better(metric: str) -> bool:
    return "accuracy" in metric


def _same_layout(wanted, state) -> bool:
    """Whether ``state`` has the tree structure and leaf shapes of ``wanted`` (``eval_shape``'s)."""
    if jax.tree.structure(wanted) != jax.tree.structure(state):
        return False
    return all(np.shape(a) == np.shape(b) for a, b in zip(jax.tree.leaves(wanted), jax.tree.leaves(state)))


def _is_chain_state(state) -> bool:
    # A chain's state is a plain tuple; a NamedTuple is one transformation's state.
    return isinstance(state, tuple) and not hasattr(state, "_fields")


def _aligned(wanted, state):
    """``state`` laid out as ``wanted``: itself where the layouts agree, else, for chain states,
    the parts of ``state`` that match ``wanted``'s in order (recursively), the others dropped;
    ``None`` where there is no such match."""
    if _same_layout(wanted, state):
        return state
    if not (_is_chain_state(wanted) and _is_chain_state(state)):
        return None
    parts, position = [], 0
    for part in wanted:
        while position < len(state):
            found = _aligned(part, state[position])
            position += 1
            if found is not None:
                parts.append(found)
                break
        else:
            return None
    return tuple(parts)
