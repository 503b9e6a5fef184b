"""Checkpoints: a whole train state plus JSON metadata in one pickle-free ``.npz`` file.

A checkpoint is a zip archive that NumPy reads with ``np.load(path, allow_pickle=False)``: one
``.npy`` entry per leaf, named after the leaf's pytree path (``params/dense_0/w.npy``), and a
``metadata.json`` entry. Nothing in it is ever unpickled, so loading a file cannot run code.
Files are written atomically: a crash during a save leaves the previous checkpoint as it was.

A file cannot make loading read or allocate more than the template's arrays and a bounded
metadata. Before any member is read, the archive's directory must show what jaxnn writes:
members stored uncompressed (so that none inflates beyond its size in the file) under distinct
names, and a ``metadata.json`` of at most :data:`MAX_METADATA_BYTES` (64 MiB;
:func:`save_checkpoint` refuses larger metadata). Before any array member is read, the size of
each must be a ``.npy`` header (10 to 10,012 bytes) plus exactly the data its leaf table entry
implies; before a member's data is read, its header must give the entry's shape and dtype and
its exact size.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import re
import stat
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn
from jaxnn import parallel
from jaxnn._files import write_atomically

FORMAT = "jaxnn.checkpoint"
FORMAT_VERSION = 1
METADATA_ENTRY = "metadata.json"
# The largest metadata.json that is written or read: far above any leaf table and user metadata
# (a leaf's table entry takes about 100 bytes), and small enough to read into memory at once.
MAX_METADATA_BYTES = 64 * 2**20
# The one top-level metadata key that jaxnn writes; every other key belongs to the user.
RESERVED_KEY = "jaxnn"

# Fixed zip timestamps make the bytes of a checkpoint a function of its contents alone.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"
_PICKLE_PROTOCOL_MARK = b"\x80"
# A .npy header is a fixed start (magic, version, header length: 10 bytes in version 1.0, 12 in
# 2.0) and a dict literal, which NumPy refuses to parse past this many characters. The header of
# a numeric array is ASCII, so NumPy writes it as version 1.0 or 2.0, never 3.0 (UTF-8 field names).
_NPY_MAX_HEADER_TEXT = 10_000
_NPY_HEADER_BYTES = (10, 12 + _NPY_MAX_HEADER_TEXT)
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}
# What ``jaxnn train`` names the checkpoint in a run folder.
_RUN_FOLDER_CHECKPOINT = "checkpoint.npz"
_MAX_LISTED = 12
# Layer kinds renamed to the snake_case of their constructor: new kind -> the kind checkpoints of
# jaxnn 0.1.0 name. A Sequential names its children after their kind (``batchnorm_1`` then,
# ``batch_norm_1`` now), so a template's leaf missing from an older file is looked up under the
# old name too.
_RENAMED_KINDS = {
    "batch_norm": "batchnorm",
    "layer_norm": "layernorm",
    "multi_head_attention": "attention",
    "sinusoidal_positional_embedding": "sinusoidal_embedding",
    "learned_positional_embedding": "positional_embedding",
    "transformer_encoder_block": "transformer_block",
}
_NUMBERED_CHILD = re.compile(r"^(?P<kind>[a-z0-9_]+?)_(?P<index>[0-9]+)$")


def save_checkpoint(path: str | os.PathLike, train_state: Any, metadata: Mapping | None = None) -> None:
    """Writes ``train_state`` (any pytree of arrays) and JSON ``metadata`` to one ``.npz`` file.

    The file is written to a temporary file in the same directory, flushed and ``fsync``-ed, then
    renamed over ``path`` (and the directory ``fsync``-ed where the system allows), so ``path``
    always holds either the previous checkpoint or the new one, whole. A save that fails removes
    its temporary file and re-raises. Missing parent directories are created. Under several
    processes, call it in every process with the same (replicated) train state: process 0
    writes, and every process returns once the file is whole.

    Layout of the archive:

    - ``<leaf path>.npy`` for each leaf, the path being ``jax.tree_util.keystr(path, simple=True,
      separator="/")``: ``params/dense_0/w``, ``opt_state/0/mu/dense_0/w``, ``step``, ``key``.
    - Typed PRNG keys are stored as their ``jax.random.key_data`` (uint32) with the
      implementation's name in the metadata. Dtypes the ``.npy`` format cannot describe
      (``bfloat16``, float8 and the other ``ml_dtypes``) are stored as an unsigned integer view of
      the same width, their dtype name recorded in the metadata.
    - ``metadata.json``: the user's ``metadata`` at the top level, plus the key ``"jaxnn"``
      holding ``format``, ``format_version``, ``versions`` (jaxnn, jax, numpy) and ``leaves``, a
      table of ``{"path", "shape", "dtype"}`` (with ``"stored_as"`` and ``"key_impl"`` where
      they apply).

    Args:
      path: the file to write; used exactly as given (``.npz`` is the customary suffix).
      train_state: a :class:`~jaxnn.train.state.TrainState` or any pytree whose leaves are arrays
        (JAX or NumPy, typed PRNG keys included) or Python scalars. Leaves must be fully
        addressable from this process.
      metadata: a JSON-serializable mapping, such as ``{"model": "mlp 784-128-10", "epoch": 3,
        "metrics": {"val_loss": 0.31}}``. NumPy and JAX scalars and arrays are converted to
        numbers and lists. The key ``"jaxnn"`` is reserved.

    Raises:
      TypeError: a leaf is not a numeric array, or ``metadata`` is not JSON-serializable.
      ValueError: two leaves map to the same name (a dict key containing ``/``), ``metadata``
        uses the reserved key, or ``metadata.json`` would exceed :data:`MAX_METADATA_BYTES`.

    Example::

        save_checkpoint("runs/mlp/ckpt.npz", train_state, {"epoch": epoch, "val_loss": val_loss})
    """
    path = os.fspath(path)
    # Everything that can fail on bad input is done before a temporary file exists.
    arrays, table = _flatten_for_saving(train_state)
    metadata_bytes = _encode_metadata(metadata, table)

    # Under several processes the train state is the same on each: one writes, the others wait
    # until the file is whole, so that none reads it early.
    if parallel.is_main_process():
        write_atomically(path, lambda file: _write_archive(file, arrays, metadata_bytes))
    parallel.sync(f"jaxnn.save_checkpoint:{path}")


def restore_checkpoint(path: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """Reads a checkpoint written by :func:`save_checkpoint` into the structure of ``template``.

    ``template`` gives the tree structure and, for each leaf, the expected shape and dtype and the
    type to restore: a freshly made :class:`~jaxnn.train.state.TrainState` (from
    ``create_train_state``), any pytree of the same structure, or the output of
    ``jax.eval_shape`` (``jax.ShapeDtypeStruct`` leaves). JAX array leaves come back as JAX arrays
    on the template leaf's sharding, typed PRNG keys as typed keys, NumPy leaves as NumPy arrays
    and Python scalars as Python scalars, bit for bit equal to what was saved.

    Nothing is unpickled: a pickle is refused by its first bytes, an object array by its
    ``.npy`` header. The archive's directory, each array member's size and each ``.npy`` header
    are checked (see the module docstring) before the data they describe is read, so a file
    cannot make a restore read or allocate more than the template's arrays and their headers. A
    leaf stored in the other byte order (a big-endian ``>f4`` member) comes back in native byte
    order, with the same values.

    Args:
      path: a file written by :func:`save_checkpoint`.
      template: a pytree with the structure, shapes and dtypes of the saved one.

    Returns:
      ``(train_state, metadata)``: the restored tree and the metadata dict, as
      :func:`read_metadata` returns it.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: ``path`` is not a regular file (a directory, a FIFO); the file is not a
        checkpoint (not a zip archive, truncated, corrupt, a pickle, holding object arrays,
        compressed or duplicated members, a ``metadata.json`` over :data:`MAX_METADATA_BYTES`, a
        member whose size or ``.npy`` header disagrees with the leaf table); its format version
        is unknown; or it does not match ``template``: the message lists the leaf paths missing
        from the file, those not in the template, and each shape or dtype that differs.

    Example::

        template = create_train_state(model, optimizer, jax.random.key(0), (784,))
        train_state, metadata = restore_checkpoint("runs/mlp/ckpt.npz", template)
    """
    path = os.fspath(path)
    expected = _template_table(template)
    leaves = []
    with _open_archive(path) as archive:
        metadata = _read_metadata(path, archive)
        table = metadata[RESERVED_KEY]["leaves"]
        _check_entries_listed(path, archive, table)
        saved = _match_renamed_leaves({entry["path"]: entry for entry in table}, expected)
        _check_against_template(path, saved, expected)
        # Every array member's size is checked before any is read, so that a bad file is
        # refused before a restore has read, or allocated, anything for its arrays.
        layouts = {name: _stored_layout(path, saved[name], like) for name, (_, like, _) in expected.items()}
        for name, (shape, dtype) in layouts.items():
            _check_member_size(path, archive, saved[name], shape, dtype)
        # Leaves are matched by name, so a file written with its leaves in another order (a dict
        # built in another order) still restores into the template's structure.
        for name, (_, like, _) in expected.items():
            stored = _read_entry(path, archive, saved[name], *layouts[name])
            leaves.append(_restore_leaf(path, stored, saved[name], like))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), leaves), metadata


def read_metadata(path: str | os.PathLike) -> dict:
    """Returns a checkpoint's JSON metadata without reading its arrays.

    The dict holds the user's metadata at the top level and, under ``"jaxnn"``, ``format``,
    ``format_version``, ``versions`` and the ``leaves`` table (path, shape, dtype of each leaf).

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: ``path`` is not a regular file (a directory, a FIFO); the file is not a
        checkpoint (compressed or duplicated members included); or its metadata is missing,
        unreadable or over :data:`MAX_METADATA_BYTES`.

    Example::

        read_metadata("runs/mlp/ckpt.npz")["epoch"]
    """
    path = os.fspath(path)
    with _open_archive(path) as archive:
        return _read_metadata(path, archive)


# --------------------------------------------------------------------------------------------
# Saving.


def _leaf_name(key_path) -> str:
    return jax.tree_util.keystr(key_path, simple=True, separator="/")


def _is_key(dtype) -> bool:
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _npy_native(dtype: np.dtype) -> bool:
    # The .npy header describes a dtype by its ``str``; ml_dtypes such as bfloat16 have the
    # descriptor of an anonymous void ("<V2") and would load back as raw bytes.
    return dtype.kind in "biufc" and np.dtype(dtype.str) == dtype


def _is_ml_dtype(dtype: np.dtype) -> bool:
    return dtype.kind == "V" and dtype.names is None and dtype.type.__module__.startswith("ml_dtypes")


def _as_host_array(name: str, leaf: Any) -> np.ndarray:
    if isinstance(leaf, (bool, int, float, complex, np.generic, np.ndarray, jax.Array)):
        return np.asarray(leaf)
    raise TypeError(
        f"checkpoint leaf {name!r} is a {type(leaf).__name__}; checkpoints hold arrays and numbers only"
    )


def _flatten_for_saving(tree: Any) -> tuple[list[tuple[str, np.ndarray]], list[dict]]:
    arrays, table, seen = [], [], {}
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = _leaf_name(key_path)
        if name in seen:
            raise ValueError(
                f"two leaves are both named {name!r} in the checkpoint ({seen[name]} and "
                f"{jax.tree_util.keystr(key_path)}); rename the dict keys that contain '/'"
            )
        seen[name] = jax.tree_util.keystr(key_path)
        dtype = getattr(leaf, "dtype", None)
        if dtype is not None and _is_key(dtype):
            array = np.asarray(jax.random.key_data(leaf))
            entry = {"path": name, "shape": list(leaf.shape), "dtype": str(dtype),
                     "stored_as": str(array.dtype), "key_impl": str(jax.random.key_impl(leaf))}
        else:
            array = _as_host_array(name, leaf)
            entry = {"path": name, "shape": list(array.shape), "dtype": array.dtype.name}
            if not _npy_native(array.dtype):
                if not _is_ml_dtype(array.dtype):
                    raise TypeError(
                        f"checkpoint leaf {name!r} has dtype {array.dtype}; checkpoints hold "
                        "boolean, integer, floating-point and complex arrays"
                    )
                array = array.view(np.dtype(f"uint{8 * array.dtype.itemsize}"))
                entry["stored_as"] = array.dtype.name
        arrays.append((name, array))
        table.append(entry)
    return arrays, table


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic, np.ndarray, jax.Array)) and not _is_key(value.dtype):
        array = np.asarray(value)
        if _is_ml_dtype(array.dtype):
            array = array.astype(np.float64)
        # tolist turns a 0-d array into a Python number, and NumPy scalars inside into numbers.
        return array.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _encode_metadata(metadata: Mapping | None, table: list[dict]) -> bytes:
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict (or None), got {type(metadata).__name__}")
    if RESERVED_KEY in metadata:
        raise ValueError(f"metadata key {RESERVED_KEY!r} is reserved for the checkpoint's own description")
    document = dict(metadata)
    document[RESERVED_KEY] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": {"jaxnn": jaxnn.__version__, "jax": jax.__version__, "numpy": np.__version__},
        "leaves": table,
    }
    try:
        text = json.dumps(document, default=_json_default, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"metadata must be JSON-serializable (numbers, strings, lists, dicts): {error}"
        ) from None
    encoded = text.encode("utf-8")
    # Refused here, since no restore would read it back.
    if len(encoded) > MAX_METADATA_BYTES:
        raise ValueError(
            f"the checkpoint's {METADATA_ENTRY} would be {len(encoded)} bytes, over the "
            f"{MAX_METADATA_BYTES} a checkpoint may hold; keep large data in the train state's arrays"
        )
    return encoded


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _write_archive(file, arrays: list[tuple[str, np.ndarray]], metadata_bytes: bytes) -> None:
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        archive.writestr(_zip_info(METADATA_ENTRY), metadata_bytes)
        for name, array in arrays:
            # force_zip64 as in np.savez: the entry's size is not known before it is written.
            with archive.open(_zip_info(f"{name}.npy"), "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


# --------------------------------------------------------------------------------------------
# Restoring.


def _describe_start(head: bytes) -> str:
    if not head:
        return "it is empty"
    if head.startswith(_NPY_MAGIC):
        return "it is a single .npy array"
    if head.startswith(_PICKLE_PROTOCOL_MARK):
        return "it looks like a pickle, which is never loaded because unpickling can run code"
    return f"it starts with {head[:8]!r}"


def _check_regular_file(path: str) -> None:
    # By os.stat, before anything is opened: opening a FIFO for reading waits for a writer,
    # possibly forever.
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise ValueError(
            f"{path} is a directory; pass the checkpoint file inside it, "
            f"e.g. {os.path.join(path, _RUN_FOLDER_CHECKPOINT)}"
        )
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "not a regular file")
    raise ValueError(f"{path} is {kind}, not a checkpoint file")


@contextlib.contextmanager
def _open_archive(path: str) -> Iterator[zipfile.ZipFile]:
    """Opens ``path`` as a zip archive, after checking that it is a regular file starting like one.

    The check of the first bytes comes first so that a pickle, or anything else, is refused by
    them and never handed to a reader; the members are then checked from the archive's directory
    alone, before any member is read.
    """
    _check_regular_file(path)
    with open(path, "rb") as file:
        head = file.read(8)
        if not head.startswith(_ZIP_MAGICS):
            raise ValueError(f"{path} is not a jaxnn checkpoint (.npz zip archive): {_describe_start(head)}")
        file.seek(0)
        try:
            archive = zipfile.ZipFile(file)
        except Exception as error:
            raise _corrupt(path, error) from error
        with archive:
            _check_members(path, archive)
            yield archive


def _check_members(path: str, archive: zipfile.ZipFile) -> None:
    """Refuses members that jaxnn never writes: duplicated names, or compressed data.

    Of two members with one name a reader sees only the last, so the file is refused rather
    than read as either. A compressed member can inflate to any size; a stored one holds
    exactly as many bytes as it takes in the file.
    """
    counts = collections.Counter(archive.namelist())
    duplicated = sorted(name for name, count in counts.items() if count > 1)
    if duplicated:
        raise ValueError(
            f"{path} is not a jaxnn checkpoint: it holds more than one member named "
            + ", ".join(f"{name!r} ({counts[name]} times)" for name in duplicated[:_MAX_LISTED])
            + (f" and {len(duplicated) - _MAX_LISTED} more" if len(duplicated) > _MAX_LISTED else "")
        )
    for info in archive.infolist():
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(
                f"{path} is not a jaxnn checkpoint: its member {info.filename!r} is compressed "
                f"(zip method {info.compress_type}), and jaxnn stores every member uncompressed"
            )
        if info.compress_size != info.file_size:
            raise ValueError(
                f"{path} is corrupt: its member {info.filename!r} is stored uncompressed in "
                f"{info.compress_size} bytes but says it holds {info.file_size}"
            )


def _corrupt(path: str, error: Exception, entry: str | None = None) -> ValueError:
    where = f" (entry {entry!r})" if entry else ""
    return ValueError(
        f"{path} is not a readable jaxnn checkpoint{where}; it may be truncated or corrupt: "
        f"{type(error).__name__}: {error}"
    )


def _bad_metadata(path: str, detail: str) -> ValueError:
    return ValueError(f"{path} is not a jaxnn checkpoint: {detail}")


def _read_metadata(path: str, archive: zipfile.ZipFile) -> dict:
    if METADATA_ENTRY not in archive.namelist():
        raise _bad_metadata(path, f"it has no {METADATA_ENTRY} entry (an .npz saved some other way?)")
    info = archive.getinfo(METADATA_ENTRY)
    if info.file_size > MAX_METADATA_BYTES:
        raise _bad_metadata(path, f"its {METADATA_ENTRY} is {info.file_size} bytes, over the "
                                  f"{MAX_METADATA_BYTES} a checkpoint may hold")
    try:
        document = json.loads(archive.read(info).decode("utf-8"))
    except Exception as error:
        raise _corrupt(path, error, METADATA_ENTRY) from error
    own = document.get(RESERVED_KEY) if isinstance(document, dict) else None
    if not isinstance(own, dict) or own.get("format") != FORMAT:
        raise _bad_metadata(path, f"its {METADATA_ENTRY} does not describe a {FORMAT} file")
    version = own.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} has checkpoint format version {version!r}; this jaxnn ({jaxnn.__version__}) "
            f"reads version {FORMAT_VERSION}. Saved with {own.get('versions')}."
        )
    table = own.get("leaves")
    if not isinstance(table, list) or not all(_well_formed(entry) for entry in table):
        raise _bad_metadata(path, f"the leaf table in its {METADATA_ENTRY} is malformed")
    return document


def _well_formed(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("path"), str)
        and isinstance(entry.get("dtype"), str)
        and isinstance(entry.get("shape"), list)
        and all(isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in entry["shape"])
        and isinstance(entry.get("stored_as", ""), str)
        and isinstance(entry.get("key_impl", ""), str)
        # Key data is what makes an entry a key, and JAX names every key dtype "key<...>".
        and ("key_impl" in entry) == entry["dtype"].startswith("key<")
    )


def _check_entries_listed(path: str, archive: zipfile.ZipFile, table: list[dict]) -> None:
    listed = [f"{entry['path']}.npy" for entry in table]
    present = archive.namelist()
    missing = sorted(set(listed) - set(present))
    unlisted = sorted(set(present) - set(listed) - {METADATA_ENTRY})
    if len(set(listed)) != len(listed) or missing or unlisted:
        raise ValueError(
            f"{path} is corrupt: its entries do not match its metadata "
            f"(listed but absent: {_listing(missing)}; present but not listed: {_listing(unlisted)})"
        )


def _template_table(template: Any) -> dict[str, tuple[tuple[int, ...], Any, str]]:
    """Maps each template leaf's name to ``(shape, leaf, dtype name)``, in flattening order."""
    expected = {}
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
        name = _leaf_name(key_path)
        # Shapes and dtypes are read off the leaves, so the template never leaves the device.
        if isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct, np.ndarray, np.generic)):
            shape, dtype = tuple(leaf.shape), leaf.dtype
        else:
            array = _as_host_array(name, leaf)
            shape, dtype = array.shape, array.dtype
        if name in expected:
            raise ValueError(
                f"two template leaves are both named {name!r}; rename the dict keys that contain '/'"
            )
        expected[name] = (shape, leaf, str(dtype) if _is_key(dtype) else np.dtype(dtype).name)
    return expected


