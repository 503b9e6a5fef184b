"""Atomic file writes: a file is replaced whole or not at all, even if the process dies mid-write.

Checkpoints and the JSON files of a run folder (``config.json``, ``history.json``,
``metrics.json``) are all written this way, so a crash leaves each file as it was before the
write began or as the write finished it, never a truncated mix. A write that dies before it can
clean up (killed, or the machine lost) leaves its temporary file, ``.{name}.{32 hex digits}.tmp``
beside the target; the next write of the same target removes it.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable
from typing import IO, Any


def write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Calls ``write(file)`` on a new binary file, then puts that file at ``path`` in one step.

    The steps: remove the temporary files that earlier writes of ``path`` left behind when they
    died; create a temporary file ``.{name}.{32 random hex digits}.tmp`` (``name`` being the
    last component of ``path``) in the folder of ``path`` (same filesystem, so the rename cannot
    become a copy); ``write`` into it, flush and ``fsync`` it; ``os.replace`` it over ``path``;
    then ``fsync`` the folder where the system allows, which makes the rename itself durable.
    ``path`` therefore always holds either its previous contents or the new ones, whole. If any
    step fails (an exception from ``write`` included, or an interrupt), the temporary file is
    removed and the exception re-raised. Missing parent folders are created.

    Only regular files named exactly as this function names the temporary files of ``path``
    are removed, nothing else in the folder. One target is written by one process at a time
    (under several processes, jaxnn writes from process 0 alone): two writes of the same
    ``path`` at once could remove each other's temporary file, and the one whose file was
    removed fails with ``FileNotFoundError``, ``path`` holding the other's contents, whole.

    Args:
      path: the file to write.
      write: called once with the open binary file; whatever it returns is ignored.

    Example::

        write_atomically("weights.bin", lambda file: file.write(array.tobytes()))
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    os.makedirs(directory, exist_ok=True)
    # First, so that the space a dead write held is free for this one.
    _remove_stale_temporaries(directory, name)
    temporary = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
    # O_EXCL: never write into a file someone else created; mode 0o666 lets the umask decide
    # the permissions, as for any ordinary new file.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def write_json(path: str | os.PathLike, value: Any, *, sort_keys: bool = False) -> None:
    """Writes ``value`` as indented JSON to ``path`` with :func:`write_atomically`.

    The text is ASCII (non-ASCII characters escaped), one item per line, indented by one space.
    """
    text = json.dumps(value, indent=1, sort_keys=sort_keys)
    write_atomically(path, lambda file: file.write(text.encode("ascii")))


def _remove_stale_temporaries(directory: str, name: str) -> None:
    """Removes the temporary files of ``name`` that writes which died left in ``directory``."""
    # Best effort: a file that cannot be listed or removed (gone already, open elsewhere on
    # Windows, a folder that may be written but not listed) costs space, not correctness, and
    # must not fail the write.
    pattern = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{32}}\.tmp")
    try:
        with os.scandir(directory) as entries:
            stale = [entry.path for entry in entries
                     if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)]
    except OSError:
        return
    for temporary in stale:
        try:
            os.unlink(temporary)
        except OSError:
            pass


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable. Windows cannot open a directory, and some filesystems
    # refuse to fsync one; the file's own fsync has already made its contents durable.
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
