"""Tests for ``jaxnn.train.checkpoint``: bit-exact round trips, atomic writes, and refusing bad files."""

import io
import json
import os
import pathlib
import pickle
import re
import signal
import uuid
import warnings
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_bit_equal, bits

import jaxnn
from jaxnn.core import Sequential
from jaxnn.layers.activations import Relu
from jaxnn.layers.dense import Dense
from jaxnn.train import checkpoint
from jaxnn.train.checkpoint import read_metadata, restore_checkpoint, save_checkpoint
from jaxnn.train.state import TrainState, create_train_state


def make_model(hidden=8, last_layer=True):
    layers = [Dense(hidden), Relu()]
    if last_layer:
        layers.append(Dense(3, param_dtype=jnp.bfloat16))
    return Sequential(layers)


def fill_randomly(tree, seed):
    """Gives every float leaf random values and every int leaf a distinct count, keeping dtypes."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    rng = np.random.default_rng(seed)
    filled = []
    for i, leaf in enumerate(leaves):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            filled.append(jnp.asarray(rng.standard_normal(leaf.shape).astype(leaf.dtype)))
        else:
            filled.append(jnp.full(leaf.shape, 100 * seed + i, leaf.dtype))
    return jax.tree_util.tree_unflatten(treedef, filled)


def make_train_state(seed, hidden=8, last_layer=True):
    """A TrainState with float32 and bfloat16 params, empty dicts, Adam's NamedTuple state."""
    train_state = create_train_state(make_model(hidden, last_layer), optax.adam(1e-3),
                                     jax.random.key(seed), (4,))
    return train_state._replace(opt_state=fill_randomly(train_state.opt_state, seed),
                                step=jnp.asarray(7 * seed + 1, jnp.int32))


def rewrite_entries(path, replace):
    """Rewrites the zip at ``path``; ``replace(name, data)`` returns new bytes, or None to drop."""
    with zipfile.ZipFile(path) as archive:
        entries = [(name, archive.read(name)) for name in archive.namelist()]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries:
            data = replace(name, data)
            if data is not None:
                archive.writestr(name, data)


def write_members(path, members):
    """Writes a zip of ``(name, data, compress_type)`` members by hand, duplicate names included."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        with zipfile.ZipFile(path, "w") as archive:
            for name, data, compress_type in members:
                archive.writestr(zipfile.ZipInfo(name), data, compress_type=compress_type)


def npy_bytes(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@pytest.fixture
def members_read(monkeypatch):
    """The names of the zip members opened for reading from now on, in order."""
    opened = []
    real_open = zipfile.ZipFile.open

    def recording_open(self, name, mode="r", *args, **kwargs):
        if mode == "r":
            opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real_open(self, name, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", recording_open)
    return opened


class CreatesFileWhenUnpickled:
    """Unpickling this object touches ``marker``: evidence that loading ran code."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


# --------------------------------------------------------------------------------------------
# Round trips.


def test_round_trip_is_bit_exact_into_a_fresh_template(tmp_path):
    saved = make_train_state(seed=0)
    template = make_train_state(seed=1)
    assert not np.array_equal(bits(template.params["dense_0"]["w"]), bits(saved.params["dense_0"]["w"]))
    assert saved.params["dense_2"]["w"].dtype == jnp.bfloat16
    assert saved.state == {"dense_0": {}, "relu_1": {}, "dense_2": {}}
    assert isinstance(saved.opt_state[0], optax.ScaleByAdamState)

    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, saved)
    restored, _ = restore_checkpoint(path, template)

    assert isinstance(restored, TrainState)
    assert isinstance(restored.opt_state[0], optax.ScaleByAdamState)
    assert restored.state == {"dense_0": {}, "relu_1": {}, "dense_2": {}}
    assert restored.step.dtype == jnp.int32 and int(restored.step) == 1
    assert jax.dtypes.issubdtype(restored.key.dtype, jax.dtypes.prng_key)
    assert_bit_equal(saved, restored)
    # The restored key draws what the saved one draws.
    np.testing.assert_array_equal(jax.random.normal(restored.key, (5,)), jax.random.normal(saved.key, (5,)))