def _name_before_renaming(name: str) -> str:
    """``name`` with each numbered child of a renamed kind under its former kind's name."""
    segments = []
    for segment in name.split("/"):
        match = _NUMBERED_CHILD.match(segment)
        if match and match["kind"] in _RENAMED_KINDS:
            segment = f"{_RENAMED_KINDS[match['kind']]}_{match['index']}"
        segments.append(segment)
    return "/".join(segments)


def _match_renamed_leaves(saved: dict[str, dict], expected: dict) -> dict[str, dict]:
    """``saved`` with the leaves of a file written before the kind renames under today's names.

    Only a leaf the template expects and the file lacks is looked up under its former name, and
    only taken if the template does not expect that name itself; the entry keeps its stored path.
    """
    saved = dict(saved)
    for name in expected:
        if name in saved:
            continue
        former = _name_before_renaming(name)
        if former != name and former in saved and former not in expected:
            saved[name] = saved.pop(former)
    return saved


def _check_against_template(path: str, saved: dict[str, dict], expected: dict) -> None:
    missing = [name for name in expected if name not in saved]
    extra = [name for name in saved if name not in expected]
    problems = []
    if missing:
        problems.append(f"missing from the checkpoint: {_listing(missing)}")
    if extra:
        problems.append(f"in the checkpoint but not in the template: {_listing(extra)}")
    for name, (shape, _, dtype) in expected.items():
        entry = saved.get(name)
        if entry is None:
            continue
        got_shape = tuple(entry["shape"])
        if got_shape != shape or entry["dtype"] != dtype:
            problems.append(f"{name}: expected shape {shape} {dtype}, got {got_shape} {entry['dtype']}")
    if problems:
        shown = problems[:_MAX_LISTED] + ([f"... and {len(problems) - _MAX_LISTED} more"]
                                          if len(problems) > _MAX_LISTED else [])
        raise ValueError(
            f"{path} does not match the template (saved from a different model or optimizer?):\n  "
            + "\n  ".join(shown)
        )


