"""Compiled against eager: the default ``jaxnn train`` step (MLP 64-128-128-10 on digits, batch 64, Adam).

Rows, all in one process and interleaved:

- eager: ``make_train_step``'s step under ``jax.disable_jit()``, op by op;
- hand-written JAX: a user's own ``jax.jit`` step (``jax.grad`` + Adam written out), fed
  NumPy batches from a Python loop: the baseline jaxnn's loop must beat;
- ``make_train_step``: jitted, one step per call, NumPy batches;
- ``make_train_step(steps_per_call=N)``: N steps in one ``lax.scan`` per call;
- ``fit``: whole epochs, data resident on the device, batches gathered by index.

Run:  python bench/compiled_vs_eager.py [--steps-per-call 8] [--repetitions 5]
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import interleaved_medians, machine, timed

import jaxnn
from jaxnn import data, optim, train
from jaxnn.models import mlp


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps-per-call", type=int, default=8)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--eager-steps", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=20, help="epochs per timed run")
    args = parser.parse_args(argv)

    dataset = data.digits()
    x, y = dataset.x_train, dataset.y_train
    batch, n_steps = 64, (len(x) // 64) // args.steps_per_call * args.steps_per_call
    batches = [(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]) for i in range(n_steps)]
    model, optimizer = mlp(10, dataset.input_shape), optim.adam(1e-3)
    fresh = lambda: train.create_train_state(model, optimizer, jax.random.key(0), dataset.input_shape)

    step = train.make_train_step(model, "cross_entropy", optimizer)
    many = train.make_train_step(model, "cross_entropy", optimizer, steps_per_call=args.steps_per_call)
    stacked = [(np.stack([b[0] for b in batches[i:i + args.steps_per_call]]),
                np.stack([b[1] for b in batches[i:i + args.steps_per_call]]))
               for i in range(0, n_steps, args.steps_per_call)]

    # A user's own loop, written from the textbook: jax.grad and Adam by hand.
    _, hand_params, hand_state = model.init(jax.random.key(0), dataset.input_shape)

    @jax.jit
    def hand_step(params, m, v, t, xb, yb):
        def loss(params):
            logits, _ = model.apply(params, hand_state, xb)
            return jaxnn.losses.cross_entropy(logits, yb)
        grads = jax.grad(loss)(params)
        t = t + 1
        m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, grads)
        v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, v, grads)
        correction = jnp.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        params = jax.tree.map(lambda p, m, v: p - 1e-3 * correction * m / (jnp.sqrt(v) + 1e-8), params, m, v)
        return params, m, v, t

    def run_hand():
        params = hand_params
        m = jax.tree.map(jnp.zeros_like, params)
        v = jax.tree.map(jnp.zeros_like, params)
        t = jnp.zeros((), jnp.float32)
        for _ in range(args.epochs):
            for xb, yb in batches:
                params, m, v, t = hand_step(params, m, v, t, xb, yb)
        jax.block_until_ready(params)

    def run_step():
        state = fresh()
        for _ in range(args.epochs):
            for b in batches:
                state, _ = step(state, b)
        jax.block_until_ready(state)

    def run_many():
        state = fresh()
        for _ in range(args.epochs):
            for b in stacked:
                state, _ = many(state, b)
        jax.block_until_ready(state)

    def run_fit():
        # The same epochs over the same examples (no partial batch); after the first call the
        # compiled steps come from fit's cache, so this times the loop, not compilation.
        state, _ = train.fit(model, optimizer, fresh(), (x[:n_steps * batch], y[:n_steps * batch]), epochs=args.epochs,
                             batch_size=batch, steps_per_call=args.steps_per_call, progress=False)
        jax.block_until_ready(state)

    def run_eager():
        eager_step = train.make_train_step(model, "cross_entropy", optimizer, donate=False)
        state = fresh()
        with jax.disable_jit():
            for b in batches[:args.eager_steps]:
                state, _ = eager_step(state, b)
        jax.block_until_ready(state)

    runs = {"hand": run_hand, "step": run_step, "many": run_many, "fit": run_fit, "eager": run_eager}
    for run in runs.values():  # compile everything first
        run()
    seconds = interleaved_medians({name: (lambda run=run: timed(run)) for name, run in runs.items()},
                                  args.repetitions)
    per_step = {name: seconds[name] / (args.eager_steps if name == "eager" else n_steps * args.epochs)
                for name in seconds}
    # fit's time includes creating and copying the train state and moving the data to the device.
    rows = [
        ("eager (`jax.disable_jit()`)", "eager"),
        ("hand-written JAX: own `jax.jit` step, NumPy batches", "hand"),
        ("`make_train_step`, 1 step per call", "step"),
        (f"`make_train_step(steps_per_call={args.steps_per_call})`", "many"),
        (f"`fit(steps_per_call={args.steps_per_call})`, whole epochs", "fit"),
    ]
    print(f"Default MLP on digits, batch {batch}, Adam; {args.epochs} epochs of {n_steps} steps per timed run "
          f"(eager: {args.eager_steps} steps); median of {args.repetitions} interleaved repetitions.\n\n"
          f"Machine: {machine()}\n")
    print("| training step | ms/step | samples/s | speed-up vs eager | vs hand-written JAX |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, name in rows:
        ms = per_step[name] * 1e3
        print(f"| {label} | {ms:.3f} | {batch / per_step[name]:,.0f} | {per_step['eager'] / per_step[name]:,.0f}× "
              f"| {per_step['hand'] / per_step[name]:.2f}× |")


if __name__ == "__main__":
    main()
