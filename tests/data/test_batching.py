"""Tests for jaxnn.data batching and splitting: partitions, reproducibility, scikit-learn's KFold."""

import math
import re

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.model_selection import KFold

from jaxnn.data import batches, kfold, num_batches, train_val_split


def ids_and_labels(n, classes=3):
    """x holds each example's id (so a batch shows which examples it took), y its class."""
    x = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    y = (np.arange(n) * 7 % classes).astype(np.int32)
    return x, y


# --------------------------------------------------------------------------------------------
# batches and num_batches.


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 50), batch_size=st.integers(1, 60), shuffle=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_every_example_exactly_once_per_epoch(n, batch_size, shuffle, seed):
    x, y = ids_and_labels(n)
    out = list(batches(x, y, batch_size=batch_size, shuffle=shuffle, seed=seed))
    assert len(out) == math.ceil(n / batch_size) == num_batches(n, batch_size)
    sizes = [len(xb) for xb, _ in out]
    assert sizes[:-1] == [batch_size] * (len(out) - 1)
    assert sizes[-1] == (n % batch_size or batch_size)
    seen = np.concatenate([xb[:, 0] for xb, _ in out]).astype(int)
    if shuffle:
        np.testing.assert_array_equal(np.sort(seen), np.arange(n))
    else:
        np.testing.assert_array_equal(seen, np.arange(n))
    for xb, yb in out:  # inputs and labels stay paired
        np.testing.assert_array_equal(yb, y[xb[:, 0].astype(int)])


