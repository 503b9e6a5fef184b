"""The record of a run: every metric, one value per epoch, saved as JSON."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping

from jaxnn._files import write_json


class History(Mapping):
    """Per-epoch metrics, a read-only mapping ``name -> list of values`` (``"loss"``, ``"val_loss"``, ...).

    ``history["val_accuracy"][-1]`` is the last epoch's validation accuracy; ``history.epochs``
    counts the epochs recorded. A metric missing from some epoch is stored as ``None`` there, so
    every list has one entry per epoch.
    """

    def __init__(self, metrics: Mapping[str, list] | None = None):
        self._metrics: dict[str, list] = {name: list(values) for name, values in (metrics or {}).items()}
        lengths = {len(values) for values in self._metrics.values()}
        if len(lengths) > 1:
            raise ValueError(f"History: metric lists have different lengths {sorted(lengths)}")

    @property
    def epochs(self) -> int:
        return len(next(iter(self._metrics.values()), []))

    def append(self, logs: Mapping[str, float]) -> None:
        """Record one epoch's metrics."""
        epochs = self.epochs
        for name in logs:
            self._metrics.setdefault(name, [None] * epochs)
        for name, values in self._metrics.items():
            value = logs.get(name)
            values.append(None if value is None else float(value))

    def truncate(self, epochs: int) -> None:
        """Keep the first ``epochs`` epochs (a resumed run drops epochs its checkpoint does not hold)."""
        for values in self._metrics.values():
            del values[epochs:]

    def __getitem__(self, name: str) -> list:
        return self._metrics[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._metrics)

    def __len__(self) -> int:
        return len(self._metrics)

    def __repr__(self) -> str:
        return f"History(epochs={self.epochs}, metrics={list(self._metrics)})"

    def to_dict(self) -> dict[str, list]:
        return {name: list(values) for name, values in self._metrics.items()}

    def save(self, path: str | os.PathLike) -> None:
        """Write the history as JSON, atomically (temporary file, then rename).

        Non-finite values are written as ``null`` so the file stays valid JSON.
        """
        clean = {name: [None if v is None or not math.isfinite(v) else v for v in values]
                 for name, values in self._metrics.items()}
        write_json(path, clean)

    @classmethod
    def load(cls, path: str | os.PathLike) -> History:
        """Read a history written by :meth:`save`; a malformed file is a ``ValueError`` naming it."""
        try:
            with open(path) as file:
                data = json.load(file)
        except json.JSONDecodeError as error:
            raise ValueError(f"{os.fspath(path)} is not a valid history file: {error}") from None
        def number_or_null(value) -> bool:
            return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))

        if not isinstance(data, dict) or not all(
                isinstance(values, list) and all(number_or_null(v) for v in values) for values in data.values()):
            raise ValueError(f"{os.fspath(path)} is not a valid history file: expected an object of "
                             "lists of numbers (or null)")
        try:
            return cls(data)
        except ValueError as error:
            raise ValueError(f"{os.fspath(path)} is not a valid history file: {error}") from None
