"""Transforming only some parameters: masks, per-group optimizers, and freezing for transfer learning.

``masked`` and ``multi_transform`` have optax's semantics (``optax.masked``,
``optax.multi_transform``), so the same call gives the same numbers; ``set_to_zero`` and
``path_labels`` make freezing a one-liner::

    labels = path_labels({"head/*": "train", "*": "freeze"})
    optimizer = multi_transform({"train": adam(1e-3), "freeze": set_to_zero()}, labels)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxnn.optim.base import (
    EmptyState,
    GradientTransformation,
    PyTree,
    check_state,
    check_transformation,
    init_empty_state,
)


class MaskedNode(NamedTuple):
    """Stands in for a masked-out leaf: an empty node, so the inner transformation never sees it."""


class MaskedState(NamedTuple):
    """The inner transformation's state, over the masked-in leaves only."""

    inner_state: Any


class MultiTransformState(NamedTuple):
    """Each group's ``masked`` state, keyed by label."""

    inner_states: Mapping[Hashable, Any]


def set_to_zero() -> GradientTransformation:
    """Replace every update by zeros: :math:`u \\leftarrow 0`. The parameters it sees stay as they are.

    As ``optax.set_to_zero``; with :func:`multi_transform` it freezes a group of parameters.
    """

    def update(updates, state, params=None):
        del params
        check_state(state, EmptyState, "set_to_zero")
        return jax.tree.map(jnp.zeros_like, updates), state

    return GradientTransformation(init_empty_state, update)


def _resolve(tree_or_function: Any, params: PyTree, what: str, where: str) -> PyTree:
    """The mask or labels for ``params``: called if it is a function, else taken as given."""
    tree = tree_or_function(params) if callable(tree_or_function) else tree_or_function
    try:
        # Broadcasting the (prefix) tree against params is the check that it fits them.
        jax.tree.map(lambda value, subtree: None, tree, params)
    except ValueError as error:
        raise ValueError(f"{where}: {what} does not match the params' structure (it must be the same "
                         f"tree, or a prefix of it): {error}") from None
    return tree


def _mask_tree(tree: PyTree, mask_tree: PyTree) -> PyTree:
    """``tree`` with each masked-out subtree replaced by a :class:`MaskedNode`."""
    return jax.tree.map(lambda keep, subtree: subtree if keep else MaskedNode(), mask_tree, tree)


def _check_mask_leaves(mask_tree: PyTree) -> None:
    for path, leaf in jax.tree_util.tree_flatten_with_path(mask_tree)[0]:
        if not isinstance(leaf, bool) and not (hasattr(leaf, "dtype") and getattr(leaf, "shape", None) == ()
                                               and jnp.issubdtype(leaf.dtype, jnp.bool_)):
            raise TypeError(f"masked: mask{jax.tree_util.keystr(path)} must be True or False, got {leaf!r} "
                            "(the mask must be static: Python bools, not traced arrays)")


def masked(inner: GradientTransformation, mask: PyTree | Callable[[PyTree], PyTree]) -> GradientTransformation:
    r"""Apply ``inner`` to the masked-in parameters; pass the other updates through **unchanged**.

    .. math:: u_i \leftarrow \begin{cases} \mathrm{inner}(g)_i & m_i \\ g_i & \neg m_i \end{cases}

    Exactly ``optax.masked``: a masked-out leaf keeps its incoming update (the raw gradient,
    if ``masked`` comes first), so ``masked(adam(1e-3), mask)`` alone does **not** freeze the
    masked-out parameters, it adds their gradient to them. ``inner`` keeps state only for the
    masked-in leaves. To freeze, give the frozen leaves :func:`set_to_zero` with
    :func:`multi_transform`, or chain ``masked(set_to_zero(), frozen_mask)`` after the optimizer.

    Args:
      inner: the transformation for the masked-in leaves.
      mask: a tree of Python bools with the params' structure or a prefix of it
        (``{"body": False, "head": True}``), or a function ``params -> such a tree``; ``True``
        means transformed by ``inner``. It must be static (not traced) so the update compiles.
    """
    check_transformation(inner, "inner", "masked")

    def init(params):
        mask_tree = _resolve(mask, params, "mask", "masked")
        _check_mask_leaves(mask_tree)
        return MaskedState(inner_state=inner.init(_mask_tree(params, mask_tree)))

    def update(updates, state, params=None):
        check_state(state, MaskedState, "masked")
        # As optax: a callable mask sees the updates, which have the params' structure.
        mask_tree = _resolve(mask, updates, "mask", "masked")
        _check_mask_leaves(mask_tree)
        masked_params = None if params is None else _mask_tree(params, mask_tree)
        new_updates, inner_state = inner.update(_mask_tree(updates, mask_tree), state.inner_state, masked_params)
        merged = jax.tree.map(lambda keep, new, old: new if keep else old, mask_tree, new_updates, updates)
        return merged, MaskedState(inner_state=inner_state)

    return GradientTransformation(init, update)


