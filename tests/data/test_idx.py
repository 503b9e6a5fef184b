"""Tests for jaxnn.data.load_idx on files written here with struct, and on hand-assembled bytes."""

import gzip
import re
import struct

import numpy as np
import pytest

from jaxnn.data import load_idx

# The IDX dtype codes and the big-endian formats the specification gives them.
CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def idx_bytes(array, code):
    """An IDX file, written from the specification: magic, big-endian int32 sizes, big-endian data."""
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + np.ascontiguousarray(array, dtype=CODES[code]).tobytes()


def write(path, content, compress=False):
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


def random_values(code, shape, seed):
    r = np.random.default_rng(seed)
    dtype = np.dtype(CODES[code])
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        values = r.integers(info.min, info.max, size=shape, endpoint=True)
        values.flat[0] = info.min
        values.flat[-1] = info.max
        return values.astype(dtype.newbyteorder("="))
    return (r.normal(size=shape) * 1e3).astype(dtype.newbyteorder("="))


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4)])
@pytest.mark.parametrize("code", sorted(CODES))
def test_round_trip(tmp_path, code, shape, compress):
    expected = random_values(code, shape, seed=code)
    path = write(tmp_path / ("data.idx.gz" if compress else "data.idx"), idx_bytes(expected, code), compress)
    loaded = load_idx(path)
    assert loaded.shape == shape
    assert loaded.dtype == np.dtype(CODES[code]).newbyteorder("=")
    assert loaded.dtype.isnative and loaded.flags.writeable
    np.testing.assert_array_equal(loaded, expected)


@pytest.fixture
def write_tmp(tmp_path):
    """Writes bytes to a new file under tmp_path and returns its path."""
    names = iter(range(1000))
    return lambda content: write(tmp_path / f"file{next(names)}", content)


def test_hand_assembled_uint8(write_tmp):
    content = bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 1, 2, 255])
    loaded = load_idx(write_tmp(content))
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, [1, 2, 255])


def test_hand_assembled_int16_and_float32_are_big_endian(write_tmp):
    # 0x0100 = 256 and 0xFFFE = -2 as big-endian int16.
    content = bytes([0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0x01, 0x00, 0xFF, 0xFE])
    np.testing.assert_array_equal(load_idx(write_tmp(content)), [[256, -2]])
    # 0x3F800000 = 1.0 and 0xC0000000 = -2.0 as big-endian IEEE float32.
    content = bytes([0, 0, 0x0D, 1, 0, 0, 0, 2, 0x3F, 0x80, 0, 0, 0xC0, 0, 0, 0])
    loaded = load_idx(write_tmp(content))
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, [1.0, -2.0])


def test_hand_assembled_int32_and_float64(write_tmp):
    content = bytes([0, 0, 0x0C, 1, 0, 0, 0, 1, 0x00, 0x01, 0x00, 0x02])  # 65538
    np.testing.assert_array_equal(load_idx(write_tmp(content)), [65538])
    content = bytes([0, 0, 0x0E, 1, 0, 0, 0, 1, 0x40, 0x09, 0x21, 0xFB, 0x54, 0x44, 0x2D, 0x18])  # pi
    assert load_idx(write_tmp(content))[0] == np.pi


def test_empty_dimension_gives_an_empty_array(tmp_path):
    path = write(tmp_path / "empty", bytes([0, 0, 0x08, 2, 0, 0, 0, 0, 0, 0, 0, 28]))
    assert load_idx(path).shape == (0, 28)


def test_gzip_is_detected_from_content_not_name(tmp_path):
    expected = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = write(tmp_path / "train-images-idx3-ubyte", idx_bytes(expected, 0x08), compress=True)
    np.testing.assert_array_equal(load_idx(path), expected)
    np.testing.assert_array_equal(load_idx(str(path)), expected)


# --------------------------------------------------------------------------------------------
# Errors.


def test_bad_magic_names_the_file(tmp_path):
    path = write(tmp_path / "not-idx", b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}: bad magic number 89 50 4e 47")):
        load_idx(path)


def test_unknown_dtype_code(tmp_path):
    path = write(tmp_path / "f", bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 5]))
    with pytest.raises(ValueError, match=r"unknown IDX dtype code 0x0A; known codes are 0x08 \(uint8\)"):
        load_idx(path)


def test_truncated_data_gives_needed_and_found_bytes(tmp_path):
    full = idx_bytes(np.arange(6, dtype=np.int32).reshape(2, 3), 0x0C)
    path = write(tmp_path / "f", full[:-5])
    message = "truncated data: shape (2, 3) of int32 needs 24 bytes after the header, the file has 19"
    with pytest.raises(ValueError, match=re.escape(message)):
        load_idx(path)


def test_truncated_gzipped_data(tmp_path):
    full = idx_bytes(np.arange(6, dtype=np.uint8), 0x08)
    path = write(tmp_path / "f.gz", full[:-1], compress=True)
    with pytest.raises(ValueError, match="truncated data"):
        load_idx(path)


def test_truncated_header(tmp_path):
    path = write(tmp_path / "f", bytes([0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0]))
    message = "truncated header: 3 dimensions need 16 header bytes, the file has 10"
    with pytest.raises(ValueError, match=re.escape(message)):
        load_idx(path)


def test_too_short_for_a_magic_number(tmp_path):
    with pytest.raises(ValueError, match="2 bytes is too short"):
        load_idx(write(tmp_path / "f", b"\x00\x00"))


def test_trailing_bytes_are_an_error(tmp_path):
    path = write(tmp_path / "f", idx_bytes(np.arange(4, dtype=np.uint8), 0x08) + b"\x00\x00")
    with pytest.raises(ValueError, match="2 unexpected bytes after the data of shape"):
        load_idx(path)


def test_corrupt_gzip(tmp_path):
    compressed = gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8), 0x08))
    path = write(tmp_path / "f.gz", compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated gzip data"):
        load_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_idx(tmp_path / "nothing-here")
