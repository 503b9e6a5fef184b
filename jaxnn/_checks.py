"""Argument checks shared by every module: core, layers, optim, data and train.

Each check returns the value in its canonical Python type or raises a ``TypeError`` (wrong type)
or ``ValueError`` (right type, wrong value) whose message names where the argument was given, the
argument, and the value, in one style::

    Dense: `features` must be a positive int, got 2.5
    adam: `learning_rate` (=-0.1) must be non-negative

They run on Python values at construction or trace time, never on the device.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import Any

import numpy as np


def is_int(value: Any) -> bool:
    """True for Python and NumPy integers; ``True``/``False`` are not ints here."""
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    """True for Python and NumPy real numbers; ``True``/``False`` are not numbers here."""
    return isinstance(value, (numbers.Real, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_))


def as_float(value: Any) -> float:
    """A real number as a float; an int beyond float's range becomes an infinity of its sign."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def check_int(value: Any, argument: str, where: str, *, low: int | None = None) -> int:
    """Returns ``value`` as an int, raising unless it is an int of at least ``low``."""
    if low == 1:
        kind = "a positive int"
    elif low == 0:
        kind = "a non-negative int"
    elif low is None:
        kind = "an int"
    else:
        kind = f"an int of at least {low}"
    if not is_int(value):
        raise TypeError(f"{where}: `{argument}` must be {kind}, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{where}: `{argument}` (={value}) must be {kind}")
    return int(value)


def check_positive_int(value: Any, argument: str, where: str) -> int:
    """Returns ``value`` as an int, raising unless it is an int of at least 1."""
    return check_int(value, argument, where, low=1)


def check_real(value: Any, argument: str, where: str, *, low: float = -math.inf, high: float = math.inf,
               low_open: bool = False, high_open: bool = False, finite: bool = True) -> float:
    """Returns ``value`` as a float, raising unless it is a real number in the given interval.

    The interval is ``[low, high]``, each end open where asked; NaN is never inside it, and with
    ``finite=True`` (the default) neither are the infinities.
    """
    bounded = low > -math.inf or high < math.inf
    if bounded:
        interval = _interval(low, high, low_open, high_open)
        kind = (f"a {interval} real number" if interval in ("positive", "non-negative")
                else f"a real number {interval}")
    else:
        kind = "a real number"
    if not is_real(value):
        raise TypeError(f"{where}: `{argument}` must be {kind}, got {value!r}")
    number = as_float(value)
    below = number < low or (low_open and number == low)
    above = number > high or (high_open and number == high)
    if math.isnan(number) or (finite and math.isinf(number)) or below or above:
        if bounded and not (finite and math.isinf(number) and not (below or above)):
            raise ValueError(f"{where}: `{argument}` (={value}) must be {interval}")
        raise ValueError(f"{where}: `{argument}` (={value}) must be {'a finite number' if finite else 'a number'}")
    return number


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if high == math.inf:
        if low == 0:
            return "positive" if low_open else "non-negative"
        return f"{'>' if low_open else '>='} {low:g}"
    if low == -math.inf:
        return f"{'<' if high_open else '<='} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_bool(value: Any, argument: str, where: str) -> bool:
    """Returns ``value`` as a bool, raising unless it is ``True`` or ``False``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: `{argument}` must be True or False, got {value!r}")
    return bool(value)


def check_choice(value: Any, argument: str, where: str, choices: Collection) -> Any:
    """Returns ``value``, raising a ``ValueError`` unless it is one of ``choices``."""
    try:
        known = value in choices
    except TypeError:  # unhashable
        known = False
    if not known:
        listed = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{where}: `{argument}` must be one of {listed}, got {value!r}")
    return value


def check_callable(value: Any, argument: str, where: str, what: str = "a function") -> Any:
    """Returns ``value``, raising a ``TypeError`` unless it is callable."""
    if not callable(value):
        raise TypeError(f"{where}: `{argument}` must be {what}, got {value!r}")
    return value
