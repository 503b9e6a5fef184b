"""Tests for jaxnn.metrics against scikit-learn, NumPy and hand-worked values."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import top_k_accuracy_score

from jaxnn.metrics import accuracy, confusion_matrix, top_k_accuracy


def random_problem(seed, batch=40, classes=6):
    r = np.random.default_rng(seed)
    logits = r.normal(size=(batch, classes)).astype(np.float32)
    labels = r.integers(0, classes, size=batch).astype(np.int32)
    return logits, labels


# --------------------------------------------------------------------------------------------
# accuracy and top_k_accuracy.


def test_accuracy_hand_value():
    logits = jnp.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.0, -1.0]])
    labels = jnp.array([0, 0, 2, 2])
    result = accuracy(logits, labels)
    assert result.dtype == jnp.float32 and result.shape == ()
    assert float(result) == 0.5
    one_hot = jnp.array([[1.0, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1]])
    assert float(accuracy(logits, one_hot)) == 0.5


def test_accuracy_against_numpy_with_batch_axes():
    logits, labels = random_problem(1, batch=60)
    logits, labels = logits.reshape(3, 20, 6), labels.reshape(3, 20)
    expected = np.mean(logits.argmax(-1) == labels)
    assert float(accuracy(jnp.asarray(logits), jnp.asarray(labels))) == pytest.approx(expected)
    per_group = jax.jit(jax.vmap(accuracy))(jnp.asarray(logits), jnp.asarray(labels))
    np.testing.assert_allclose(per_group, np.mean(logits.argmax(-1) == labels, axis=1), rtol=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")  # k = classes
@pytest.mark.parametrize("k", [1, 2, 3, 5, 6])
def test_top_k_accuracy_against_sklearn(k):
    logits, labels = random_problem(2)
    expected = top_k_accuracy_score(labels, logits, k=k, labels=np.arange(6))
    assert float(top_k_accuracy(jnp.asarray(logits), jnp.asarray(labels), k=k)) == pytest.approx(expected)
    jitted = jax.jit(top_k_accuracy, static_argnames="k")
    assert float(jitted(jnp.asarray(logits), jnp.asarray(labels), k=k)) == pytest.approx(expected)


def test_top_k_accuracy_hand_values_and_ties():
    logits = jnp.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    labels = jnp.array([1, 1])
    assert float(top_k_accuracy(logits, labels, k=1)) == 0.0
    assert float(top_k_accuracy(logits, labels, k=2)) == 0.5
    assert float(top_k_accuracy(logits, labels, k=3)) == 1.0
    # Ties go to the lower class index, as argmax: label 2 loses to class 1 at k=1.
    tied = jnp.array([[0.0, 1.0, 1.0]])
    assert float(top_k_accuracy(tied, jnp.array([2]), k=1)) == float(accuracy(tied, jnp.array([2]))) == 0.0
    assert float(top_k_accuracy(tied, jnp.array([1]), k=1)) == float(accuracy(tied, jnp.array([1]))) == 1.0


def test_top_k_accuracy_default_k_and_one_hot_labels():
    logits, labels = random_problem(3, classes=10)
    expected = top_k_accuracy_score(labels, logits, k=5, labels=np.arange(10))
    one_hot = jnp.asarray(np.eye(10, dtype=np.float32)[labels])
    assert float(top_k_accuracy(jnp.asarray(logits), one_hot)) == pytest.approx(expected)


# --------------------------------------------------------------------------------------------
# confusion_matrix.


def test_confusion_matrix_rows_are_true_labels():
    result = confusion_matrix(jnp.array([0, 1, 1, 2, 2, 2]), jnp.array([0, 0, 1, 1, 2, 0]), 3)
    assert result.dtype == jnp.int32
    # (true, predicted): (0,0) (0,1) (1,1) (1,2) (2,2) (0,2)
    np.testing.assert_array_equal(result, [[1, 1, 1], [0, 1, 1], [0, 0, 1]])


@pytest.mark.parametrize("from_logits", [False, True])
def test_confusion_matrix_against_sklearn(from_logits):
    logits, labels = random_problem(4, batch=200, classes=5)
    predictions = logits if from_logits else logits.argmax(-1).astype(np.int32)
    expected = sk_confusion_matrix(labels, logits.argmax(-1), labels=np.arange(5))
    result = confusion_matrix(jnp.asarray(predictions), jnp.asarray(labels), 5)
    np.testing.assert_array_equal(result, expected)
    jitted = jax.jit(confusion_matrix, static_argnums=2)
    np.testing.assert_array_equal(jitted(jnp.asarray(predictions), jnp.asarray(labels), 5), expected)


def test_confusion_matrix_classes_absent_and_batch_axes():
    labels = np.array([[0, 3], [3, 3]])
    predictions = np.array([[0, 3], [0, 3]])
    expected = sk_confusion_matrix(labels.ravel(), predictions.ravel(), labels=np.arange(5))
    np.testing.assert_array_equal(confusion_matrix(predictions, labels, 5), expected)


def test_confusion_matrix_under_jit_drops_out_of_range_pairs():
    jitted = jax.jit(functools.partial(confusion_matrix, num_classes=2))
    result = jitted(jnp.array([0, -1, 1, 1]), jnp.array([0, 0, 5, 1]))
    np.testing.assert_array_equal(result, [[1, 0], [0, 1]])


# --------------------------------------------------------------------------------------------
# Bad input.


BAD_INPUTS = {
    "accuracy label range": (lambda: accuracy(jnp.zeros((4, 3)), jnp.array([0, 1, 3, 2])), ValueError,
                             ["accuracy: label 3 at index (2,) is outside [0, 3)"]),
    "accuracy label shape": (lambda: accuracy(jnp.zeros((4, 3)), jnp.zeros((4, 1), jnp.int32)), ValueError,
                             ["accuracy", "(4, 1)", "(4,)"]),
    "accuracy integer logits": (lambda: accuracy(jnp.zeros((4, 3), jnp.int32), jnp.zeros(4, jnp.int32)), TypeError,
                                ["accuracy", "logits", "int32"]),
    "accuracy bool labels": (lambda: accuracy(jnp.zeros((4, 3)), jnp.zeros(4, bool)), TypeError,
                             ["accuracy", "labels", "bool"]),
    "top_k k zero": (lambda: top_k_accuracy(jnp.zeros((2, 3)), jnp.array([0, 1]), k=0), ValueError,
                     ["top_k_accuracy", "k", "0", "[1, 3]"]),
    "top_k k too large": (lambda: top_k_accuracy(jnp.zeros((2, 3)), jnp.array([0, 1])), ValueError,
                          ["top_k_accuracy", "k", "5", "[1, 3]"]),
    "top_k k float": (lambda: top_k_accuracy(jnp.zeros((2, 3)), jnp.array([0, 1]), k=2.0), TypeError,
                      ["top_k_accuracy", "k"]),
    "top_k label range": (lambda: top_k_accuracy(jnp.zeros((2, 3)), jnp.array([-2, 1]), k=2), ValueError,
                          ["top_k_accuracy", "label -2", "(0,)", "[0, 3)"]),
    "confusion label range": (lambda: confusion_matrix(jnp.array([0, 1]), jnp.array([0, 7]), 3), ValueError,
                              ["confusion_matrix: label 7 at index (1,) is outside [0, 3)"]),
    "confusion prediction range": (lambda: confusion_matrix(jnp.array([[0, 1], [4, 0]]), jnp.zeros((2, 2), jnp.int32), 3),
                                   ValueError, ["confusion_matrix", "prediction 4", "(1, 0)", "[0, 3)"]),
    "confusion shapes": (lambda: confusion_matrix(jnp.array([0, 1, 2]), jnp.array([0, 1]), 3), ValueError,
                         ["confusion_matrix", "(3,)", "(2,)"]),
    "confusion logits shape": (lambda: confusion_matrix(jnp.zeros((2, 4)), jnp.array([0, 1]), 3), ValueError,
                               ["confusion_matrix", "(2, 4)", "(2, 3)"]),
    "confusion float labels": (lambda: confusion_matrix(jnp.array([0, 1]), jnp.array([0.0, 1.0]), 2), TypeError,
                               ["confusion_matrix", "labels", "float32"]),
    "confusion num_classes": (lambda: confusion_matrix(jnp.array([0]), jnp.array([0]), 0), ValueError,
                              ["confusion_matrix", "num_classes", "0"]),
    "confusion bool predictions": (lambda: confusion_matrix(jnp.array([True]), jnp.array([0]), 2), TypeError,
                                   ["confusion_matrix", "predictions", "bool"]),
    "accuracy None logits": (lambda: accuracy(None, jnp.array([0])), TypeError,
                             ["accuracy: logits must be an array, got NoneType"]),
    "top_k ragged labels": (lambda: top_k_accuracy(jnp.zeros((2, 3)), [[0], [1, 2]], k=1), TypeError,
                            ["top_k_accuracy: labels must be an array, got list"]),
    "confusion string labels": (lambda: confusion_matrix(jnp.array([0]), np.array(["0"]), 2), TypeError,
                                ["confusion_matrix: labels must be an array of numbers, got dtype <U1"]),
    "confusion uint8 label range": (lambda: confusion_matrix(jnp.array([0, 1]), np.array([1, 200], np.uint8), 3),
                                    ValueError, ["confusion_matrix: label 200 at index (1,) is outside [0, 3)"]),
    # The mean over no examples is 0 / 0 (NumPy's mean of an empty array is NaN with a warning).
    "accuracy no examples": (lambda: accuracy(jnp.zeros((0, 3)), jnp.zeros((0,), jnp.int32)), ValueError,
                             ["accuracy: the mean over zero examples (logits shape (0, 3)) is undefined"]),
    "top_k no examples": (lambda: top_k_accuracy(jnp.zeros((2, 0, 3)), jnp.zeros((2, 0, 3)), k=2), ValueError,
                          ["top_k_accuracy: the mean over zero examples (logits shape (2, 0, 3)) is undefined"]),
    "accuracy no classes": (lambda: accuracy(jnp.zeros((2, 0)), jnp.zeros((2, 0))), ValueError,
                            ["accuracy: logits must have at least one class (the last axis), got shape (2, 0)"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_with_message(case):
    call, error, words = BAD_INPUTS[case]
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {str(info.value)!r}"


def test_an_empty_confusion_matrix_is_zeros():
    # Counting is well defined on no examples, as scikit-learn's counts of nothing: all zeros.
    np.testing.assert_array_equal(confusion_matrix(jnp.zeros((0,), jnp.int32), jnp.zeros((0,), jnp.int32), 3),
                                  np.zeros((3, 3), np.int32))