def _listing(names: list[str]) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def _stored_layout(path: str, entry: dict, like: Any) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of the array in a leaf's member, as the leaf table and template imply.

    Keys are stored as their key data, whose shape the template's key gives: its dtype is the one
    the table names (checked against the template before). Other leaves are stored under their
    own shape, as their ``stored_as`` dtype where the table gives one.
    """
    if "key_impl" in entry:
        data = jax.eval_shape(jax.random.key_data, like)
        return tuple(data.shape), np.dtype(data.dtype)
    name = entry.get("stored_as", entry["dtype"])
    try:
        dtype = np.dtype(name)
        valid = dtype.name == name and _npy_native(dtype)
    except TypeError:
        valid = False
    if not valid:
        raise ValueError(
            f"{path} is corrupt: its metadata says leaf {entry['path']!r} is stored as {name!r}, "
            "which is not a dtype a .npy member holds"
        )
    return tuple(entry["shape"]), dtype


def _check_member_size(path: str, archive: zipfile.ZipFile, entry: dict, shape: tuple[int, ...],
                       dtype: np.dtype) -> None:
    member = f"{entry['path']}.npy"
    size = archive.getinfo(member).file_size
    data = math.prod(shape) * dtype.itemsize
    shortest, longest = _NPY_HEADER_BYTES
    if not data + shortest <= size <= data + longest:
        raise ValueError(
            f"{path} is corrupt: entry {member!r} is {size} bytes, but its metadata says it holds a "
            f"{shape} {dtype.name} array: {data} bytes of data after a .npy header of {shortest} to "
            f"{longest} bytes"
        )


def _read_header(path: str, archive: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Reads the ``.npy`` header of ``member`` and nothing after it: ``(shape, dtype, its size)``."""
    try:
        with archive.open(member) as file:
            version = np.lib.format.read_magic(file)
            if version not in _NPY_HEADER_READERS:
                raise ValueError(f".npy format version {version[0]}.{version[1]}, which jaxnn never writes")
            shape, _, dtype = _NPY_HEADER_READERS[version](file, max_header_size=_NPY_MAX_HEADER_TEXT)
            return tuple(shape), dtype, file.tell()
    except Exception as error:
        raise _corrupt(path, error, member) from error


