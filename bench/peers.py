"""Training-step speed of jaxnn against hand-written JAX and the peer libraries, in one process.

Every column trains the same model on the same data with Adam (learning rate 1e-3) under softmax
cross-entropy, computing the loss and the accuracy of each step:

- ``JAX jit``, ``JAX scan(16)``: a hand-written ``jax.jit`` step around jaxnn's ``model.apply`` and
  ``jaxnn.optim.adam`` (the state donated), called once per batch, or a ``lax.scan`` over 16
  batches in one call. The floor for jaxnn's own steps, which add the train state's key and step
  count, metric sums and the check for non-finite parameters.
- ``make_train_step``, ``make_train_step(16)``: ``jaxnn.train.make_train_step`` with
  ``steps_per_call`` 1 and 16.
- ``fit``, ``fit(16)``: ``jaxnn.train.fit`` for one epoch over the data (shuffled),
  ``steps_per_call`` 1 and 16; the time of the whole call, entry checks included.
- ``stax``, ``Flax linen``, ``Flax NNX``, ``Haiku``, ``Equinox``: each library's own model and
  ``optax.adam`` in the library's own jitted step (``jax.jit``, ``nnx.jit``, ``eqx.filter_jit``).
- ``Keras fit``, ``Keras fit(16)``: Keras 3 on its JAX backend, ``model.fit`` for one epoch with
  ``steps_per_execution`` 1 and 16, ``jit_compile=True``.
- ``PyTorch``: PyTorch eager, ``torch.optim.Adam``.

Runs take turns in interleaved rounds, so that machine load falls on all of them alike, and the
table gives the median milliseconds per step. A step-by-step column dispatches one call per batch
without waiting and waits once at the end of the round, as a training loop does. A peer that is
not installed prints "not installed" in its cells; "n/a" marks a model the library has no layer
for (stax has no recurrent layers).

Also printed: the time to the first training step (trace, compile and run one step, from a
fresh jitted function), and the fraction of the machine's float32 matmul peak (measured here
with XLA) that a step reaches, from XLA's count of the step's floating-point operations.

    python bench/peers.py [--quick] [--models mlp,mnist_mlp] [--peers jax,jaxnn,keras] [--rounds 9]
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine  # noqa: E402

import jaxnn  # noqa: E402
from jaxnn import losses, optim  # noqa: E402
from jaxnn.train import create_train_state, fit, make_train_step  # noqa: E402

LEARNING_RATE = 1e-3
SCAN = 16
# PyTorch's intra-op threads (0: its default, one per core). Its OpenMP threads spin while they
# wait, so on a machine busy with other work PyTorch slows down far more than XLA does.
TORCH_THREADS = 0


class ModelSpec(NamedTuple):
    description: str
    kind: str                     # "mlp", "lenet" or "recurrent"
    input_shape: tuple[int, ...]  # per example, channels last
    batch: int
    steps: int                    # steps per timing round, a multiple of SCAN
    hidden: tuple[int, ...] = ()  # the MLP's hidden widths
    cell: str = ""                # "lstm" or "gru"


CLASSES = 10
MODELS: dict[str, ModelSpec] = {
    "mlp": ModelSpec("MLP 40-100-100-10, batch 32", "mlp", (40,), 32, 512, hidden=(100, 100)),
    "mnist_mlp": ModelSpec("MLP 784-512-512-10, batch 128", "mlp", (784,), 128, 64, hidden=(512, 512)),
    "lenet": ModelSpec("LeNet: Conv 3x3 32, ReLU, MaxPool 2, Conv 3x3 64, ReLU, MaxPool 2, Dense 128, ReLU, "
                       "Dense 10 on 28x28x1, batch 128", "lenet", (28, 28, 1), 128, 16),
    "lstm": ModelSpec("LSTM(128) over T=40 steps of 32 features, last hidden state, Dense 10, batch 64",
                      "recurrent", (40, 32), 64, 32, cell="lstm"),
    "gru": ModelSpec("GRU(128) over T=40 steps of 32 features, last hidden state, Dense 10, batch 64",
                     "recurrent", (40, 32), 64, 32, cell="gru"),
}


class Data(NamedTuple):
    """One round's examples: ``x`` of shape ``(steps * batch, *input_shape)``, labels ``y``."""

    x: np.ndarray
    y: np.ndarray