def test_nan_payloads_and_key_impls_survive(tmp_path):
    nan_bits = np.array([0x7FC00001, 0xFFC12345, 0x00000001], np.uint32)
    tree = {
        "floats": jnp.asarray(nan_bits.view(np.float32)),
        "bf16": jnp.asarray(np.array([0x7FC1, 0x0001, 0xFF80], np.uint16).view(jnp.bfloat16)),
        "keys": {"threefry": jax.random.key(5), "rbg": jax.random.split(jax.random.key(6, impl="rbg"), 3)},
        "empty": {},
    }
    template = jax.tree_util.tree_map(jnp.zeros_like, {k: v for k, v in tree.items() if k != "keys"})
    template["keys"] = {"threefry": jax.random.key(0),
                        "rbg": jax.random.split(jax.random.key(0, impl="rbg"), 3)}
    save_checkpoint(tmp_path / "ckpt.npz", tree)
    restored, _ = restore_checkpoint(tmp_path / "ckpt.npz", template)
    assert_bit_equal(tree, restored)
    np.testing.assert_array_equal(bits(restored["floats"]), nan_bits)
    assert str(restored["keys"]["rbg"].dtype) == "key<rbg>" and restored["keys"]["rbg"].shape == (3,)


def test_numpy_python_and_shape_only_templates(tmp_path):
    tree = {"np": np.arange(6, dtype=np.int16).reshape(2, 3), "count": 3, "rate": 0.1 + 1e-12, "flag": True,
            "jax": jnp.linspace(0.0, 1.0, 4), "key": jax.random.key(2)}
    save_checkpoint(tmp_path / "ckpt.npz", tree)

    restored, _ = restore_checkpoint(tmp_path / "ckpt.npz", tree)
    assert isinstance(restored["np"], np.ndarray) and restored["np"].dtype == np.int16
    np.testing.assert_array_equal(restored["np"], tree["np"])
    assert restored["count"] == 3 and type(restored["count"]) is int
    assert restored["rate"] == 0.1 + 1e-12 and type(restored["rate"]) is float
    assert restored["flag"] is True

    shapes_only = jax.eval_shape(lambda: {"jax": tree["jax"], "key": tree["key"]})
    save_checkpoint(tmp_path / "small.npz", {"jax": tree["jax"], "key": tree["key"]})
    restored, _ = restore_checkpoint(tmp_path / "small.npz", shapes_only)
    assert isinstance(restored["jax"], jax.Array)
    np.testing.assert_array_equal(restored["jax"], tree["jax"])
    np.testing.assert_array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(tree["key"]))


def test_file_layout_is_plain_npz(tmp_path):
    """The file is readable with NumPy alone, entries named by pytree path."""
    saved = make_train_state(seed=0)
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, saved)
    with np.load(path, allow_pickle=False) as archive:
        names = set(archive.files)
        w = archive["params/dense_0/w"]
        bf16 = archive["params/dense_2/w"]
        key = archive["key"]
        step = archive["step"]
        metadata = json.loads(archive["metadata.json"])
    assert {"params/dense_0/w", "params/dense_0/b", "opt_state/0/count", "opt_state/0/mu/dense_2/w",
            "opt_state/0/nu/dense_0/b", "step", "key", "metadata.json"} <= names
    np.testing.assert_array_equal(w, np.asarray(saved.params["dense_0"]["w"]))
    # bfloat16 has no .npy descriptor: it is stored as the uint16 of the same bits.
    assert bf16.dtype == np.uint16
    np.testing.assert_array_equal(bf16, bits(saved.params["dense_2"]["w"]))
    np.testing.assert_array_equal(key, np.asarray(jax.random.key_data(saved.key)))
    assert step.dtype == np.int32 and step == 1
    table = {entry["path"]: entry for entry in metadata["jaxnn"]["leaves"]}
    assert table["params/dense_2/w"] == {"path": "params/dense_2/w", "shape": [8, 3], "dtype": "bfloat16",
                                         "stored_as": "uint16"}
    assert table["params/dense_0/w"] == {"path": "params/dense_0/w", "shape": [4, 8], "dtype": "float32"}
    assert table["key"] == {"path": "key", "shape": [], "dtype": "key<fry>", "stored_as": "uint32",
                            "key_impl": "threefry2x32"}
    assert len(table) == len(jax.tree_util.tree_leaves(saved)) == len(names) - 1


