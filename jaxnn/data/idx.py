"""Reading IDX files, the format of MNIST, Fashion-MNIST, EMNIST and KMNIST.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of dimensions),
one big-endian int32 per dimension, then the values in row-major order, big-endian. Files are
often gzipped; that is detected from their first bytes, not their name.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from typing import Any

import numpy as np

# The dtype codes of the IDX format, as big-endian NumPy dtypes.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def load_idx(path: str | os.PathLike) -> np.ndarray:
    r"""Reads an IDX file (optionally gzipped) into a NumPy array.

    The layout, all integers big-endian:

    ========  ======================  ==============================================
    offset    bytes                   meaning
    ========  ======================  ==============================================
    0         ``00 00``               magic: two zero bytes
    2         1                       dtype code: ``08`` uint8, ``09`` int8, ``0B`` int16,
                                      ``0C`` int32, ``0D`` float32, ``0E`` float64
    3         1                       number of dimensions :math:`d`
    4         :math:`4d`              the sizes :math:`n_1, \dots, n_d`, int32 each
    4 + 4d    :math:`s \prod_i n_i`   the values in row-major order, :math:`s` bytes each
    ========  ======================  ==============================================

    Args:
      path: the file; gzip compression is recognised from its first two bytes (``1f 8b``), so a
        name ending in ``.gz`` is not required.

    Returns:
      An array of shape :math:`(n_1, \dots, n_d)` in the file's dtype, native byte order, writable.

    Raises:
      FileNotFoundError: if ``path`` does not exist.
      ValueError: naming the file, if the gzip stream is corrupt, the magic number's first two
        bytes are not zero, the dtype code is unknown, the header or the data is shorter than the
        header says, or bytes follow the data.

    Example::

        images = load_idx("mnist/train-images-idx3-ubyte.gz")   # uint8, (60000, 28, 28)
    """
    path = os.fspath(os.path.expanduser(path))
    with open(path, "rb") as file:
        content = file.read()
    if content[:2] == _GZIP_MAGIC:
        try:
            content = gzip.decompress(content)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({error})") from None
    return parse_idx(content, path)


def parse_idx(content: bytes, source: Any = "IDX data") -> np.ndarray:
    """Parses the bytes of an uncompressed IDX file (see :func:`load_idx`); errors name ``source``."""
    if len(content) < 4:
        raise ValueError(
            f"{source}: {len(content)} bytes is too short for an IDX file, which starts with a 4-byte "
            f"magic number"
        )
    if content[0] != 0 or content[1] != 0:
        raise ValueError(
            f"{source}: bad magic number {content[:4].hex(' ')}: an IDX file starts with two zero bytes "
            f"(is this an IDX file?)"
        )
    code, ndim = content[2], content[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{known:02X} ({dtype.name})" for known, dtype in IDX_DTYPES.items())
        raise ValueError(f"{source}: unknown IDX dtype code 0x{code:02X}; known codes are {known}")
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise ValueError(
            f"{source}: truncated header: {ndim} dimensions need {header_size} header bytes, "
            f"the file has {len(content)}"
        )
    shape = tuple(int(size) for size in np.frombuffer(content, ">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = dtype.itemsize * math.prod(shape)
    available = len(content) - header_size
    if available < expected:
        raise ValueError(
            f"{source}: truncated data: shape {shape} of {dtype.name} needs {expected} bytes after the "
            f"header, the file has {available}"
        )
    if available > expected:
        raise ValueError(
            f"{source}: {available - expected} unexpected bytes after the data of shape {shape} "
            f"({dtype.name}); the header does not describe this file"
        )
    values = np.frombuffer(content, dtype, count=expected // dtype.itemsize, offset=header_size)
    # astype copies, which both converts to native byte order and makes the array writable
    # (frombuffer over bytes is read-only).
    return values.astype(dtype.newbyteorder("="), copy=True).reshape(shape)