def make_data(spec: ModelSpec, steps: int) -> Data:
    rng = np.random.default_rng(0)
    count = steps * spec.batch
    return Data(rng.standard_normal((count,) + spec.input_shape).astype(np.float32),
                rng.integers(0, CLASSES, count).astype(np.int32))


def batches(data: Data, spec: ModelSpec, per_call: int = 1):
    """The round's batches on the device, ``per_call`` of them stacked per call when above 1."""
    shape = (-1, per_call, spec.batch) if per_call > 1 else (-1, spec.batch)
    xs = jnp.asarray(data.x.reshape(shape + data.x.shape[1:]))
    ys = jnp.asarray(data.y.reshape(shape))
    return [(xs[i], ys[i]) for i in range(xs.shape[0])]


class Run(NamedTuple):
    """A timed column: ``round()`` trains one round of steps and waits for the result."""

    round: Callable[[], None]
    first_step_seconds: float | None
    flops_per_step: float | None = None


class NotAvailable(Exception):
    """The library has no layer for this model."""


def timed_first(call: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = jax.block_until_ready(call())
    return result, time.perf_counter() - start


def step_flops(compiled) -> float | None:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    return float(analysis["flops"]) if analysis and "flops" in analysis else None


def round_of_calls(step: Callable, carry: list, calls) -> Callable[[], None]:
    """One round: ``carry[0] = step(carry[0], batch)`` for every batch, waiting only at the end."""

    def run_round():
        outputs = None
        for batch in calls:
            carry[0], outputs = step(carry[0], batch)
        jax.block_until_ready(outputs)

    return run_round


# --------------------------------------------------------------------------------------------
# jaxnn and hand-written JAX around the same jaxnn model.


def jaxnn_model(spec: ModelSpec):
    if spec.kind == "mlp":
        layers = []
        for width in spec.hidden:
            layers += [jaxnn.Dense(width), jaxnn.Relu()]
        return jaxnn.Sequential(layers + [jaxnn.Dense(CLASSES)])
    if spec.kind == "lenet":
        return jaxnn.Sequential([
            jaxnn.Conv2D(32, 3), jaxnn.Relu(), jaxnn.MaxPool2D(2),
            jaxnn.Conv2D(64, 3), jaxnn.Relu(), jaxnn.MaxPool2D(2),
            jaxnn.Flatten(), jaxnn.Dense(128), jaxnn.Relu(), jaxnn.Dense(CLASSES)])
    cell = {"lstm": jaxnn.LSTM, "gru": jaxnn.GRU}[spec.cell]
    return jaxnn.Sequential([cell(128), jaxnn.Dense(CLASSES)])


def hand_written_step(model, optimizer):
    """The step a JAX user writes around ``model.apply``: loss, accuracy, Adam."""

    def step(carry, batch):
        params, state, opt_state = carry
        x, y = batch

        def objective(params):
            logits, new_state = model.apply(params, state, x, train=True)
            return losses.cross_entropy(logits, y), (logits, new_state)

        (loss, (logits, new_state)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == y)
        return (optim.apply_updates(params, updates), new_state, opt_state), (loss, accuracy)

    return step


def jax_runs(spec: ModelSpec, data: Data) -> dict[str, Run]:
    model, optimizer = jaxnn_model(spec), optim.adam(LEARNING_RATE)
    state0 = create_train_state(model, optimizer, jax.random.key(0), spec.input_shape)
    step = hand_written_step(model, optimizer)

    def scanned(carry, batch):
        carry, (loss, accuracy) = jax.lax.scan(step, carry, batch)
        return carry, (jnp.mean(loss), jnp.mean(accuracy))

    runs = {}
    for label, function, per_call in (("JAX jit", step, 1), (f"JAX scan({SCAN})", scanned, SCAN)):
        calls = batches(data, spec, per_call)
        carry = [jax.tree.map(jnp.copy, (state0.params, state0.state, state0.opt_state))]
        jitted = jax.jit(function, donate_argnums=0)
        (carry[0], _), seconds = timed_first(lambda: jitted(carry[0], calls[0]))
        flops = step_flops(jitted.lower(carry[0], calls[0]).compile()) if per_call == 1 else None
        runs[label] = Run(round_of_calls(jitted, carry, calls), seconds, flops)
    return runs


def jaxnn_runs(spec: ModelSpec, data: Data) -> dict[str, Run]:
    model, optimizer = jaxnn_model(spec), optim.adam(LEARNING_RATE)
    state0 = create_train_state(model, optimizer, jax.random.key(0), spec.input_shape)
    runs = {}
    for steps_per_call in (1, SCAN):
        calls = batches(data, spec, steps_per_call)
        carry = [jax.tree.map(jnp.copy, state0)]
        train_step = make_train_step(model, "cross_entropy", optimizer, steps_per_call=steps_per_call)
        (carry[0], _), seconds = timed_first(lambda: train_step(carry[0], calls[0]))
        label = "make_train_step" if steps_per_call == 1 else f"make_train_step({SCAN})"
        runs[label] = Run(round_of_calls(train_step, carry, calls), seconds)
    for steps_per_call in (1, SCAN):
        def fit_round(steps_per_call=steps_per_call):
            fit(model, optimizer, state0, (data.x, data.y), epochs=1, batch_size=spec.batch,
                steps_per_call=steps_per_call, progress=False)

        fit_round()  # compiles; fit keeps its compiled steps for the next calls
        runs["fit" if steps_per_call == 1 else f"fit({SCAN})"] = Run(fit_round, None)
    return runs


# --------------------------------------------------------------------------------------------
# Peer JAX libraries, each with optax.adam in its own jitted step.


def optax_step(apply: Callable, optimizer):
    """``(params, opt_state), (x, y) -> ...`` for a pure ``apply(params, x) -> logits``."""
    import optax

    def step(carry, batch):
        params, opt_state = carry
        x, y = batch

        def objective(params):
            logits = apply(params, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

        (loss, logits), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == y)
        return (optax.apply_updates(params, updates), opt_state), (loss, accuracy)

    return step


def pure_run(apply: Callable, params, spec: ModelSpec, data: Data) -> Run:
    """One column for a library whose model is ``params`` and a pure ``apply(params, x)``."""
    import optax

    optimizer = optax.adam(LEARNING_RATE)
    calls = batches(data, spec)
    jitted = jax.jit(optax_step(apply, optimizer), donate_argnums=0)
    carry = [(params, optimizer.init(params))]
    (carry[0], _), seconds = timed_first(lambda: jitted(carry[0], calls[0]))
    return Run(round_of_calls(jitted, carry, calls), seconds)


def stax_run(spec: ModelSpec, data: Data) -> Run:
    from jax.example_libraries import stax

    if spec.kind == "recurrent":
        raise NotAvailable
    if spec.kind == "mlp":
        layers = [layer for width in spec.hidden for layer in (stax.Dense(width), stax.Relu)]
    else:
        # stax.Conv is NHWC with HWIO kernels, as jaxnn.
        layers = [stax.Conv(32, (3, 3), padding="VALID"), stax.Relu, stax.MaxPool((2, 2), strides=(2, 2)),
                  stax.Conv(64, (3, 3), padding="VALID"), stax.Relu,
                  stax.MaxPool((2, 2), strides=(2, 2)), stax.Flatten, stax.Dense(128), stax.Relu]
    init, apply = stax.serial(*layers, stax.Dense(CLASSES))
    _, params = init(jax.random.key(0), (-1,) + spec.input_shape)
    return pure_run(apply, params, spec, data)


def linen_run(spec: ModelSpec, data: Data) -> Run:
    import flax.linen as nn

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            if spec.kind == "mlp":
                for width in spec.hidden:
                    x = nn.relu(nn.Dense(width)(x))
            elif spec.kind == "lenet":
                for features in (32, 64):
                    x = nn.max_pool(nn.relu(nn.Conv(features, (3, 3), padding="VALID")(x)), (2, 2), (2, 2))
                x = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
            else:
                cell = nn.LSTMCell(128) if spec.cell == "lstm" else nn.GRUCell(128)
                x = nn.RNN(cell)(x)[:, -1]
            return nn.Dense(CLASSES)(x)

    model = Model()
    params = model.init(jax.random.key(0), jnp.zeros((1,) + spec.input_shape))
    return pure_run(model.apply, params, spec, data)


def haiku_run(spec: ModelSpec, data: Data) -> Run:
    import haiku as hk

    def forward(x):
        if spec.kind == "mlp":
            for width in spec.hidden:
                x = jax.nn.relu(hk.Linear(width)(x))
        elif spec.kind == "lenet":
            for features in (32, 64):
                x = jax.nn.relu(hk.Conv2D(features, 3, padding="VALID")(x))
                x = hk.MaxPool(window_shape=2, strides=2, padding="VALID")(x)
            x = jax.nn.relu(hk.Linear(128)(hk.Flatten()(x)))
        else:
            core = hk.LSTM(128) if spec.cell == "lstm" else hk.GRU(128)
            outputs, _ = hk.dynamic_unroll(core, x, core.initial_state(x.shape[0]), time_major=False)
            x = outputs[:, -1]
        return hk.Linear(CLASSES)(x)

    model = hk.without_apply_rng(hk.transform(forward))
    params = model.init(jax.random.key(0), jnp.zeros((1,) + spec.input_shape))
    return pure_run(model.apply, params, spec, data)


def nnx_run(spec: ModelSpec, data: Data) -> Run:
    import optax
    from flax import nnx

    rngs = nnx.Rngs(0)
    if spec.kind == "mlp":
        layers, width_in = [], spec.input_shape[-1]
        for width in spec.hidden:
            layers += [nnx.Linear(width_in, width, rngs=rngs), nnx.relu]
            width_in = width
        model = nnx.Sequential(*layers, nnx.Linear(width_in, CLASSES, rngs=rngs))
    elif spec.kind == "lenet":
        pool = functools.partial(nnx.max_pool, window_shape=(2, 2), strides=(2, 2))
        model = nnx.Sequential(
            nnx.Conv(1, 32, (3, 3), padding="VALID", rngs=rngs), nnx.relu, pool,
            nnx.Conv(32, 64, (3, 3), padding="VALID", rngs=rngs), nnx.relu, pool,
            lambda x: x.reshape(x.shape[0], -1),
            nnx.Linear(1600, 128, rngs=rngs), nnx.relu, nnx.Linear(128, CLASSES, rngs=rngs))
    else:
        cell_type = nnx.LSTMCell if spec.cell == "lstm" else nnx.GRUCell
        model = nnx.Sequential(nnx.RNN(cell_type(spec.input_shape[-1], 128, rngs=rngs)),
                               lambda x: x[:, -1], nnx.Linear(128, CLASSES, rngs=rngs))
    optimizer = nnx.Optimizer(model, optax.adam(LEARNING_RATE), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def objective(model):
            logits = model(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

        (loss, logits), grads = nnx.value_and_grad(objective, has_aux=True)(model)
        optimizer.update(model, grads)
        return loss, jnp.mean(jnp.argmax(logits, axis=-1) == y)

    calls = batches(data, spec)
    _, seconds = timed_first(lambda: step(model, optimizer, *calls[0]))

    def run_round():
        outputs = None
        for x, y in calls:
            outputs = step(model, optimizer, x, y)
        jax.block_until_ready(outputs)

    return Run(run_round, seconds)


def equinox_run(spec: ModelSpec, data: Data) -> Run:
    import equinox as eqx
    import optax

    keys = iter(jax.random.split(jax.random.key(0), 8))
    if spec.kind == "mlp":
        layers, width_in = [], spec.input_shape[-1]
        for width in spec.hidden:
            layers += [eqx.nn.Linear(width_in, width, key=next(keys)), eqx.nn.Lambda(jax.nn.relu)]
            width_in = width
        model = eqx.nn.Sequential(layers + [eqx.nn.Linear(width_in, CLASSES, key=next(keys))])
        layout = None
    elif spec.kind == "lenet":
        relu, pool = eqx.nn.Lambda(jax.nn.relu), eqx.nn.MaxPool2d(2, 2)
        model = eqx.nn.Sequential([
            eqx.nn.Conv2d(1, 32, 3, key=next(keys)), relu, pool,
            eqx.nn.Conv2d(32, 64, 3, key=next(keys)), relu, pool, eqx.nn.Lambda(jnp.ravel),
            eqx.nn.Linear(1600, 128, key=next(keys)), relu, eqx.nn.Linear(128, CLASSES, key=next(keys))])

        def layout(x):  # Equinox convolutions take channels first
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    else:
        cell_type = eqx.nn.LSTMCell if spec.cell == "lstm" else eqx.nn.GRUCell

        class Recurrent(eqx.Module):
            cell: eqx.Module
            head: eqx.nn.Linear

            def __call__(self, sequence):
                hidden = jnp.zeros(128)
                carry0 = (hidden, hidden) if spec.cell == "lstm" else hidden
                last, _ = jax.lax.scan(lambda carry, x: (self.cell(x, carry), None), carry0, sequence)
                return self.head(last[0] if spec.cell == "lstm" else last)

        model = Recurrent(cell_type(spec.input_shape[-1], 128, key=next(keys)),
                          eqx.nn.Linear(128, CLASSES, key=next(keys)))
        layout = None
    optimizer = optax.adam(LEARNING_RATE)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))

    # The batch goes first, so that everything after it (model, optimizer state) is donated.
    @eqx.filter_jit(donate="all-except-first")
    def step(batch, model, opt_state):
        x, y = batch

        def objective(model):
            logits = jax.vmap(model)(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

        (loss, logits), grads = eqx.filter_value_and_grad(objective, has_aux=True)(model)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, (loss, jnp.mean(jnp.argmax(logits, -1) == y))

    calls = batches(data if layout is None else Data(layout(data.x), data.y), spec)
    carry = [(model, opt_state)]

    def one(batch):
        model, opt_state, outputs = step(batch, *carry[0])
        carry[0] = (model, opt_state)
        return outputs

    _, seconds = timed_first(lambda: one(calls[0]))

    def run_round():
        outputs = None
        for batch in calls:
            outputs = one(batch)
        jax.block_until_ready(outputs)

    return Run(run_round, seconds)


# --------------------------------------------------------------------------------------------
# Keras 3 (JAX backend) and PyTorch eager.


def keras_runs(spec: ModelSpec, data: Data) -> dict[str, Run]:
    os.environ["KERAS_BACKEND"] = "jax"  # read when keras is first imported
    import keras
    from keras import layers

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"keras was imported with the {keras.backend.backend()} backend; "
                           "run with KERAS_BACKEND=jax")

    def build(steps_per_execution):
        keras.utils.set_random_seed(0)
        if spec.kind == "mlp":
            body = [layers.Dense(width, activation="relu") for width in spec.hidden]
        elif spec.kind == "lenet":
            body = [layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
                    layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
                    layers.Flatten(), layers.Dense(128, activation="relu")]
        else:
            body = [layers.LSTM(128) if spec.cell == "lstm" else layers.GRU(128)]
        model = keras.Sequential([keras.Input(spec.input_shape), *body, layers.Dense(CLASSES)])
        model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], steps_per_execution=steps_per_execution, jit_compile=True)
        return model

    runs = {}
    for steps_per_execution in (1, SCAN):
        model = build(steps_per_execution)
        seconds = None
        if steps_per_execution == 1:
            x0, y0 = data.x[:spec.batch], data.y[:spec.batch]
            _, seconds = timed_first(lambda: model.train_on_batch(x0, y0))

        def fit_round(model=model):
            model.fit(data.x, data.y, batch_size=spec.batch, epochs=1, verbose=0, shuffle=True)

        fit_round()
        runs["Keras fit" if steps_per_execution == 1 else f"Keras fit({SCAN})"] = Run(fit_round, seconds)
    return runs


