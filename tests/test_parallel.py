"""Data parallel training on several devices and processes (``jaxnn.parallel``, ``mesh=``, ``jaxnn launch``).

Each multi-device check runs in a subprocess whose CPU is split into 4 devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``): the flag must be set before JAX starts.
The oracle is always the same computation on one device (or a closed form), never the sharded
code run twice.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# As conftest's fast_compilation fixture does in this process: compiling dominates these runs.
FAST_COMPILATION = {"JAX_DISABLE_MOST_OPTIMIZATIONS": "true"}


def run_python(code: str, devices: int = 4, timeout: float = 600) -> dict:
    """Runs ``code`` in a fresh interpreter with ``devices`` CPU devices; returns what it printed
    as JSON on its last line."""
    environment = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                       JAX_PLATFORMS="cpu", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                       **FAST_COMPILATION)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environment, cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# One subprocess for the single-process checks: starting JAX and compiling dominate their time.
SINGLE_PROCESS_CHECKS = r"""
import json
import jax, jax.numpy as jnp, numpy as np
import jaxnn
from jaxnn import optim, parallel
from jaxnn.train import (create_train_state, evaluate, fit, make_eval_step, make_train_step,
                         restore_checkpoint, save_checkpoint)

assert len(jax.devices()) == 4
out = {}
rng = np.random.default_rng(0)
x = rng.normal(size=(150, 6)).astype(np.float32)
y = (x @ rng.normal(size=(6, 3))).argmax(-1).astype(np.int32)
images = rng.normal(size=(70, 8, 8, 1)).astype(np.float32)
image_labels = rng.integers(0, 3, 70).astype(np.int32)

def host(tree):
    return [np.asarray(leaf).tolist() for leaf in jax.tree.leaves(parallel.to_host(tree))]

def trained(model, data, input_shape, devices, optimizer, **settings):
    state = create_train_state(model, optimizer, jax.random.key(0), input_shape)
    mesh = None if devices is None else parallel.data_mesh(jax.devices()[:devices])
    state, history = fit(model, optimizer, state, data, progress=False, mesh=mesh, **settings)
    return state, history

# 1. fit on 1, 2 and 4 devices against fit without a mesh: an MLP with BatchNorm and Dropout
#    (steps_per_call=2 and a last partial batch of 150 - 4*32 = 22 examples), and a CNN.
mlp = jaxnn.Sequential([jaxnn.Dense(16), jaxnn.BatchNorm(), jaxnn.Relu(), jaxnn.Dropout(0.3), jaxnn.Dense(3)])
cnn = jaxnn.Sequential([jaxnn.Conv2D(4, 3, padding="SAME"), jaxnn.BatchNorm(), jaxnn.Relu(), jaxnn.MaxPool2D(2),
                        jaxnn.Flatten(), jaxnn.Dense(3)])
#    The CNN runs on 4 devices only: how a mesh of 1, 2 or 4 splits the batch is the MLP's check.
cases = {"mlp": (mlp, (x, y), (6,), dict(epochs=3, batch_size=32, steps_per_call=2), (1, 2, 4)),
         "cnn": (cnn, (images, image_labels), (8, 8, 1), dict(epochs=2, batch_size=16), (4,))}
for name, (model, data, shape, settings, device_counts) in cases.items():
    optimizer = optim.sgd(0.1, momentum=0.9)
    base_state, base_history = trained(model, data, shape, None, optimizer, **settings)
    out[name] = {"base": host((base_state.params, base_state.state)), "base_loss": base_history["loss"]}
    for devices in device_counts:
        state, history = trained(model, data, shape, devices, optimizer,
                                 validation_data=(data[0][:40], data[1][:40]), **settings)
        out[name][devices] = host((state.params, state.state))
        out[name][f"loss_{devices}"] = history["loss"]
        out[name][f"replicated_{devices}"] = all(
            leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == devices
            for leaf in jax.tree.leaves(state.params))

