"""save_weights / load_weights: files other safetensors readers read, files they write read back,
and files that do not fit the template (or are malformed) refused with the first mismatch named."""

import json
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_equal

import jaxnn
from jaxnn.interop import load_weights, save_weights

safetensors_numpy = pytest.importorskip("safetensors.numpy")
from safetensors import SafetensorError

MODEL = jaxnn.Sequential([jaxnn.Dense(5), jaxnn.BatchNorm(), jaxnn.Relu(), jaxnn.Dense(3)])
SHAPE = (4,)


def model_weights():
    _, params, state = jax.jit(lambda key: MODEL.init(key, SHAPE))(jax.random.key(0))
    state = jax.tree.map(lambda leaf: leaf + 0.25, state)   # not the initial values
    return params, state


def template():
    return jax.eval_shape(lambda: MODEL.init(jax.random.key(1), SHAPE)[1:])


def test_round_trip_and_names_other_readers_see(tmp_path):
    params, state = model_weights()
    path = tmp_path / "model.safetensors"
    save_weights(path, params, state, metadata={"dataset": "digits"})
    loaded = load_weights(path, template())
    assert_trees_equal((params, state), loaded)
    # safetensors' own reader sees the same tensors under the documented names.
    tensors = safetensors_numpy.load_file(str(path))
    np.testing.assert_array_equal(tensors["params/dense_0/w"], params["dense_0"]["w"])
    np.testing.assert_array_equal(tensors["state/batch_norm_1/var"], state["batch_norm_1"]["var"])
    assert len(tensors) == len(jax.tree.leaves((params, state)))
    from safetensors import safe_open
    with safe_open(str(path), framework="numpy") as file:
        metadata = file.metadata()
    assert metadata == {"format": "jaxnn", "jaxnn_version": jaxnn.__version__, "dataset": "digits"}


def test_reads_a_file_written_by_safetensors(tmp_path):
    params, state = model_weights()
    names = {f"params/{'/'.join(str(k.key) for k in path)}": np.asarray(leaf) * 2
             for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
    names |= {f"state/{'/'.join(str(k.key) for k in path)}": np.asarray(leaf)
              for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]}
    safetensors_numpy.save_file(names, str(tmp_path / "other.safetensors"))
    loaded_params, _ = load_weights(tmp_path / "other.safetensors", template())
    np.testing.assert_array_equal(loaded_params["dense_0"]["w"], np.asarray(params["dense_0"]["w"]) * 2)


def test_bfloat16_round_trip(tmp_path):
    params = {"dense_0": {"w": jnp.arange(6, dtype=jnp.bfloat16).reshape(2, 3)}}
    save_weights(tmp_path / "half.safetensors", params, {})
    loaded, _ = load_weights(tmp_path / "half.safetensors", (params, {}))
    assert loaded["dense_0"]["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(loaded["dense_0"]["w"], np.float32), np.arange(6.0).reshape(2, 3))


def test_refuses_files_that_do_not_fit_the_template(tmp_path):
    params, state = model_weights()
    path = tmp_path / "model.safetensors"
    save_weights(path, params, state)
    wider = jax.eval_shape(lambda: jaxnn.Sequential([jaxnn.Dense(6), jaxnn.BatchNorm(), jaxnn.Relu(),
                                                     jaxnn.Dense(3)]).init(jax.random.key(1), SHAPE)[1:])
    with pytest.raises(ValueError, match=r"tensor 'params/batch_norm_1/bias' has shape \(5,\), the template's is \(6,\)"):
        load_weights(path, wider)
    as_half = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, jnp.float16), template())
    with pytest.raises(ValueError, match=r"has dtype float32, the template's is float16"):
        load_weights(path, as_half)
    params_only = {"dense_0": params["dense_0"]}
    save_weights(tmp_path / "part.safetensors", params_only, {})
    with pytest.raises(ValueError, match=r"has no tensor 'params/batch_norm_1/bias', which the template needs"):
        load_weights(tmp_path / "part.safetensors", template())
    with pytest.raises(ValueError, match=r"holds tensor 'params/batch_norm_1/bias', for which the template has no place"):
        load_weights(path, ({"dense_0": params["dense_0"]}, {}))
    with pytest.raises(TypeError, match=r"template must be the pair \(params, state\)"):
        load_weights(path, params)


def write_raw(path, header, data=b""):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def hostile_files(tmp_path):
    yield "huge", struct.pack("<Q", 2**62) + b"{}", "more than the"
    yield "short", b"\x01\x02", "fewer than the 8"
    yield "beyond", struct.pack("<Q", 1000) + b"{}", "but the file has only"
    overlapping = {"params/a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                   "params/b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    yield "overlap", overlapping, "overlaps the tensor before it"
    outside = {"params/a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 2**40]}}
    yield "outside", outside, "outside the file's"
    wrong_size = {"params/a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}
    yield "size", wrong_size, "needs 12 bytes"
    yield "json", b"not json", "not valid JSON"


@pytest.mark.parametrize("case", ["huge", "short", "beyond", "overlap", "outside", "size", "json"])
def test_refuses_hostile_headers(tmp_path, case):
    name, content, message = next(item for item in hostile_files(tmp_path) if item[0] == case)
    path = tmp_path / f"{name}.safetensors"
    if isinstance(content, dict):
        write_raw(path, content, bytes(16))
    elif name == "json":
        path.write_bytes(struct.pack("<Q", len(content)) + content)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_weights(path, ({"a": jnp.zeros(2)}, {}))
    # safetensors' own parser refuses the same files.
    with pytest.raises(SafetensorError):
        safetensors_numpy.load_file(str(path))


def test_a_0d_leaf_keeps_its_shape(tmp_path):
    """A scalar parameter (a ScaleNorm's ``g``) is stored with shape [], not [1], and loads back."""
    params = {"scale_norm_0": {"g": jnp.asarray(1.5)}, "dense_1": {"w": jnp.arange(6.0).reshape(2, 3)}}
    path = tmp_path / "scalar.safetensors"
    save_weights(path, params, {})
    raw = path.read_bytes()
    header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
    assert header["params/scale_norm_0/g"]["shape"] == []
    assert safetensors_numpy.load_file(str(path))["params/scale_norm_0/g"].shape == ()
    loaded_params, _ = load_weights(path, (params, {}))
    assert loaded_params["scale_norm_0"]["g"].shape == ()
    assert_trees_equal(params, loaded_params)
