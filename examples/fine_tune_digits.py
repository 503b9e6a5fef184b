"""Transfer learning on scikit-learn's 8x8 digits: pre-train a CNN on 0-4, freeze its body, and
fine-tune a new head on 5-9.

1. Pre-train ``{"body": conv -> pool -> conv -> pool -> dense 64, "head": Dense(5)}`` on the
   digits 0-4.
2. Build the same body with a fresh ``Dense(5)`` head for the digits 5-9, copy the pre-trained
   body in, and train with ``multi_transform({"train": adam, "freeze": set_to_zero()},
   path_labels({"head/*": "train", "*": "freeze"}))``: only the head moves.
3. For comparison, train the same frozen-body recipe from a random (not pre-trained) body.

Features learnt on 0-4 serve 5-9 well: the fine-tuned head beats the head on a random body, and
the frozen body is bit for bit the pre-trained one.

Run:  python examples/fine_tune_digits.py [--epochs 15]   (needs scikit-learn: pip install -e ".[data]")
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import jaxnn
from jaxnn import data, optim, train


def make_model() -> jaxnn.Layer:
    body = jaxnn.Sequential([
        jaxnn.Conv2D(16, 3, padding="SAME"), jaxnn.Relu(), jaxnn.MaxPool2D(2),
        jaxnn.Conv2D(32, 3, padding="SAME"), jaxnn.Relu(), jaxnn.MaxPool2D(2),
        jaxnn.Flatten(), jaxnn.Dense(64), jaxnn.Relu(),
    ])
    return jaxnn.Sequential({"body": body, "head": jaxnn.Dense(5)})


def subset(x, y, low):
    """The examples of classes ``low .. low + 4``, labelled ``0 .. 4``."""
    keep = (y >= low) & (y < low + 5)
    return x[keep], (y[keep] - low).astype(np.int32)


def frozen_body_optimizer(lr: float) -> optim.GradientTransformation:
    labels = optim.path_labels({"head/*": "train", "*": "freeze"})
    return optim.multi_transform({"train": optim.adam(lr), "freeze": optim.set_to_zero()}, labels)


def main(argv: list[str] | None = None) -> dict:
    """Runs the three trainings; returns their test accuracies."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--head-lr", type=float, default=1e-2, help="learning rate of the new heads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    digits = data.digits(image=True)  # (8, 8, 1) images, pixels in [0, 1]
    first_train, first_test = subset(digits.x_train, digits.y_train, 0), subset(digits.x_test, digits.y_test, 0)
    second_train, second_test = subset(digits.x_train, digits.y_train, 5), subset(digits.x_test, digits.y_test, 5)
    model = make_model()
    fit = {"epochs": args.epochs, "batch_size": args.batch_size, "progress": not args.no_progress}

    # 1. Pre-train everything on 0-4.
    optimizer = optim.adam(args.lr)
    pre = train.create_train_state(model, optimizer, jax.random.key(args.seed), digits.input_shape)
    pre, _ = train.fit(model, optimizer, pre, first_train, **fit)
    results = {"pre-trained on 0-4": train.evaluate(model, pre, first_test)["accuracy"]}

    # 2. A new head for 5-9 on the pre-trained, frozen body; 3. the same on a random body.
    optimizer = frozen_body_optimizer(args.head_lr)
    for name, body in (("fine-tuned head on 5-9", pre.params["body"]), ("head on a random body, 5-9", None)):
        start = train.create_train_state(model, optimizer, jax.random.key(args.seed + 1), digits.input_shape)
        if body is not None:
            params = {**start.params, "body": body}
            start = start._replace(params=params, opt_state=optimizer.init(params))
        tuned, _ = train.fit(model, optimizer, start, second_train, **fit)
        frozen = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(start.params["body"]),
                                                           jax.tree.leaves(tuned.params["body"])))
        assert frozen, "the frozen body changed"
        results[name] = train.evaluate(model, tuned, second_test)["accuracy"]

    for name, accuracy in results.items():
        print(f"{name:28s} test accuracy {accuracy:.4f}")
    return results


if __name__ == "__main__":
    main()
