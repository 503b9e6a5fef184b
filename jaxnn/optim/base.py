"""The optimizer interface: gradient transformations, their composition, and applying updates.

A :class:`GradientTransformation` is a pair of pure functions, the same shape as optax's::

    init(params) -> opt_state
    update(grads, opt_state, params=None) -> (updates, opt_state)

so a jaxnn transformation works inside ``optax.chain`` and an optax transformation works inside
:func:`chain`. Updates are *added* to the parameters by :func:`apply_updates`; the learning rate's
minus sign lives in :func:`scale_by_learning_rate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._checks import as_float, is_real
from jaxnn._dtypes import compute_dtype

PyTree = Any
Schedule = Callable[[jax.Array], jax.Array]
ScalarOrSchedule = float | Schedule


class GradientTransformation(NamedTuple):
    """An optimizer or a building block of one: ``init(params)`` and ``update(grads, state, params)``."""

    init: Callable
    update: Callable


class EmptyState(NamedTuple):
    """The state of a transformation that keeps none."""


class ScaleByScheduleState(NamedTuple):
    """Number of updates made so far, the argument of the learning-rate schedule."""

    count: jax.Array


class WeightDecayState(NamedTuple):
    """Step count for a scheduled weight decay."""

    count: jax.Array


def init_empty_state(params: PyTree) -> EmptyState:
    del params
    return EmptyState()


def identity() -> GradientTransformation:
    """Pass updates through unchanged."""

    def update(updates, state, params=None):
        del params
        check_state(state, EmptyState, "identity")
        return updates, state

    return GradientTransformation(init_empty_state, update)


def zero_count() -> jax.Array:
    return jnp.zeros((), jnp.int32)


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the int32 maximum instead of wrapping to negative."""
    limit = jnp.iinfo(jnp.int32).max
    return jnp.where(count < limit, count + 1, limit).astype(jnp.int32)


# --------------------------------------------------------------------------------------------
# Composition and application.


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply ``transforms`` one after another; the state is the tuple of their states.

    Each transformation receives the updates the previous one returned. Any object with
    ``init``/``update`` of the right signature composes, optax's transformations included.

    Example::

        optimizer = chain(clip_by_global_norm(1.0), scale_by_adam(), scale_by_learning_rate(1e-3))
    """
    for position, transform in enumerate(transforms):
        check_transformation(transform, f"argument {position}", "chain")

    def init(params):
        return tuple(transform.init(params) for transform in transforms)

    def update(updates, state, params=None):
        # A NamedTuple is a tuple too, but it is one transformation's state, not a chain's.
        if not isinstance(state, tuple) or _is_named_tuple(state):
            raise TypeError(f"chain of {len(transforms)} transformations expected a tuple of their "
                            f"states as its state, got {describe_state(state)}; pass the state that "
                            "this optimizer's init returned")
        if len(state) != len(transforms):
            raise ValueError(f"chain of {len(transforms)} transformations got {describe_state(state)} "
                             "as its state; pass the state that this optimizer's init returned")
        new_states = []
        for transform, inner_state in zip(transforms, state):
            updates, inner_state = transform.update(updates, inner_state, params)
            new_states.append(inner_state)
        return updates, tuple(new_states)

    return GradientTransformation(init, update)


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
    """Return ``params + updates`` leaf by leaf, keeping each parameter's dtype.

    The dtype is kept so that, say, a bfloat16 parameter stays bfloat16 even when its update was
    computed in float32.
    """
    check_same_tree(updates, params, "updates", "params")

    def add(p, u):
        p, u = jnp.asarray(p), jnp.asarray(u)
        wide = compute_dtype(p.dtype, u.dtype)
        return (p.astype(wide) + u.astype(wide)).astype(p.dtype)

    return jax.tree.map(add, params, updates)


def global_norm(tree: PyTree) -> jax.Array:
    """The Euclidean norm of all leaves together: ``sqrt(sum_i ||t_i||^2)``."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree)))


# --------------------------------------------------------------------------------------------
# Checks, run once at construction or at trace time, never per step on the device.


