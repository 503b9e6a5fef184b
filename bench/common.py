"""Shared helpers for the benchmarks: timing by interleaved repetitions, and the machine's description."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import jax


def machine() -> str:
    """One line naming the machine: CPU model and core count, or the accelerator, and versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    device = jax.devices()[0]
    where = f"{device.platform.upper()} {device.device_kind}" if device.platform != "cpu" else "CPU"
    return (f"{where}; {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"jax {jax.__version__}")


def interleaved_medians(runs: dict[str, Callable[[], float]], repetitions: int) -> dict[str, float]:
    """Median of each run's returned seconds, the runs taking turns so that load affects all alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repetitions):
        for name, run in runs.items():
            times[name].append(run())
    return {name: statistics.median(values) for name, values in times.items()}


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start
