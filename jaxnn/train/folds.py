"""The members of a sweep: every combination of a hyperparameter grid, seeds and cross-validation
folds, checked before anything is compiled; and the optimizer of a member's hyperparameters.

A member is one training run: its hyperparameters, the seed of its train state, and the fold it
holds out (or ``None`` when there are no folds). The folds are stratified k-fold splits drawn
once, from :data:`FOLD_SEED`, so every member of a sweep is validated on the same folds.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxnn._checks import check_int, is_int, is_real
from jaxnn.data.batching import kfold
from jaxnn.optim.base import add_decayed_weights, chain

# The grid key for an L2 penalty on every parameter: the optimizer becomes
# ``chain(add_decayed_weights(l2), optimizer_fn(...))``, the gradient of ``l2 * sum(w**2) / 2``.
L2 = "l2"
# The seed of the fold assignment; members differ in their train-state seed, never in their folds.
FOLD_SEED = 0
# A train-state seed goes to jax.random.key, which takes a signed 64-bit integer.
MAX_SEED = 2**63 - 1


class Member(NamedTuple):
    """One training run of a sweep: ``hyperparameters`` (the grid's values for it), the ``seed`` of
    ``create_train_state(model, optimizer, jax.random.key(seed), input_shape)``, and the ``fold``
    it validates on (``None`` without folds)."""

    hyperparameters: dict[str, float]
    seed: int
    fold: int | None


def check_grid(grid: Any, optimizer_fn: Any, where: str) -> dict[str, list[float]]:
    """``grid`` as ``name -> list of floats``; ``None`` is the empty grid (one configuration).

    Every name must be a keyword of ``optimizer_fn`` (or :data:`L2`), every list non-empty, every
    value a finite real number: a ``TypeError`` names the unknown keyword or the value of the
    wrong type, a ``ValueError`` the empty list or the non-finite value.
    """
    if grid is None:
        return {}
    if not isinstance(grid, Mapping):
        raise TypeError(f"{where}: `grid` must be a dict of hyperparameter name -> list of values, "
                        f"such as {{'learning_rate': [1e-3, 1e-2]}}, got {type(grid).__name__}")
    keywords = _keywords(optimizer_fn)
    checked = {}
    for name, values in grid.items():
        if not isinstance(name, str):
            raise TypeError(f"{where}: `grid` keys must be hyperparameter names (str), got {name!r}")
        if name != L2 and keywords is not None and name not in keywords:
            raise TypeError(f"{where}: `grid` names {name!r}, which optimizer_fn does not take; it takes "
                            f"{sorted(keywords)}, and {L2!r} adds an L2 penalty")
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, (Sequence, np.ndarray)):
            raise TypeError(f"{where}: grid[{name!r}] must be a list of numbers, got {values!r}")
        if len(values) == 0:
            raise ValueError(f"{where}: grid[{name!r}] is empty; give at least one value")
        numbers = []
        for value in values:
            if not is_real(value):
                raise TypeError(f"{where}: grid[{name!r}] must hold real numbers (a hyperparameter that "
                                "changes the program, such as a flag, needs a sweep of its own), "
                                f"got {value!r}")
            if not math.isfinite(float(value)):
                raise ValueError(f"{where}: grid[{name!r}] holds {value}; values must be finite")
            numbers.append(float(value))
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"{where}: grid[{name!r}] repeats a value: {list(values)}")
        if name == L2 and min(numbers) < 0:
            raise ValueError(f"{where}: grid[{L2!r}] must hold non-negative coefficients, got {list(values)}")
        checked[name] = numbers
    return checked


def _keywords(function: Any) -> set[str] | None:
    """The keyword arguments ``function`` takes, or ``None`` when it takes any (``**kwargs``)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return None
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return None
    return {parameter.name for parameter in parameters
            if parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}


def check_seeds(seeds: Any, where: str) -> list[int]:
    """``seeds=n`` is ``0 .. n-1``; a list gives the seeds themselves (distinct, in ``[0, 2**63)``)."""
    if is_int(seeds):
        return list(range(check_int(seeds, "seeds", where, low=1)))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (Sequence, np.ndarray)):
        raise TypeError(f"{where}: `seeds` must be a count (int) or a list of seeds, got {seeds!r}")
    if len(seeds) == 0:
        raise ValueError(f"{where}: `seeds` is empty; give a count or at least one seed")
    checked = []
    for seed in seeds:
        if not is_int(seed):
            raise TypeError(f"{where}: `seeds` must hold ints, got {seed!r}")
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"{where}: seeds must be from 0 to 2**63 - 1, got {seed}")
        checked.append(int(seed))
    if len(set(checked)) != len(checked):
        raise ValueError(f"{where}: `seeds` repeats a seed: {checked}")
    return checked


def fold_indices(folds: Any, y: np.ndarray, where: str) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """The ``(train_idx, val_idx)`` pairs of stratified ``folds``-fold cross-validation, or ``None``.

    Integer class labels ``y`` of shape ``(N,)`` are stratified (each class dealt evenly over the
    folds), so ``folds`` may not exceed the smallest class's count; other targets are split
    without stratification, ``folds <= N``. Fold sizes differ by at most one.
    """
    if folds is None:
        return None
    folds = check_int(folds, "folds", where, low=2)
    classes = y.ndim == 1 and np.issubdtype(y.dtype, np.integer) and y.dtype != np.bool_
    if classes:
        labels, counts = np.unique(y, return_counts=True)
        smallest = int(counts.min())
        if folds > smallest:
            raise ValueError(f"{where}: `folds` (={folds}) is more than the smallest class's count "
                             f"({smallest}, class {labels[counts.argmin()]}); stratified folds need every "
                             "class in every fold")
    elif folds > y.shape[0]:
        raise ValueError(f"{where}: `folds` (={folds}) is more than the number of examples ({y.shape[0]})")
    return list(kfold(y.shape[0], folds, seed=FOLD_SEED, labels=y if classes else None))


def members(grid: Mapping[str, list[float]], seeds: list[int], folds: int | None) -> list[Member]:
    """Every combination, the grid's last name varying fastest, then seeds, then folds."""
    names = list(grid)
    configurations = [dict(zip(names, values)) for values in itertools.product(*grid.values())]
    fold_numbers = [None] if folds is None else list(range(folds))
    return [Member(configuration, seed, fold)
            for configuration in configurations for seed in seeds for fold in fold_numbers]


def make_optimizer(optimizer_fn: Callable, hyperparameters: Mapping[str, Any]):
    r"""The optimizer of one configuration: ``optimizer_fn(**hyperparameters)``.

    The reserved name ``"l2"`` is not passed on: it adds the gradient of the penalty
    :math:`\tfrac{\lambda}{2}\sum_i w_i^2` over every parameter before the optimizer,
    ``chain(add_decayed_weights(l2), optimizer_fn(**others))`` (PyTorch's ``weight_decay``). The
    training loss recorded in the history is the data loss, without the penalty.
    """
    others = {name: value for name, value in hyperparameters.items() if name != L2}
    optimizer = optimizer_fn(**others)
    if L2 in hyperparameters:
        return chain(add_decayed_weights(hyperparameters[L2]), optimizer)
    return optimizer
