"""Tests for jaxnn.data.standardize and one_hot against closed forms, scikit-learn and np.eye."""

import re

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from jaxnn.data import Standardizer, one_hot, standardize


def features(seed, n, shape=(5,)):
    r = np.random.default_rng(seed)
    values = r.normal(size=(n, *shape)) * r.uniform(0.5, 4, size=shape) + r.normal(size=shape) * 3
    return values.astype(np.float32)


# --------------------------------------------------------------------------------------------
# standardize.


def test_standardize_uses_training_statistics_only():
    train, val, test = features(0, 50), features(1, 20) + 10, features(2, 30) * 3
    train_std, val_std, test_std, scaler = standardize(train, val, test)
    x = train.astype(np.float64)
    mean, std = x.mean(axis=0), np.sqrt(((x - x.mean(axis=0)) ** 2).mean(axis=0))
    np.testing.assert_allclose(train_std, (train - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(val_std, (val - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(test_std, (test - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scaler.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(scaler.scale, std, rtol=1e-6)
    # Standardized by its own statistics the shifted validation data would have mean 0; it keeps its shift.
    assert np.all(np.abs(val_std.mean(axis=0)) > 0.5)
    assert train_std.dtype == val_std.dtype == np.float32


def test_standardize_matches_scikit_learn():
    train, test = features(3, 40, (6,)), features(4, 10, (6,))
    sk = StandardScaler().fit(train.astype(np.float64))
    train_std, test_std, _ = standardize(train, test)
    np.testing.assert_allclose(train_std, sk.transform(train), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(test_std, sk.transform(test), rtol=1e-5, atol=1e-5)


def test_constant_feature_is_only_centered():
    train = np.array([[1.0, 7.0], [3.0, 7.0]], np.float32)
    test = np.array([[2.0, 8.0]], np.float32)
    train_std, test_std, scaler = standardize(train, test)
    np.testing.assert_allclose(train_std, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(test_std, [[0.0, 1.0]])  # (8 - 7) / 1, not (8 - 7) / eps
    np.testing.assert_array_equal(scaler.scale, [1.0, 1.0])  # deviation 1, and 1 for the constant


def test_per_channel_statistics_for_images():
    train = features(5, 8, (4, 4, 3))
    (train_std, scaler) = standardize(train, axis=(0, 1, 2))
    x = train.astype(np.float64)
    mean, std = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
    assert scaler.mean.shape == scaler.scale.shape == (1, 1, 3)
    np.testing.assert_allclose(train_std, (train - mean) / std, rtol=1e-5, atol=1e-5)
    # A fitted scaler applies to a single example too, and inverts.
    np.testing.assert_allclose(scaler(train[0]), train_std[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(scaler.inverse(train_std), train, rtol=1e-5, atol=1e-4)


def test_integer_inputs_become_float32():
    train = np.array([[0, 255], [255, 0]], np.uint8)
    (train_std, scaler) = standardize(train)
    assert isinstance(scaler, Standardizer)
    assert train_std.dtype == np.float32
    np.testing.assert_allclose(train_std, [[-1, 1], [1, -1]])


def test_float64_stays_float64():
    (train_std, _) = standardize(features(6, 10).astype(np.float64))
    assert train_std.dtype == np.float64


def test_standardize_errors():
    train = features(7, 10)
    with pytest.raises(ValueError, match=re.escape("standardize: others[1] has per-example shape (4,)")):
        standardize(train, features(8, 3), features(9, 3, (4,)))
    bad = train.copy()
    bad[6, 2] = np.nan
    message = "standardize: train contains NaN at index (6, 2) (example 6)"
    with pytest.raises(ValueError, match=re.escape(message)):
        standardize(bad)
    with pytest.raises(ValueError, match="axis must include 0"):
        standardize(train, axis=1)
    with pytest.raises(ValueError, match="out of range"):
        standardize(train, axis=(0, 2))
    with pytest.raises(ValueError, match="at least one example"):
        standardize(np.zeros((0, 5), np.float32))


# --------------------------------------------------------------------------------------------
# one_hot.


@pytest.mark.parametrize("shape", [(), (7,), (3, 4)])
def test_one_hot_against_eye(shape):
    labels = np.random.default_rng(0).integers(0, 5, size=shape)
    result = one_hot(labels, 5)
    assert result.shape == (*shape, 5) and result.dtype == np.float32
    np.testing.assert_array_equal(result, np.eye(5)[labels])


def test_one_hot_dtype():
    result = one_hot(np.array([1, 0], np.uint8), 2, dtype=np.int32)
    assert result.dtype == np.int32
    np.testing.assert_array_equal(result, [[0, 1], [1, 0]])


def test_one_hot_errors():
    message = "one_hot labels: label 3 at index (1, 0) is outside [0, 3)"
    with pytest.raises(ValueError, match=re.escape(message)):
        one_hot(np.array([[0, 1], [3, 1]]), 3)
    with pytest.raises(ValueError, match=re.escape("label -1 at index 2 is outside [0, 3)")):
        one_hot(np.array([0, 1, -1]), 3)
    with pytest.raises(TypeError, match="must hold integer class ids, got dtype float64"):
        one_hot(np.array([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match=re.escape("`num_classes` (=0) must be a positive int")):
        one_hot(np.array([0]), 0)