def test_metadata_round_trip(tmp_path):
    metadata = {"model": "mlp 4-8-3", "epoch": 12, "metrics": {"val_loss": 0.25, "accuracy": [0.5, 0.75]},
                "note": "naïve", "loss": jnp.float32(0.5), "history": np.array([1, 2])}
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, make_train_state(seed=0), metadata)
    read = read_metadata(path)
    _, restored = restore_checkpoint(path, make_train_state(seed=1))
    assert read == restored
    assert {key: value for key, value in read.items() if key != "jaxnn"} == {
        "model": "mlp 4-8-3", "epoch": 12, "metrics": {"val_loss": 0.25, "accuracy": [0.5, 0.75]},
        "note": "naïve", "loss": 0.5, "history": [1, 2]}
    own = read["jaxnn"]
    assert own["format"] == "jaxnn.checkpoint" and own["format_version"] == 1
    assert own["versions"] == {"jaxnn": jaxnn.__version__, "jax": jax.__version__, "numpy": np.__version__}


def test_bad_metadata_is_refused_before_writing(tmp_path):
    path = tmp_path / "ckpt.npz"
    with pytest.raises(ValueError, match="'jaxnn' is reserved"):
        save_checkpoint(path, {"w": jnp.ones(2)}, {"jaxnn": 1})
    with pytest.raises(TypeError, match="JSON-serializable"):
        save_checkpoint(path, {"w": jnp.ones(2)}, {"model": object()})
    with pytest.raises(TypeError, match="must be a dict"):
        save_checkpoint(path, {"w": jnp.ones(2)}, ["epoch", 3])
    with pytest.raises(TypeError, match="'name' is a str"):
        save_checkpoint(path, {"w": jnp.ones(2), "name": "mlp"})
    with pytest.raises(ValueError, match="both named 'a/b'"):
        save_checkpoint(path, {"a/b": jnp.ones(2), "a": {"b": jnp.ones(2)}})
    assert list(tmp_path.iterdir()) == []


def test_creates_missing_directories(tmp_path):
    path = tmp_path / "runs" / "mlp" / "ckpt.npz"
    save_checkpoint(path, {"w": jnp.ones(2)})
    assert path.is_file()


# --------------------------------------------------------------------------------------------
# Atomic writes.


def test_crash_while_writing_arrays_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    first = make_train_state(seed=0)
    save_checkpoint(path, first)
    before = path.read_bytes()

    write_array = np.lib.format.write_array
    calls = []

    def fail_on_third_array(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return write_array(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", fail_on_third_array)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, make_train_state(seed=1))
    monkeypatch.undo()

    assert len(calls) == 3
    assert [entry.name for entry in tmp_path.iterdir()] == ["ckpt.npz"]
    assert path.read_bytes() == before
    assert_bit_equal(first, restore_checkpoint(path, make_train_state(seed=2))[0])


def test_failed_rename_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, {"w": jnp.zeros(3)}, {"epoch": 1})

    def fail(source, destination):
        raise PermissionError("rename refused")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(PermissionError):
        save_checkpoint(path, {"w": jnp.ones(3)}, {"epoch": 2})
    monkeypatch.undo()
    assert [entry.name for entry in tmp_path.iterdir()] == ["ckpt.npz"]
    restored, metadata = restore_checkpoint(path, {"w": jnp.ones(3)})
    np.testing.assert_array_equal(restored["w"], np.zeros(3))
    assert metadata["epoch"] == 1


def test_interrupt_removes_temporary_file(tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np.lib.format, "write_array", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "ckpt.npz", {"w": jnp.zeros(3)})
    assert list(tmp_path.iterdir()) == []


def test_file_is_synced_before_rename_and_directory_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("fsync", os.path.isdir(f"/proc/self/fd/{descriptor}") if os.path.isdir("/proc/self/fd")
                       else None))
        real_fsync(descriptor)

    def replace(source, destination):
        events.append(("replace", os.path.basename(source).startswith(".ckpt.npz.")))
        real_replace(source, destination)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save_checkpoint(tmp_path / "ckpt.npz", {"w": jnp.zeros(3)})
    assert [name for name, _ in events][:2] == ["fsync", "replace"]
    assert events[1] == ("replace", True)
    if hasattr(os, "O_DIRECTORY") and os.path.isdir("/proc/self/fd"):
        assert events == [("fsync", False), ("replace", True), ("fsync", True)]


