"""What every lesson writes: PNG figures drawn with matplotlib's Agg backend, and ``report.md``.

Figures are ``matplotlib.figure.Figure`` objects of their own, never ``pyplot``, so lessons run
without a display and leave pyplot's global state alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxnn._files import write_atomically

def number(value: Any) -> str:
    """A measured number as it reads best in a table: 4 significant digits, exponent when far from 1."""
    if isinstance(value, (str, int)):  # labels, counts and flags as they are
        return str(value)
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4g}"


def escape(cell: str) -> str:
    """A table cell with its pipes escaped, so that ``max |f'|`` stays in one column."""
    return cell.replace("|", "\\|")


class Report:
    """A ``report.md`` built section by section, with its figures saved beside it.

    Example::

        report = Report(out, "Activation functions")
        report.text("What the lesson measures.")
        report.table(["function", "max f'"], [["sigmoid", 0.25]])
        report.figure(figure, "activations.png", "Each function and its derivative")
        path = report.write()
    """

    def __init__(self, out: str | os.PathLike, title: str):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.lines: list[str] = [f"# {title}", ""]
        self.figures: list[Path] = []

    def section(self, title: str) -> None:
        self.lines += [f"## {title}", ""]

    def text(self, paragraph: str) -> None:
        self.lines += [paragraph, ""]

    def code(self, text: str) -> None:
        self.lines += ["```", text.rstrip("\n"), "```", ""]

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A Markdown table; numbers are written with :func:`number`."""
        self.lines.append("| " + " | ".join(escape(header) for header in headers) + " |")
        self.lines.append("| " + " | ".join("---" if i == 0 else "---:" for i in range(len(headers))) + " |")
        for row in rows:
            self.lines.append("| " + " | ".join(escape(number(cell)) for cell in row) + " |")
        self.lines.append("")

    def figure(self, figure, filename: str, caption: str) -> Path:
        """Saves ``figure`` as ``out/filename`` (PNG) and shows it in the report under ``caption``."""
        path = self.out / filename
        write_atomically(path, lambda file: figure.savefig(file, format="png", dpi=90))
        self.figures.append(path)
        self.lines += [f"![{caption}]({filename})", ""]
        return path

    def write(self) -> Path:
        """Writes ``out/report.md`` and returns its path."""
        path = self.out / "report.md"
        text = "\n".join(self.lines).rstrip("\n") + "\n"
        write_atomically(path, lambda file: file.write(text.encode()))
        return path
