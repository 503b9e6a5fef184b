"""What ``fit`` refuses before training, and where it stops: no silent wrong answers.

Data a compiled step would take without a word (binary targets outside [0, 1], token ids out of
an Embedding's range), an update that overflows the parameters while its loss was finite, and
metric names.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn import optim
from jaxnn.train import Checkpoint, NonFiniteLossError, create_train_state, evaluate, fit, read_metadata


def test_binary_cross_entropy_targets_outside_zero_one_are_refused():
    model = jaxnn.Sequential([jaxnn.Dense(1)])
    state = create_train_state(model, optim.sgd(0.1), jax.random.key(0), (3,))
    x = np.ones((6, 3), np.float32)
    y = np.asarray([0, 1, 2, 1, 0, 1], np.float32)[:, None]
    with pytest.raises(ValueError, match=r"train targets of binary_cross_entropy must be in \[0, 1\].*got 2.0 at index \(2, 0\)"):
        fit(model, optim.sgd(0.1), state, (x, y), epochs=1, loss="binary_cross_entropy", progress=False)
    with pytest.raises(ValueError, match=r"got -1.0 at index \(0, 0\)"):
        evaluate(model, state, (x, -np.ones((6, 1), np.float32)), loss="binary_cross_entropy")
    # Probabilities between 0 and 1 are targets too.
    fit(model, optim.sgd(0.1), state, (x, np.full((6, 1), 0.25, np.float32)), epochs=1,
        loss="binary_cross_entropy", progress=False)


def test_token_ids_outside_the_first_embedding_are_refused_at_entry():
    model = jaxnn.Sequential([jaxnn.Embedding(5, 4), jaxnn.Flatten(), jaxnn.Dense(2)])
    assert model.input_check is not None
    state = create_train_state(model, optim.sgd(0.1), jax.random.key(0), (3,))
    ids = np.zeros((10, 3), np.int32)
    for bad, where in ((7, (4, 1)), (-1, (9, 2))):
        x = ids.copy()
        x[where] = bad
        with pytest.raises(ValueError, match=rf"train data: id {bad} at index \({where[0]}, {where[1]}\) "
                                             r"is outside \[0, 5\)"):
            fit(model, optim.sgd(0.1), state, (x, np.zeros(10, np.int32)), epochs=1, progress=False)
        with pytest.raises(ValueError, match=rf"evaluation data: id {bad}"):
            evaluate(model, state, (x, np.zeros(10, np.int32)))
    # In range, training goes ahead.
    fit(model, optim.sgd(0.1), state, (ids + 4, np.zeros(10, np.int32)), epochs=1, progress=False)


def test_input_checks_follow_the_combinators():
    embedding = jaxnn.Embedding(5, 4)
    assert jaxnn.Sequential([embedding, jaxnn.Dense(2)]).input_check is embedding.input_check
    assert jaxnn.Sequential([jaxnn.Dense(2), embedding]).input_check is None  # sees the Dense's output
    assert jaxnn.Residual(embedding).input_check is embedding.input_check
    both = jaxnn.Concat([jaxnn.Embedding(3, 2), jaxnn.Embedding(9, 2)])
    both.input_check(np.asarray([0, 2]))
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        both.input_check(np.asarray([0, 4]))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_a_step_that_overflows_the_parameters_stops_training_before_any_callback(tmp_path):
    # loss = w^2 on x = 1, y = 0, from w = 1: the first loss is 1, finite, but SGD with a rate of
    # 1e39 makes w - 1e39 * 2w = -inf in float32. The loss of that step was finite; the step is bad.
    model = jaxnn.Sequential([jaxnn.Dense(1, use_bias=False, w_init=jaxnn.init.ones())])
    state = create_train_state(model, optim.sgd(1e39), jax.random.key(0), (1,))
    data = (np.ones((4, 1), np.float32), np.zeros((4, 1), np.float32))
    checkpoint = tmp_path / "checkpoint.npz"
    with pytest.raises(NonFiniteLossError, match="at step 0 .epoch 1.") as caught:
        fit(model, optim.sgd(1e39), state, data, epochs=3, batch_size=4, loss="mse", progress=False,
            callbacks=[Checkpoint(str(checkpoint))])
    assert caught.value.step == 0
    assert not checkpoint.exists()  # no callback saw the epoch


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_the_last_good_checkpoint_holds_finite_parameters(tmp_path):
    # The same loss w^2, one step per epoch, with a rate of 0 for two steps, then 1e39: epochs 1
    # and 2 leave w = 1, and step 2 (epoch 3) sends w to -inf with a finite loss of 1. Training
    # stops there; the checkpoint holds epoch 2 and w = 1.
    model = jaxnn.Sequential([jaxnn.Dense(1, use_bias=False, w_init=jaxnn.init.ones())])
    optimizer = optim.sgd(lambda count: jnp.where(count < 2, 0.0, 1e39))
    state = create_train_state(model, optimizer, jax.random.key(0), (1,))
    data = (np.ones((2, 1), np.float32), np.zeros((2, 1), np.float32))
    checkpoint = tmp_path / "checkpoint.npz"
    with pytest.raises(NonFiniteLossError, match="at step 2 .epoch 3."):
        fit(model, optimizer, state, data, epochs=10, batch_size=2, loss="mse", progress=False,
            callbacks=[Checkpoint(str(checkpoint))])
    assert read_metadata(checkpoint)["epoch"] == 2
    with np.load(checkpoint) as saved:
        np.testing.assert_array_equal(saved["params/dense_0/w"], np.ones((1, 1), np.float32))


def test_metrics_by_name():
    model = jaxnn.Sequential([jaxnn.Dense(3)])
    x = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    y = np.arange(12, dtype=np.int32) % 3
    state = create_train_state(model, optim.sgd(0.1), jax.random.key(0), (4,))
    _, history = fit(model, optim.sgd(0.0), state, (x, y), epochs=1, batch_size=12, progress=False,
                     metrics={"acc": "accuracy"})
    logits, _ = model.apply(state.params, state.state, x)
    assert history["acc"][0] == pytest.approx(float(np.mean(np.argmax(logits, -1) == y)))
    with pytest.raises(ValueError, match=r"unknown metric 'acuracy' for `metrics\['acc'\]`; known metrics are"):
        fit(model, optim.sgd(0.1), state, (x, y), epochs=1, progress=False, metrics={"acc": "acuracy"})


def test_parameters_too_large_for_memory_name_their_size():
    with pytest.raises(MemoryError, match=r"^dense: the parameters need at least 4.0 TiB"):
        jaxnn.Dense(2**40).init(jax.random.key(0), (4,))


def test_all_finite_over_a_tree():
    from jaxnn.train.step import all_finite

    assert bool(all_finite({"a": jnp.ones(3), "n": jnp.arange(3)}))
    assert not bool(all_finite({"a": jnp.ones(3), "b": jnp.asarray([1.0, jnp.inf])}))
    assert not bool(all_finite([jnp.asarray(jnp.nan)]))
