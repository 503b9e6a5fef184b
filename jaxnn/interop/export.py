"""A model and its weights as one serialized StableHLO program (``jax.export``), runnable without jaxnn.

What it serves: shipping an inference program to a server or another process that has JAX (or
any StableHLO runtime: IREE, XLA's C++ API, TensorFlow's ``XlaCallModule``) but not the model's
Python code; freezing exactly what was validated, since the file is the compiled semantics, not a
reference to code that may change; and running one program at any batch size.

Choices: the parameters and state are **baked into the program as constants**, so the file is
self-contained and its function takes only the input batch (a model of 100 MB of weights gives a
file of that size; for weights that change, save them with :func:`save_weights` and export
again). The batch axis is **symbolic** by default (``batch="symbolic"``), so one file serves every
batch size; ``batch=32`` fixes it. The program runs in inference mode (``train=False``) and is
exported for CPU by default (``platforms=("cpu", "cuda")`` adds GPUs).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxnn._files import write_atomically
from jaxnn.core import Layer, as_shape

__all__ = ["export", "load_exported"]


def require_flatbuffers() -> None:
    """``jax.export`` serializes with the ``flatbuffers`` package, which jax does not install."""
    try:
        import flatbuffers  # noqa: F401
    except ImportError:
        raise ImportError("jaxnn.interop.export/load_exported need the flatbuffers package that "
                          "jax.export serializes with: pip install 'jaxnn[export]'") from None


def export(model: Layer, params, state, input_shape, path: str | os.PathLike, *, batch: int | str = "symbolic",
           dtype=jnp.float32, platforms: Sequence[str] = ("cpu",)) -> jax.export.Exported:
    """Serialize ``x -> model.apply(params, state, x)[0]`` (``train=False``) to ``path``.

    The program takes one array of shape ``(batch, *input_shape)`` and ``dtype`` and returns the
    model's output; ``params`` and ``state`` are constants inside it. With ``batch="symbolic"``
    the batch size is a symbol ``b`` fixed at each call; an int fixes it.

    Args:
      model, params, state: the model and its weights.
      input_shape: the per-example input shape (no batch axis).
      path: the file to write (atomically); by convention ``*.jaxexport``.
      batch: ``"symbolic"`` or a positive int.
      dtype: the input's dtype (``jnp.int32`` for token ids).
      platforms: the platforms the program is lowered for.

    Returns:
      The :class:`jax.export.Exported` that was written.

    Example::

        jaxnn.interop.export(model, params, state, (28, 28, 1), "mnist.jaxexport")
        forward = jaxnn.interop.load_exported("mnist.jaxexport")     # needs only jax
        logits = forward(images)                                      # any batch size
    """
    require_flatbuffers()
    if not isinstance(model, Layer):
        raise TypeError(f"export: model must be a jaxnn Layer, got {type(model).__name__}")
    input_shape = as_shape(input_shape)
    if batch == "symbolic":
        (batch_size,) = jax.export.symbolic_shape("b")
    elif isinstance(batch, int) and not isinstance(batch, bool) and batch > 0:
        batch_size = batch
    else:
        raise ValueError(f"export: batch must be 'symbolic' or a positive int, got {batch!r}")
    if isinstance(platforms, str):
        platforms = (platforms,)

    def forward(x):
        y, _ = model.apply(params, state, x)
        return y

    argument = jax.ShapeDtypeStruct((batch_size,) + tuple(input_shape), jnp.dtype(dtype))
    try:
        exported = jax.export.export(jax.jit(forward), platforms=tuple(platforms))(argument)
    except jax.errors.InconclusiveDimensionOperation as error:
        if batch != "symbolic":
            raise
        where = layer_in_traceback(error.__traceback__)
        raise ValueError(f"export: {where or 'the model'} needs a concrete batch size, which "
                         f"batch='symbolic' does not give ({str(error).splitlines()[0]}); export with a "
                         f"fixed batch instead, e.g. batch=32") from error
    data = exported.serialize()
    write_atomically(path, lambda file: file.write(data))
    return exported


def layer_in_traceback(traceback) -> str | None:
    """Where in ``traceback`` the model's code needed a concrete size: ``"layer 'lstm_0' (code at
    .../recurrent.py:170, apply)"``, from the path of child names the combinators were applying
    (``jaxnn.core.apply_child``) and the innermost frame outside JAX, NumPy and jaxnn's core; None
    when there is no such frame."""
    path, code_at = [], None
    while traceback is not None:
        frame = traceback.tb_frame
        module = frame.f_globals.get("__name__", "")
        if module == "jaxnn.core.layer" and frame.f_code.co_name == "apply_child":
            path.append(str(frame.f_locals.get("child_name")))
        elif not module.startswith(("jax.", "jaxlib", "numpy", "jaxnn.core", "jaxnn.interop", "contextlib")) \
                and module not in ("jax", "numpy"):
            code_at = f"{frame.f_code.co_filename}:{traceback.tb_lineno}, {frame.f_code.co_name}"
        traceback = traceback.tb_next
    if code_at is None:
        return None
    return f"layer '{'/'.join(path)}' (code at {code_at})" if path else f"the model (code at {code_at})"


def load_exported(path: str | os.PathLike) -> Callable[[jax.Array], jax.Array]:
    """The function a file written by :func:`export` holds, as a callable ``x -> y``.

    It needs only JAX (``jax.export.deserialize``), none of the model's code; the same as::

        jax.export.deserialize(bytearray(open(path, "rb").read())).call
    """
    require_flatbuffers()
    with open(path, "rb") as file:
        data = file.read()
    try:
        exported = jax.export.deserialize(bytearray(data))
    # flatbuffers fails on foreign bytes in many ways (struct.error, AttributeError, IndexError).
    except Exception as error:  # noqa: BLE001
        raise ValueError(f"{os.fspath(path)} is not a program written by jaxnn.interop.export "
                         f"(jax.export.deserialize failed: {type(error).__name__})") from None
    return exported.call
