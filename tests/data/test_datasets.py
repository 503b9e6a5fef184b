"""Tests for the jaxnn.data loaders against scikit-learn, the mnist1d package and closed forms."""

import gzip
import math
import random
import re
import struct
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits

from jaxnn.data import DATASETS, Dataset, digits, idx_dataset, load, mnist1d, moons, spirals
from jaxnn.data import datasets as datasets_module


def check_common(data, name, input_shape, num_classes, train_size, test_size):
    assert isinstance(data, Dataset)
    assert data.name == name and data.num_classes == num_classes and data.input_shape == input_shape
    assert data.x_train.shape == (train_size, *input_shape) and data.x_test.shape == (test_size, *input_shape)
    assert data.y_train.shape == (train_size,) and data.y_test.shape == (test_size,)
    assert data.x_train.dtype == data.x_test.dtype == np.float32
    assert data.y_train.dtype == data.y_test.dtype == np.int32
    assert isinstance(data.description, str) and data.description
    assert name in repr(data) and "float32" in repr(data)


def all_examples(data):
    """Train and test inputs and labels together."""
    return np.concatenate([data.x_train, data.x_test]), np.concatenate([data.y_train, data.y_test])


def sorted_rows(x, y):
    """The (input, label) pairs as rows, sorted, so two datasets compare as multisets."""
    rows = np.concatenate([x.reshape(len(x), -1).astype(np.float64), y[:, None]], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


# --------------------------------------------------------------------------------------------
# digits.


def test_digits_shapes_scaling_and_contents():
    data = digits()
    check_common(data, "digits", (64,), 10, 1438, 359)
    bunch = load_digits()
    # Train and test together are scikit-learn's digits, pixels / 16, each exactly once.
    ours = sorted_rows(*all_examples(data))
    np.testing.assert_array_equal(ours, sorted_rows(bunch.data / 16.0, bunch.target))
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0


def test_digits_split_is_the_seeded_permutation_of_the_example():
    data = digits()
    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.target))
    np.testing.assert_array_equal(data.y_test, bunch.target[order[:359]])
    np.testing.assert_array_equal(data.x_train, (bunch.data[order[359:]] / 16.0).astype(np.float32))
    again = digits()
    np.testing.assert_array_equal(data.x_train, again.x_train)
    np.testing.assert_array_equal(data.y_test, again.y_test)
    other = digits(seed=1)
    assert not np.array_equal(sorted_rows(data.x_test, data.y_test), sorted_rows(other.x_test, other.y_test))
    smaller = digits(test_fraction=0.5)
    assert len(smaller.y_test) == 899 and len(smaller.y_train) == 898  # 1797 / 2 = 898.5, rounded up


def test_digits_images_are_scikit_learns_images():
    data = digits(image=True)
    check_common(data, "digits", (8, 8, 1), 10, 1438, 359)
    bunch = load_digits()
    ours = sorted_rows(*all_examples(data))
    np.testing.assert_array_equal(ours, sorted_rows(bunch.images[..., None] / 16.0, bunch.target))


def test_loaders_return_fresh_arrays():
    data = digits()
    data.x_train[:] = -1.0
    assert digits().x_train.min() == 0.0


def test_digits_bad_arguments():
    with pytest.raises(ValueError, match=re.escape("digits: test_fraction must be in (0, 1), got 1.0")):
        digits(test_fraction=1.0)
    with pytest.raises(TypeError, match="`image` must be True or False"):
        digits(image=1)
    with pytest.raises(TypeError, match="seed must be a non-negative int"):
        digits(seed=-3)


# --------------------------------------------------------------------------------------------
# mnist1d.


@pytest.fixture(scope="module")
def package_mnist1d():
    """The mnist1d package's own dataset with its default arguments (the paper's)."""
    from mnist1d.data import get_dataset_args, make_dataset

    state = np.random.get_state(), random.getstate()
    try:
        return make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state[0])
        random.setstate(state[1])


def test_mnist1d_matches_the_package_and_leaves_global_random_state(package_mnist1d):
    datasets_module._mnist1d_arrays.cache_clear()  # generate now, to see its effect on global state
    np.random.seed(123)
    random.seed(123)
    data = mnist1d()
    numpy_draw, python_draw = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    assert (numpy_draw, python_draw) == (np.random.random(), random.random())

    check_common(data, "mnist1d", (40,), 10, 4000, 1000)
    np.testing.assert_array_equal(data.x_train, package_mnist1d["x"].astype(np.float32))
    np.testing.assert_array_equal(data.y_train, package_mnist1d["y"])
    np.testing.assert_array_equal(data.x_test, package_mnist1d["x_test"].astype(np.float32))
    np.testing.assert_array_equal(data.y_test, package_mnist1d["y_test"])
    assert set(np.unique(data.y_train)) == set(range(10))


