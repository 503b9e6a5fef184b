"""Checks and helpers shared by the layers: input shapes, arrays, params entries, keys.

Each check raises a :class:`~jaxnn.core.layer.LayerValueError` or
:class:`~jaxnn.core.layer.LayerTypeError`, so that the message carries the path of the layer that
was given the bad value.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.core.layer import LayerTypeError, LayerValueError, PyTree, Shape


def as_shape(input_shape: Any) -> Shape:
    """Validates an ``input_shape`` given to ``init`` and returns it as a tuple of ints.

    Every size must be positive. A zero-size axis leaves an example with no elements: parameters
    would be built for nothing (a ``Dense`` kernel of shape ``(0, out)``), and every output would be
    empty, or a mean over nothing, NaN. A batch may still be empty, since the batch axes are not
    part of ``input_shape``; ``()`` (a scalar example) is valid.
    """
    if isinstance(input_shape, (int, np.integer)):
        input_shape = (input_shape,)
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise LayerTypeError(
            f"input_shape must be a tuple of ints (without the batch axis), got {input_shape!r}"
        ) from None
    for size in shape:
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool):
            raise LayerTypeError(f"input_shape must be a tuple of ints, got {input_shape!r}")
        if size < 0:
            raise LayerValueError(f"input_shape must not have negative sizes, got {shape}")
        if size == 0:
            raise LayerValueError(
                f"input_shape must not have zero sizes, got {tuple(int(s) for s in shape)}: an example "
                "with a zero-size axis has no elements (the batch axes, which may be empty, are not "
                "part of input_shape)"
            )
    return tuple(int(size) for size in shape)


def check_min_ndim(input_shape: Shape, ndim: int, expected: str) -> None:
    """Raises if ``input_shape`` (no batch axis) has fewer than ``ndim`` axes."""
    if len(input_shape) < ndim:
        raise LayerValueError(f"expected an input of shape {expected}, got input_shape {input_shape}")


def check_array(x: Any, what: str = "input") -> jax.Array:
    """Returns ``x`` as a JAX array; raises a ``TypeError`` unless it is a numeric array.

    NumPy inputs become JAX arrays of the canonical dtype (float64 becomes float32 unless x64 is
    on), so layers compute and return the dtype JAX would.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise LayerTypeError(f"expected an array {what}, got {type(x).__name__}")
    try:
        return jnp.asarray(x)
    except (TypeError, ValueError):
        raise LayerTypeError(f"expected a numeric array {what}, got dtype {x.dtype}") from None


def check_entries(tree: Any, names: Sequence[str], what: str = "params") -> list:
    """Returns ``[tree[name] for name in names]``, raising a clear error if an entry is missing."""
    if not isinstance(tree, Mapping):
        raise LayerTypeError(f"expected {what} to be a dict with {list(names)}, got {type(tree).__name__}")
    missing = [name for name in names if name not in tree]
    if missing:
        raise LayerValueError(
            f"{what} has no {', '.join(map(repr, missing))}; expected {list(names)}, got {sorted(tree)}. "
            f"Were these {what} made by this layer's init?"
        )
    return [tree[name] for name in names]


def check_entry(value: Any, name: str, expected: Sequence[int | str]) -> jax.Array:
    """Checks a floating-point parameter or state entry against an expected shape.

    ``expected`` holds ints, which must match, and names such as ``"in"``, which match any size
    (the caller checks those against the input). Returns the entry as a JAX array.
    """
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise LayerTypeError(f"{name} must be an array, got {type(value).__name__}")
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise LayerTypeError(f"{name} must be floating-point, got dtype {value.dtype}")
    shape = tuple(value.shape)
    if len(shape) != len(expected) or any(
        isinstance(size, int) and size != actual for size, actual in zip(expected, shape)
    ):
        shown = "(" + ", ".join(map(str, expected)) + ("," if len(expected) == 1 else "") + ")"
        raise LayerValueError(f"{name} has shape {shape}, expected {shown}")
    return jnp.asarray(value)


def check_trailing_shape(x: jax.Array, expected: Sequence[int], what: str = "input") -> None:
    """Raises unless ``x.shape`` ends with ``expected`` (batch axes come before it)."""
    expected = tuple(expected)
    if x.ndim < len(expected):
        raise LayerValueError(
            f"expected {what} of shape (*batch, {', '.join(map(str, expected))}), got {x.shape}"
        )
    trailing = tuple(x.shape[x.ndim - len(expected):])
    if trailing != expected:
        if len(expected) == 1:
            raise LayerValueError(f"expected last axis {expected[0]}, got {trailing[0]}")
        raise LayerValueError(
            f"expected {what} of shape (*batch, {', '.join(map(str, expected))}), got {x.shape}"
        )