# --------------------------------------------------------------------------------------------
# Refusing bad files.


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        restore_checkpoint(tmp_path / "absent.npz", {"w": jnp.zeros(3)})


def test_corrupt_bytes_are_detected(tmp_path):
    path = tmp_path / "ckpt.npz"
    weights = np.arange(64, dtype=np.float32) + 0.5
    save_checkpoint(path, {"w": jnp.asarray(weights)})
    data = bytearray(path.read_bytes())
    offset = bytes(data).index(weights.tobytes())
    data[offset + 100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"ckpt\.npz.*corrupt.*w\.npy"):
        restore_checkpoint(path, {"w": jnp.zeros(64)})


def test_corrupt_metadata_is_detected(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, {"w": jnp.zeros(4)}, {"model": "mlp"})
    data = bytearray(path.read_bytes())
    data[bytes(data).index(b'"model"') + 1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="metadata.json"):
        read_metadata(path)


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.95])
def test_truncated_file(tmp_path, keep):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, make_train_state(seed=0))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match=r"ckpt\.npz"):
        restore_checkpoint(path, make_train_state(seed=1))


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a jaxnn checkpoint"):
        restore_checkpoint(text, {"w": jnp.zeros(3)})
    single = tmp_path / "array.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match="single .npy array"):
        restore_checkpoint(single, {"w": jnp.zeros(3)})
    plain = tmp_path / "plain.npz"
    np.savez(plain, w=np.zeros(3))
    with pytest.raises(ValueError, match="no metadata.json"):
        restore_checkpoint(plain, {"w": jnp.zeros(3)})


def test_unknown_format_version(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, {"w": jnp.zeros(3)})

    def bump(name, data):
        if name != "metadata.json":
            return data
        metadata = json.loads(data)
        metadata["jaxnn"]["format_version"] = 99
        return json.dumps(metadata).encode()

    rewrite_entries(path, bump)
    with pytest.raises(ValueError, match="format version 99.*reads version 1"):
        restore_checkpoint(path, {"w": jnp.zeros(3)})


def test_entries_not_matching_metadata_are_corrupt(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, {"w": jnp.zeros(3), "b": jnp.zeros(2)})
    rewrite_entries(path, lambda name, data: None if name == "b.npy" else data)
    with pytest.raises(ValueError, match="listed but absent: b.npy"):
        restore_checkpoint(path, {"w": jnp.zeros(3), "b": jnp.zeros(2)})


def test_wrong_width_names_path_and_shapes(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, make_train_state(seed=0, hidden=8))
    with pytest.raises(ValueError) as error:
        restore_checkpoint(path, make_train_state(seed=0, hidden=16))
    message = str(error.value)
    assert "does not match the template" in message
    assert "params/dense_0/w: expected shape (4, 16) float32, got (4, 8) float32" in message
    assert "params/dense_2/w: expected shape (16, 3) bfloat16, got (8, 3) bfloat16" in message
    assert "opt_state/0/mu/dense_0/b: expected shape (16,) float32, got (8,) float32" in message