def torch_run(spec: ModelSpec, data: Data) -> Run:
    import torch
    from torch import nn

    torch.manual_seed(0)
    if TORCH_THREADS:
        torch.set_num_threads(TORCH_THREADS)
    if spec.kind == "mlp":
        layers, width_in = [], spec.input_shape[-1]
        for width in spec.hidden:
            layers += [nn.Linear(width_in, width), nn.ReLU()]
            width_in = width
        model = nn.Sequential(*layers, nn.Linear(width_in, CLASSES))
        x_all = torch.from_numpy(data.x)
    elif spec.kind == "lenet":
        model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, CLASSES))
        x_all = torch.from_numpy(np.ascontiguousarray(data.x.transpose(0, 3, 1, 2)))
    else:
        class LastHidden(nn.Module):
            def __init__(self):
                super().__init__()
                recurrent = nn.LSTM if spec.cell == "lstm" else nn.GRU
                self.recurrent = recurrent(spec.input_shape[-1], 128, batch_first=True)
                self.head = nn.Linear(128, CLASSES)

            def forward(self, x):
                _, hidden = self.recurrent(x)
                return self.head((hidden[0] if spec.cell == "lstm" else hidden)[-1])

        model = LastHidden()
        x_all = torch.from_numpy(data.x)
    y_all = torch.from_numpy(data.y.astype(np.int64))
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()
    calls = list(zip(x_all.split(spec.batch), y_all.split(spec.batch)))

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = loss_fn(logits, y)
        loss.backward()
        optimizer.step()
        return loss.detach(), (logits.argmax(-1) == y).float().mean()

    start = time.perf_counter()
    step(*calls[0])
    seconds = time.perf_counter() - start

    def run_round():
        for x, y in calls:
            step(x, y)

    return Run(run_round, seconds)


