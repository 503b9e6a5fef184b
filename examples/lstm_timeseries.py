"""An LSTM forecasts the next value of a noisy synthetic series from the 40 values before it.

The series is a sum of two sines of incommensurate periods plus Gaussian noise of standard
deviation ``sigma``: no model can beat an RMSE of ``sigma`` on the next value, and repeating the
last value (the naive forecast) does much worse. The LSTM reads windows of 40 values (``(40, 1)``
sequences) and a ``Dense(1)`` head predicts the next one, trained with the mean squared error.
The last 20% of the series is the test set, so the model is judged on a future it never saw.

Run:  python examples/lstm_timeseries.py [--epochs 20]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import jaxnn
from jaxnn import optim, train
from jaxnn.layers import LSTM, Dense

WINDOW = 40


def make_series(length: int, sigma: float, seed: int) -> np.ndarray:
    t = np.arange(length, dtype=np.float64)
    clean = np.sin(2 * np.pi * t / 50) + 0.5 * np.sin(2 * np.pi * t / 17.3)
    return (clean + sigma * np.random.default_rng(seed).normal(size=length)).astype(np.float32)


def windows(series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    index = np.arange(WINDOW)[None, :] + np.arange(len(series) - WINDOW)[:, None]
    return series[index][..., None], series[WINDOW:][:, None]


def main(argv: list[str] | None = None) -> float:
    """Trains the LSTM and returns its test RMSE."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--length", type=int, default=6000)
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    series = make_series(args.length, args.sigma, args.seed)
    split = int(0.8 * len(series))
    x_train, y_train = windows(series[:split])
    x_test, y_test = windows(series[split - WINDOW:])
    model = jaxnn.Sequential([LSTM(64), Dense(1)])
    optimizer = optim.adam(3e-3)
    state = train.create_train_state(model, optimizer, jax.random.key(args.seed), (WINDOW, 1))
    state, _ = train.fit(model, optimizer, state, (x_train, y_train), epochs=args.epochs, batch_size=64,
                         loss="mse", steps_per_call=8, progress=not args.no_progress)
    rmse = float(np.sqrt(train.evaluate(model, state, (x_test, y_test), loss="mse")["loss"]))
    naive = float(np.sqrt(np.mean((x_test[:, -1, 0] - y_test[:, 0]) ** 2)))
    print(f"next-value forecast: test RMSE {rmse:.4f} (noise floor {args.sigma:.4f}, "
          f"repeating the last value {naive:.4f})")
    return rmse


if __name__ == "__main__":
    main()