# Adam on 4 devices, on an MLP without BatchNorm: a bias just before BatchNorm has a zero gradient
# up to rounding, which Adam's division by the root mean square would turn into full-size steps.
adam_mlp = jaxnn.Sequential([jaxnn.Dense(16), jaxnn.Relu(), jaxnn.Dropout(0.3), jaxnn.Dense(3)])
settings = dict(epochs=3, batch_size=32, steps_per_call=2)
state, _ = trained(adam_mlp, (x, y), (6,), 4, optim.adam(1e-2), **settings)
base_state, _ = trained(adam_mlp, (x, y), (6,), None, optim.adam(1e-2), **settings)
out["adam"] = [host(state.params), host(base_state.params)]

# 2. BatchNorm's statistics over the global batch of 8, split 2 per device: the closed form.
norm = jaxnn.Sequential([jaxnn.BatchNorm(momentum=0.9)])
mesh = parallel.data_mesh()
state = create_train_state(norm, optim.sgd(0.0), jax.random.key(0), (3,))
step = make_train_step(norm, lambda outputs, targets: jnp.sum(outputs * 0.0, axis=-1), optim.sgd(0.0), mesh=mesh)
batch_x = (np.arange(24, dtype=np.float32).reshape(8, 3) ** 1.5)
state, _ = step(parallel.replicate(state, mesh), parallel.shard_batch((batch_x, np.zeros(8, np.float32)), mesh))
out["batch_norm"] = {"mean": np.asarray(state.state["batch_norm_0"]["mean"]).tolist(),
                     "var": np.asarray(state.state["batch_norm_0"]["var"]).tolist(),
                     "x": batch_x.tolist()}

# 3. make_train_step / make_eval_step with a mesh against the same steps without one.
optimizer = optim.sgd(0.1)
plain = create_train_state(mlp, optimizer, jax.random.key(1), (6,))
sharded = parallel.replicate(plain, mesh)
batches = (x[:96].reshape(3, 32, 6), y[:96].reshape(3, 32))
plain, plain_sums = make_train_step(mlp, "cross_entropy", optimizer, steps_per_call=3, donate=False)(plain, batches)
sharded, sharded_sums = make_train_step(mlp, "cross_entropy", optimizer, steps_per_call=3, mesh=mesh)(
    sharded, parallel.shard_batch(batches, mesh, leading_axes=1))
eval_plain = make_eval_step(mlp, "cross_entropy")(plain, (x[:64], y[:64]))
eval_sharded = make_eval_step(mlp, "cross_entropy", mesh=mesh)(sharded, parallel.shard_batch((x[:64], y[:64]), mesh))
out["steps"] = {"plain": host(plain.params), "sharded": host(sharded.params),
                "sums": [float(plain_sums["loss"]), float(sharded_sums["loss"])],
                "eval": [float(eval_plain["loss"]), float(eval_sharded["loss"])],
                "batch_spec": str(parallel.shard_batch(batches, mesh, leading_axes=1)[0].sharding.spec)}
out["evaluate"] = [evaluate(mlp, plain, (x, y)), evaluate(mlp, plain, (x, y), mesh=mesh, batch_size=64)]

# 4. Checkpoints cross device counts: 4 devices -> 1 device, and 1 -> 4, then one more epoch.
import tempfile, os
folder = tempfile.mkdtemp()
optimizer = optim.sgd(0.1, momentum=0.9)
four, _ = trained(mlp, (x, y), (6,), 4, optimizer, epochs=1, batch_size=32)
save_checkpoint(os.path.join(folder, "four.npz"), four)
template = create_train_state(mlp, optimizer, jax.random.key(5), (6,))
on_one, _ = restore_checkpoint(os.path.join(folder, "four.npz"), template)
out["restored_on_one_device"] = len(jax.tree.leaves(on_one.params)[0].devices())
continued_one, _ = fit(mlp, optimizer, on_one, (x, y), epochs=2, initial_epoch=1, batch_size=32, progress=False)
continued_four, _ = fit(mlp, optimizer, four, (x, y), epochs=2, initial_epoch=1, batch_size=32, progress=False,
                        mesh=parallel.data_mesh())