@pytest.mark.parametrize("n, batch_size", [(10, 3), (9, 3), (5, 5)])
def test_drop_remainder_leaves_out_only_the_partial_batch(n, batch_size):
    x, y = ids_and_labels(n)
    out = list(batches(x, y, batch_size=batch_size, shuffle=True, seed=1, drop_remainder=True))
    assert len(out) == n // batch_size == num_batches(n, batch_size, drop_remainder=True)
    assert all(len(xb) == batch_size for xb, _ in out)
    seen = np.concatenate([xb[:, 0] for xb, _ in out]).astype(int)
    assert len(set(seen)) == len(seen) == batch_size * (n // batch_size)


def test_last_partial_batch_without_shuffle():
    x = np.arange(10)
    out = list(batches(x, batch_size=4))
    assert [b.tolist() for b in out] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_shuffles_are_reproducible_from_the_seed():
    x, y = ids_and_labels(100)

    def order(**kwargs):
        return np.concatenate([xb[:, 0] for xb, _ in batches(x, y, batch_size=16, shuffle=True, **kwargs)])

    np.testing.assert_array_equal(order(seed=3), order(seed=3))
    np.testing.assert_array_equal(order(seed=(3, 1)), order(seed=(3, 1)))
    assert not np.array_equal(order(seed=3), order(seed=4))
    assert not np.array_equal(order(seed=(3, 0)), order(seed=(3, 1)))
    assert not np.array_equal(order(seed=3), np.arange(100))
    key = jax.random.key(0)
    np.testing.assert_array_equal(order(seed=key), order(seed=jax.random.key(0)))
    assert not np.array_equal(order(seed=key), order(seed=jax.random.fold_in(key, 1)))
    np.testing.assert_array_equal(order(seed=jax.random.PRNGKey(5)), order(seed=jax.random.PRNGKey(5)))
    generator = np.random.default_rng(0)
    assert not np.array_equal(order(seed=generator), order(seed=generator))  # it advances


def test_without_labels_yields_arrays():
    out = list(batches(np.arange(5.0), batch_size=2, shuffle=True, seed=0))
    assert all(isinstance(b, np.ndarray) for b in out)
    np.testing.assert_array_equal(np.sort(np.concatenate(out)), np.arange(5.0))


def test_jax_arrays_are_accepted():
    out = list(batches(jax.numpy.arange(6), jax.numpy.arange(6), batch_size=4))
    assert [len(b) for b, _ in out] == [4, 2]


def test_errors_are_raised_at_the_call_not_the_first_batch():
    x, y = ids_and_labels(10)
    with pytest.raises(ValueError, match=re.escape("batches: shuffle=True needs a seed")):
        batches(x, y, batch_size=2, shuffle=True)
    with pytest.raises(ValueError, match=re.escape("got x of shape (10, 2) and y of shape (9,)")):
        batches(x, y[:9], batch_size=2)
    with pytest.raises(ValueError, match=re.escape("`batch_size` (=0) must be a positive int")):
        batches(x, y, batch_size=0)
    with pytest.raises(TypeError, match="`batch_size` must be a positive int, got 2.0"):
        batches(x, y, batch_size=2.0)
    with pytest.raises(ValueError, match="drop_remainder=True with 10 examples and batch_size=16 leaves no"):
        batches(x, y, batch_size=16, drop_remainder=True)
    with pytest.raises(TypeError, match="seed must be a non-negative int"):
        batches(x, y, batch_size=2, shuffle=True, seed=-1)
    with pytest.raises(TypeError, match="`shuffle` must be True or False"):
        batches(x, y, batch_size=2, shuffle="yes")


def test_num_batches_closed_form():
    assert [num_batches(n, 4) for n in range(9)] == [0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert [num_batches(n, 4, drop_remainder=True) for n in range(9)] == [0, 0, 0, 0, 1, 1, 1, 1, 2]


# --------------------------------------------------------------------------------------------
# train_val_split.


@pytest.mark.parametrize("n, fraction", [(100, 0.2), (37, 0.3), (10, 0.5), (101, 0.115)])
def test_train_val_split_partitions_and_stratifies(n, fraction):
    x, y = ids_and_labels(n, classes=4)
    x_train, y_train, x_val, y_val = train_val_split(x, y, fraction, seed=0)
    val_count = math.floor(fraction * n + 0.5)
    assert len(x_val) == len(y_val) == val_count and len(x_train) == len(y_train) == n - val_count
    train_ids, val_ids = x_train[:, 0].astype(int), x_val[:, 0].astype(int)
    assert set(train_ids).isdisjoint(val_ids)
    np.testing.assert_array_equal(np.sort(np.concatenate([train_ids, val_ids])), np.arange(n))
    np.testing.assert_array_equal(y_train, y[train_ids])
    np.testing.assert_array_equal(y_val, y[val_ids])
    for label in range(4):
        share = val_count * np.sum(y == label) / n
        assert math.floor(share) <= np.sum(y_val == label) <= math.ceil(share)


def test_train_val_split_is_reproducible_and_random():
    x, y = ids_and_labels(60)
    first = train_val_split(x, y, 0.25, seed=5)
    second = train_val_split(x, y, 0.25, seed=5)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    other = train_val_split(x, y, 0.25, seed=6)
    assert not np.array_equal(np.sort(first[2][:, 0]), np.sort(other[2][:, 0]))


def test_train_val_split_without_stratification_takes_any_targets():
    x = np.arange(20, dtype=np.float32)
    targets = np.linspace(0, 1, 20)
    x_train, _, x_val, t_val = train_val_split(x, targets, 0.2, seed=0, stratify=False)
    assert len(x_val) == 4
    np.testing.assert_array_equal(np.sort(np.concatenate([x_train, x_val])), x)
    np.testing.assert_allclose(t_val, targets[x_val.astype(int)])
    with pytest.raises(TypeError, match="stratify=True needs integer class ids"):
        train_val_split(x, targets, 0.2, seed=0)


@pytest.mark.parametrize("fraction, error, message", [
    (0.0, ValueError, "must be in (0, 1)"),
    (1.5, ValueError, "must be in (0, 1)"),
    (0.01, ValueError, "val_fraction=0.01 of 10 examples gives 0"),
    ("0.2", TypeError, "must be a float in (0, 1)"),
])
def test_train_val_split_bad_fraction(fraction, error, message):
    x, y = ids_and_labels(10)
    with pytest.raises(error, match=re.escape(message)):
        train_val_split(x, y, fraction, seed=0)


# --------------------------------------------------------------------------------------------
# kfold.


def check_partition(folds, n, k):
    assert len(folds) == k
    all_val = np.concatenate([val for _, val in folds])
    np.testing.assert_array_equal(np.sort(all_val), np.arange(n))  # each example validated once
    for train, val in folds:
        assert set(train).isdisjoint(val)
        np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(n))
    sizes = [len(val) for _, val in folds]
    assert sizes == [n // k + 1] * (n % k) + [n // k] * (k - n % k)


@pytest.mark.parametrize("n, k", [(10, 3), (12, 4), (7, 7), (23, 5)])
def test_kfold_without_shuffle_matches_scikit_learn(n, k):
    ours = list(kfold(n, k, shuffle=False))
    check_partition(ours, n, k)
    for (train, val), (sk_train, sk_val) in zip(ours, KFold(k).split(np.zeros(n))):
        np.testing.assert_array_equal(train, sk_train)
        np.testing.assert_array_equal(val, sk_val)


@pytest.mark.parametrize("n, k", [(10, 3), (50, 5), (23, 4)])
def test_kfold_shuffled_partitions_and_is_reproducible(n, k):
    x = np.zeros((n, 3))
    folds = list(kfold(x, k, seed=1))
    check_partition(folds, n, k)
    again = list(kfold(n, k, seed=1))
    for (a_train, a_val), (b_train, b_val) in zip(folds, again):
        np.testing.assert_array_equal(a_train, b_train)
        np.testing.assert_array_equal(a_val, b_val)
    contiguous = list(kfold(n, k, shuffle=False))
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(folds, contiguous))


@pytest.mark.parametrize("n, k, classes", [(30, 3, 3), (47, 5, 4), (20, 4, 7)])
def test_kfold_stratified_spreads_each_class_evenly(n, k, classes):
    labels = np.random.default_rng(2).integers(0, classes, n)
    folds = list(kfold(n, k, seed=0, labels=labels))
    check_partition(folds, n, k)
    for label in range(classes):
        counts = [np.sum(labels[val] == label) for _, val in folds]
        assert max(counts) - min(counts) <= 1


def test_kfold_errors():
    with pytest.raises(ValueError, match=re.escape("k must be in [2, N] = [2, 5], got 6")):
        kfold(5, 6, seed=0)
    with pytest.raises(ValueError, match=re.escape("k must be in [2, N] = [2, 5], got 1")):
        kfold(5, 1, seed=0)
    with pytest.raises(ValueError, match="shuffle=True needs a seed"):
        kfold(5, 2)
    with pytest.raises(TypeError, match=re.escape("labels must be integer class ids of shape (5,)")):
        kfold(5, 2, seed=0, labels=np.zeros(4, np.int32))
