"""Tests for jaxnn.data.check_dataset: each kind of bad data raises the right error, naming where."""

import re

import numpy as np
import pytest

from jaxnn.data import check_dataset


def good_data(n=6, features=3, classes=4):
    r = np.random.default_rng(0)
    return r.normal(size=(n, features)).astype(np.float32), (np.arange(n) % classes).astype(np.int32)


def test_good_data_passes_unchanged():
    x, y = good_data()
    x_before, y_before = x.copy(), y.copy()
    assert check_dataset(x, y, 4) is None
    assert check_dataset(x, y, 4, name="test", input_shape=(3,)) is None
    assert check_dataset(x) is None
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)


@pytest.mark.parametrize("bad, shown", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_non_finite_input_gives_first_index_in_row_major_order(bad, shown):
    x = np.zeros((5, 2, 3, 1), np.float32)
    x[3, 0, 2, 0] = bad
    x[4, 1, 0, 0] = bad  # later in row-major order: not the one reported
    message = f"train x contains {shown} at index (3, 0, 2, 0) (example 3)"
    with pytest.raises(ValueError, match=re.escape(message)):
        check_dataset(x, np.zeros(5, np.int32), 2)


def test_non_finite_one_dimensional_input_gives_its_index():
    x = np.array([0.0, 1.0, np.nan], np.float64)
    with pytest.raises(ValueError, match=re.escape("validation x contains NaN at index 2;")):
        check_dataset(x, name="validation")


def test_finite_values_whose_sum_overflows_pass_and_infinities_among_them_are_found():
    # The check sums first: a sum that overflows from finite values is no error.
    huge = np.full((4, 3), 3e38, np.float32)
    assert check_dataset(huge) is None
    huge[2, 1] = -np.inf
    with pytest.raises(ValueError, match=re.escape("train x contains -inf at index (2, 1) (example 2)")):
        check_dataset(huge)


def test_integer_inputs_need_no_finiteness_check():
    check_dataset(np.array([[1, 2], [3, 4]], np.int32), np.array([0, 1]), 2)


@pytest.mark.parametrize("label, index", [(4, 2), (-1, 1), (99, 0)])
def test_label_out_of_range_gives_label_and_index(label, index):
    x, y = good_data()
    y[index] = label
    y[5] = 7  # a later bad label is not the one reported
    message = f"train y: label {label} at index {index} is outside [0, 4)"
    with pytest.raises(ValueError, match=re.escape(message)):
        check_dataset(x, y, 4)


def test_float_labels_are_a_type_error_with_a_cast_hint():
    x, y = good_data()
    message = "train y must hold integer class ids, got dtype float32; they are whole numbers"
    with pytest.raises(TypeError, match=re.escape(message)):
        check_dataset(x, y.astype(np.float32), 4)
    fractional = np.full(6, 0.5)
    with pytest.raises(TypeError, match=r"got dtype float64$"):
        check_dataset(x, fractional, 4)


def test_bool_labels_are_a_type_error():
    x, _ = good_data()
    with pytest.raises(TypeError, match="got dtype bool"):
        check_dataset(x, np.ones(6, bool), 2)


def test_empty_data():
    with pytest.raises(ValueError, match=re.escape("test x is empty: it has shape (0, 3)")):
        check_dataset(np.zeros((0, 3), np.float32), np.zeros(0, np.int32), 2, name="test")


def test_length_mismatch_names_both_lengths():
    x, y = good_data()
    message = "train x and y differ in length: x has 6 examples (shape (6, 3)), y has 5"
    with pytest.raises(ValueError, match=re.escape(message)):
        check_dataset(x, y[:5], 4)


def test_label_column_is_a_wrong_ndim_with_a_reshape_hint():
    x, y = good_data()
    message = "must be class ids of shape (N,), got shape (6, 1) (ndim 2); flatten"
    with pytest.raises(ValueError, match=re.escape(message)):
        check_dataset(x, y[:, None], 4)


def test_wrong_input_shape_names_both_shapes():
    x, y = good_data()
    message = "train x has per-example shape (3,) (ndim 1), but input_shape is (3, 1)"
    with pytest.raises(ValueError, match=re.escape(message)):
        check_dataset(x, y, 4, input_shape=(3, 1))


def test_scalar_input_is_rejected():
    with pytest.raises(ValueError, match="example axis"):
        check_dataset(np.float32(1.0))


@pytest.mark.parametrize("x", [np.array(["a", "b"]), np.ones(2, np.complex64), [[1.0], [2.0, 3.0]]])
def test_non_numeric_inputs_are_a_type_error(x):
    with pytest.raises(TypeError, match="train x must be an array of"):
        check_dataset(x)


def test_targets_without_num_classes_may_be_float_but_must_be_finite():
    x, _ = good_data()
    targets = np.ones((6, 2), np.float32)
    check_dataset(x, targets)
    targets[4, 1] = np.nan
    with pytest.raises(ValueError, match=re.escape("train y contains NaN at index (4, 1) (example 4)")):
        check_dataset(x, targets)


@pytest.mark.parametrize("num_classes, error", [(0, ValueError), (2.0, TypeError), (True, TypeError)])
def test_bad_num_classes(num_classes, error):
    x, y = good_data(classes=2)
    with pytest.raises(error, match=r"`num_classes` .*must be a positive int"):
        check_dataset(x, y, num_classes)
