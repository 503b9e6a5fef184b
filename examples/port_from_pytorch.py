"""Port a PyTorch model to jaxnn, check the port, and keep training it in jaxnn.

1. Build a small PyTorch CNN for scikit-learn's 8x8 digits and train it a few hundred steps.
2. Build the same network in jaxnn and port the weights with ``jaxnn.interop.from_torch``, which
   runs both models on a probe batch and prints, layer by layer, how far their outputs and
   gradients are apart (the ``Linear`` after ``Flatten`` has its rows reordered from PyTorch's
   channels-first flattening to jaxnn's channels-last one).
3. Check that both give the same test accuracy, then fine-tune in jaxnn with ``train.fit`` and
   write the weights back into the PyTorch module with ``to_torch``.

Run:  python examples/port_from_pytorch.py [--torch-steps 300 --epochs 5]
      (needs PyTorch and scikit-learn: pip install -e ".[torch,data]")
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import jaxnn
from jaxnn import data, optim, train
from jaxnn.interop import from_torch, to_torch


def torch_model():
    from torch import nn

    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 2 * 2, 10))


def jaxnn_model() -> jaxnn.Layer:
    return jaxnn.Sequential([jaxnn.Conv2D(8, 3, padding=1), jaxnn.Relu(), jaxnn.MaxPool2D(2),
                             jaxnn.Conv2D(16, 3, padding=1), jaxnn.Relu(), jaxnn.MaxPool2D(2),
                             jaxnn.Flatten(), jaxnn.Dense(10)])


def train_in_torch(module, x, y, steps: int, seed: int) -> None:
    import torch

    generator = np.random.default_rng(seed)
    images = torch.from_numpy(np.moveaxis(x, -1, 1).copy())   # NHWC -> NCHW
    labels = torch.from_numpy(y.astype(np.int64))
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    for _ in range(steps):
        batch = torch.from_numpy(generator.integers(0, len(x), 64))
        loss = torch.nn.functional.cross_entropy(module(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def torch_accuracy(module, x, y) -> float:
    import torch

    with torch.no_grad():
        logits = module.eval()(torch.from_numpy(np.moveaxis(x, -1, 1).copy()))
    return float((logits.argmax(-1).numpy() == y).mean())


def main(argv: list[str] | None = None) -> dict:
    """Trains, ports, checks and fine-tunes; returns the accuracies and the report."""
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-steps", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    # A model this small runs fastest on one thread; more only contend with XLA's.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)


def run(args) -> dict:
    """Trains in PyTorch, ports and checks, fine-tunes in jaxnn, and ports back."""
    digits = data.digits(image=True)  # (8, 8, 1) images, pixels in [0, 1]
    module = torch_model()
    train_in_torch(module, digits.x_train, digits.y_train, args.torch_steps, args.seed)

    model = jaxnn_model()
    params, state, report = from_torch(model, module, digits.input_shape)
    print(report)
    assert report.passed, "the port does not compute what the PyTorch model computes"

    optimizer = optim.adam(1e-3)
    ported = train.create_train_state(model, optimizer, jax.random.key(args.seed), digits.input_shape)
    ported = ported._replace(params=params, state=state, opt_state=optimizer.init(params))
    results = {"pytorch": torch_accuracy(module, digits.x_test, digits.y_test),
               "ported": train.evaluate(model, ported, (digits.x_test, digits.y_test))["accuracy"]}
    tuned, _ = train.fit(model, optimizer, ported, (digits.x_train, digits.y_train), epochs=args.epochs,
                         batch_size=64, progress=not args.no_progress)
    results["fine-tuned in jaxnn"] = train.evaluate(model, tuned, (digits.x_test, digits.y_test))["accuracy"]

    # Back to PyTorch: the fine-tuned weights load into the module and give jaxnn's accuracy.
    module.load_state_dict(to_torch(model, tuned.params, tuned.state, module, digits.input_shape))
    results["fine-tuned, back in pytorch"] = torch_accuracy(module, digits.x_test, digits.y_test)
    for name, accuracy in results.items():
        print(f"{name:28s} test accuracy {accuracy:.4f}")
    return {**results, "report": report}


if __name__ == "__main__":
    main()