def test_mnist1d_sequence_form(package_mnist1d):
    data = mnist1d(sequence=True)
    check_common(data, "mnist1d", (40, 1), 10, 4000, 1000)
    np.testing.assert_array_equal(data.x_test[:, :, 0], package_mnist1d["x_test"].astype(np.float32))


# --------------------------------------------------------------------------------------------
# moons and spirals.


def test_moons_lie_on_their_half_circles_without_noise():
    data = moons(n=101, noise=0.0, seed=3)
    check_common(data, "moons", (2,), 2, 81, 20)
    x, y = all_examples(data)
    assert np.sum(y == 0) == 50 and np.sum(y == 1) == 51  # floor(n/2) and the rest
    upper, lower = x[y == 0], x[y == 1]
    # Class 0: (cos t, sin t); class 1: (1 - cos t, 1/2 - sin t), t in [0, pi].
    np.testing.assert_allclose(np.hypot(upper[:, 0], upper[:, 1]), 1.0, atol=1e-6)
    assert np.all(upper[:, 1] >= -1e-6)
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1.0, lower[:, 1] - 0.5), 1.0, atol=1e-6)
    assert np.all(lower[:, 1] <= 0.5 + 1e-6)


def test_moons_split_is_balanced_and_seeded():
    data = moons()
    check_common(data, "moons", (2,), 2, 800, 200)
    assert np.sum(data.y_train == 0) == 400 and np.sum(data.y_test == 0) == 100
    np.testing.assert_array_equal(moons(seed=1).x_train, moons(seed=1).x_train)
    assert not np.array_equal(moons(seed=1).x_train, moons(seed=2).x_train)
    noisy = moons(noise=0.3)
    assert not np.allclose(np.hypot(*noisy.x_train[noisy.y_train == 0].T), 1.0, atol=0.05)


@pytest.mark.parametrize("n, classes", [(600, 3), (601, 4), (20, 2)])
def test_spirals_follow_the_formula(n, classes):
    data = spirals(n, classes, noise=0.0, seed=0)
    x, y = all_examples(data)
    counts = [n // classes + (j < n % classes) for j in range(classes)]
    test_size = math.floor(0.2 * n + 0.5)
    check_common(data, "spirals", (2,), classes, n - test_size, test_size)
    for arm, count in enumerate(counts):
        points = x[y == arm]
        assert len(points) == count
        radius = np.hypot(points[:, 0], points[:, 1])
        order = np.argsort(radius)
        # r_i = i / (m - 1) and t_i = 4j + 4 r_i: x = (r sin t, r cos t).
        expected_radius = np.linspace(0, 1, count)
        np.testing.assert_allclose(radius[order], expected_radius, atol=1e-6)
        angle = 4.0 * arm + 4.0 * expected_radius
        expected = np.stack([expected_radius * np.sin(angle), expected_radius * np.cos(angle)], axis=1)
        np.testing.assert_allclose(points[order], expected, atol=1e-6)


def test_spirals_noise_moves_angles_not_radii():
    data = spirals(300, 3, noise=0.3, seed=1)
    x, y = all_examples(data)
    for arm in range(3):
        radius = np.sort(np.hypot(*x[y == arm].T))
        np.testing.assert_allclose(radius, np.linspace(0, 1, 100), atol=1e-6)
    clean = spirals(300, 3, noise=0.0, seed=1)
    assert not np.allclose(sorted_rows(data.x_train, data.y_train), sorted_rows(clean.x_train, clean.y_train))
    for arm in range(3):  # stratified split: 80 / 20 of each arm's 100
        assert np.sum(data.y_train == arm) == 80 and np.sum(data.y_test == arm) == 20


def test_toy_problem_bad_arguments():
    with pytest.raises(ValueError, match=re.escape("`classes` (=1) must be an int of at least 2")):
        spirals(100, 1)
    with pytest.raises(ValueError, match="n must be at least 2 \\* classes = 8"):
        spirals(7, 4)
    with pytest.raises(ValueError, match=re.escape("`noise` (=-0.1) must be non-negative")):
        moons(noise=-0.1)
    with pytest.raises(ValueError, match="test_fraction=0.2 of 2 examples gives 0"):
        moons(n=2)


# --------------------------------------------------------------------------------------------
# IDX directories.


def idx_file(array, code=0x08):
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype({0x08: ">u1", 0x0D: ">f4"}[code]).tobytes()


def write_idx_directory(directory, images_train, labels_train, images_test, labels_test, gz=(), dotted=False):
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "train-images-idx3-ubyte": images_train, "train-labels-idx1-ubyte": labels_train,
        "t10k-images-idx3-ubyte": images_test, "t10k-labels-idx1-ubyte": labels_test,
    }
    for stem, array in files.items():
        content = idx_file(array, 0x08 if array.dtype == np.uint8 else 0x0D)
        filename = stem.replace("-idx", ".idx") if dotted else stem
        if stem in gz:
            (directory / (filename + ".gz")).write_bytes(gzip.compress(content))
        else:
            (directory / filename).write_bytes(content)
    return directory


