"""Training-step speed of jaxnn models against the same models in PyTorch (eager), one process.

Each case builds a jitted jaxnn train step (gradient and Adam update) and the PyTorch eager step of
the same architecture, warms both up, then times them in interleaved repetitions, so that both see
the same machine load, and prints the median milliseconds per step, samples per second and the
speed ratio (jaxnn's speed over PyTorch's: above 1 means jaxnn is faster) as a markdown table.

Run with an environment that has PyTorch (an optional benchmark extra, imported only here):

    python bench/layers_vs_pytorch.py [case ...] [--repeats 15] [--steps 5]

On a machine shared with other work, PyTorch's OpenMP threads slow down far more than XLA's when
the cores are oversubscribed, which flatters jaxnn; the load average is printed for that reason.
Pinning the process to one core (``taskset -c 0 python bench/layers_vs_pytorch.py``) runs both
single-threaded, a comparison much less sensitive to other load.

To add a model, add an entry to ``CASES``: a jaxnn step builder and a PyTorch step builder, each
``build(batch) -> step`` where ``step()`` runs one training step and waits for its result.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

import jaxnn
from jaxnn import losses
from jaxnn.core import Sequential
from jaxnn.layers.conv import Conv2D
from jaxnn.layers.dense import Dense, Flatten
from jaxnn.layers.pooling import MaxPool2D
from jaxnn.layers.recurrent import GRU, LSTM

LEARNING_RATE = 1e-3


def adam(learning_rate: float):
    """The optimizer of the jaxnn steps: ``(optimizer, apply_updates, name)``."""
    from jaxnn import optim

    return optim.adam(learning_rate), optim.apply_updates, "jaxnn.optim.adam"


def jaxnn_classifier_step(model, input_shape: tuple[int, ...], num_classes: int, batch: int,
                          integer_input: bool = False) -> Callable[[], None]:
    """A jitted, donated train step for ``model`` under softmax cross-entropy, and its data."""
    optimizer, apply_updates, _ = adam(LEARNING_RATE)
    key, data_key, label_key = jax.random.split(jax.random.key(0), 3)
    _, params, state = model.init(key, input_shape)
    opt_state = optimizer.init(params)
    if integer_input:
        x = jax.random.randint(data_key, (batch,) + input_shape, 0, num_classes)
    else:
        x = jax.random.normal(data_key, (batch,) + input_shape)
    labels = jax.random.randint(label_key, (batch,), 0, num_classes)

    def loss_fn(params, state, x, labels):
        logits, state = model.apply(params, state, x, train=True)
        return losses.cross_entropy(logits, labels), state

    def train_step(params, state, opt_state, x, labels):
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, x, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return apply_updates(params, updates), state, opt_state, loss

    train_step = jax.jit(train_step, donate_argnums=(0, 1, 2))
    carry = {"params": params, "state": state, "opt_state": opt_state}

    def step():
        carry["params"], carry["state"], carry["opt_state"], loss = train_step(
            carry["params"], carry["state"], carry["opt_state"], x, labels)
        loss.block_until_ready()

    return step


def torch_classifier_step(model, input_shape: tuple[int, ...], num_classes: int, batch: int,
                          integer_input: bool = False) -> Callable[[], None]:
    """A PyTorch eager train step for ``model`` (Adam, cross-entropy), and its data."""
    import torch

    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    if integer_input:
        x = torch.randint(0, num_classes, (batch,) + input_shape)
    else:
        x = torch.randn((batch,) + input_shape)
    labels = torch.randint(0, num_classes, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), labels)
        loss.backward()
        optimizer.step()

    return step


# --------------------------------------------------------------------------------------------
# Cases.


def lenet_jaxnn(batch: int):
    model = Sequential([
        Conv2D(32, 3), jaxnn.layers.Relu(), MaxPool2D(2),
        Conv2D(64, 3), jaxnn.layers.Relu(), MaxPool2D(2),
        Flatten(), Dense(128), jaxnn.layers.Relu(), Dense(10),
    ])
    return jaxnn_classifier_step(model, (28, 28, 1), 10, batch)


def lenet_torch(batch: int):
    from torch import nn

    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10),
    )
    return torch_classifier_step(model, (1, 28, 28), 10, batch)


def recurrent_jaxnn(cell):
    def build(batch: int):
        model = Sequential([cell(128), Dense(10)])
        return jaxnn_classifier_step(model, (40, 32), 10, batch)

    return build


def recurrent_torch(kind: str):
    def build(batch: int):
        from torch import nn

        class LastHidden(nn.Module):
            """PyTorch's recurrent layer, its last hidden state h_n, then a linear classifier."""

            def __init__(self):
                super().__init__()
                self.recurrent = {"lstm": nn.LSTM, "gru": nn.GRU}[kind](32, 128, batch_first=True)
                self.head = nn.Linear(128, 10)

            def forward(self, x):
                _, hidden = self.recurrent(x)
                return self.head((hidden[0] if kind == "lstm" else hidden)[-1])

        return torch_classifier_step(LastHidden(), (40, 32), 10, batch)

    return build


