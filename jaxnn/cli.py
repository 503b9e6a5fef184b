"""The ``jaxnn`` command: ``train`` a classic network on a bundled dataset, ``evaluate`` a run,
``summary``, ``sweep`` hyperparameters, seeds and folds in one compiled program.

    jaxnn train                                  # an MLP on scikit-learn's digits, >= 97% test accuracy
    jaxnn train --dataset mnist1d --model cnn --epochs 30 --out runs/m1d-cnn
    jaxnn train --out runs/m1d-cnn --epochs 50 --resume
    jaxnn evaluate runs/m1d-cnn                  # or runs/m1d-cnn/checkpoint.npz
    jaxnn summary --model cnn --dataset digits
    jaxnn sweep --lr 1e-3,3e-3,1e-2 --seeds 3 --folds 5 --epochs 20 --out runs/sweep
    jaxnn train --devices all                    # data parallel over every device
    jaxnn launch --processes 2 --devices-per-process 2 -- jaxnn train --devices all

A run folder holds ``checkpoint.npz`` (the whole train state, pickle-free), ``config.json``,
``history.json``, ``metrics.json`` (final ``test_accuracy`` and ``test_loss``) and PNG plots.
Ctrl-C stops training with the last checkpoint kept, prints the command that resumes the run,
and exits with status 130.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

import jaxnn
from jaxnn import data as data_module
from jaxnn import launch, optim, parallel
from jaxnn._files import write_json
from jaxnn.models import LAYOUT_SHAPES, MODELS
from jaxnn.train import (
    Callback,
    Checkpoint,
    History,
    LearningRateLogger,
    NonFiniteLossError,
    ProgressBar,
    create_train_state,
    evaluate,
    fit,
    read_metadata,
    restore_checkpoint,
)

DATASET_CHOICES = ("digits", "mnist1d", "moons", "spirals", "idx:PATH")
OPTIMIZERS = {
    "sgd": lambda lr: optim.sgd(lr),
    "momentum": lambda lr: optim.sgd(lr, momentum=0.9),
    "adam": lambda lr: optim.adam(lr),
    "adamw": lambda lr: optim.adamw(lr, weight_decay=1e-4),
}
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "adam": 1e-3, "adamw": 1e-3}
# The optimizers of OPTIMIZERS for `jaxnn sweep`, as functions of the hyperparameters it sweeps.
# --weight-decay is AdamW's decoupled decay, and for the others the L2 penalty ("l2"), as
# PyTorch's weight_decay is.
SWEEP_OPTIMIZERS = {
    "sgd": lambda learning_rate, momentum=0.0: optim.sgd(learning_rate, momentum=momentum),
    "momentum": lambda learning_rate, momentum=0.9: optim.sgd(learning_rate, momentum=momentum),
    "adam": lambda learning_rate: optim.adam(learning_rate),
    "adamw": lambda learning_rate, weight_decay=1e-4: optim.adamw(learning_rate, weight_decay=weight_decay),
}
SWEEP_TABLE, SWEEP_SUMMARY = "table.csv", "summary.json"
# Settings that define a run; --resume takes them from the run folder. Their flags default to
# None, so that --resume can tell the flags given from the ones left out; a new run fills in
# these defaults (and --lr's from DEFAULT_LR).
RUN_SETTINGS = ("dataset", "model", "batch_size", "optimizer", "lr", "seed", "val_fraction")
DEFAULTS = {"dataset": "digits", "model": "mlp", "batch_size": 64, "optimizer": "adam", "seed": 0,
            "val_fraction": 0.1}
MAX_SEED = 2**63 - 1  # jax.random.key takes a signed 64-bit seed
CHECKPOINT, CONFIG, HISTORY, METRICS = "checkpoint.npz", "config.json", "history.json", "metrics.json"


class CommandError(Exception):
    """A user mistake on the command line: printed as one line, exit status 2."""


# --------------------------------------------------------------------------------------------
# Data and models.


def load_dataset(spec: str, model: str) -> data_module.Dataset:
    """The dataset named by ``spec``, its examples shaped as ``model`` needs them."""
    if spec.startswith("idx:"):
        directory = spec[len("idx:"):]
        if not directory:
            raise CommandError("--dataset idx:PATH needs a directory holding the four MNIST-format files")
        dataset = data_module.idx_dataset(directory)
    elif spec in ("digits", "mnist1d", "moons", "spirals"):
        dataset = data_module.load(spec)
    else:
        raise CommandError(f"unknown dataset {spec!r}; choose from {', '.join(DATASET_CHOICES)}")
    layout = MODELS[model][1]
    shape = LAYOUT_SHAPES[layout](dataset.input_shape)
    if shape is None:
        raise CommandError(f"--model {model} needs {layout} data, and {dataset.name} examples of shape "
                           f"{dataset.input_shape} have none; use --model mlp")
    return dataset.with_input_shape(shape)


def build(config: dict[str, Any], dataset: data_module.Dataset):
    model = MODELS[config["model"]][0](dataset.num_classes, dataset.input_shape)
    optimizer = OPTIMIZERS[config["optimizer"]](config["lr"])
    return model, optimizer


def split(dataset: data_module.Dataset, config: dict[str, Any]):
    """Train and validation parts of the training set; the test set is kept for the end."""
    if config["val_fraction"] == 0:
        return (dataset.x_train, dataset.y_train), None
    x_train, y_train, x_val, y_val = data_module.train_val_split(
        dataset.x_train, dataset.y_train, config["val_fraction"], seed=config["seed"])
    return (x_train, y_train), (x_val, y_val)


def training_mesh(devices: str | None):
    """The mesh ``--devices`` asks for: ``None`` (one device), ``"all"``, or the first N devices.

    Under several processes (``jaxnn launch``, a cluster) the mesh always spans every device of
    every process, so ``--devices`` must then be ``all`` (its default there).
    """
    distributed = jax.process_count() > 1
    if devices is None:
        return parallel.data_mesh() if distributed else None
    available = jax.devices()
    if devices == "all":
        return parallel.data_mesh(available)
    try:
        count = int(devices)
    except ValueError:
        raise CommandError(f"--devices must be 'all' or a number of devices, got {devices!r}") from None
    if not 1 <= count <= len(available):
        raise CommandError(f"--devices {count}: this machine has {len(available)} device(s): "
                           f"{', '.join(str(device) for device in available)}")
    if distributed and count != len(available):
        raise CommandError(f"--devices {count}: under {jax.process_count()} processes training uses every "
                           f"device of every process; pass --devices all")
    return parallel.data_mesh(available[:count])


# --------------------------------------------------------------------------------------------
# Run settings and resuming.


def run_folder(args: argparse.Namespace) -> str:
    """``--out``, or ``runs/DATASET-MODEL``."""
    dataset, model = args.dataset or DEFAULTS["dataset"], args.model or DEFAULTS["model"]
    return args.out or os.path.join("runs", f"{dataset.replace(':', '-').replace(os.sep, '_')}-{model}")


def check_out(out: str) -> None:
    """Refuses an ``--out`` that is a file, lies under a file, or cannot be written, before any
    training: otherwise the first epoch's checkpoint would fail."""
    path = os.path.abspath(out)
    while not os.path.lexists(path):  # the nearest part of the path that exists
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        where = "is a file" if path == os.path.abspath(out) else f"lies under the file {path}"
        raise CommandError(f"--out {out} {where}; the run folder must be a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise CommandError(f"--out {out}: cannot write in the folder {path} (permission denied)")


def saved_settings(checkpoint_path: str) -> tuple[dict[str, Any], dict]:
    """The run settings (``RUN_SETTINGS``) and the whole metadata of a checkpoint of ``jaxnn train``."""
    metadata = read_metadata(checkpoint_path)
    config = metadata.get("config")
    if not isinstance(config, dict) or set(config) != set(RUN_SETTINGS):
        raise CommandError(f"{checkpoint_path} was not written by `jaxnn train` "
                           "(no run settings in its metadata)")
    return config, metadata


def flag(name: str) -> str:
    """The flag of a setting: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def run_settings(args: argparse.Namespace, out: str) -> dict[str, Any]:
    """The settings of the run in ``out``: the command line's for a new run, the checkpoint's with
    ``--resume``. Refuses to start a new run where one exists, a resumed run whose flags differ
    from its saved settings, and values out of range."""
    check_out(out)
    checkpoint_path = os.path.join(out, CHECKPOINT)
    if args.resume:
        if not os.path.exists(checkpoint_path):
            raise CommandError(f"--resume: no checkpoint at {checkpoint_path}; train without --resume first")
        config, _ = saved_settings(checkpoint_path)
        conflicts = [f"{flag(name)} {getattr(args, name)} (saved: {config[name]})" for name in RUN_SETTINGS
                     if getattr(args, name) is not None and getattr(args, name) != config[name]]
        if conflicts:
            raise CommandError(f"--resume continues {out} with its saved settings, and these flags differ: "
                               f"{', '.join(conflicts)}; leave them out, or start a new run in another --out")
    elif os.path.exists(checkpoint_path):
        raise CommandError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    else:
        config = {name: DEFAULTS.get(name) if getattr(args, name) is None else getattr(args, name)
                  for name in RUN_SETTINGS}
        if config["lr"] is None:
            config["lr"] = DEFAULT_LR[config["optimizer"]]
        check_settings(config)
    for name in ("epochs", "steps_per_call"):
        if getattr(args, name) < 1:
            raise CommandError(f"{flag(name)} must be at least 1, got {getattr(args, name)}")
    return config


def check_settings(config: dict[str, Any]) -> None:
    """Refuses the settings of a new run that are out of range (the counts, the learning rate,
    the validation fraction, the seed), so that nothing fails once training has started."""
    if config["batch_size"] < 1:
        raise CommandError(f"--batch-size must be at least 1, got {config['batch_size']}")
    if not (math.isfinite(config["lr"]) and config["lr"] > 0):
        raise CommandError(f"--lr must be a positive finite number, got {config['lr']}")
    if not 0 <= config["val_fraction"] < 1:  # NaN included
        raise CommandError(f"--val-fraction must be at least 0 and below 1, got {config['val_fraction']}")
    if not 0 <= config["seed"] <= MAX_SEED:
        raise CommandError(f"--seed must be from 0 to 2**63 - 1, got {config['seed']}")


def restore_run(out: str, template) -> tuple[Any, History, int]:
    """The train state, history and count of finished epochs of the run in ``out``.

    The history is cut to the checkpoint's epochs: it is written first, so after a crash between
    the two writes it is one epoch ahead.
    """
    train_state, metadata = restore_checkpoint(os.path.join(out, CHECKPOINT), template)
    epochs_done = int(metadata["epoch"])
    history = History()
    if os.path.exists(os.path.join(out, HISTORY)):
        history = History.load(os.path.join(out, HISTORY))
        history.truncate(epochs_done)
    return train_state, history, epochs_done


# --------------------------------------------------------------------------------------------
# Ctrl-C.


class CtrlC(Callback):
    """While a command runs: the first Ctrl-C (SIGINT) raises KeyboardInterrupt, as Python's
    default handler does, and ``main`` turns it into one line and exit status 130; a second one
    ends the process at once.

    Raised while Python runs a garbage-collector callback or a finalizer (JAX has some), the
    KeyboardInterrupt is dropped with an "Exception ignored" traceback and training would go on:
    as a callback of ``fit``, this raises it again at the next call of the training steps, and
    the dropped one goes unprinted. A SIGINT that the parent process ignores stays ignored (a
    job in the background).
    """

    def __init__(self):
        self.received = False
        self.installed = False
        self.saved_handler = self.saved_hook = None

    def __enter__(self):
        self.received = False
        self.installed = (threading.current_thread() is threading.main_thread()
                          and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN)
        if self.installed:
            self.saved_handler = signal.signal(signal.SIGINT, self._interrupt)
            self.saved_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, *exception):
        if self.installed:
            signal.signal(signal.SIGINT, self.saved_handler)
            sys.unraisablehook = self.saved_hook
            self.installed = False

    def _interrupt(self, signum, frame):
        if self.received:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        self.received = True
        raise KeyboardInterrupt

    def _unraisable(self, unraisable):
        if not (self.received and issubclass(unraisable.exc_type, KeyboardInterrupt)):
            self.saved_hook(unraisable)

    def _raise_if_dropped(self):
        if self.received:
            raise KeyboardInterrupt

    def on_train_begin(self, train_state):
        self._raise_if_dropped()

    def on_epoch_begin(self, epoch):
        self._raise_if_dropped()

    def on_steps_end(self, examples, totals):
        self._raise_if_dropped()


CTRL_C = CtrlC()


def interrupted(args: argparse.Namespace) -> int:
    """After Ctrl-C: one line on stderr (for ``train``, the command that resumes the run); 130."""
    if args.command != "train":
        print(f"jaxnn {args.command}: interrupted", file=sys.stderr)
        return 130
    if jax.distributed.is_initialized() and not parallel.is_main_process():
        return 130  # process 0 prints for all
    out = run_folder(args)
    try:
        epoch = read_metadata(os.path.join(out, CHECKPOINT))["epoch"]
    except (OSError, ValueError, KeyError):
        print(f"jaxnn train: interrupted before the first checkpoint; nothing to resume in {out}",
              file=sys.stderr)
        return 130
    print(f"jaxnn train: interrupted; {out} keeps the checkpoint of epoch {epoch}; resume with: "
          f"jaxnn train --out {shlex.quote(out)} --resume --epochs {args.epochs}", file=sys.stderr)
    return 130


# --------------------------------------------------------------------------------------------
# The run: training, test metrics, outputs.


class _SaveHistory(Callback):
    """Write ``history.json`` after each epoch, just before the checkpoint (process 0 only)."""

    def __init__(self, history: History, path: str):
        self.history, self.path = history, path

    def on_epoch_end(self, epoch, logs, train_state):
        if parallel.is_main_process():
            snapshot = History(self.history.to_dict())
            snapshot.append(logs)
            snapshot.save(self.path)


def fit_run(args: argparse.Namespace, out: str, config: dict[str, Any], model, optimizer, train_state,
            history: History, epochs_done: int, dataset: data_module.Dataset, mesh=None):
    """Train up to ``--epochs``, saving the history and checkpoint after each epoch.

    Returns ``(train_state, history, seconds of training)``.
    """
    train_data, validation_data = split(dataset, config)
    if not args.quiet:
        print(f"training {config['model']} on {dataset.name}: {len(train_data[0])} train, "
              f"{0 if validation_data is None else len(validation_data[0])} validation, "
              f"{len(dataset.x_test)} test examples; {jaxnn.core.count_parameters(train_state.params)[0]:,} "
              f"parameters; run folder {out}"
              + ("" if mesh is None else f"; {mesh.devices.size} devices, {jax.process_count()} process(es)"),
              file=sys.stderr)
    # The history is written before the checkpoint: after a crash between the two it is at most
    # one epoch ahead, and --resume truncates it to the checkpoint's epoch.
    callbacks = [CTRL_C, LearningRateLogger(config["lr"]),
                 _SaveHistory(history, os.path.join(out, HISTORY)),
                 Checkpoint(os.path.join(out, CHECKPOINT),
                            metadata={"config": config, "description": str(model.name)})]
    if not args.quiet:
        # Last, to show what the others add (lr). Without a terminal (a log file, a pipe) the
        # bar is left out and each epoch is one line; --no-progress leaves it out everywhere.
        callbacks.append(ProgressBar(args.epochs, len(train_data[0]),
                                     bar=False if args.no_progress else None))
    started = time.perf_counter()
    try:
        train_state, history = fit(model, optimizer, train_state, train_data, epochs=args.epochs,
                                   batch_size=config["batch_size"], validation_data=validation_data,
                                   steps_per_call=args.steps_per_call, callbacks=callbacks, progress=False,
                                   initial_epoch=epochs_done, history=history, mesh=mesh)
    except NonFiniteLossError as error:
        raise CommandError(f"{error} The run folder {out} keeps the last good checkpoint.") from None
    return train_state, history, time.perf_counter() - started


def _test_metrics(model, train_state, dataset, mesh=None) -> tuple[dict[str, float], np.ndarray]:
    """Test loss and accuracy, and the confusion matrix, from one pass over the test set."""
    results, logits = evaluate(model, train_state, (dataset.x_test, dataset.y_test), return_outputs=True,
                               mesh=mesh)
    confusion = np.asarray(jaxnn.metrics.confusion_matrix(jax.numpy.argmax(logits, -1), dataset.y_test,
                                                          dataset.num_classes))
    return {"test_loss": results["loss"], "test_accuracy": results["accuracy"]}, confusion


def _plots(out: str, history: History, confusion: np.ndarray, quiet: bool, title: str) -> list[str]:
    try:
        from jaxnn import viz
        written = []
        for metric in ("loss", "accuracy"):
            if metric in history:
                path = os.path.join(out, f"{metric}.png")
                viz.plot_history(history, path, metrics=[metric], title=title)
                written.append(path)
        path = os.path.join(out, "confusion_matrix.png")
        viz.plot_confusion_matrix(confusion, path, title=title)
        return written + [path]
    except ImportError as error:
        if not quiet:
            print(f"plots skipped: {error}", file=sys.stderr)
        return []


def write_results(args: argparse.Namespace, out: str, model, train_state, history: History,
                  dataset: data_module.Dataset, seconds: float, mesh=None, *, title: str = "") -> dict[str, Any]:
    """Write ``history.json``, ``metrics.json`` and the plots (process 0); returns the metrics."""
    metrics, confusion = _test_metrics(model, train_state, dataset, mesh)
    metrics.update({"epochs": history.epochs, "steps": int(train_state.step), "train_seconds": seconds,
                    "parameters": jaxnn.core.count_parameters(train_state.params)[0]})
    if not parallel.is_main_process():
        return metrics
    history.save(os.path.join(out, HISTORY))
    write_json(os.path.join(out, METRICS), metrics, sort_keys=True)
    plots = _plots(out, history, confusion, args.quiet, title)
    if not args.quiet:
        print(f"test accuracy {metrics['test_accuracy']:.4f}  test loss {metrics['test_loss']:.4f}  "
              f"({seconds:.1f} s of training; {out}: {', '.join([CHECKPOINT, HISTORY, METRICS] + [os.path.basename(p) for p in plots])})")
    return metrics


# --------------------------------------------------------------------------------------------
# Commands.


def train(args: argparse.Namespace) -> dict[str, Any]:
    if os.environ.get(parallel.COORDINATOR_VARIABLE) and not jax.distributed.is_initialized():
        parallel.initialize()  # started by `jaxnn launch`: join the other processes first
    if not parallel.is_main_process():
        args.quiet = True  # one process prints
    mesh = training_mesh(args.devices)
    out = run_folder(args)
    config = run_settings(args, out)
    if mesh is not None and config["batch_size"] % mesh.devices.size:
        raise CommandError(f"--batch-size {config['batch_size']} is the global batch and must be divisible by "
                           f"the number of devices ({mesh.devices.size})")
    # Every process has checked the run folder before process 0 writes to it.
    parallel.sync("jaxnn.train.settings")
    dataset = load_dataset(config["dataset"], config["model"])
    model, optimizer = build(config, dataset)
    train_state = create_train_state(model, optimizer, jax.random.key(config["seed"]), dataset.input_shape)
    history, epochs_done = History(), 0
    if args.resume:
        train_state, history, epochs_done = restore_run(out, train_state)
        if epochs_done >= args.epochs and not args.quiet:
            print(f"{out} has already trained {epochs_done} epochs (--epochs {args.epochs})", file=sys.stderr)
    if parallel.is_main_process():
        write_json(os.path.join(out, CONFIG), {**config, "epochs": args.epochs}, sort_keys=True)
    train_state, history, seconds = fit_run(args, out, config, model, optimizer, train_state, history,
                                            epochs_done, dataset, mesh)
    return write_results(args, out, model, train_state, history, dataset, seconds, mesh,
                         title=f"{config['model']} on {dataset.name}, {config['optimizer']} lr {config['lr']:g}")


def evaluate_run(args: argparse.Namespace) -> dict[str, Any]:
    checkpoint_path = args.run_dir if os.path.isfile(args.run_dir) else os.path.join(args.run_dir, CHECKPOINT)
    if not os.path.exists(checkpoint_path):
        raise CommandError(f"no checkpoint at {checkpoint_path}; is {args.run_dir} a run folder of `jaxnn train`?")
    config, metadata = saved_settings(checkpoint_path)
    dataset = load_dataset(config["dataset"], config["model"])
    model, optimizer = build(config, dataset)
    template = create_train_state(model, optimizer, jax.random.key(0), dataset.input_shape)
    train_state, _ = restore_checkpoint(checkpoint_path, template)
    metrics, _ = _test_metrics(model, train_state, dataset)
    print(f"{config['model']} on {dataset.name}, epoch {metadata.get('epoch')}, step {metadata.get('step')}: "
          f"test accuracy {metrics['test_accuracy']:.4f}  test loss {metrics['test_loss']:.4f}")
    return metrics


def summary(args: argparse.Namespace) -> str:
    dataset = load_dataset(args.dataset, args.model)
    model = MODELS[args.model][0](dataset.num_classes, dataset.input_shape)
    table = jaxnn.summary(model, dataset.input_shape)
    print(f"{args.model} for {dataset.name} examples of shape {dataset.input_shape}\n{table}")
    return table


def lesson(args: argparse.Namespace) -> None:
    # Imported here: the lessons need matplotlib, which the other commands do not.
    from jaxnn.lab import lessons

    lessons.command(args)


def number_list(flag_name: str, text: str | None) -> list[float] | None:
    """``"1e-3,3e-3"`` as ``[0.001, 0.003]``; a value that is not a number is a command-line error."""
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise CommandError(f"{flag_name} must be a comma-separated list of numbers, such as 1e-3,3e-3, "
                           f"got {text!r}") from None


def sweep_grid(args: argparse.Namespace) -> dict[str, list[float]]:
    """The hyperparameter grid of ``jaxnn sweep``'s flags."""
    grid = {"learning_rate": number_list("--lr", args.lr) or [DEFAULT_LR[args.optimizer]]}
    momentum = number_list("--momentum", args.momentum)
    if momentum is not None:
        if args.optimizer not in ("sgd", "momentum"):
            raise CommandError(f"--momentum applies to --optimizer sgd or momentum, not {args.optimizer}")
        grid["momentum"] = momentum
    weight_decay = number_list("--weight-decay", args.weight_decay)
    if weight_decay is not None:
        grid["weight_decay" if args.optimizer == "adamw" else "l2"] = weight_decay
    return grid


def sweep_plots(out: str, result, quiet: bool) -> list[str]:
    """A metric against each hyperparameter of several values, and the learning curves."""
    try:
        from jaxnn import viz
    except ImportError as error:
        if not quiet:
            print(f"plots skipped: {error}", file=sys.stderr)
        return []
    summary_rows = result.summary()
    metrics = result.metric_names()
    metric = next(name for name in ("val_accuracy", "val_loss", "accuracy", "loss") if name in metrics)
    varying = [name for name in result.members[0].hyperparameters
               if len({member.hyperparameters[name] for member in result.members}) > 1]
    written = []
    try:
        for name in varying:
            path = os.path.join(out, f"{metric}_vs_{name}.png")
            viz.plot_sweep_metric(summary_rows, name, metric, path)
            written.append(path)
        for name in ("loss", metric):
            path = os.path.join(out, f"curves_{name}.png")
            viz.plot_sweep_curves(result, name, path)
            written.append(path)
    except ImportError as error:
        if not quiet:
            print(f"plots skipped: {error}", file=sys.stderr)
    return sorted(set(written))


def sweep_command(args: argparse.Namespace) -> dict[str, Any]:
    """``jaxnn sweep``: the grid × seeds × folds in one compiled program; writes ``table.csv``,
    ``summary.json`` and plots to ``--out``."""
    if args.epochs < 1:
        raise CommandError(f"--epochs must be at least 1, got {args.epochs}")
    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.seeds < 1:
        raise CommandError(f"--seeds must be at least 1, got {args.seeds}")
    if args.folds is not None and args.folds < 2:
        raise CommandError(f"--folds must be at least 2, got {args.folds}")
    check_out(args.out)
    grid = sweep_grid(args)
    dataset = load_dataset(args.dataset, args.model)
    model = MODELS[args.model][0](dataset.num_classes, dataset.input_shape)
    validation = None
    if args.folds is None:
        validation = {"val_fraction": 0.1, "seed": 0}
        (train_data, validation_data) = split(dataset, validation)
    else:
        train_data, validation_data = (dataset.x_train, dataset.y_train), None
    members = math.prod(len(values) for values in grid.values()) * args.seeds * (args.folds or 1)
    if not args.quiet:
        print(f"sweep of {members} members ({args.model} on {dataset.name}, {args.optimizer}, "
              + ", ".join(f"{name} {values}" for name, values in grid.items())
              + f", {args.seeds} seed(s), " + (f"{args.folds} folds" if args.folds else "10% held out")
              + f"); output folder {args.out}", file=sys.stderr)
    started = time.perf_counter()
    result = jaxnn.train.sweep(model, SWEEP_OPTIMIZERS[args.optimizer], train_data, grid=grid,
                               seeds=args.seeds, folds=args.folds, epochs=args.epochs,
                               batch_size=args.batch_size, validation_data=validation_data,
                               steps_per_call=args.steps_per_call, members_per_call=args.members_per_call,
                               progress=not (args.quiet or args.no_progress))
    seconds = time.perf_counter() - started
    os.makedirs(args.out, exist_ok=True)
    result.to_csv(os.path.join(args.out, SWEEP_TABLE))
    best = result.best()
    metric = next(name for name in ("val_accuracy", "val_loss", "loss") if name in result.metric_names())
    summary_json = {
        "settings": {"dataset": args.dataset, "model": args.model, "optimizer": args.optimizer,
                     "grid": grid, "seeds": args.seeds, "folds": args.folds, "epochs": args.epochs,
                     "batch_size": args.batch_size, "validation": validation},
        "members": len(result), "seconds": seconds,
        "best": {"metric": metric, "hyperparameters": best.hyperparameters, "mean": best.score},
        "configurations": result.summary(),
    }
    write_json(os.path.join(args.out, SWEEP_SUMMARY), summary_json)
    plots = sweep_plots(args.out, result, args.quiet)
    if not args.quiet:
        print(f"best {metric} {best.score:.4f} with "
              + ", ".join(f"{name}={value:g}" for name, value in best.hyperparameters.items())
              + f" ({len(result)} members in {seconds:.1f} s; {args.out}: "
              + ", ".join([SWEEP_TABLE, SWEEP_SUMMARY] + [os.path.basename(path) for path in plots]) + ")")
    return summary_json


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxnn", description="Neural networks for JAX from pure functions.")
    commands = parser.add_subparsers(dest="command", required=True)

    train_parser = commands.add_parser("train", help="train a model; writes a run folder")
    # The run's settings default to None (see RUN_SETTINGS); their help gives the real defaults.
    train_parser.add_argument("--dataset", metavar="{" + ",".join(DATASET_CHOICES) + "}",
                              help="dataset (default: digits, scikit-learn's bundled 8x8 digits)")
    train_parser.add_argument("--model", choices=sorted(MODELS), help="network (default: mlp)")
    train_parser.add_argument("--epochs", type=int, default=30, help="train until this epoch (default: 30)")
    train_parser.add_argument("--batch-size", type=int, help="examples per step (default: 64)")
    train_parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), help="default: adam")
    train_parser.add_argument("--lr", type=float,
                              help="learning rate (default: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_LR.items()) + ")")
    train_parser.add_argument("--seed", type=int,
                              help="initialization, shuffling and split seed, 0 to 2**63 - 1 (default: 0)")
    train_parser.add_argument("--val-fraction", type=float,
                              help="part of the training set held out for validation (default: 0.1)")
    train_parser.add_argument("--steps-per-call", type=int, default=1,
                              help="optimizer steps per compiled call, in one lax.scan (default: 1)")
    train_parser.add_argument("--out", default=None, help="run folder (default: runs/DATASET-MODEL)")
    train_parser.add_argument("--resume", action="store_true",
                              help="continue the run in --out up to --epochs, with its saved settings")
    train_parser.add_argument("--no-progress", action="store_true",
                              help="no progress bar, only a line per epoch (there is no bar either "
                                   "when stderr is not a terminal)")
    train_parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    train_parser.add_argument("--devices", default=None, metavar="all|N",
                              help="train data parallel on every device (all) or the first N; under "
                                   "`jaxnn launch`, on the devices of every process (default: one device)")

    evaluate_parser = commands.add_parser("evaluate", help="reload a run folder and report test metrics")
    evaluate_parser.add_argument("run_dir", metavar="RUN",
                                 help="a folder written by `jaxnn train`, or its checkpoint.npz")

    launch_parser = commands.add_parser(
        "launch", help="run a command in N local processes joined by jax.distributed, as torchrun does",
        description="Starts N copies of COMMAND on this machine, each told by environment variables how "
                    "to join the others (a coordinator on 127.0.0.1 and a free port); jaxnn train and "
                    "jaxnn.parallel.initialize() read them. Output lines are prefixed with the process "
                    "index; when one process fails, the others are stopped and the exit status is its.")
    launch_parser.add_argument("--processes", type=int, required=True, help="how many processes to start")
    launch_parser.add_argument("--devices-per-process", type=int, default=None,
                               help="on CPU, the number of host devices each process has (forced with "
                                    "XLA_FLAGS=--xla_force_host_platform_device_count)")
    launch_parser.add_argument("launched", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                               help="the command each process runs")

    lesson_parser = commands.add_parser(
        "lesson", help="run one of the textbook's lessons; writes figures and report.md",
        description="Each lesson trains what it needs on a built-in dataset and writes PNG figures and "
                    "a report.md of the numbers it measured.")
    lesson_parser.add_argument("name", nargs="?", default=None, metavar="NAME",
                               help="the lesson to run (see --list)")
    lesson_parser.add_argument("--list", action="store_true", help="list the lessons and exit")
    lesson_parser.add_argument("--out", default=None, help="output folder (default: lessons/NAME)")

    sweep_parser = commands.add_parser(
        "sweep", help="train a grid of hyperparameters x seeds x folds in one compiled program",
        description="Every member (a learning rate, momentum and weight decay of the grid, a seed, a "
                    "fold) trains at once in one vmapped program; writes table.csv (one row per member), "
                    "summary.json (mean and standard deviation per configuration, the best one) and plots.")
    sweep_parser.add_argument("--dataset", default="digits", metavar="{" + ",".join(DATASET_CHOICES) + "}",
                              help="dataset (default: digits)")
    sweep_parser.add_argument("--model", default="mlp", choices=sorted(MODELS), help="network (default: mlp)")
    sweep_parser.add_argument("--optimizer", default="adam", choices=sorted(SWEEP_OPTIMIZERS),
                              help="default: adam")
    sweep_parser.add_argument("--lr", default=None, metavar="LR,LR,...",
                              help="learning rates (default: the optimizer's, as in jaxnn train)")
    sweep_parser.add_argument("--momentum", default=None, metavar="M,M,...",
                              help="momenta, for --optimizer sgd or momentum")
    sweep_parser.add_argument("--weight-decay", default=None, metavar="WD,WD,...",
                              help="decoupled weight decay for adamw, an L2 penalty for the others")
    sweep_parser.add_argument("--seeds", type=int, default=1,
                              help="seeds 0 .. N-1 per configuration (default: 1)")
    sweep_parser.add_argument("--folds", type=int, default=None,
                              help="stratified k-fold cross-validation on the training set (default: none, "
                                   "10%% of it held out for validation)")
    sweep_parser.add_argument("--epochs", type=int, default=20, help="epochs per member (default: 20)")
    sweep_parser.add_argument("--batch-size", type=int, default=64, help="examples per step (default: 64)")
    sweep_parser.add_argument("--steps-per-call", type=int, default=1,
                              help="optimizer steps per compiled call, in one lax.scan (default: 1)")
    sweep_parser.add_argument("--members-per-call", type=int, default=None,
                              help="train at most this many members at once, to bound memory (default: all)")
    sweep_parser.add_argument("--out", default=os.path.join("runs", "sweep"),
                              help="output folder (default: runs/sweep)")
    sweep_parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep_parser.add_argument("--quiet", action="store_true", help="print nothing but errors")

    summary_parser = commands.add_parser("summary", help="print a model's layers, shapes and parameters")
    summary_parser.add_argument("--model", default="mlp", choices=sorted(MODELS))
    summary_parser.add_argument("--dataset", default="digits", metavar="{" + ",".join(DATASET_CHOICES) + "}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxnn`` console script; returns the exit status.

    Called without ``argv`` (the console script, ``python -m jaxnn.cli``), the command owns the
    process, and after Ctrl-C ends it at once with status 130: XLA may still be compiling on its
    own threads, and the interpreter's shutdown would free the runtime under them (a
    segmentation fault).
    """
    args = build_parser().parse_args(argv)
    if args.command == "launch":
        return launch_command(args)
    command = {"train": train, "evaluate": evaluate_run, "summary": summary, "lesson": lesson,
               "sweep": sweep_command}[args.command]
    with CTRL_C:
        try:
            command(args)
        except KeyboardInterrupt:
            status = interrupted(args)
            if argv is None:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
            return status
        except (CommandError, ValueError, TypeError, ImportError, FileNotFoundError) as error:
            print(f"jaxnn {args.command}: error: {error}", file=sys.stderr)
            return 2 if isinstance(error, CommandError) else 1
    return 0


def launch_command(args: argparse.Namespace) -> int:
    command = list(args.launched)
    if command[:1] == ["--"]:
        command = command[1:]
    try:
        return launch.run(command, processes=args.processes, devices_per_process=args.devices_per_process)
    except (ValueError, TypeError) as error:
        print(f"jaxnn launch: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
