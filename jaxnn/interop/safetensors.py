"""Params and state in the safetensors format, readable by PyTorch, Hugging Face and every
safetensors reader, and read back against a template that names what a file must hold.

A file holds one tensor per leaf, named by its path with ``/``: ``params/dense_0/w``,
``params/lstm_1/layer_0/wi``, ``state/batch_norm_1/mean``. Its metadata (string to string, as the
format allows) holds ``format: jaxnn`` and ``jaxnn_version``. The format is an 8-byte
little-endian header length, a JSON header (``{name: {dtype, shape, data_offsets}}`` plus
``__metadata__``) and the tensors' bytes; jaxnn writes and reads it itself, so bfloat16 works and
the ``safetensors`` package is not needed (it serves to check the files in the tests).

Reading is defensive: the header must be at most :data:`MAX_HEADER_BYTES` and fit in the file,
the tensors' byte ranges must follow each other without gap or overlap and fill the file exactly,
and every name, shape and dtype must be the template's, before any tensor's data is read.
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._files import write_atomically

__all__ = ["MAX_HEADER_BYTES", "load_weights", "save_weights"]

# safetensors' own limit: a larger header is refused before it is read.
MAX_HEADER_BYTES = 100_000_000

DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(jnp.bfloat16), "I64": np.dtype(np.int64), "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16), "I8": np.dtype(np.int8), "U64": np.dtype(np.uint64),
    "U32": np.dtype(np.uint32), "U16": np.dtype(np.uint16), "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


def leaf_name(prefix: str, path: tuple) -> str:
    """``"params/dense_0/w"`` for ``params["dense_0"]["w"]``: keys, indices and attribute names."""
    return "/".join([prefix] + ([jax.tree_util.keystr(path, simple=True, separator="/")] if path else []))


def named_leaves(params: Any, state: Any) -> dict[str, Any]:
    """``{"params/dense_0/w": leaf, ..., "state/batch_norm_1/mean": leaf}`` in tree order."""
    named: dict[str, Any] = {}
    for prefix, tree in (("params", params), ("state", state)):
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            name = leaf_name(prefix, path)
            if name in named:
                raise ValueError(f"two leaves are both named '{name}'; rename one of the keys")
            named[name] = leaf
    return named


def save_weights(path: str | os.PathLike, params: Any, state: Any = None, *,
                 metadata: dict[str, str] | None = None) -> None:
    """Write ``params`` and ``state`` to a safetensors file at ``path``, atomically.

    Tensor names are the leaves' paths (``params/dense_0/w``, ``state/batch_norm_1/var``); layers
    without params write nothing. ``metadata`` adds string entries to the file's metadata beside
    ``format`` and ``jaxnn_version``. The file is complete or absent, never truncated: written to a
    temporary file, then renamed.

    Example::

        jaxnn.interop.save_weights("model.safetensors", params, state)
        # PyTorch side: safetensors.torch.load_file("model.safetensors")["params/dense_0/w"]
    """
    import jaxnn

    entries = named_leaves(params, {} if state is None else state)
    info = {"format": "jaxnn", "jaxnn_version": jaxnn.__version__}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"save_weights: metadata must map strings to strings, got {key!r}: {value!r}")
        if key in info:
            raise ValueError(f"save_weights: metadata key {key!r} is written by jaxnn itself")
        info[key] = value
    header: dict[str, Any] = {"__metadata__": info}
    arrays, offset = [], 0
    for name, leaf in entries.items():
        array = np.asarray(leaf)
        # np.ascontiguousarray would turn a 0-d array into shape (1,): reshape keeps ().
        array = np.ascontiguousarray(array).reshape(array.shape)
        if array.dtype not in DTYPE_NAMES:
            raise TypeError(f"save_weights: '{name}' has dtype {array.dtype}, which safetensors cannot store")
        header[name] = {"dtype": DTYPE_NAMES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        arrays.append(array.astype(array.dtype.newbyteorder("<"), copy=False))
        offset += array.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it

    def write(file):
        file.write(struct.pack("<Q", len(text)))
        file.write(text)
        for array in arrays:
            file.write(array.tobytes())

    write_atomically(path, write)


def read_header(file, path: str, size: int) -> tuple[dict, dict, int]:
    """The file's tensor table and metadata, checked for sizes and offsets; and where data starts."""
    start = file.read(8)
    if len(start) < 8:
        raise ValueError(f"{path} is not a safetensors file: it has {size} bytes, fewer than the 8 of a header length")
    (length,) = struct.unpack("<Q", start)
    if length > MAX_HEADER_BYTES:
        raise ValueError(f"{path}: the header claims {length:,} bytes, more than the {MAX_HEADER_BYTES:,} "
                         "safetensors allows")
    if 8 + length > size:
        raise ValueError(f"{path}: the header claims {length:,} bytes, but the file has only {size - 8:,} after "
                         "its length")
    try:
        header = json.loads(file.read(length).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: the header is not valid JSON: {error}") from None
    if not isinstance(header, dict):
        # A malformed file is a bad value, like every other header error.
        raise ValueError(f"{path}: the header must be a JSON object, got {type(header).__name__}")  # noqa: TRY004
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: __metadata__ must be an object of strings")  # noqa: TRY004
    data_size = size - 8 - length
    table = {}
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{path}: tensor '{name}' must have exactly dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPES:
            raise ValueError(f"{path}: tensor '{name}' has dtype {dtype!r}, which jaxnn does not read")
        if (not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                   for n in shape)):
            raise ValueError(f"{path}: tensor '{name}' has shape {shape!r}, not a list of sizes")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_size):
            raise ValueError(f"{path}: tensor '{name}' has data_offsets {offsets!r}, outside the file's "
                             f"{data_size:,} bytes of data")
        if offsets[1] - offsets[0] != math.prod(shape) * DTYPES[dtype].itemsize:
            raise ValueError(f"{path}: tensor '{name}' ({dtype} {tuple(shape)}) needs "
                             f"{math.prod(shape) * DTYPES[dtype].itemsize:,} bytes, its offsets give "
                             f"{offsets[1] - offsets[0]:,}")
        table[name] = (DTYPES[dtype], tuple(shape), tuple(offsets))
    # As safetensors requires: byte ranges one after the other, no gap, no overlap, to the end.
    position = 0
    for name, (_, _, (begin, end)) in sorted(table.items(), key=lambda item: item[1][2]):
        if begin != position:
            problem = "overlaps the tensor before it" if begin < position else "leaves a gap before it"
            raise ValueError(f"{path}: tensor '{name}' (bytes {begin}..{end}) {problem}")
        position = end
    if position != data_size:
        raise ValueError(f"{path}: the tensors cover {position:,} bytes of the {data_size:,} the file holds")
    return table, metadata, 8 + length


