"""A LeNet-style CNN on scikit-learn's 8x8 handwritten digits, trained with ``jaxnn.train.fit``.

Two ``Conv2D 3x3 -> ReLU -> MaxPool 2x2`` blocks (32 and 64 channels, "SAME" padding), then
``Dense 128 -> ReLU -> Dense 10``; Adam, cross-entropy, 10% of the training set for validation.

Run:  python examples/digits_cnn.py [--epochs 20]   (needs scikit-learn: pip install -e ".[data]")
"""

from __future__ import annotations

import argparse

import jax

from jaxnn import data, optim, train
from jaxnn.models import cnn


def main(argv: list[str] | None = None) -> float:
    """Trains the CNN and returns its test accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    digits = data.digits(image=True)  # (8, 8, 1) images, pixels in [0, 1]
    x_train, y_train, x_val, y_val = data.train_val_split(digits.x_train, digits.y_train, 0.1, seed=args.seed)
    model = cnn(digits.num_classes, digits.input_shape)
    optimizer = optim.adam(args.lr)
    train_state = train.create_train_state(model, optimizer, jax.random.key(args.seed), digits.input_shape)
    train_state, history = train.fit(model, optimizer, train_state, (x_train, y_train), epochs=args.epochs,
                                     batch_size=args.batch_size, validation_data=(x_val, y_val),
                                     callbacks=[train.EarlyStopping("val_loss", patience=5)],
                                     progress=not args.no_progress)
    test = train.evaluate(model, train_state, (digits.x_test, digits.y_test))
    print(f"digits CNN: test accuracy {test['accuracy']:.4f}, test loss {test['loss']:.4f} "
          f"after {history.epochs} epochs")
    return test["accuracy"]


if __name__ == "__main__":
    main()