# --------------------------------------------------------------------------------------------
# Columns, the machine's matmul peak, the tables.


class Peer(NamedTuple):
    columns: tuple[str, ...]
    module: str | None                            # the import that must succeed, or None
    build: Callable[[ModelSpec, Data], dict[str, Run] | Run]


PEERS: dict[str, Peer] = {
    "jax": Peer(("JAX jit", f"JAX scan({SCAN})"), None, jax_runs),
    "jaxnn": Peer(("make_train_step", f"make_train_step({SCAN})", "fit", f"fit({SCAN})"), None, jaxnn_runs),
    "stax": Peer(("stax",), None, stax_run),
    "linen": Peer(("Flax linen",), "flax", linen_run),
    "nnx": Peer(("Flax NNX",), "flax", nnx_run),
    "haiku": Peer(("Haiku",), "haiku", haiku_run),
    "equinox": Peer(("Equinox",), "equinox", equinox_run),
    "keras": Peer(("Keras fit", f"Keras fit({SCAN})"), "keras", keras_runs),
    "torch": Peer(("PyTorch",), "torch", torch_run),
}
OPTAX_PEERS = ("stax", "linen", "nnx", "haiku", "equinox")


def installed(peer: Peer, name: str) -> bool:
    modules = [peer.module] if peer.module else []
    if name in OPTAX_PEERS:
        modules.append("optax")
    return all(importlib.util.find_spec(module) is not None for module in modules)