def check_same_tree(tree: PyTree, reference: PyTree, name: str, reference_name: str) -> None:
    """Raise a ValueError naming the first path where ``tree`` and ``reference`` differ.

    Both structure and leaf shapes are compared, so gradients of one model fed to the optimizer
    state of another are caught before XLA sees them.
    """
    leaves, structure = jax.tree_util.tree_flatten_with_path(tree)
    reference_leaves, reference_structure = jax.tree_util.tree_flatten_with_path(reference)
    if structure != reference_structure:
        paths = {jax.tree_util.keystr(path) for path, _ in leaves}
        reference_paths = {jax.tree_util.keystr(path) for path, _ in reference_leaves}
        missing = sorted(reference_paths - paths)
        extra = sorted(paths - reference_paths)
        detail = []
        if missing:
            detail.append(f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
        if extra:
            detail.append(f"unexpected {', '.join(extra[:5])}" + (" ..." if len(extra) > 5 else ""))
        if not detail:
            detail.append(f"structure {structure} differs from {reference_structure}")
        raise ValueError(f"{name} do not match the {reference_name} the optimizer was "
                         f"initialized with: {'; '.join(detail)}")
    for (path, leaf), (_, reference_leaf) in zip(leaves, reference_leaves):
        shape, reference_shape = jnp.shape(leaf), jnp.shape(reference_leaf)
        if shape != reference_shape:
            raise ValueError(f"{name}{jax.tree_util.keystr(path)} has shape {shape}, but the "
                             f"{reference_name} entry has shape {reference_shape}")


def check_hyperparameter(value: Any, name: str, optimizer: str, *, low: float = 0.0,
                         high: float = math.inf, high_open: bool = False,
                         schedule_ok: bool = False, infinity_ok: bool = False) -> None:
    """Check a hyperparameter given as a number: finite and in ``[low, high]`` (or ``[low, high)``).

    Infinities are refused unless ``infinity_ok`` (a clipping threshold, where ``inf`` means no
    clipping): an infinite learning rate, ``eps`` or decay turns every update into NaN or inf.
    A traced value (an optimizer built inside ``jit``, or under ``vmap`` over its
    hyperparameters, as in a sweep) has no value to check yet: only its type is, a real scalar.
    """
    if schedule_ok and callable(value):
        return
    kinds = "a number or a schedule (a function of the step count)" if schedule_ok else "a number"
    if isinstance(value, jax.core.Tracer):
        if not (jnp.issubdtype(value.dtype, jnp.integer) or jnp.issubdtype(value.dtype, jnp.floating)):
            raise TypeError(f"{optimizer}: {name} must be {kinds}, got a traced array of dtype {value.dtype}")
        if value.ndim != 0:
            raise ValueError(f"{optimizer}: {name} must be a scalar, "
                             f"got a traced array of shape {value.shape}")
        return
    if isinstance(value, (jax.Array,)) or hasattr(value, "__array__"):
        array = value if isinstance(value, jax.Array) else np.asarray(value)
        if not (jnp.issubdtype(array.dtype, jnp.integer) or jnp.issubdtype(array.dtype, jnp.floating)):
            raise TypeError(f"{optimizer}: {name} must be {kinds}, got an array of dtype {array.dtype}")
        if array.ndim != 0:
            raise ValueError(f"{optimizer}: {name} must be a scalar, got shape {array.shape}")
        value = float(array)
    if not is_real(value):
        raise TypeError(f"{optimizer}: {name} must be {kinds}, got {type(value).__name__}")
    number = as_float(value)
    upper = ")" if high_open else "]"
    if not (low <= number <= high) or (high_open and number == high) or math.isnan(number):
        raise ValueError(f"{optimizer}: {name} must be in [{low}, {high}{upper}, got {value}")
    if math.isinf(number) and not infinity_ok:
        raise ValueError(f"{optimizer}: {name} must be finite, got {value}")


def check_flag(value: Any, name: str, optimizer: str) -> bool:
    """Return ``value`` as a bool; raise a TypeError unless it is ``True`` or ``False``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{optimizer}: {name} must be True or False, got {value!r}")
    return bool(value)


def check_state(state: Any, expected: type, where: str) -> None:
    """Raise a TypeError unless ``state`` is an ``expected``, the class of state ``where``'s init makes.

    Catches the state of another optimizer (Adam's update given SGD's state), which would
    otherwise fail on a missing field, or silently use fields of the same name. A transformation
    that keeps no state (``expected`` is :class:`EmptyState`) also takes ``None``, as optax's do.
    """
    if expected is EmptyState and state is None:
        return
    if not isinstance(state, expected):
        wanted, got = expected.__name__, describe_state(state)
        if got == wanted:  # a class of the same name from elsewhere, such as optax's ScaleByAdamState
            wanted = f"{expected.__module__}.{expected.__qualname__}"
            got = f"{type(state).__module__}.{type(state).__qualname__}"
        raise TypeError(f"{where}: expected a {wanted} as its state, got {got}; pass the state that "
                        "this optimizer's init returned (the state of another optimizer, or of a "
                        "differently built one, does not fit)")


def describe_state(state: Any) -> str:
    """``ScaleByAdamState``, or for a chain's tuple ``a tuple of 2 (TraceState, ScaleByScheduleState)``."""
    if isinstance(state, tuple) and not _is_named_tuple(state):
        inner = ", ".join(type(part).__name__ for part in state[:5]) + (", ..." if len(state) > 5 else "")
        return f"a tuple of {len(state)} ({inner})"
    return type(state).__name__


def _is_named_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def check_transformation(value: Any, name: str, where: str) -> None:
    """Raise a TypeError unless ``value`` has callable ``init`` and ``update`` (optax's transformations do)."""
    if not (callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))):
        # A transformation is not itself callable, so a callable here is most likely a factory.
        hint = ("; did you pass an optimizer factory without calling it, e.g. `adam` instead of "
                "`adam(1e-3)`?") if callable(value) else ""
        raise TypeError(f"{where}: {name} must be a gradient transformation (with init and "
                        f"update), got {type(value).__name__}{hint}")


