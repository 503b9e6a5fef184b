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
import jaxnn.data


def main(argv: list[str] | None = None) -> float:
    """Trains the MLP and returns its test accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    try:
        digits = jaxnn.data.digits()
    except ImportError as error:
        raise SystemExit(f"this example needs scikit-learn: {error}") from None
    x_train, y_train, x_test, y_test = digits.x_train, digits.y_train, digits.x_test, digits.y_test
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
