"""The layer contract: a named pair of pure functions, the options it takes, and how errors name it.

A layer is::

    init(key, input_shape) -> (output_shape, params, state)
    apply(params, state, x, *, key=None, train=False, **options) -> (y, state)

``options`` are the keyword arguments beyond ``key`` and ``train`` that a layer declares
(``mask=`` for attention, ``initial_state=`` for recurrent layers). A combinator declares the
options of all its children and gives each child the ones that child declares
(:func:`options_for`), however deeply the layers nest. An option no layer declares is a
``TypeError`` naming it and the options the model does take.

Errors raised inside a layer carry its path (``"encoder/dense_2: expected last axis 64, got 32"``):
combinators run each child inside :func:`child_scope`, which prefixes the child's name. The same
paths name the rows :func:`record_layers` collects during ``init`` (for ``jaxnn.summary``) and
:func:`record_outputs` during ``apply`` (for ``jaxnn.lab.capture``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Shape = tuple[int, ...]
PyTree = Any


class Layer(NamedTuple):
    """A layer: its kind ``name``, its two pure functions, and the options ``apply`` takes.

    ``init(key, input_shape) -> (output_shape, params, state)`` infers shapes without data;
    ``input_shape`` has no batch axis. ``apply(params, state, x, *, key=None, train=False,
    **options) -> (y, state)`` accepts ``x`` of shape ``(*batch, *input_shape)`` with any number of
    leading batch axes, zero included. ``options`` names the keyword options ``apply`` accepts
    besides ``key`` and ``train`` (sorted); most layers take none. ``input_check``, when not
    None, is ``input_check(x)`` on a concrete NumPy batch: it raises a ``ValueError`` for values
    the layer cannot take (token ids out of range), which a compiled step could not detect.
    ``fit`` and ``evaluate`` run it once over all the data at entry.
    """

    name: str
    init: Callable
    apply: Callable
    options: tuple[str, ...] = ()
    input_check: Callable | None = None


# --------------------------------------------------------------------------------------------
# Errors that carry the layer path.


class PathError(Exception):
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


class LayerValueError(PathError, ValueError):
    """A bad value or shape given to a layer."""


class LayerTypeError(PathError, TypeError):
    """A bad dtype or type given to a layer."""


# The path of the layer running now, and how deep in layer calls we are; both are only read
# while Python traces a model, so they cost nothing in compiled code.
_path: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("jaxnn_path", default=())
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("jaxnn_depth", default=0)
# A list that collects one row per leaf layer during ``init`` while :func:`record_layers` is
# active (see ``init_child``).
_recorder: contextvars.ContextVar[list | None] = contextvars.ContextVar("jaxnn_recorder", default=None)
# A list that collects one row per layer applied while :func:`record_outputs` is active: read
# only while Python runs or traces a model, so it costs nothing in compiled code.
_output_recorder: contextvars.ContextVar[list | None] = contextvars.ContextVar("jaxnn_output_recorder",
                                                                                default=None)


@contextlib.contextmanager
def child_scope(name: str) -> Iterator[None]:
    """Runs a child layer so that its errors carry its name, prefixed to the path."""
    token = _path.set(_path.get() + (name,))
    try:
        yield
    except PathError as error:
        error.path = (name,) + error.path
        raise
    finally:
        _path.reset(token)


@contextlib.contextmanager
def record_layers() -> Iterator[list]:
    """Collects ``(path, kind, output_shape, params, state)`` for each leaf layer initialized inside.

    A leaf is a child of a combinator that records no rows of its own (a layer whose insides are
    not run through :func:`init_child`). ``jaxnn.summary`` builds its table from these rows.
    """
    rows: list = []
    token = _recorder.set(rows)
    try:
        yield rows
    finally:
        _recorder.reset(token)


class LeafLayers(NamedTuple):
    """What :func:`leaf_layers` finds: one ``(path, kind, output_shape, params, state)`` row per
    leaf layer, the model's output shape, and its params and state as shape-dtype structs."""

    rows: list
    output_shape: tuple[int, ...]
    params: Any
    state: Any