# --------------------------------------------------------------------------------------------
# Scaling.


def scale(step_size: float) -> GradientTransformation:
    """Multiply updates by a constant: ``u <- step_size * u``.

    ``step_size`` is any finite number, negative ones included (``scale(-lr)`` is a descent step).
    """
    check_hyperparameter(step_size, "step_size", "scale", low=-math.inf)

    def update(updates, state, params=None):
        del params
        check_state(state, EmptyState, "scale")
        return jax.tree.map(lambda g: step_size * g, updates), state

    return GradientTransformation(init_empty_state, update)


def scale_by_learning_rate(learning_rate: ScalarOrSchedule, *, flip_sign: bool = True) -> GradientTransformation:
    r"""Multiply updates by the learning rate at the current step, negated for descent.

    .. math:: u_t \leftarrow -\eta(t)\, u_t, \qquad t = 0, 1, 2, \dots

    The step count starts at 0 and is read *before* it is incremented, so the first update uses
    ``schedule(0)``. The count is kept (int32) even for a constant rate, so every optimizer's
    state records how many steps it has taken.
    """
    check_hyperparameter(learning_rate, "learning_rate", "scale_by_learning_rate", schedule_ok=True)
    sign = -1.0 if check_flag(flip_sign, "flip_sign", "scale_by_learning_rate") else 1.0

    def init(params):
        del params
        return ScaleByScheduleState(count=zero_count())

    def update(updates, state, params=None):
        check_state(state, ScaleByScheduleState, "scale_by_learning_rate")
        if params is not None:
            check_same_tree(updates, params, "gradients", "params")
        if callable(learning_rate):
            rate = sign * jnp.asarray(learning_rate(state.count))
            updates = jax.tree.map(lambda g: rate.astype(g.dtype) * g, updates)
        else:
            updates = jax.tree.map(lambda g: (sign * learning_rate) * g, updates)
        return updates, ScaleByScheduleState(count=safe_increment(state.count))

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------------------------
# Weight decay.


def add_decayed_weights(weight_decay: ScalarOrSchedule = 0.0,
                        mask: PyTree | Callable[[PyTree], PyTree] | None = None) -> GradientTransformation:
    r"""Add the parameters, scaled: :math:`u_t \leftarrow u_t + \lambda\, \theta_t`.

    Placed before :func:`scale_by_learning_rate` this is decoupled weight decay (AdamW); before
    a momentum or Adam transform it is the L2 penalty's gradient (PyTorch's ``weight_decay``).

    Args:
      weight_decay: :math:`\lambda \ge 0`, a float or a schedule of the step count.
      mask: which parameters to decay: a pytree of bools with the params' structure or a prefix
        of it (``{"dense_0": {"w": True, "b": False}}``), or a function ``params -> such a
        tree``. Leaves marked ``False`` pass through undecayed. ``None`` decays everything.
    """
    check_hyperparameter(weight_decay, "weight_decay", "add_decayed_weights", schedule_ok=True)

    def init(params):
        del params
        return WeightDecayState(count=zero_count()) if callable(weight_decay) else EmptyState()

    def update(updates, state, params=None):
        check_state(state, WeightDecayState if callable(weight_decay) else EmptyState, "add_decayed_weights")
        if params is None:
            raise ValueError("add_decayed_weights needs the parameters: call "
                             "update(grads, opt_state, params)")
        check_same_tree(updates, params, "gradients", "params")
        if callable(weight_decay):
            decay, state = weight_decay(state.count), WeightDecayState(safe_increment(state.count))
        else:
            decay = weight_decay

        def decayed(g, p):
            return g + jnp.asarray(decay).astype(g.dtype) * p.astype(g.dtype)

        if mask is None:
            return jax.tree.map(decayed, updates, params), state
        mask_tree = mask(params) if callable(mask) else mask
        try:
            updates = jax.tree.map(
                lambda keep, g, p: jax.tree.map(decayed, g, p) if keep else g,
                mask_tree, updates, params)
        except ValueError as error:
            raise ValueError(f"add_decayed_weights: mask does not match the params' structure "
                             f"(it must be the same tree of bools, or a prefix of it): {error}") from None
        return updates, state

    return GradientTransformation(init, update)