uninterrupted, _ = trained(mlp, (x, y), (6,), None, optimizer, epochs=2, batch_size=32)
save_checkpoint(os.path.join(folder, "one.npz"), uninterrupted)
back_on_four, _ = restore_checkpoint(os.path.join(folder, "one.npz"), parallel.replicate(template, mesh))
out["restored_on_four_devices"] = len(jax.tree.leaves(back_on_four.params)[0].sharding.device_set)
out["checkpoint"] = {"one": host(continued_one.params), "four": host(continued_four.params),
                     "uninterrupted": host(uninterrupted.params), "back_on_four": host(back_on_four.params)}

# EarlyStopping puts the best weights back where the others are: replicated on the mesh.
from jaxnn.train import EarlyStopping
stopped, _ = trained(mlp, (x, y), (6,), 4, optim.sgd(0.1), epochs=3, batch_size=32,
                     validation_data=(x[:40], y[:40]), callbacks=[EarlyStopping("val_loss", patience=1)])
out["early_stopping_replicated"] = all(
    leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 4
    for leaf in jax.tree.leaves((stopped.params, stopped.state)))

# 5. Bad meshes and batch sizes.
errors = {}
def error_of(function):
    try:
        function()
    except Exception as error:
        return [type(error).__name__, str(error)]
    return None
state = create_train_state(mlp, optimizer, jax.random.key(0), (6,))
errors["batch"] = error_of(lambda: fit(mlp, optimizer, state, (x, y), epochs=1, batch_size=6, progress=False,
                                       mesh=parallel.data_mesh()))
errors["not_a_mesh"] = error_of(lambda: fit(mlp, optimizer, state, (x, y), epochs=1, progress=False,
                                            mesh=jax.devices()))
errors["axis"] = error_of(lambda: fit(mlp, optimizer, state, (x, y), epochs=1, progress=False,
                                      mesh=jax.sharding.Mesh(np.asarray(jax.devices()), ("model",))))
errors["two_axes"] = error_of(lambda: make_train_step(mlp, "cross_entropy", optimizer, mesh=jax.sharding.Mesh(
    np.asarray(jax.devices()).reshape(2, 2), ("data", "model"))))
errors["empty"] = error_of(lambda: parallel.data_mesh([]))
errors["twice"] = error_of(lambda: parallel.data_mesh([jax.devices()[0]] * 2))
errors["shard"] = error_of(lambda: parallel.shard_batch(np.zeros((6, 2)), parallel.data_mesh()))
out["errors"] = errors
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def single_process():
    return run_python(SINGLE_PROCESS_CHECKS)


def close(a, b, atol):
    for left, right in zip(a, b, strict=True):
        np.testing.assert_allclose(np.asarray(left), np.asarray(right), atol=atol, rtol=atol)


@pytest.mark.parametrize("model,devices", [("mlp", "1"), ("mlp", "2"), ("mlp", "4"), ("cnn", "4")])
def test_fit_on_several_devices_equals_fit_on_one(single_process, model, devices):
    result = single_process[model]
    # The same permutations and dropout masks, BatchNorm over the global batch: the parameters and
    # running statistics agree to float rounding (the sums over devices add in another order).
    close(result[devices], result["base"], atol=2e-5)
    close(result[f"loss_{devices}"], result["base_loss"], atol=2e-5)
    assert result[f"replicated_{devices}"]


def test_adam_on_four_devices_equals_one_device(single_process):
    sharded, single = single_process["adam"]
    close(sharded, single, atol=2e-5)


