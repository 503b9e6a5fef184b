"""The textbook's lessons as measured code: ``jaxnn lesson NAME`` writes figures and a report.

Each lesson trains what it needs on a built-in dataset, draws PNG figures and writes
``report.md`` with the numbers it measured and what they show. ``LESSONS`` maps each name to a
one-line description; :func:`run` runs one into a folder. Each lesson module also exposes the
measurement functions behind its report, so that they can be used (and tested) on their own.

Example::

    from jaxnn.lab import lessons
    report_path = lessons.run("activations", "lessons/activations", quick=True)
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

# name -> (module under jaxnn.lab.lessons, one-line description)
_REGISTRY = {
    "activations": ("activations", "sigmoid, tanh, ReLU, ... and their derivatives; where each saturates"),
    "forward": ("forward", "a trained digits network's activations, layer by layer, for one example "
                           "and a batch"),
    "backprop": ("backprop_worked", "backpropagation on a 2-2-2 network, every number shown, checked "
                                    "against jax.grad"),
    "vanishing-gradients": ("vanishing_gradients", "deep MLPs: gradient norm per layer for sigmoid, tanh, "
                                                   "ReLU, BatchNorm and residual networks"),
    "loss-landscape": ("loss_landscape", "1-D and 2-D loss slices along filter-normalized directions; "
                                         "MSE against cross-entropy"),
    "batch-size": ("batch_size", "batch sizes 8 to 512: steps, time, accuracy and gradient noise (~1/B)"),
    "regularization": ("regularization", "none, L2, dropout and early stopping on 100 training digits"),
    "decision-boundary": ("decision_boundary", "an MLP's decision boundary on moons and spirals as it "
                                               "trains"),
}

LESSONS: dict[str, str] = {name: description for name, (_, description) in _REGISTRY.items()}


def _names() -> str:
    return ", ".join(LESSONS)


def lesson_module(name: str) -> Any:
    """The module implementing lesson ``name`` (its measurement functions and ``run``)."""
    if not isinstance(name, str):
        raise TypeError(f"lesson name must be a string, got {type(name).__name__}")
    if name not in _REGISTRY:
        raise ValueError(f"unknown lesson {name!r}; the lessons are: {_names()}")
    return importlib.import_module(f"{__name__}.{_REGISTRY[name][0]}")


def run(name: str, out: str | os.PathLike, *, quick: bool = False, log=None) -> Path:
    """Runs lesson ``name``, writing its PNG figures and ``report.md`` into the folder ``out``.

    Args:
      name: one of :data:`LESSONS`.
      out: the output folder, created if missing.
      quick: fewer epochs and smaller sizes, so the lesson runs in seconds (its numbers are then
        rougher than the full run's).
      log: called with one line of progress at a time (default: nothing is printed).

    Returns:
      The path of ``report.md``.
    """
    module = lesson_module(name)
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"lesson {name!r}: `out` must be a folder path, got {type(out).__name__}")
    if not isinstance(quick, bool):
        raise TypeError(f"lesson {name!r}: `quick` must be True or False, got {quick!r}")
    return module.run(Path(out), quick=quick, log=log or (lambda line: None))


def command(args) -> None:
    """``jaxnn lesson``: ``--list`` prints the lessons; ``NAME [--out DIR]`` runs one."""
    if args.list:
        width = max(map(len, LESSONS))
        for name, description in LESSONS.items():
            print(f"{name:<{width}}  {description}")
        return
    if args.name is None:
        raise ValueError(f"pass the name of a lesson ({_names()}), or --list to describe them")
    lesson_module(args.name)
    out = Path(args.out) if args.out is not None else Path("lessons") / args.name
    print(f"lesson {args.name}: writing into {out}", flush=True)
    path = run(args.name, out, log=lambda line: print(f"lesson {args.name}: {line}", flush=True))
    print(f"lesson {args.name}: report written to {path}", flush=True)