def check_floating(x: jax.Array, what: str = "input") -> None:
    """Raises a ``TypeError`` unless ``x`` has a floating-point dtype."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise LayerTypeError(f"expected a floating-point {what}, got dtype {x.dtype}")


def check_integer(x: jax.Array, what: str = "input") -> None:
    """Raises a ``TypeError`` unless ``x`` has an integer dtype."""
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise LayerTypeError(f"expected an integer {what}, got dtype {x.dtype}")


def check_initializer(initializer: Any, argument: str, constructor: str) -> None:
    """Raises unless ``initializer`` can be called as ``init(key, shape, dtype)``.

    Catches the common slip of passing a factory uncalled (``w_init=jaxnn.init.he_normal``).
    """
    if not callable(initializer):
        raise LayerTypeError(
            f"{constructor}: `{argument}` must be an initializer init(key, shape, dtype), "
            f"got {initializer!r}"
        )
    try:
        inspect.signature(initializer).bind(None, (), None)
    except TypeError:
        label = getattr(initializer, "__name__", repr(initializer))
        raise LayerTypeError(
            f"{constructor}: `{argument}` must be an initializer init(key, shape, dtype); {label} takes "
            f"other arguments. If it is a factory, call it: {argument}=jaxnn.init.{label}()"
        ) from None
    except ValueError:  # builtins without a signature: trust them
        pass


def check_param_dtype(param_dtype: Any, constructor: str) -> jnp.dtype:
    """Returns ``param_dtype`` as a dtype, raising unless it is a floating-point dtype."""
    try:
        dtype = jnp.dtype(param_dtype)
    except TypeError:
        raise LayerTypeError(f"{constructor}: `param_dtype` must be a dtype, got {param_dtype!r}") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise LayerTypeError(f"{constructor}: `param_dtype` must be floating-point, got {dtype}")
    return dtype


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values now (not a tracer inside ``jit``/``grad``/``vmap``)."""
    return not isinstance(x, jax.core.Tracer)


def first_out_of_range(values: Any, low: float, high: float, *, closed: bool = False):
    """On concrete arrays, ``(index, value)`` of the first entry outside ``[low, high)``, else None.

    With ``closed=True`` the interval is ``[low, high]``. NaN counts as outside. Tracers (inside
    ``jit``/``vmap``/``grad``) hold no values, so they are never reported.
    """
    if not is_concrete(values):
        return None
    values = np.asarray(values)
    inside = (values >= low) & ((values <= high) if closed else (values < high))
    if inside.all():
        return None
    index = tuple(int(i) for i in np.argwhere(~inside)[0])
    return index, values[index].item()


def expand_to(array: jax.Array, ndim: int) -> jax.Array:
    """Adds leading axes to ``array`` (a per-feature vector) so it broadcasts against ``ndim``."""
    return jax.lax.broadcast_to_rank(array, ndim)


def split_key(key: jax.Array | None, count: int) -> list:
    """Splits ``key`` into ``count`` keys, or gives ``count`` Nones when there is no key."""
    if key is None:
        return [None] * count
    return list(jax.random.split(key, count))


@jax.tree_util.register_static
class Static:
    """A hashable Python value stored in a pytree as structure, not as a leaf.

    Layers without parameters that still need to know their input shape at ``apply`` (``Flatten``,
    ``Reshape``) keep it in ``state`` this way: it is invisible to ``jit``, ``grad``, optimizers
    and checkpoints, and lets ``apply`` tell batch axes from feature axes.
    """

    def __init__(self, value: Any):
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Static) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"Static({self.value!r})"


# --------------------------------------------------------------------------------------------


def batch_shape(x: jax.Array, state: Any) -> tuple[int, ...]:
    """The batch axes of ``x``: those before the per-example input shape that ``init`` recorded.

    Layers that need it (``Flatten``, ``Reshape``, ``GlobalAvgPool``) record the shape in
    ``state["input_shape"]`` as a :class:`Static`. Without a recorded shape (a state built by
    hand), the first axis is the batch axis.
    """
    recorded = state.get("input_shape") if isinstance(state, Mapping) else None
    if not isinstance(recorded, Static):
        if x.ndim < 1:
            raise LayerValueError(
                "state lacks the input shape recorded by init, and without it the input needs a "
                f"batch axis; got shape {x.shape}. Pass the state returned by init"
            )
        return x.shape[:1]
    check_trailing_shape(x, recorded.value)
    return x.shape[: x.ndim - len(recorded.value)]


def count_parameters(tree: PyTree) -> tuple[int, int]:
    """Returns ``(number of scalars, bytes)`` over the array leaves of ``tree``."""
    leaves = jax.tree_util.tree_leaves(tree)
    count = sum(math.prod(leaf.shape) for leaf in leaves)
    size = sum(math.prod(leaf.shape) * jnp.dtype(leaf.dtype).itemsize for leaf in leaves)
    return int(count), int(size)