def matmul_gflops(size: int = 1024, repeats: int = 20) -> float:
    """The machine's float32 matmul peak under XLA: the fastest of ``repeats`` products of two
    ``size x size`` matrices (the fastest, since load from other work only slows a product)."""
    a = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(2), (size, size), jnp.float32)
    product = jax.jit(jnp.matmul)
    product(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        product(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * size ** 3 / min(times) / 1e9


def measure_model(spec: ModelSpec, peers: list[str], rounds: int, steps: int):
    """Per column: median ms per step (or a note), first-step seconds, and FLOPs per step."""
    data = make_data(spec, steps)
    runs: dict[str, Run] = {}
    notes: dict[str, str] = {}
    for name in peers:
        peer = PEERS[name]
        if not installed(peer, name):
            notes.update({column: "not installed" for column in peer.columns})
            continue
        try:
            built = peer.build(spec, data)
        except NotAvailable:
            notes.update({column: "n/a" for column in peer.columns})
            continue
        except Exception as error:  # a peer's API changed: report it, time the others
            notes.update({column: "error" for column in peer.columns})
            print(f"{spec.description}: {name} failed: {type(error).__name__}: {error}", file=sys.stderr)
            continue
        runs.update(built if isinstance(built, dict) else {peer.columns[0]: built})
    print(f"{spec.description}: compiled {len(runs)} columns, timing {rounds} rounds of {steps} steps",
          file=sys.stderr, flush=True)
    for run in runs.values():  # one untimed round each, after every column has compiled
        run.round()
    times: dict[str, list[float]] = {column: [] for column in runs}
    for _ in range(rounds):
        for column, run in runs.items():
            start = time.perf_counter()
            run.round()
            times[column].append((time.perf_counter() - start) / steps * 1e3)
    medians = {column: statistics.median(values) for column, values in times.items()}
    spread = {column: (max(values) - min(values)) / medians[column] for column, values in times.items()}
    return medians, notes, runs, spread


def cell(value: float | None, note: str | None = None, digits: int = 3) -> str:
    if value is None:
        return note or ""
    return f"{value:.{digits}f}" if value < 10 else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated models (default: all of {','.join(MODELS)})")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help=f"comma-separated columns' libraries (default: all of {','.join(PEERS)})")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved timing rounds (default 9, 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and steps: a rough table")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="PyTorch's intra-op threads (default: its own choice, one per core)")
    args = parser.parse_args()
    global TORCH_THREADS
    TORCH_THREADS = args.torch_threads

    models = [name for name in args.models.split(",") if name]
    peers = [name for name in args.peers.split(",") if name]
    for given, known, what in ((models, MODELS, "model"), (peers, PEERS, "peer")):
        unknown = [name for name in given if name not in known]
        if unknown:
            parser.error(f"unknown {what}(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 9)
    load_before = os.getloadavg()[0]
    peak = matmul_gflops()

    columns = [column for name in peers for column in PEERS[name].columns]
    results = {}
    for name in models:
        spec = MODELS[name]
        steps = max(SCAN, spec.steps // 4) if args.quick else spec.steps
        results[name] = measure_model(spec, peers, rounds, steps)

    print(f"Machine: {machine()}; load average {load_before:.2f} before the run, "
          f"{os.getloadavg()[0]:.2f} after")
    versions = []
    for distribution in ("optax", "flax", "dm-haiku", "equinox", "keras", "torch"):
        try:  # read from the installed metadata: importing keras would fix its backend
            versions.append(f"{distribution} {importlib.metadata.version(distribution)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    if "torch" in peers and importlib.util.find_spec("torch") is not None:
        import torch

        versions.append(f"PyTorch on {torch.get_num_threads()} threads")
    print(f"Peers: {', '.join(versions)}.")
    print(f"Median over {rounds} interleaved rounds; XLA float32 matmul peak {peak:.0f} GFLOP/s "
          "(1024x1024 products).\n")

    print("Milliseconds per training step (Adam, cross-entropy, loss and accuracy):\n")
    print("| model | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for name in models:
        medians, notes, _, _ = results[name]
        print(f"| {name} | " + " | ".join(cell(medians.get(c), notes.get(c)) for c in columns) + " |")

    ratios = [("make_train_step / JAX jit", "make_train_step", "JAX jit"),
              (f"make_train_step({SCAN}) / JAX scan({SCAN})", f"make_train_step({SCAN})", f"JAX scan({SCAN})"),
              (f"fit({SCAN}) / JAX scan({SCAN})", f"fit({SCAN})", f"JAX scan({SCAN})"),
              ("Keras fit / fit", "Keras fit", "fit"),
              (f"Keras fit({SCAN}) / fit({SCAN})", f"Keras fit({SCAN})", f"fit({SCAN})"),
              ("PyTorch / make_train_step", "PyTorch", "make_train_step"),
              (f"PyTorch / make_train_step({SCAN})", "PyTorch", f"make_train_step({SCAN})")]
    ratios = [ratio for ratio in ratios if ratio[1] in columns and ratio[2] in columns]
    if ratios:
        print("\nTime ratios (below 1: the first is faster; Keras and PyTorch over jaxnn: above 1, jaxnn "
              "is faster):\n")
        print("| model | " + " | ".join(label for label, _, _ in ratios) + " |")
        print("| --- |" + " ---: |" * len(ratios))
        for name in models:
            medians = results[name][0]
            cells = [f"{medians[a] / medians[b]:.2f}" if a in medians and b in medians else ""
                     for _, a, b in ratios]
            print(f"| {name} | " + " | ".join(cells) + " |")

    first_columns = [c for c in columns if any(results[m][2].get(c) and results[m][2][c].first_step_seconds
                                               for m in models)]
    if first_columns:
        print("\nSeconds to the first training step (trace, compile, one step; PyTorch: one eager step; "
              "Keras: train_on_batch):\n")
        print("| model | " + " | ".join(first_columns) + " |")
        print("| --- |" + " ---: |" * len(first_columns))
        for name in models:
            _, notes, runs, _ = results[name]
            cells = [cell(runs[c].first_step_seconds, digits=2) if c in runs and runs[c].first_step_seconds
                     else notes.get(c, "") for c in first_columns]
            print(f"| {name} | " + " | ".join(cells) + " |")

    if "JAX jit" in columns:
        print(f"\nFraction of the matmul peak ({peak:.0f} GFLOP/s), from XLA's FLOP count of the "
              "hand-written step:\n")
        shown = [c for c in ("JAX jit", f"JAX scan({SCAN})", "make_train_step", f"make_train_step({SCAN})",
                             f"fit({SCAN})") if c in columns]
        print("| model | MFLOP per step | " + " | ".join(shown) + " |")
        print("| --- | ---: |" + " ---: |" * len(shown))
        for name in models:
            medians, _, runs, _ = results[name]
            flops = runs["JAX jit"].flops_per_step if "JAX jit" in runs else None
            if not flops:
                continue
            cells = [f"{flops / (medians[c] / 1e3) / 1e9 / peak:.1%}" for c in shown]
            print(f"| {name} | {flops / 1e6:.1f} | " + " | ".join(cells) + " |")

    noisy = [(name, column, value) for name in models for column, value in results[name][3].items()
             if value > 0.25]
    if noisy:
        print("\nNoisy (max-min spread over rounds above 25% of the median): "
              + ", ".join(f"{name}/{column} {value:.0%}" for name, column, value in noisy))
    print()
    for name in models:
        print(f"- {name}: {MODELS[name].description}")


if __name__ == "__main__":
    main()