def test_batch_norm_statistics_are_those_of_the_global_batch(single_process):
    result = single_process["batch_norm"]
    x = np.asarray(result["x"], np.float64)
    # Each device holds 2 of the 8 examples; the statistics of the 8 together, in closed form.
    np.testing.assert_allclose(result["mean"], 0.1 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(result["var"], 0.9 + 0.1 * x.var(0, ddof=1), rtol=1e-5)


def test_train_and_eval_steps_with_a_mesh_equal_the_steps_without(single_process):
    result = single_process["steps"]
    close(result["sharded"], result["plain"], atol=1e-6)
    assert result["sums"][0] == pytest.approx(result["sums"][1], rel=1e-6)
    assert result["eval"][0] == pytest.approx(result["eval"][1], rel=1e-6)
    assert result["batch_spec"] in ("PartitionSpec(None, 'data')", "P(None, 'data')")
    plain, sharded = single_process["evaluate"]
    assert plain["loss"] == pytest.approx(sharded["loss"], rel=1e-6)
    assert plain["accuracy"] == sharded["accuracy"]


def test_early_stopping_restores_the_best_weights_onto_the_mesh(single_process):
    assert single_process["early_stopping_replicated"]


def test_jaxnn_train_refuses_a_batch_size_that_does_not_divide_over_the_devices(tmp_path):
    environment = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=3", JAX_PLATFORMS="cpu")
    result = subprocess.run(jaxnn_command("train", "--devices", "3", "--epochs", "1", "--quiet",
                                          "--out", str(tmp_path / "run")),
                            env=environment, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == ("jaxnn train: error: --batch-size 64 is the global batch and must be "
                                     "divisible by the number of devices (3)")
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_checkpoints_cross_device_counts(single_process):
    assert single_process["restored_on_one_device"] == 1
    assert single_process["restored_on_four_devices"] == 4
    result = single_process["checkpoint"]
    # Saved on 4 devices, resumed on 1 or on 4: both equal the run that never stopped.
    close(result["one"], result["uninterrupted"], atol=2e-5)
    close(result["four"], result["uninterrupted"], atol=2e-5)
    close(result["back_on_four"], result["uninterrupted"], atol=0)


@pytest.mark.parametrize("case,kind,message", [
    ("batch", "ValueError", r"fit: `batch_size` (=6) is the global batch and must be divisible by the number "
                            r"of devices in the mesh (=4)"),
    ("not_a_mesh", "TypeError", "fit: `mesh` must be a jax.sharding.Mesh"),
    ("axis", "ValueError", "fit: `mesh` has axes ('model',)"),
    ("two_axes", "ValueError", "every other axis must have size 1"),
    ("empty", "ValueError", "data_mesh: `devices` is empty"),
    ("twice", "ValueError", "lists a device more than once"),
    ("shard", "ValueError", "shard_batch: `batch size` (=6) is the global batch and must be divisible"),
])
def test_bad_meshes_and_batch_sizes_are_clear_errors(single_process, case, kind, message):
    error = single_process["errors"][case]
    assert error is not None and error[0] == kind and message in error[1], error


# --------------------------------------------------------------------------------------------
# Several processes, through `jaxnn launch`.


def jaxnn_command(*args):
    return [sys.executable, "-m", "jaxnn.cli", *args]


def test_two_processes_of_two_devices_train_as_one_device_does(tmp_path):
    environment = dict(os.environ, JAX_PLATFORMS="cpu", **FAST_COMPILATION)
    environment.pop("XLA_FLAGS", None)
    launched = subprocess.run(
        jaxnn_command("launch", "--processes", "2", "--devices-per-process", "2", "--",
                      *jaxnn_command("train", "--devices", "all", "--epochs", "2", "--no-progress",
                                     "--out", str(tmp_path / "launched"))),
        env=environment, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert launched.returncode == 0, launched.stdout[-5000:] + launched.stderr[-3000:]
    lines = launched.stdout.splitlines()
    assert all(line.startswith(("[0] ", "[1] ")) for line in lines)
    # One process prints: the summary line comes from process 0 alone, naming 4 devices.
    summaries = [line for line in lines if "test accuracy" in line]
    assert len(summaries) == 1 and summaries[0].startswith("[0] ")
    assert any("4 devices, 2 process(es)" in line for line in lines)
    single = subprocess.run(jaxnn_command("train", "--epochs", "2", "--no-progress", "--quiet",
                                          "--out", str(tmp_path / "single")),
                            env=environment, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    with np.load(tmp_path / "launched" / "checkpoint.npz") as a, np.load(tmp_path / "single" / "checkpoint.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            if name != "metadata.json":
                np.testing.assert_allclose(a[name], b[name], atol=2e-5, rtol=2e-5, err_msg=name)
    launched_metrics = json.loads((tmp_path / "launched" / "metrics.json").read_text())
    single_metrics = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert launched_metrics["test_accuracy"] == single_metrics["test_accuracy"]
    assert launched_metrics["test_loss"] == pytest.approx(single_metrics["test_loss"], rel=1e-5)
    assert not list((tmp_path / "launched").glob("*.tmp"))


def test_launch_stops_the_others_when_one_process_fails(tmp_path):
    # Process 1 fails at once; process 0 would sleep for minutes. Launch returns process 1's
    # status and process 0 is gone.
    script = (f"import os, sys, time\n"
              f"index = int(os.environ['JAXNN_PROCESS_ID'])\n"
              f"assert os.environ['JAXNN_NUM_PROCESSES'] == '2'\n"
              f"assert os.environ['JAXNN_COORDINATOR'].startswith('127.0.0.1:')\n"
              f"open(os.path.join({str(tmp_path)!r}, f'pid{{index}}'), 'w').write(str(os.getpid()))\n"
              f"print('started', flush=True)\n"
              f"sys.exit(3) if index == 1 else time.sleep(600)\n")
    from jaxnn import launch

    status = launch.run([sys.executable, "-c", script], processes=2)
    assert status == 3
    sleeper = int((tmp_path / "pid0").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(sleeper, 0)


def test_launch_sets_the_device_count_and_refuses_an_empty_command(capsys):
    from jaxnn import launch

    environment = launch.process_environment(1, 3, "127.0.0.1:1234", 2,
                                             base={"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --other"})
    assert environment["JAXNN_PROCESS_ID"] == "1" and environment["JAXNN_NUM_PROCESSES"] == "3"
    assert environment["XLA_FLAGS"] == "--other --xla_force_host_platform_device_count=2"
    with pytest.raises(ValueError, match="no command given"):
        launch.run([], processes=2)
    with pytest.raises(ValueError, match="`processes` \\(=0\\) must be a positive int"):
        launch.run(["true"], processes=0)


def test_initialize_twice_or_after_computing_is_a_clear_error():
    result = run_python(r"""
        import json
        from jaxnn import launch, parallel
        out = {}
        parallel.initialize(f"127.0.0.1:{launch.free_port()}", 1, 0)
        try:
            parallel.initialize()
        except RuntimeError as error:
            out["twice"] = str(error)
        print(json.dumps(out))
    """, devices=1)
    assert "already initialized" in result["twice"]
    result = run_python(r"""
        import json
        import jax.numpy as jnp
        from jaxnn import launch, parallel
        jnp.ones(2).block_until_ready()
        try:
            parallel.initialize(f"127.0.0.1:{launch.free_port()}", 1, 0)
            out = {}
        except RuntimeError as error:
            out = {"late": str(error)}
        print(json.dumps(out))
    """, devices=1)
    assert "already started computing" in result["late"]


def test_initialize_checks_its_arguments(monkeypatch):
    from jaxnn import parallel

    monkeypatch.delenv("JAXNN_COORDINATOR", raising=False)
    with pytest.raises(ValueError, match=r"`process_id` \(=2\) must be below `num_processes` \(=2\)"):
        parallel.initialize("127.0.0.1:1", 2, 2)
    with pytest.raises(TypeError, match="`coordinator` must be a 'host:port' string"):
        parallel.initialize(1234, 2, 0)
    monkeypatch.setenv("JAXNN_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="JAXNN_NUM_PROCESSES must be an int, got 'two'"):
        parallel.initialize()
