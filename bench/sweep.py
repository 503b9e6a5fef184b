"""A sweep of K members in one compiled program against K sequential ``fit`` calls.

The members are K learning rates of Adam (log-spaced from 1e-4 to 1e-1), one seed, trained on
scikit-learn's digits (1437 training examples, batch 128, validation on the 360 test examples)
for the same epochs, with two models: a small MLP (64-32-10) and the default ``jaxnn train``
model (``jaxnn.models.mlp``, 64-128-128-10). All in one process, the runs interleaved (see
``common.py``).

Columns, each the median over the repetitions:

- sequential ``fit``: K calls of ``fit``, each with its own optimizer, so each compiles its own
  steps, as a loop over configurations does; "warm" times K fits after the first with
  compilation left out (one compiled optimizer reused), the loop's floor;
- ``sweep``: one call of :func:`jaxnn.train.sweep` with a new model (so it compiles); "warm"
  repeats it with everything compiled.

Run:  python bench/sweep.py [--quick] [--epochs 10] [--members 4,16,64] [--repetitions 3]
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import interleaved_medians, machine, timed

from jaxnn import data, optim, train
from jaxnn.models import mlp

MODELS = {"small MLP 64-32-10": (32,), "default MLP 64-128-128-10": (128, 128)}
BATCH = 128


def learning_rates(members: int) -> list[float]:
    return [float(rate) for rate in np.geomspace(1e-4, 1e-1, members)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a rough check on a busy machine: K = 4, 16; 2 epochs; 1 repetition")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--members", default="4,16,64", help="comma-separated K")
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.members, args.repetitions = 2, "4,16", 1
    counts = [int(count) for count in args.members.split(",")]

    dataset = data.digits()
    train_data = (dataset.x_train, dataset.y_train)
    validation_data = (dataset.x_test, dataset.y_test)
    settings = dict(epochs=args.epochs, batch_size=BATCH, validation_data=validation_data, progress=False)

    def one_fit(model, optimizer):
        state = train.create_train_state(model, optimizer, jax.random.key(0), dataset.input_shape)
        state, _ = train.fit(model, optimizer, state, train_data, **settings)
        jax.block_until_ready(state)

    rows = []
    for label, hidden in MODELS.items():
        for count in counts:
            rates = learning_rates(count)
            warm_model = mlp(dataset.num_classes, dataset.input_shape, hidden=hidden)
            warm_optimizer = optim.adam(1e-3)

            def sequential_cold():
                model = mlp(dataset.num_classes, dataset.input_shape, hidden=hidden)
                for rate in rates:
                    one_fit(model, optim.adam(rate))

            def sequential_warm():
                # The cold runs' optimizers may have pushed the warm one out of fit's cache of
                # compiled steps: one untimed fit compiles it again if so.
                one_fit(warm_model, warm_optimizer)
                return timed(lambda: [one_fit(warm_model, warm_optimizer) for _ in rates])

            def sweep(model):
                result = train.sweep(model, optim.adam, train_data, grid={"learning_rate": rates}, **settings)
                jax.block_until_ready(result.train_state(0).params)

            def sweep_cold():
                return timed(lambda: sweep(mlp(dataset.num_classes, dataset.input_shape, hidden=hidden)))

            def sweep_warm():
                sweep(warm_model)  # compiled again if the cold runs pushed it out of the cache
                return timed(lambda: sweep(warm_model))

            runs = {"sequential cold": lambda: timed(sequential_cold), "sequential warm": sequential_warm,
                    "sweep cold": sweep_cold, "sweep warm": sweep_warm}
            seconds = interleaved_medians(runs, args.repetitions)
            rows.append((label, count, seconds))
            timings = ", ".join(f"{name} {value:.2f} s" for name, value in seconds.items())
            print(f"{label}, K={count}: {timings}", file=sys.stderr)

    print(f"K Adam learning rates on digits (1437 training examples, batch {BATCH}, validation on 360), "
          f"{args.epochs} epochs per member; median of {args.repetitions} interleaved repetition(s).\n\n"
          f"Machine: {machine()}\n")
    print("| model | K | sequential `fit` | `sweep` | speed-up | sequential `fit`, warm | `sweep`, warm "
          "| speed-up, warm |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, count, s in rows:
        print(f"| {label} | {count} | {s['sequential cold']:.2f} s | {s['sweep cold']:.2f} s "
              f"| {s['sequential cold'] / s['sweep cold']:.1f}× | {s['sequential warm']:.2f} s "
              f"| {s['sweep warm']:.2f} s | {s['sequential warm'] / s['sweep warm']:.1f}× |")


if __name__ == "__main__":
    main()