def leaf_layers(model: Layer, input_shape: tuple[int, ...]) -> LeafLayers:
    """The leaf layers of ``model`` for per-example ``input_shape``, found with ``jax.eval_shape``:
    no parameters are allocated and no data is needed. A model that is a single layer is one row.
    ``jaxnn.summary`` and ``jaxnn.interop`` read a model's structure from these rows."""
    rows: list = []
    found = {}

    def shapes_only(key):
        with record_layers() as recorded:
            output_shape, params, state = model.init(key, input_shape)
        rows.extend(recorded)
        found["output_shape"] = tuple(output_shape)
        return params, state

    params, state = jax.eval_shape(shapes_only, jax.random.key(0))
    if not rows:
        rows.append(((), model.name, found["output_shape"], params, state))
    return LeafLayers(rows, found["output_shape"], params, state)


@contextlib.contextmanager
def record_outputs() -> Iterator[list]:
    """Collects ``(path, layer, output)`` for every layer applied inside, in the order the outputs
    were computed.

    ``path`` is the tuple of child names the layer ran under (:func:`child_scope`; ``()`` for the
    model itself), ``layer`` the :class:`Layer` and ``output`` its ``y``. A combinator's row comes
    after its children's rows; a layer that wraps another without a name of its own
    (``Residual``) gives a second row with the same path after the wrapped layer's.
    ``jaxnn.lab.capture`` builds its outputs by path from these rows. Outputs are whatever the
    layers returned: tracers when the model runs under ``jit`` or ``vmap``, to be returned from
    the same transformed function.
    """
    rows: list = []
    token = _output_recorder.set(rows)
    try:
        yield rows
    finally:
        _output_recorder.reset(token)


# --------------------------------------------------------------------------------------------
# Building layers.


def make_layer(name: str, init: Callable, apply: Callable, *, options: Iterable[str] = (),
               input_check: Callable | None = None) -> Layer:
    """Builds a :class:`Layer`, adding the behaviour every layer shares.

    ``apply`` is called as ``apply(params, state, x, key=key, train=train, **options)`` with only
    the declared ``options`` that the caller gave; an undeclared one is a ``TypeError`` naming it
    and the options the layer takes. Called by the user (not from inside a combinator), the layer
    first checks ``key`` and ``train``, and prefixes the errors raised inside it with its
    ``name``; inside a combinator the combinator supplies the path instead.

    Args:
      name: the layer's kind in snake_case (``"dense"``, ``"batch_norm"``); ``Sequential`` names
        children after it.
      init: ``init(key, input_shape) -> (output_shape, params, state)``.
      apply: ``apply(params, state, x, *, key=None, train=False, **options) -> (y, state)``.
      options: the names of the keyword options ``apply`` accepts besides ``key`` and ``train``.
      input_check: ``input_check(x)`` raising a ``ValueError`` for input values the layer cannot
        take, run on concrete data before training (see :class:`Layer`).
    """
    if input_check is not None and not callable(input_check):
        raise TypeError(f"{name}: `input_check` must be a function input_check(x), got {input_check!r}")
    declared = _option_names(options, name)

    def scoped(function: Callable, check: Callable, *args, **kwargs):
        depth = _depth.get()
        token = _depth.set(depth + 1)
        try:
            if depth == 0:
                check()
            return function(*args, **kwargs)
        except PathError as error:
            if depth == 0 and not error.path:
                error.path = (name,)
            raise
        finally:
            _depth.reset(token)

    @functools.wraps(init)
    def scoped_init(key, input_shape):
        try:
            return scoped(init, lambda: _check_key(key, "init", required=True), key, input_shape)
        except jax.errors.JaxRuntimeError as error:
            if _depth.get() > 0 or "RESOURCE_EXHAUSTED" not in str(error):
                raise
            raise MemoryError(f"{name}: the parameters need {_bytes_needed(init, key, input_shape, error)}") \
                from error

    @functools.wraps(apply)
    def scoped_apply(params, state, x, *, key=None, train=False, **given):
        def check():
            _check_train(train)
            _check_key(key, "apply", required=False)

        def checked_apply(*args, **kwargs):
            unknown = sorted(set(given) - set(declared))
            if unknown:
                takes = f"it takes {', '.join(declared)}" if declared else "it takes none"
                raise LayerTypeError(
                    f"no layer of this model takes the option{'s' * (len(unknown) > 1)} "
                    f"{', '.join(map(repr, unknown))}; {takes}"
                )
            return apply(*args, **kwargs)

        result = scoped(checked_apply, check, params, state, x, key=key, train=train, **given)
        outputs = _output_recorder.get()
        if outputs is not None and isinstance(result, tuple) and len(result) == 2:
            outputs.append((_path.get(), layer, result[0]))
        return result

    layer = Layer(name, scoped_init, scoped_apply, declared, input_check)
    return layer