def test_missing_layer_lists_paths(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, make_train_state(seed=0, last_layer=False))
    with pytest.raises(ValueError, match=r"missing from the checkpoint: params/dense_2/b, params/dense_2/w"):
        restore_checkpoint(path, make_train_state(seed=0))
    save_checkpoint(path, make_train_state(seed=0))
    with pytest.raises(ValueError, match=r"in the checkpoint but not in the template: params/dense_2/b"):
        restore_checkpoint(path, make_train_state(seed=0, last_layer=False))


def test_dtype_mismatch_names_both_dtypes(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, {"w": jnp.zeros(3, jnp.bfloat16), "key": jax.random.key(0)})
    with pytest.raises(ValueError) as error:
        restore_checkpoint(path, {"w": jnp.zeros(3, jnp.float32), "key": jax.random.key(0, impl="rbg")})
    assert "w: expected shape (3,) float32, got (3,) bfloat16" in str(error.value)
    assert "key: expected shape () key<rbg>, got () key<fry>" in str(error.value)


def test_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    payload = pickle.dumps(CreatesFileWhenUnpickled(marker))
    # The payload is live: unpickling it does create the marker.
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()

    path = tmp_path / "ckpt.npz"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match="pickle"):
        restore_checkpoint(path, {"w": jnp.zeros(3)})
    with pytest.raises(ValueError, match="pickle"):
        read_metadata(path)
    assert not marker.exists()


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "ran"
    objects = np.array([CreatesFileWhenUnpickled(marker)], dtype=object)

    plain = tmp_path / "objects.npz"
    np.savez(plain, w=objects)
    with pytest.raises(ValueError):
        restore_checkpoint(plain, {"w": jnp.zeros(1)})

    # A genuine checkpoint whose one array entry was swapped for an object array.
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, {"w": jnp.zeros(1)})
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, objects, allow_pickle=True)
    rewrite_entries(path, lambda name, data: buffer.getvalue() if name == "w.npy" else data)
    with pytest.raises(ValueError, match=r"ckpt\.npz.*'w\.npy' holds pickled Python objects"):
        restore_checkpoint(path, {"w": jnp.zeros(1)})
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# Files that would exhaust memory, hide data or hang: refused before their data is read.


def test_compressed_members_are_refused_before_any_is_read(tmp_path, members_read):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, {"w": jnp.arange(3.0)})
    with zipfile.ZipFile(path) as archive:
        metadata, weights = archive.read("metadata.json"), archive.read("w.npy")
    # Still valid JSON, which inflates from a few kilobytes in the file to 4 MiB.
    padded = metadata + b" " * (4 * 2**20)
    write_members(path, [("metadata.json", padded, zipfile.ZIP_DEFLATED),
                         ("w.npy", weights, zipfile.ZIP_STORED)])
    assert path.stat().st_size < 64 * 2**10
    members_read.clear()
    for load in (read_metadata, lambda path: restore_checkpoint(path, {"w": jnp.zeros(3)})):
        with pytest.raises(ValueError, match=r"ckpt\.npz.*'metadata\.json' is compressed \(zip method 8\)"):
            load(path)
    # An .npz NumPy compressed, a jaxnn checkpoint or not, is refused for the same reason.
    write_members(path, [("metadata.json", metadata, zipfile.ZIP_STORED),
                         ("w.npy", weights, zipfile.ZIP_DEFLATED)])
    with pytest.raises(ValueError, match="member 'w.npy' is compressed"):
        restore_checkpoint(path, {"w": jnp.zeros(3)})
    assert members_read == []