def small_mnist(seed=0, train=6, test=4, height=5, width=3):
    r = np.random.default_rng(seed)
    return (
        r.integers(0, 256, (train, height, width), dtype=np.uint8), (np.arange(train) % 4).astype(np.uint8),
        r.integers(0, 256, (test, height, width), dtype=np.uint8), (np.arange(test) % 3).astype(np.uint8),
    )


def test_idx_dataset_images(tmp_path):
    arrays = small_mnist()
    gzipped = ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    directory = write_idx_directory(tmp_path / "fashion", *arrays, gz=gzipped)
    data = idx_dataset(directory)
    check_common(data, "fashion", (5, 3, 1), 4, 6, 4)
    np.testing.assert_allclose(data.x_train[..., 0], arrays[0] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(data.x_test[..., 0], arrays[2] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.y_train, arrays[1])
    np.testing.assert_array_equal(data.y_test, arrays[3])
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0


def test_idx_dataset_flattened_named_and_dotted_names(tmp_path):
    arrays = small_mnist(1)
    directory = write_idx_directory(tmp_path / "kmnist", *arrays, dotted=True)
    data = idx_dataset(str(directory), flatten=True, name="mine", num_classes=10)
    check_common(data, "mine", (15,), 10, 6, 4)
    np.testing.assert_allclose(data.x_train, arrays[0].reshape(6, 15) / 255.0, rtol=1e-6)


def test_idx_dataset_float_images_are_not_rescaled(tmp_path):
    images = np.linspace(-2, 2, 6 * 4, dtype=np.float32).reshape(6, 2, 2)
    arrays = small_mnist(2, height=2, width=2)
    directory = write_idx_directory(tmp_path / "floats", images, arrays[1], images[:4], arrays[3])
    np.testing.assert_array_equal(idx_dataset(directory).x_train[..., 0], images)


def test_idx_dataset_errors(tmp_path):
    images_train, labels_train, images_test, labels_test = small_mnist()
    short = write_idx_directory(tmp_path / "short", images_train, labels_train[:5], images_test, labels_test)
    with pytest.raises(ValueError, match=re.escape("short train x and y differ in length: x has 6 examples")):
        idx_dataset(short)
    missing = write_idx_directory(tmp_path / "missing", *small_mnist())
    (missing / "t10k-labels-idx1-ubyte").unlink()
    message = "no t10k-labels-idx1-ubyte in .*; looked for t10k-labels-idx1-ubyte, t10k-labels-idx1-ubyte.gz"
    with pytest.raises(FileNotFoundError, match=message):
        idx_dataset(missing)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        idx_dataset(tmp_path / "nowhere")
    bad_label = labels_test.copy()
    bad_label[2] = 9
    wrong = write_idx_directory(tmp_path / "wrong", images_train, labels_train, images_test, bad_label)
    with pytest.raises(ValueError, match=re.escape("wrong test y: label 9 at index 2 is outside [0, 4)")):
        idx_dataset(wrong, num_classes=4)


# --------------------------------------------------------------------------------------------
# By name, reshaping, missing packages.


def test_load_by_name():
    assert set(DATASETS) == {"digits", "mnist1d", "moons", "spirals", "idx"}
    data = load("spirals", n=60, classes=2)
    check_common(data, "spirals", (2,), 2, 48, 12)
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; known datasets are digits, mnist1d"):
        load("cifar")


def test_with_input_shape():
    data = digits()
    images = data.with_input_shape((8, 8, 1))
    assert images.input_shape == (8, 8, 1) and images.x_test.shape == (359, 8, 8, 1)
    np.testing.assert_array_equal(images.x_train, digits(image=True).x_train)
    np.testing.assert_array_equal(images.y_train, data.y_train)
    message = "digits examples of shape (64,) cannot be reshaped to (8, 9)"
    with pytest.raises(ValueError, match=re.escape(message)):
        data.with_input_shape((8, 9))


@pytest.mark.parametrize("loader, module, package", [
    (digits, "sklearn.datasets", "scikit-learn"),
    (moons, "sklearn.datasets", "scikit-learn"),
    (mnist1d, "mnist1d.data", "mnist1d"),
])
def test_missing_optional_package_names_the_extra(monkeypatch, loader, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    message = f'needs {package}, which is not installed: pip install "jaxnn[data]"'
    with pytest.raises(ImportError, match=re.escape(message)):
        loader()