def _read_entry(path: str, archive: zipfile.ZipFile, entry: dict, shape: tuple[int, ...],
                dtype: np.dtype) -> np.ndarray:
    """Reads a leaf's member, whose size has been checked, as an array of ``shape`` and ``dtype``.

    The ``.npy`` header is read and checked first, so that the data is read, and its array
    allocated, only when it is the leaf's. An array in the other byte order comes back in native
    byte order, with the same values.
    """
    member = f"{entry['path']}.npy"
    held_shape, held_dtype, header_size = _read_header(path, archive, member)
    if held_dtype.hasobject:
        raise ValueError(
            f"{path} is not a jaxnn checkpoint: entry {member!r} holds pickled Python objects, "
            "which are never loaded because unpickling can run code"
        )
    # A dtype's name leaves out its byte order, which the conversion below takes care of.
    if held_shape != shape or held_dtype.name != dtype.name:
        raise ValueError(
            f"{path} is corrupt: entry {member!r} holds {held_shape} {held_dtype}, "
            f"its metadata says {shape} {dtype.name}"
        )
    size, data = archive.getinfo(member).file_size, math.prod(shape) * dtype.itemsize
    if header_size + data != size:
        raise ValueError(
            f"{path} is corrupt: entry {member!r} is {size} bytes, not the {header_size} of its "
            f".npy header plus the {data} of its {shape} {dtype.name} data"
        )
    try:
        with archive.open(member) as file:
            stored = np.lib.format.read_array(file, allow_pickle=False, max_header_size=_NPY_MAX_HEADER_TEXT)
    except Exception as error:
        raise _corrupt(path, error, member) from error
    if not stored.dtype.isnative:
        stored = stored.astype(stored.dtype.newbyteorder("="))
    return stored


def _restore_leaf(path: str, stored: np.ndarray, entry: dict, like: Any) -> Any:
    if "key_impl" in entry:
        try:
            key = jax.random.wrap_key_data(jnp.asarray(stored), impl=entry["key_impl"])
        except Exception as error:
            raise _corrupt(path, error, f"{entry['path']}.npy") from error
        return _place(key, like)
    if "stored_as" in entry:
        target = like.dtype if isinstance(like, (jax.Array, jax.ShapeDtypeStruct)) else np.asarray(like).dtype
        if stored.dtype.itemsize != np.dtype(target).itemsize:
            raise _corrupt(path, ValueError(f"{stored.dtype} cannot hold {target}"), f"{entry['path']}.npy")
        stored = stored.view(target)
    if isinstance(like, np.ndarray):
        return stored
    if isinstance(like, np.generic):
        return stored[()]
    if isinstance(like, (bool, int, float, complex)):
        return type(like)(stored.item())
    return _place(stored, like)


def _place(value: Any, like: Any) -> jax.Array:
    sharding = getattr(like, "sharding", None)
    if sharding is None:
        return jnp.asarray(value)
    # The template's placement, on one device or replicated over the devices of every process.
    return parallel.place(value, sharding)
