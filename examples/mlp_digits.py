"""Train an MLP on scikit-learn's bundled 8x8 handwritten digits with jax.grad and a hand-written update.

The whole training loop is visible here: a jaxnn model (plain dicts of arrays), a loss, its
gradient from ``jax.grad``, and the SGD-with-momentum update written out by hand::

    velocity <- momentum * velocity + grad
    params   <- params - lr * velocity

Run:  python examples/mlp_digits.py  (needs scikit-learn: pip install -e ".[data]")
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn


def load_digits_split(seed: int, test_fraction: float = 0.2):
    """Digits as float32 features scaled to [0, 1] and int32 labels, split into train and test."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit('this example needs scikit-learn: pip install -e ".[data]"') from None
    digits = load_digits()
    features = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(labels))
    test_size = int(len(labels) * test_fraction)
    test, train = order[:test_size], order[test_size:]
    return features[train], labels[train], features[test], labels[test]


def main(argv: list[str] | None = None) -> float:
    """Trains the MLP and returns its test accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    x_train, y_train, x_test, y_test = load_digits_split(args.seed)
    model = jaxnn.Sequential([jaxnn.Dense(128), jaxnn.Relu(), jaxnn.Dense(128), jaxnn.Relu(), jaxnn.Dense(10)])
    key, init_key = jax.random.split(jax.random.key(args.seed))
    _, params, state = model.init(init_key, (64,))
    velocity = jax.tree.map(jnp.zeros_like, params)
    print(jaxnn.summary(model, (64,)))

    def loss_fn(params, x, y):
        logits, _ = model.apply(params, state, x)
        return jaxnn.losses.cross_entropy(logits, y)

    @jax.jit
    def train_step(params, velocity, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        velocity = jax.tree.map(lambda v, g: args.momentum * v + g, velocity, grads)
        params = jax.tree.map(lambda p, v: p - args.lr * v, params, velocity)
        return params, velocity, loss

    @jax.jit
    def predict(params, x):
        return model.apply(params, state, x)[0]

    start = time.perf_counter()
    steps_per_epoch = len(x_train) // args.batch_size
    for epoch in range(1, args.epochs + 1):
        key, shuffle_key = jax.random.split(key)
        order = np.asarray(jax.random.permutation(shuffle_key, len(x_train)))
        for step in range(steps_per_epoch):
            batch = order[step * args.batch_size:(step + 1) * args.batch_size]
            params, velocity, loss = train_step(params, velocity, x_train[batch], y_train[batch])
        if epoch % 10 == 0 or epoch == args.epochs:
            accuracy = jaxnn.metrics.accuracy(predict(params, x_test), y_test)
            print(f"epoch {epoch:3d}  train loss {float(loss):.4f}  test accuracy {float(accuracy):.4f}")
    accuracy = float(jaxnn.metrics.accuracy(predict(params, x_test), y_test))
    print(f"test accuracy: {accuracy:.4f} ({time.perf_counter() - start:.1f} s)")
    return accuracy


if __name__ == "__main__":
    main()