def test_metadata_over_the_limit_is_refused_unread_and_never_written(tmp_path, monkeypatch, members_read):
    assert checkpoint.MAX_METADATA_BYTES == 64 * 2**20
    monkeypatch.setattr(checkpoint, "MAX_METADATA_BYTES", 2**20)
    path = tmp_path / "ckpt.npz"
    with pytest.raises(ValueError, match=r"metadata\.json would be 10[0-9]{5} bytes, over the 1048576"):
        save_checkpoint(path, {"w": jnp.zeros(3)}, {"note": "x" * 2**20})
    assert list(tmp_path.iterdir()) == []

    save_checkpoint(path, {"w": jnp.zeros(3)})
    rewrite_entries(path, lambda name, data: data.ljust(2**20 + 1) if name == "metadata.json" else data)
    members_read.clear()
    for load in (read_metadata, lambda path: restore_checkpoint(path, {"w": jnp.zeros(3)})):
        with pytest.raises(ValueError, match=r"ckpt\.npz.*metadata\.json is 1048577 bytes, over the 1048576"):
            load(path)
    assert members_read == []
    # At the limit, the same metadata (valid JSON, padded with spaces) is read.
    rewrite_entries(path, lambda name, data: data.rstrip().ljust(2**20) if name == "metadata.json" else data)
    assert read_metadata(path)["jaxnn"]["leaves"] == [{"path": "w", "shape": [3], "dtype": "float32"}]


def test_member_larger_than_its_table_entry_is_refused_before_it_is_read(tmp_path, members_read):
    path = tmp_path / "ckpt.npz"
    template = {"w": jnp.zeros(3), "b": jnp.zeros(2)}
    save_checkpoint(path, {"w": jnp.arange(3.0), "b": jnp.ones(2)})
    larger = npy_bytes(np.zeros(100_000, np.float32))
    rewrite_entries(path, lambda name, data: larger if name == "w.npy" else data)
    members_read.clear()
    expected = (rf"ckpt\.npz is corrupt: entry 'w\.npy' is {len(larger)} bytes, but its metadata says it "
                r"holds a \(3,\) float32 array: 12 bytes of data")
    with pytest.raises(ValueError, match=expected):
        restore_checkpoint(path, template)
    assert members_read == ["metadata.json"]


def test_member_header_or_length_not_matching_its_table_entry_is_refused(tmp_path, members_read):
    path = tmp_path / "ckpt.npz"
    template = {"w": jnp.zeros(3)}
    save_checkpoint(path, {"w": jnp.arange(3.0)})
    good = path.read_bytes()
    data = np.arange(3.0, dtype=np.float32).tobytes()

    # A header that claims a million floats, in a member of the table's size: refused from the
    # header, before an array for a million floats is allocated.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**6,)})
    rewrite_entries(path, lambda name, old: header.getvalue() + data if name == "w.npy" else old)
    with pytest.raises(ValueError, match=r"'w\.npy' holds \(1000000,\) float32, its metadata says \(3,\)"):
        restore_checkpoint(path, template)

    # Bytes after the data, which a reader that stops at the end of the data never looks at.
    path.write_bytes(good)
    rewrite_entries(path, lambda name, old: old + b"hidden" if name == "w.npy" else old)
    header_size = len(npy_bytes(np.zeros(3, np.float32))) - 12
    members_read.clear()
    expected = rf"'w\.npy' is {header_size + 18} bytes, not the {header_size} of its \.npy header plus the 12"
    with pytest.raises(ValueError, match=expected):
        restore_checkpoint(path, template)
    # The header was read, the data never.
    assert members_read == ["metadata.json", "w.npy"]


def test_duplicate_members_are_refused(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, {"w": jnp.zeros(3)})
    with zipfile.ZipFile(path) as archive:
        members = [(name, archive.read(name), zipfile.ZIP_STORED) for name in archive.namelist()]
    # A reader would see only the last of the two, here other weights.
    write_members(path, members + [("w.npy", npy_bytes(np.ones(3, np.float32)), zipfile.ZIP_STORED)])
    expected = r"ckpt\.npz is not a jaxnn checkpoint: it holds more than one member named 'w\.npy' \(2 times"
    with pytest.raises(ValueError, match=expected):
        restore_checkpoint(path, {"w": jnp.zeros(3)})

    metadata = json.loads(members[0][1])
    metadata["epoch"] = 2
    write_members(path, members + [("metadata.json", json.dumps(metadata).encode(), zipfile.ZIP_STORED)])
    with pytest.raises(ValueError, match="more than one member named 'metadata.json'"):
        read_metadata(path)


