"""``jaxnn launch``: run one command in several local processes joined by ``jax.distributed``.

As ``torchrun`` does for PyTorch: each process gets the address of a coordinator on 127.0.0.1
(process 0 serves it, on a port that was free), the number of processes and its own index, in
the variables :func:`jaxnn.parallel.initialize` reads. Their output is prefixed with the process
index. When one process fails, the others are stopped and its exit status is returned.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from jaxnn._checks import check_positive_int
from jaxnn.parallel import COORDINATOR_VARIABLE, NUM_PROCESSES_VARIABLE, PROCESS_ID_VARIABLE

# How long stopped processes get to exit after SIGTERM before they are killed.
GRACE_SECONDS = 5.0

__all__ = ["free_port", "process_environment", "run"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_environment(process_id: int, processes: int, coordinator: str,
                        devices_per_process: int | None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of process ``process_id``: ``base`` (this process's) plus the variables
    that join it to the others and, with ``devices_per_process``, the forced host device count."""
    environment = dict(os.environ if base is None else base)
    environment.update({COORDINATOR_VARIABLE: coordinator, NUM_PROCESSES_VARIABLE: str(processes),
                        PROCESS_ID_VARIABLE: str(process_id), "PYTHONUNBUFFERED": "1"})
    if devices_per_process is not None:
        flags = [flag for flag in environment.get("XLA_FLAGS", "").split()
                 if not flag.startswith("--xla_force_host_platform_device_count")]
        flags.append(f"--xla_force_host_platform_device_count={devices_per_process}")
        environment["XLA_FLAGS"] = " ".join(flags)
    return environment


def _forward(process_id: int, stream, lock: threading.Lock) -> None:
    for line in iter(stream.readline, b""):
        with lock:
            sys.stdout.write(f"[{process_id}] {line.decode(errors='replace')}")
            sys.stdout.flush()
    stream.close()


def _stop(running: Sequence[subprocess.Popen]) -> None:
    for process in running:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for process in running:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(command: Sequence[str], *, processes: int, devices_per_process: int | None = None) -> int:
    """Runs ``command`` in ``processes`` local processes; returns the exit status.

    0 when every process exits with 0; otherwise the status of the first process that failed
    (the others are stopped then). Interrupted (Ctrl-C), every process is stopped and 130 returned.

    Args:
      command: the program and its arguments, e.g. ``["jaxnn", "train", "--devices", "all"]``.
      processes: how many processes to start, at least 1.
      devices_per_process: on CPU, how many host devices each process gets.
    """
    processes = check_positive_int(processes, "processes", "jaxnn launch")
    if devices_per_process is not None:
        devices_per_process = check_positive_int(devices_per_process, "devices_per_process", "jaxnn launch")
    command = list(command)
    if not command:
        raise ValueError("jaxnn launch: no command given; write it after --, e.g. "
                         "jaxnn launch --processes 2 -- jaxnn train --devices all")
    coordinator = f"127.0.0.1:{free_port()}"
    lock = threading.Lock()
    running, readers = [], []
    try:
        for process_id in range(processes):
            environment = process_environment(process_id, processes, coordinator, devices_per_process)
            try:
                process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT)
            except OSError as error:
                _stop(running)
                raise ValueError(f"jaxnn launch: cannot start {command[0]!r}: {error}") from None
            running.append(process)
            reader = threading.Thread(target=_forward, args=(process_id, process.stdout, lock), daemon=True)
            reader.start()
            readers.append(reader)
        while True:
            statuses = [process.poll() for process in running]  # every process, each time
            failed = [status for status in statuses if status not in (None, 0)]
            if failed:
                status = failed[0]
                _stop(running)
                break
            if all(status == 0 for status in statuses):
                status = 0
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        _stop(running)
        status = 130
    for reader in readers:
        reader.join(timeout=GRACE_SECONDS)
    # A process killed by a signal has a negative status; report it as a shell would.
    return 128 - status if status < 0 else status