def multi_transform(transforms: Mapping[Hashable, GradientTransformation],
                    labels: PyTree | Callable[[PyTree], PyTree]) -> GradientTransformation:
    r"""Apply a different transformation to each group of parameters, groups given by labels.

    .. math:: u_i \leftarrow T_{\ell_i}(g)_i

    where :math:`\ell_i` is leaf ``i``'s label and :math:`T_\ell` = ``transforms[ℓ]``, run (as
    :func:`masked`) on the leaves labelled ``ℓ`` only, each with its own state. Exactly
    ``optax.multi_transform``. Freezing for transfer learning::

        labels = path_labels({"head/*": "train", "*": "freeze"})
        optimizer = multi_transform({"train": adam(1e-3), "freeze": set_to_zero()}, labels)

    Args:
      transforms: a mapping from label to transformation.
      labels: a tree of labels with the params' structure or a prefix of it, or a function
        ``params -> such a tree`` (such as :func:`path_labels`). Every label must be a key of
        ``transforms``.
    """
    if not isinstance(transforms, Mapping) or not transforms:
        raise TypeError(f"multi_transform: transforms must be a non-empty mapping from label to "
                        f"transformation, got {transforms!r}")
    for label, transform in transforms.items():
        check_transformation(transform, f"transforms[{label!r}]", "multi_transform")

    def groups(tree):
        label_tree = _resolve(labels, tree, "labels", "multi_transform")
        unknown = sorted({repr(label) for label in jax.tree.leaves(label_tree)} - {repr(k) for k in transforms})
        if unknown:
            raise ValueError(f"multi_transform: some parameters are labelled {', '.join(unknown)}, which "
                             f"transforms does not have; its labels are {', '.join(map(repr, transforms))}")
        return {label: masked(transform, jax.tree.map(lambda leaf, group=label: leaf == group, label_tree))
                for label, transform in transforms.items()}

    def init(params):
        return MultiTransformState({label: part.init(params) for label, part in groups(params).items()})

    def update(updates, state, params=None):
        check_state(state, MultiTransformState, "multi_transform")
        new_states = {}
        for label, part in groups(updates).items():
            updates, new_states[label] = part.update(updates, state.inner_states[label], params)
        return updates, MultiTransformState(new_states)

    return GradientTransformation(init, update)


def parameter_path(path: tuple) -> str:
    """``"dense_0/w"`` for the key path of ``params["dense_0"]["w"]``: dict keys, sequence indices
    and attribute names joined with ``/``."""
    return jax.tree_util.keystr(path, simple=True, separator="/")


def path_labels(patterns: Mapping[str, Hashable]) -> Callable[[PyTree], PyTree]:
    """A labels function for :func:`multi_transform` from ``fnmatch`` patterns over parameter paths.

    Each leaf's path is written ``"dense_0/w"`` (``"encoder/attention/q/b"`` when nested) and
    takes the label of the **first** pattern that matches it, in the mapping's order; ``*`` matches
    across ``/`` too, so ``"head/*"`` covers everything under ``head``. A leaf that no pattern
    matches is a ``ValueError`` naming its path: end with ``"*"`` for a default.

    Example::

        labels = path_labels({"dense_4/*": "train", "*": "freeze"})
        labels(params)   # {"conv2d_0": {"w": "freeze", "b": "freeze"}, ..., "dense_4": {"w": "train", ...}}
    """
    if not isinstance(patterns, Mapping) or not patterns:
        raise TypeError(f"path_labels: patterns must be a non-empty mapping from pattern to label, got {patterns!r}")
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f"path_labels: patterns must be strings such as 'head/*', got {pattern!r}")

    def labels(params):
        def label(path, leaf):
            del leaf
            name = parameter_path(path)
            for pattern, value in patterns.items():
                if fnmatch.fnmatchcase(name, pattern):
                    return value
            raise ValueError(f"path_labels: no pattern matches the parameter '{name}'; patterns are "
                             f"{', '.join(map(repr, patterns))} (add '*' last for a default label)")

        return jax.tree_util.tree_map_with_path(label, params)

    return labels
