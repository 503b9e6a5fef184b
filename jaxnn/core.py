"""The layer contract and the combinators that compose layers.

A layer is a named pair of pure functions over plain pytrees (see ``DESIGN.md``)::

    init(key, input_shape) -> (output_shape, params, state)
    apply(params, state, x, *, key=None, train=False) -> (y, state)

This module also holds the shared input checks, so that a user mistake is reported as a
``ValueError``/``TypeError`` naming the layer's path (``"encoder/dense_2: ..."``) before XLA sees it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import math
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence as SequenceType

import jax
import jax.numpy as jnp
import numpy as np

Shape = tuple[int, ...]
PyTree = Any


class Layer(NamedTuple):
    """A layer: its kind ``name`` and its two pure functions.

    ``init(key, input_shape) -> (output_shape, params, state)`` infers shapes without data;
    ``input_shape`` has no batch axis. ``apply(params, state, x, *, key=None, train=False) ->
    (y, state)`` accepts ``x`` of shape ``(*batch, *input_shape)`` with any number of leading batch
    axes, zero included.
    """

    name: str
    init: Callable
    apply: Callable


# --------------------------------------------------------------------------------------------
# Errors that carry the layer path.


class _PathError(Exception):
    """Mixin for errors raised inside layers: the message is prefixed with the layer's path.

    Combinators prepend their child's name as the error travels up, so the final message reads
    ``"encoder/dense_2: expected last axis 64, got 32"``.
    """

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail
        self.path: tuple[str, ...] = ()

    def __str__(self) -> str:
        if not self.path:
            return self.detail
        return f"{'/'.join(self.path)}: {self.detail}"


class LayerValueError(_PathError, ValueError):
    """A bad value or shape given to a layer."""


class LayerTypeError(_PathError, TypeError):
    """A bad dtype or type given to a layer."""


@contextlib.contextmanager
def child_scope(name: str) -> Iterator[None]:
    """Runs a child layer so that its errors carry its name, prefixed to the path."""
    token = _path.set(_path.get() + (name,))
    try:
        yield
    except _PathError as error:
        error.path = (name,) + error.path
        raise
    finally:
        _path.reset(token)


# The path of the layer running now, and how deep in layer calls we are; both are only read
# while Python traces a model, so they cost nothing in compiled code.
_path: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("jaxnn_path", default=())
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("jaxnn_depth", default=0)
# Set by ``jaxnn.summary`` to a list that collects one row per leaf layer during ``init``
# (see ``init_child``).
_recorder: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "jaxnn_recorder", default=None
)


def make_layer(name: str, init: Callable, apply: Callable) -> Layer:
    """Builds a :class:`Layer`, adding the behaviour every built-in layer shares.

    Called by the user (not from inside a combinator), the layer first checks ``key`` and
    ``train``, and prefixes the errors raised inside it with its ``name``; inside a combinator the
    combinator supplies the path instead.
    """

    def _scoped(function: Callable, check: Callable, *args, **kwargs):
        depth = _depth.get()
        token = _depth.set(depth + 1)
        try:
            if depth == 0:
                check()
            return function(*args, **kwargs)
        except _PathError as error:
            if depth == 0 and not error.path:
                error.path = (name,)
            raise
        finally:
            _depth.reset(token)

    @functools.wraps(init)
    def scoped_init(key, input_shape):
        return _scoped(init, lambda: _check_key(key, "init", required=True), key, input_shape)

    @functools.wraps(apply)
    def scoped_apply(params, state, x, *, key=None, train=False):
        def check():
            _check_train(train)
            _check_key(key, "apply", required=False)

        return _scoped(apply, check, params, state, x, key=key, train=train)

    return Layer(name, scoped_init, scoped_apply)


def _check_key(key: Any, method: str, *, required: bool) -> None:
    if key is None:
        if required:
            raise LayerTypeError(f"{method} needs a PRNG key: {method}(jax.random.key(0), input_shape)")
        return
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    typed_key = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ()
    raw_key = dtype == jnp.uint32 and shape == (2,)
    if not (typed_key or raw_key):
        got = f"an array of shape {shape} and dtype {dtype}" if dtype is not None else repr(key)
        raise LayerTypeError(
            f"key must be a single PRNG key such as jax.random.key(0), got {got}"
        )


def _check_train(train: Any) -> None:
    if isinstance(train, (bool, np.bool_)):
        return
    hint = ("; under jax.jit mark it static: jax.jit(model.apply, static_argnames='train')"
            if isinstance(train, jax.core.Tracer) else "")
    raise LayerTypeError(f"train must be a Python bool, got {type(train).__name__}{hint}")


# --------------------------------------------------------------------------------------------
# Checks shared by layers.


def as_shape(input_shape: Any) -> Shape:
    """Validates an ``input_shape`` given to ``init`` and returns it as a tuple of ints."""
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


def check_entries(tree: Any, names: SequenceType[str], what: str = "params") -> list:
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


def check_entry(value: Any, name: str, expected: SequenceType[int | str]) -> jax.Array:
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


def check_trailing_shape(x: jax.Array, expected: SequenceType[int], what: str = "input") -> None:
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


def check_bool(value: Any, argument: str, constructor: str) -> bool:
    """Returns ``value`` if it is a bool, else raises a ``TypeError`` naming the argument."""
    if not isinstance(value, (bool, np.bool_)):
        raise LayerTypeError(f"{constructor}: `{argument}` must be True or False, got {value!r}")
    return bool(value)


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


def compute_dtype(*dtypes) -> jnp.dtype:
    """The dtype two operands are computed in, promoted explicitly.

    Layers cast their operands to this dtype themselves, so they work the same whether or not the
    user runs JAX with ``jax_numpy_dtype_promotion="strict"``.
    """
    # Canonicalizing first maps NumPy's float64 to float32 when x64 is off, silently, as JAX
    # does for the arrays themselves; without it jnp warns that float64 is unavailable.
    with jax.numpy_dtype_promotion("standard"):
        return jnp.result_type(*[jax.dtypes.canonicalize_dtype(dtype) for dtype in dtypes])


def expand_to(array: jax.Array, ndim: int) -> jax.Array:
    """Adds leading axes to ``array`` (a per-feature vector) so it broadcasts against ``ndim``."""
    return jax.lax.broadcast_to_rank(array, ndim)


def split_key(key: jax.Array | None, count: int) -> list:
    """Splits ``key`` into ``count`` keys, or gives ``count`` Nones when there is no key."""
    if key is None:
        return [None] * count
    return list(jax.random.split(key, count))


# --------------------------------------------------------------------------------------------
# Static values in pytrees.


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
# Combinators.


def init_child(child_name: str, layer: Layer, key: jax.Array, input_shape: Shape):
    """Initializes a combinator's child under its name.

    Errors carry the child's name, and during :func:`jaxnn.summary` a child that recorded no rows
    of its own (a leaf, or a layer whose insides are not combinators) records one.
    """
    recorder = _recorder.get()
    rows_before = len(recorder) if recorder is not None else 0
    with child_scope(child_name):
        output_shape, params, state = layer.init(key, input_shape)
        if recorder is not None and len(recorder) == rows_before:
            recorder.append((_path.get(), layer.name, tuple(output_shape), params, state))
    return output_shape, params, state


def _named_children(layers) -> list[tuple[str, Layer]]:
    if isinstance(layers, Layer):
        raise LayerTypeError("expected a list or dict of layers, got a single Layer; wrap it: [layer]")
    if isinstance(layers, (str, bytes)) or not isinstance(layers, (Mapping, SequenceType)):
        raise LayerTypeError(f"expected a list or dict of layers, got {type(layers).__name__}")
    if isinstance(layers, Mapping):
        children = list(layers.items())
        for child_name, _ in children:
            if not isinstance(child_name, str) or not child_name or "/" in child_name:
                raise LayerValueError(f"child names must be non-empty strings without '/', got {child_name!r}")
    else:
        layers = list(layers)
        children = [(f"{layer.name}_{i}" if isinstance(layer, Layer) else str(i), layer)
                    for i, layer in enumerate(layers)]
    for child_name, layer in children:
        if not isinstance(layer, Layer):
            raise LayerTypeError(
                f"{child_name!r} is a {type(layer).__name__}, not a Layer; "
                "call the constructor, e.g. jaxnn.Relu() rather than jaxnn.Relu"
            )
    if not children:
        raise LayerValueError("expected at least one layer")
    return children


def Sequential(layers: SequenceType[Layer] | Mapping[str, Layer]) -> Layer:
    """Applies layers one after another: ``y = f_n(... f_1(f_0(x)))``.

    A list names its children ``f"{layer.name}_{i}"`` (``dense_0``, ``relu_1``, ...); a dict uses
    its keys. ``params`` and ``state`` are dicts keyed by those names. The PRNG key is split once
    per child and ``state`` is threaded through.

    Example::

        model = Sequential([Dense(128), Relu(), Dense(10)])
        output_shape, params, state = model.init(jax.random.key(0), (784,))
        logits, state = model.apply(params, state, images)
    """
    children = _named_children(layers)

    def init(key, input_shape):
        shape = as_shape(input_shape)
        params, state = {}, {}
        for (child_name, layer), child_key in zip(children, jax.random.split(key, len(children))):
            shape, params[child_name], state[child_name] = init_child(child_name, layer, child_key, shape)
        return shape, params, state

    def apply(params, state, x, *, key=None, train=False):
        _check_children_present("params", params, children)
        _check_children_present("state", state, children)
        new_state = {}
        for (child_name, layer), child_key in zip(children, split_key(key, len(children))):
            with child_scope(child_name):
                x, new_state[child_name] = layer.apply(
                    params[child_name], state[child_name], x, key=child_key, train=train
                )
        return x, new_state

    return make_layer("sequential", init, apply)


def Residual(layer: Layer) -> Layer:
    """Adds a layer's output to its input: ``y = x + f(x)``.

    ``params`` and ``state`` are those of ``layer`` itself; its output shape must equal its input
    shape.
    """
    if not isinstance(layer, Layer):
        raise LayerTypeError(f"Residual expects a Layer, got {type(layer).__name__}")

    def init(key, input_shape):
        shape = as_shape(input_shape)
        output_shape, params, state = layer.init(key, shape)
        if tuple(output_shape) != shape:
            raise LayerValueError(
                f"the wrapped {layer.name} maps {shape} to {tuple(output_shape)}; "
                "a residual connection needs equal input and output shapes"
            )
        return shape, params, state

    def apply(params, state, x, *, key=None, train=False):
        x = check_array(x)
        y, state = layer.apply(params, state, x, key=key, train=train)
        dtype = compute_dtype(x.dtype, y.dtype)
        return x.astype(dtype) + y.astype(dtype), state

    return make_layer("residual", init, apply)


def Concat(layers: SequenceType[Layer] | Mapping[str, Layer], axis: int = -1) -> Layer:
    """Applies every layer to the same input and concatenates their outputs along ``axis``.

    ``y = concatenate([f_0(x), f_1(x), ...], axis)``. ``axis`` is negative, counted from the end of
    each output, so that it means the same with any number of leading batch axes. Children are
    named as in :func:`Sequential`.
    """
    children = _named_children(layers)
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise LayerTypeError(f"Concat: `axis` must be a negative int, got {axis!r}")
    if axis >= 0:
        raise LayerValueError(f"Concat takes a negative axis, counted from the end of each output, got {axis}")

    def init(key, input_shape):
        shape = as_shape(input_shape)
        output_shapes, params, state = [], {}, {}
        for (child_name, layer), child_key in zip(children, jax.random.split(key, len(children))):
            output_shape, params[child_name], state[child_name] = init_child(child_name, layer, child_key, shape)
            output_shapes.append(tuple(output_shape))
        first_name, first = children[0][0], output_shapes[0]
        if len(first) < -axis:
            raise LayerValueError(f"axis {axis} is out of range for outputs of shape {first}")
        position = len(first) + axis
        for (child_name, _), output_shape in zip(children, output_shapes):
            if len(output_shape) != len(first) or (
                output_shape[:position] + output_shape[position + 1:] != first[:position] + first[position + 1:]
            ):
                raise LayerValueError(
                    f"cannot concatenate along axis {axis}: {first_name} gives {first} "
                    f"but {child_name} gives {output_shape}"
                )
        total = sum(output_shape[position] for output_shape in output_shapes)
        return first[:position] + (total,) + first[position + 1:], params, state

    def apply(params, state, x, *, key=None, train=False):
        _check_children_present("params", params, children)
        _check_children_present("state", state, children)
        outputs, new_state = [], {}
        for (child_name, layer), child_key in zip(children, split_key(key, len(children))):
            with child_scope(child_name):
                y, new_state[child_name] = layer.apply(
                    params[child_name], state[child_name], x, key=child_key, train=train
                )
            outputs.append(y)
        dtype = compute_dtype(*[y.dtype for y in outputs])
        return jnp.concatenate([y.astype(dtype) for y in outputs], axis=axis), new_state

    return make_layer("concat", init, apply)


def _check_children_present(what: str, tree: Any, children) -> None:
    if not isinstance(tree, Mapping):
        raise LayerTypeError(f"expected {what} to be a dict keyed by child name, got {type(tree).__name__}")
    missing = [child_name for child_name, _ in children if child_name not in tree]
    if missing:
        raise LayerValueError(
            f"{what} has no entry for {', '.join(missing)}; it has {sorted(tree)}. "
            f"Were these {what} made by the same model's init?"
        )


def count_parameters(tree: PyTree) -> tuple[int, int]:
    """Returns ``(number of scalars, bytes)`` over the array leaves of ``tree``."""
    leaves = jax.tree_util.tree_leaves(tree)
    count = sum(math.prod(leaf.shape) for leaf in leaves)
    size = sum(math.prod(leaf.shape) * jnp.dtype(leaf.dtype).itemsize for leaf in leaves)
    return int(count), int(size)