class Case(NamedTuple):
    description: str
    batch: int
    jaxnn: Callable[[int], Callable[[], None]]
    torch: Callable[[int], Callable[[], None]]


CASES: dict[str, Case] = {
    "lenet": Case(
        "LeNet-style CNN: Conv 3x3 32, ReLU, MaxPool 2, Conv 3x3 64, ReLU, MaxPool 2, Dense 128, "
        "ReLU, Dense 10 on 28x28x1",
        128, lenet_jaxnn, lenet_torch,
    ),
    "lstm": Case("LSTM(128) over T=40 steps of 32 features, last hidden state, Dense 10", 64,
                 recurrent_jaxnn(LSTM), recurrent_torch("lstm")),
    "gru": Case("GRU(128) over T=40 steps of 32 features, last hidden state, Dense 10", 64,
                recurrent_jaxnn(GRU), recurrent_torch("gru")),
}


# --------------------------------------------------------------------------------------------
# Timing.


def time_interleaved(steps: dict[str, Callable[[], None]], repeats: int, steps_per_repeat: int,
                     warmup: int) -> dict[str, list[float]]:
    """Seconds per step of each function, over ``repeats`` rounds that run each in turn."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(steps_per_repeat):
                step()
            times[name].append((time.perf_counter() - start) / steps_per_repeat)
    return times


def machine() -> str:
    import torch

    processor = platform.processor() or platform.machine()
    model_name = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model_name = next((line.split(":", 1)[1].strip() for line in cpuinfo
                               if line.startswith("model name")), "")
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{platform.platform()}; {model_name or processor}; {os.cpu_count()} CPUs, {usable} usable "
            f"by this process (torch uses {torch.get_num_threads()} threads); load average before the run "
            f"{os.getloadavg()[0]:.2f}; python {platform.python_version()}, jax {jax.__version__} "
            f"({jax.default_backend()}), torch {torch.__version__}, numpy {np.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", metavar="case",
                        help=f"cases to run (default: all of {', '.join(CASES)})")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved timing rounds")
    parser.add_argument("--steps", type=int, default=5, help="steps per round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    args = parser.parse_args()

    unknown = [name for name in args.cases if name not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    header = machine()
    rows = []
    for name in args.cases or list(CASES):
        case = CASES[name]
        times = time_interleaved({"jaxnn": case.jaxnn(case.batch), "torch": case.torch(case.batch)},
                                 args.repeats, args.steps, args.warmup)
        jaxnn_ms = statistics.median(times["jaxnn"]) * 1e3
        torch_ms = statistics.median(times["torch"]) * 1e3
        rows.append((name, case, jaxnn_ms, torch_ms))

    print(f"Machine: {header}\n")
    print(f"jaxnn steps use {adam(LEARNING_RATE)[2]}; PyTorch steps torch.optim.Adam.\n")
    print(f"Median over {args.repeats} interleaved rounds of {args.steps} steps each.\n")
    print("| case | batch | jaxnn ms/step | PyTorch ms/step | jaxnn samples/s | PyTorch samples/s "
          "| speed jaxnn/PyTorch |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, case, jaxnn_ms, torch_ms in rows:
        print(f"| {name} | {case.batch} | {jaxnn_ms:.1f} | {torch_ms:.1f} | "
              f"{case.batch / jaxnn_ms * 1e3:,.0f} | {case.batch / torch_ms * 1e3:,.0f} | "
              f"{torch_ms / jaxnn_ms:.2f}x |")
    print()
    for name, case, _, _ in rows:
        print(f"- {name}: {case.description}")


if __name__ == "__main__":
    main()