def test_directory_is_refused_with_the_file_to_pass(tmp_path):
    for load in (read_metadata, lambda path: restore_checkpoint(path, {"w": jnp.zeros(3)})):
        with pytest.raises(ValueError) as error:
            load(tmp_path)
        assert str(error.value) == (f"{tmp_path} is a directory; pass the checkpoint file inside it, "
                                    f"e.g. {tmp_path / 'checkpoint.npz'}")
        with pytest.raises(FileNotFoundError):
            load(tmp_path / "absent.npz")


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not hasattr(signal, "SIGALRM"), reason="needs POSIX FIFOs")
def test_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "ckpt.npz"
    os.mkfifo(fifo)

    def give_up(signum, frame):
        raise TimeoutError("the FIFO was opened, and reading it waits for a writer")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(10)
    try:
        for load in (read_metadata, lambda path: restore_checkpoint(path, {"w": jnp.zeros(3)})):
            with pytest.raises(ValueError, match=r"ckpt\.npz is a FIFO, not a checkpoint file"):
                load(fifo)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_big_endian_members_restore_with_their_values_in_native_byte_order(tmp_path):
    tree = {
        "f32": jnp.asarray(np.array([0x7FC00001, 0x80000000, 0x3F800001], np.uint32).view(np.float32)),
        "bf16": jnp.asarray(np.array([0x7FC1, 0x8001, 0x3F81], np.uint16).view(jnp.bfloat16)),
        "key": jax.random.key(3),
        "i64": np.arange(-2, 4, dtype=np.int64).reshape(2, 3),
        "c64": np.array([1 + 2j, -0.5j], np.complex64),
    }
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, tree)

    def big_endian(name, data):
        if name == "metadata.json":
            return data
        array = np.load(io.BytesIO(data))
        return npy_bytes(array.astype(array.dtype.newbyteorder(">")))

    rewrite_entries(path, big_endian)
    with zipfile.ZipFile(path) as archive:
        assert np.load(io.BytesIO(archive.read("f32.npy"))).dtype.str == ">f4"
        assert np.load(io.BytesIO(archive.read("key.npy"))).dtype.str == ">u4"
    restored, _ = restore_checkpoint(path, tree)
    assert_bit_equal(tree, restored)
    assert restored["i64"].dtype.isnative and restored["c64"].dtype.isnative
    np.testing.assert_array_equal(jax.random.normal(restored["key"], (3,)),
                                  jax.random.normal(tree["key"], (3,)))


def test_a_save_removes_the_temporary_files_that_dead_saves_of_its_target_left(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"

    # A save killed while writing leaves its temporary file: here the clean-up that a kill
    # never reaches is taken away.
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np.lib.format, "write_array", interrupt)
    monkeypatch.setattr(os, "unlink", lambda path: None)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"w": jnp.zeros(3)})
    monkeypatch.undo()
    [left] = [entry.name for entry in tmp_path.iterdir()]
    assert re.fullmatch(r"\.ckpt\.npz\.[0-9a-f]{32}\.tmp", left)

    hex_digits = uuid.uuid4().hex
    stale = tmp_path / f".ckpt.npz.{hex_digits}.tmp"
    stale.write_bytes(b"half a checkpoint")
    kept = [f".other.npz.{hex_digits}.tmp", f"ckpt.npz.{hex_digits}.tmp", f".ckpt.npz.{hex_digits}.tmp.keep",
            ".ckpt.npz.notes.tmp", f".ckpt.npz.{hex_digits.upper()}.tmp", "notes.txt"]
    for name in kept:
        (tmp_path / name).write_text("not a temporary file of ckpt.npz")
    # Named like one, but a folder.
    folder = f".ckpt.npz.{uuid.uuid4().hex}.tmp"
    (tmp_path / folder).mkdir()
    kept.append(folder)

    save_checkpoint(path, {"w": jnp.ones(3)})
    assert sorted(entry.name for entry in tmp_path.iterdir()) == sorted(kept + ["ckpt.npz"])
    np.testing.assert_array_equal(restore_checkpoint(path, {"w": jnp.zeros(3)})[0]["w"], np.ones(3))
