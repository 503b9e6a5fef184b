r"""Lesson ``regularization``: none, L2, dropout and early stopping on a deliberately small training set.

A 64-128-128-10 ReLU MLP has far more parameters than 100 training digits can pin down, so it
fits them perfectly and generalizes worse: the **generalization gap** is training accuracy minus
validation accuracy. Each regularizer narrows it in its own way:

- **L2**: the loss gains :math:`\frac\lambda2 \lVert\theta\rVert^2`, i.e. the gradient gains
  :math:`\lambda\theta` (``optim.add_decayed_weights`` before SGD), which shrinks the weights;
- **dropout**: each hidden unit is zeroed with probability :math:`p` during training (and the rest
  scaled by :math:`1/(1-p)`), so no unit can rely on another;
- **early stopping**: training stops once the validation loss has not improved for ``patience``
  epochs, and the weights of the best epoch are restored.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

import jaxnn
from jaxnn import data, optim, train
from jaxnn.lab.lessons.report import Report
from jaxnn.viz import new_figure

SETUPS = ("none", "L2", "dropout", "early stopping")
L2_STRENGTH = 3e-3
DROPOUT_RATE = 0.5
PATIENCE = 10


def small_digits(train_examples: int = 100, validation_examples: int = 300, *, seed: int = 0) -> dict:
    """The digits split into a small training set, a validation set and the usual test set."""
    digits = data.digits(seed=seed)
    end = train_examples + validation_examples
    return {"train": (digits.x_train[:train_examples], digits.y_train[:train_examples]),
            "validation": (digits.x_train[train_examples:end], digits.y_train[train_examples:end]),
            "test": (digits.x_test, digits.y_test), "input_shape": digits.input_shape}


def make_setup(setup: str):
    """``(model, optimizer, callbacks)`` for one of :data:`SETUPS`: SGD with momentum 0.9 throughout."""
    if setup not in SETUPS:
        raise ValueError(f"unknown regularization setup {setup!r}; the setups are: {', '.join(SETUPS)}")
    hidden = []
    for _ in range(2):
        hidden += [jaxnn.Dense(128), jaxnn.Relu()]
        if setup == "dropout":
            hidden.append(jaxnn.Dropout(DROPOUT_RATE))
    model = jaxnn.Sequential(hidden + [jaxnn.Dense(10)])
    sgd = optim.sgd(0.05, momentum=0.9)
    optimizer = optim.chain(optim.add_decayed_weights(L2_STRENGTH), sgd) if setup == "L2" else sgd
    callbacks = [train.EarlyStopping("val_loss", patience=PATIENCE)] if setup == "early stopping" else []
    return model, optimizer, callbacks


def weight_norm(params) -> float:
    r""":math:`\lVert W \rVert`: the L2 norm of all kernels (leaves with two or more axes), biases
    left out."""
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(leaf, np.float64)))
                             for leaf in jax.tree.leaves(params) if leaf.ndim >= 2)))


def train_setup(setup: str, splits: dict, epochs: int, *, seed: int = 0) -> dict:
    """Trains one setup; returns its history, train state, model and final train/validation/test metrics."""
    model, optimizer, callbacks = make_setup(setup)
    train_state = train.create_train_state(model, optimizer, jax.random.key(seed), splits["input_shape"])
    train_state, history = train.fit(model, optimizer, train_state, splits["train"], epochs=epochs,
                                     batch_size=25, validation_data=splits["validation"],
                                     callbacks=callbacks, progress=False)
    result = {"history": history, "train_state": train_state, "model": model}
    for split in ("train", "validation", "test"):
        result[split] = train.evaluate(model, train_state, splits[split])
    result["weight_norm"] = weight_norm(train_state.params)
    return result


def run(out: Path, *, quick: bool = False, log=print) -> Path:
    epochs = 30 if quick else 200
    splits = small_digits()
    results = {}
    for setup in SETUPS:
        log(f"training with {setup} for up to {epochs} epochs on {len(splits['train'][1])} digits")
        results[setup] = train_setup(setup, splits, epochs)

    report = Report(out, "Regularization on 100 training digits")
    report.text(f"A 64-128-128-10 ReLU MLP trained on only {len(splits['train'][1])} digits (SGD 0.05, "
                f"momentum 0.9, batches of 25, up to {epochs} epochs), validated on "
                f"{len(splits['validation'][1])} other training digits, tested on {len(splits['test'][1])}. "
                f"L2: λ = {L2_STRENGTH:g}; dropout: p = {DROPOUT_RATE:g} after each hidden layer; early "
                f"stopping: patience {PATIENCE} on the validation loss, best weights restored. Accuracies "
                f"are measured with train=False at the end.")
    rows = []
    for setup, result in results.items():
        gap = result["train"]["accuracy"] - result["validation"]["accuracy"]
        rows.append([setup, result["history"].epochs, result["train"]["loss"], result["validation"]["loss"],
                     result["train"]["accuracy"], result["validation"]["accuracy"], gap,
                     result["test"]["accuracy"], result["weight_norm"]])
    report.table(["setup", "epochs", "train loss", "validation loss", "train accuracy", "validation accuracy",
                  "gap (train − validation accuracy)", "test accuracy", "‖W‖"], rows)
    gaps = {row[0]: row[6] for row in rows}
    losses_gap = {setup: r["validation"]["loss"] - r["train"]["loss"] for setup, r in results.items()}
    narrowest = min(losses_gap, key=losses_gap.get)
    report.text(f"Without regularization the network fits its {len(splits['train'][1])} digits to a training "
                f"loss of {results['none']['train']['loss']:.2e} and a validation loss "
                f"{losses_gap['none']:.3f} higher (accuracy gap {gaps['none']:.3f}). L2 leaves the weights "
                f"with norm {results['L2']['weight_norm']:.3g} against {results['none']['weight_norm']:.3g} "
                f"without it. The smallest loss gap (validation − train), {losses_gap[narrowest]:.3f}, "
                f"is {narrowest}'s; early stopping ended after {results['early stopping']['history'].epochs} "
                f"epochs.")

    figure = new_figure(12, 6.5)
    axes = figure.subplots(2, len(SETUPS), sharey="row")
    for column, (setup, result) in enumerate(results.items()):
        history = result["history"]
        epochs_run = np.arange(1, history.epochs + 1)
        axes[0, column].semilogy(epochs_run, history["loss"], label="train")
        axes[0, column].semilogy(epochs_run, history["val_loss"], label="validation")
        axes[0, column].set(title=f"{setup}: loss", xlabel="epoch", ylabel="cross-entropy")
        axes[0, column].legend()
        axes[1, column].plot(epochs_run, history["accuracy"], label="train (train mode)")
        axes[1, column].plot(epochs_run, history["val_accuracy"], label="validation")
        axes[1, column].set(title=f"{setup}: accuracy", xlabel="epoch", ylabel="accuracy")
        axes[1, column].legend()
    figure.suptitle(f"Training and validation curves, {len(splits['train'][1])} training digits")
    report.figure(figure, "curves.png", "Training and validation curves per setup")

    figure = new_figure(6, 4)
    axis = figure.subplots()
    positions = np.arange(len(SETUPS))
    axis.bar(positions - 0.2, [gaps[s] for s in SETUPS], 0.4, label="accuracy gap")
    axis.bar(positions + 0.2, [losses_gap[s] for s in SETUPS], 0.4, label="loss gap")
    axis.set_xticks(positions, SETUPS)
    axis.set(title="Generalization gap (validation against train)", xlabel="setup", ylabel="gap")
    axis.legend()
    report.figure(figure, "gaps.png", "Generalization gap per setup")
    return report.write()