def _bytes_needed(init: Callable, key, input_shape, error: Exception) -> str:
    """The size of ``init``'s params and state, found without allocating them; failing that, the
    allocation that failed, as the error reports it."""
    try:
        _, params, state = jax.eval_shape(lambda key: init(key, input_shape), key)
        total = sum(math.prod(leaf.shape) * jnp.dtype(leaf.dtype).itemsize
                    for leaf in jax.tree_util.tree_leaves((params, state)))
        prefix = ""
    except Exception:  # shapes beyond what tracing takes (int32 sizes): use the failed allocation
        match = re.search(r"allocating (\d+) bytes", str(error))
        if match is None:
            return "more memory than the device has free"
        total, prefix = int(match.group(1)), "at least "
    return f"{prefix}{_format_bytes(total)}, more memory than the device has free"


def _format_bytes(total: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if total < 1024 or unit == "TiB":
            return f"{total:,.0f} bytes" if unit == "bytes" else f"{total:,.1f} {unit}"
        total /= 1024
    raise AssertionError("unreachable")


def _option_names(options: Iterable[str], name: str) -> tuple[str, ...]:
    if isinstance(options, str):
        options = (options,)
    names = tuple(sorted(set(options)))
    for option in names:
        if not isinstance(option, str) or not option.isidentifier() or option in ("key", "train"):
            raise TypeError(f"{name}: options must be keyword names other than key and train, got {option!r}")
    return names


def declared_options(layers: Iterable[Layer]) -> tuple[str, ...]:
    """The options any of ``layers`` takes: what a combinator of them declares."""
    return tuple(sorted({option for layer in layers for option in layer.options}))


def options_for(layer: Layer, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options among ``options`` that ``layer`` declares: what a combinator passes to that child."""
    return {option: value for option, value in options.items() if option in layer.options}


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


def init_child(child_name: str, layer: Layer, key: jax.Array, input_shape: Shape):
    """Initializes a combinator's child under its name.

    Errors carry the child's name, and inside :func:`record_layers` a child that recorded no rows
    of its own (a leaf, or a layer whose insides are not combinators) records one.
    """
    recorder = _recorder.get()
    rows_before = len(recorder) if recorder is not None else 0
    with child_scope(child_name):
        output_shape, params, state = layer.init(key, input_shape)
        if recorder is not None and len(recorder) == rows_before:
            recorder.append((_path.get(), layer.name, tuple(output_shape), params, state))
    return output_shape, params, state


def apply_child(child_name: str, layer: Layer, params, state, x, *, key=None, train=False,
                **options):
    """Applies a combinator's child under its name, passing on the options the child declares."""
    with child_scope(child_name):
        return layer.apply(params, state, x, key=key, train=train, **options_for(layer, options))
