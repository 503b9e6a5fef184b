"""Data parallel throughput against device count: ``fit(mesh=data_mesh(devices[:n]))``.

Rows, in one process and interleaved: ``fit`` without a mesh (the baseline), then ``fit`` on a
mesh of 1, 2, 4, ... devices, for a CNN and an MLP on MNIST-sized random data, each timed over
whole epochs with the same global batch. Examples per second and the ratio to the baseline are
printed with the machine.

On a CPU the devices are forced (``--xla_force_host_platform_device_count``) and share the same
cores, so the table measures only what sharding costs (partitioned programs, cross-device sums),
not a speed-up; on a machine with several GPUs or TPU cores it measures the speed-up.

Run:  python bench/data_parallel.py [--devices 1,2,4] [--repetitions 3] [--cpu-devices 4]
"""

from __future__ import annotations

import argparse
import os
import sys


def _force_cpu_devices(argv) -> None:
    # The forced device count must be set before JAX starts, so it is read before importing it.
    for position, argument in enumerate(argv):
        if argument.startswith("--cpu-devices"):
            count = argument.split("=", 1)[1] if "=" in argument else argv[position + 1]
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                       + f" --xla_force_host_platform_device_count={count}")


_force_cpu_devices(sys.argv[1:])

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import interleaved_medians, machine, timed  # noqa: E402

import jaxnn  # noqa: E402
from jaxnn import optim, parallel, train  # noqa: E402


def models():
    cnn = jaxnn.Sequential([jaxnn.Conv2D(32, 3, padding="SAME"), jaxnn.Relu(), jaxnn.MaxPool2D(2),
                            jaxnn.Conv2D(64, 3, padding="SAME"), jaxnn.Relu(), jaxnn.MaxPool2D(2),
                            jaxnn.Flatten(), jaxnn.Dense(128), jaxnn.Relu(), jaxnn.Dense(10)])
    mlp = jaxnn.Sequential([jaxnn.Flatten(), jaxnn.Dense(512), jaxnn.Relu(), jaxnn.Dense(512), jaxnn.Relu(),
                            jaxnn.Dense(10)])
    return {"CNN 28x28 (LeNet-like)": cnn, "MLP 784-512-512-10": mlp}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default=None, help="device counts, e.g. 1,2,4 (default: powers of 2)")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--examples", type=int, default=4096, help="training examples per epoch")
    parser.add_argument("--batch-size", type=int, default=256, help="global batch")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed run")
    parser.add_argument("--steps-per-call", type=int, default=4)
    parser.add_argument("--cpu-devices", type=int, default=None,
                        help="on CPU, split the host into this many devices (set before JAX starts)")
    args = parser.parse_args(argv)

    available = len(jax.devices())
    counts = ([int(n) for n in args.devices.split(",")] if args.devices
              else [n for n in (1, 2, 4, 8, 16) if n <= available])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.examples, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, args.examples).astype(np.int32)
    optimizer = optim.adam(1e-3)
    on_cpu = jax.devices()[0].platform == "cpu"

    print(f"machine: {machine()}; {available} device(s): {jax.devices()[0].device_kind}")
    if on_cpu:
        print("CPU devices share the same cores: this measures the cost of sharding, not a speed-up.")
    print(f"{args.examples} examples, global batch {args.batch_size}, {args.epochs} epochs per run, "
          f"steps_per_call={args.steps_per_call}, Adam; median of {args.repetitions} interleaved runs\n")
    print("| model | devices | seconds per epoch | examples / s | ratio to no mesh |")
    print("|---|---|---|---|---|")
    for name, model in models().items():
        fresh = train.create_train_state(model, optimizer, jax.random.key(0), x.shape[1:])

        def run(mesh):
            def once():
                train.fit(model, optimizer, fresh, (x, y), epochs=args.epochs, batch_size=args.batch_size,
                          steps_per_call=args.steps_per_call, progress=False, mesh=mesh)
            return lambda: timed(once) / args.epochs

        runs = {"no mesh": run(None)}
        runs.update({f"{n}": run(parallel.data_mesh(jax.devices()[:n])) for n in counts})
        for warm in runs.values():  # compile every program before timing
            warm()
        medians = interleaved_medians(runs, args.repetitions)
        for label, seconds in medians.items():
            print(f"| {name} | {label} | {seconds:.3f} | {args.examples / seconds:,.0f} | "
                  f"{medians['no mesh'] / seconds:.2f}× |")


if __name__ == "__main__":
    main()
