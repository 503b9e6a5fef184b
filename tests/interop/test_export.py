"""export / load_exported: the serialized program, run in a process that imports only jax, equals
model.apply at several batch sizes."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn.interop import export, load_exported

pytest.importorskip("flatbuffers")

MODEL = jaxnn.Sequential([jaxnn.Conv2D(3, 3), jaxnn.BatchNorm(), jaxnn.Relu(), jaxnn.Flatten(), jaxnn.Dense(4)])
SHAPE = (5, 5, 2)


def weights():
    _, params, state = MODEL.init(jax.random.key(0), SHAPE)
    return params, jax.tree.map(lambda leaf: leaf + 0.5, state)


def test_deserialized_program_equals_apply_at_two_batch_sizes(tmp_path):
    params, state = weights()
    path = tmp_path / "model.jaxexport"
    export(MODEL, params, state, SHAPE, path)
    call = jax.export.deserialize(bytearray(path.read_bytes())).call    # jax alone, no model code
    apply = jax.jit(lambda x: MODEL.apply(params, state, x)[0])
    for n in (1, 6):
        x = jax.random.normal(jax.random.key(n), (n,) + SHAPE)
        np.testing.assert_allclose(call(x), apply(x), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(load_exported(path)(x), apply(x), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_runs_in_a_process_without_jaxnn(tmp_path):
    params, state = weights()
    path = tmp_path / "model.jaxexport"
    export(MODEL, params, state, SHAPE, path)
    inputs = {n: np.asarray(jax.random.normal(jax.random.key(n), (n,) + SHAPE)) for n in (1, 6)}
    for n, x in inputs.items():
        np.save(tmp_path / f"x{n}.npy", x)
    # A fresh interpreter that imports jax and numpy only: no jaxnn, no model code.
    script = f"""
import sys, numpy as np, jax
sys.modules["jaxnn"] = None          # importing jaxnn would fail
call = jax.export.deserialize(bytearray(open({str(path)!r}, "rb").read())).call
for n in (1, 6):
    np.save({str(tmp_path)!r} + f"/y{{n}}.npy", np.asarray(call(np.load({str(tmp_path)!r} + f"/x{{n}}.npy"))))
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    for n, x in inputs.items():
        expected, _ = MODEL.apply(params, state, jnp.asarray(x))
        np.testing.assert_allclose(np.load(tmp_path / f"y{n}.npy"), expected, atol=1e-5, rtol=1e-5)


def test_fixed_batch_and_bad_arguments(tmp_path):
    params, state = weights()
    exported = export(MODEL, params, state, SHAPE, tmp_path / "fixed.jaxexport", batch=3)
    assert exported.in_avals[0].shape == (3,) + SHAPE
    with pytest.raises(ValueError, match="batch must be 'symbolic' or a positive int"):
        export(MODEL, params, state, SHAPE, tmp_path / "bad.jaxexport", batch=0)
    (tmp_path / "junk.jaxexport").write_bytes(b"not a program")
    with pytest.raises(ValueError, match="is not a program written by jaxnn.interop.export"):
        load_exported(tmp_path / "junk.jaxexport")


def test_symbolic_batch_exports_recurrent_layers(tmp_path):
    """A recurrent layer flattens its batch axes with a symbolic size: one program serves every batch."""
    model = jaxnn.Sequential([jaxnn.LSTM(4), jaxnn.Dense(2)])
    _, params, state = model.init(jax.random.key(0), (5, 3))
    path = tmp_path / "rnn.jaxexport"
    export(model, params, state, (5, 3), path)
    call = load_exported(path)
    for n in (1, 3):
        x = jax.random.normal(jax.random.key(n), (n, 5, 3))
        np.testing.assert_allclose(call(x), model.apply(params, state, x)[0], atol=1e-5, rtol=1e-5)


def test_a_layer_that_needs_a_concrete_batch_is_named(tmp_path):
    from jaxnn.core import make_layer

    def apply(params, state, x, *, key=None, train=False):
        del params, key, train
        return x.reshape(int(np.prod(x.shape[:-1])), x.shape[-1]), state

    model = jaxnn.Sequential([jaxnn.Relu(), make_layer("fixed_batch", lambda key, shape: (shape, {}, {}), apply)])
    _, params, state = model.init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"layer 'fixed_batch_1' \(code at .*test_export.py:\d+, apply\) needs a "
                                         r"concrete batch size.*batch=32"):
        export(model, params, state, (3,), tmp_path / "m.jaxexport")
    export(model, params, state, (3,), tmp_path / "m.jaxexport", batch=2)   # a fixed batch exports