def load_weights(path: str | os.PathLike, template: Any) -> tuple[Any, Any]:
    """Read ``(params, state)`` from a safetensors file, shaped like ``template = (params, state)``.

    ``template`` gives the names, shapes and dtypes the file must hold: the params and state of
    the model (arrays, or ``jax.ShapeDtypeStruct`` s from ``jax.eval_shape``, so nothing is
    allocated twice). A file holding anything else (a name missing or extra, another shape or
    dtype) is a ``ValueError`` naming the first mismatch, raised before any tensor's data is read;
    so is a file whose header is malformed, too large, or whose byte ranges overlap or leave gaps.
    Files written by other safetensors writers load as long as their names follow jaxnn's
    (``params/dense_0/w``).

    Example::

        template = jax.eval_shape(lambda: model.init(jax.random.key(0), (28, 28, 1))[1:])
        params, state = jaxnn.interop.load_weights("model.safetensors", template)
    """
    if not (isinstance(template, (tuple, list)) and len(template) == 2):
        raise TypeError("load_weights: template must be the pair (params, state) of the model the file is for; "
                        f"got {type(template).__name__}")
    path = os.fspath(path)
    params_template, state_template = template
    expected = named_leaves(params_template, state_template)
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        table, _, data_start = read_header(file, path, size)
        for name, leaf in expected.items():
            if name not in table:
                raise ValueError(f"{path} has no tensor '{name}', which the template needs "
                                 f"({len(table)} tensors in the file)")
            dtype, shape, _ = table[name]
            want_shape, want_dtype = tuple(jnp.shape(leaf)), np.dtype(leaf.dtype)
            if shape != want_shape:
                raise ValueError(f"{path}: tensor '{name}' has shape {shape}, the template's is {want_shape}")
            if dtype != want_dtype:
                raise ValueError(f"{path}: tensor '{name}' has dtype {dtype}, the template's is {want_dtype}")
        extra = [name for name in table if name not in expected]
        if extra:
            raise ValueError(f"{path} holds tensor '{extra[0]}', for which the template has no place"
                             + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
        values = {}
        for name in expected:
            dtype, shape, (begin, end) = table[name]
            file.seek(data_start + begin)
            values[name] = jnp.asarray(np.frombuffer(file.read(end - begin), dtype.newbyteorder("<"))
                                       .astype(dtype).reshape(shape))
    trees = []
    for prefix, tree in (("params", params_template), ("state", state_template)):
        leaves, structure = jax.tree_util.tree_flatten_with_path(tree)
        trees.append(jax.tree_util.tree_unflatten(structure, [values[leaf_name(prefix, p)] for p, _ in leaves]))
    return trees[0], trees[1]
