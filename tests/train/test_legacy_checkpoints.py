"""Files written by jaxnn 0.1.0, before layer kinds were renamed to their constructor's snake_case.

``tests/legacy/`` holds a checkpoint and a run folder written by that release (its README says
how). A Sequential named its children after their kind then (``batchnorm_6``, ``attention_3``),
so these files hold leaf names today's models no longer use; they must still restore, evaluate
and resume, to the same numbers.
"""

import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_bit_equal

import jaxnn
from jaxnn import optim
from jaxnn.cli import main
from jaxnn.train import create_train_state, read_metadata, restore_checkpoint, save_checkpoint


LEGACY = pathlib.Path(__file__).parent.parent / "legacy"


def tiny_model():
    """The model tiny_v1.npz was saved from, built with today's layer kinds."""
    return jaxnn.Sequential([
        jaxnn.Dense(8), jaxnn.SinusoidalPositionalEmbedding(), jaxnn.LearnedPositionalEmbedding(4),
        jaxnn.MultiHeadAttention(2), jaxnn.TransformerEncoderBlock(2, mlp_ratio=1), jaxnn.LayerNorm(),
        jaxnn.BatchNorm(), jaxnn.GlobalAvgPool(), jaxnn.Dense(3)])


def probe_input():
    return jnp.asarray(np.linspace(-1, 1, 2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5))


def test_the_fixture_holds_the_former_names():
    names = {entry["path"] for entry in read_metadata(LEGACY / "tiny_v1.npz")["jaxnn"]["leaves"]}
    for former in ("params/batchnorm_6/scale", "state/batchnorm_6/var", "params/layernorm_5/bias",
                   "params/attention_3/q/w", "params/positional_embedding_2/table",
                   "params/transformer_block_4/attention/o/b"):
        assert former in names


def test_a_checkpoint_written_before_the_renames_restores_and_computes_the_same_output():
    model = tiny_model()
    template = create_train_state(model, optim.adam(1e-2), jax.random.key(1), (4, 5))
    assert "batch_norm_6" in template.params and "multi_head_attention_3" in template.params
    restored, metadata = restore_checkpoint(LEGACY / "tiny_v1.npz", template)
    # BatchNorm's running statistics came along: the saved state was updated by one training pass.
    assert not np.allclose(restored.state["batch_norm_6"]["var"], 1.0)
    y, _ = model.apply(restored.params, restored.state, probe_input())
    np.testing.assert_allclose(y, np.asarray(metadata["probe_output"], np.float32), rtol=1e-6, atol=1e-6)


def test_a_restored_legacy_checkpoint_saves_under_the_new_names(tmp_path):
    template = create_train_state(tiny_model(), optim.adam(1e-2), jax.random.key(1), (4, 5))
    restored, _ = restore_checkpoint(LEGACY / "tiny_v1.npz", template)
    save_checkpoint(tmp_path / "new.npz", restored)
    names = {entry["path"] for entry in read_metadata(tmp_path / "new.npz")["jaxnn"]["leaves"]}
    assert "params/batch_norm_6/scale" in names and not any("batchnorm_" in name for name in names)
    again, _ = restore_checkpoint(tmp_path / "new.npz", template)
    assert_bit_equal(restored, again)


def test_children_named_like_former_kinds_by_the_user_keep_their_names(tmp_path):
    model = jaxnn.Sequential({"batchnorm_0": jaxnn.Dense(2), "batch_norm_1": jaxnn.BatchNorm()})
    template = create_train_state(model, optim.sgd(0.1), jax.random.key(0), (3,))
    save_checkpoint(tmp_path / "own.npz", template)
    restored, _ = restore_checkpoint(tmp_path / "own.npz", template)
    assert_bit_equal(template, restored)


# Trains a Transformer for an epoch, so -m slow; the default run keeps the restore of a checkpoint
# written before the renames and the same output computed with it (the tests above).
@pytest.mark.slow
def test_evaluate_and_resume_an_old_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(LEGACY / "transformer_run", run)
    saved = json.loads((run / "metrics.json").read_text())
    assert main(["evaluate", str(run)]) == 0
    printed = capsys.readouterr().out
    assert f"test accuracy {saved['test_accuracy']:.4f}  test loss {saved['test_loss']:.4f}" in printed
    saved_history = json.loads((run / "history.json").read_text())
    # Resumed to epoch 2 twice, from two copies of the folder: the same numbers both times.
    twin = tmp_path / "twin"
    shutil.copytree(LEGACY / "transformer_run", twin)
    results = []
    for folder in (run, twin):
        assert main(["train", "--out", str(folder), "--epochs", "2", "--resume", "--no-progress", "--quiet"]) == 0
        results.append(json.loads((folder / "metrics.json").read_text()))
    resumed = results[0]
    assert results[0]["test_accuracy"] == results[1]["test_accuracy"]
    assert results[0]["test_loss"] == results[1]["test_loss"]
    # Since steps draw their dropout keys with jaxnn.train.step.step_key, and the train state's
    # key moves once an epoch rather than every step, the second epoch draws other masks and
    # another order than 0.1.0 did, so the run no longer equals 0.1.0's run without a break
    # (whose metrics.json read: test_accuracy 0.7493036211699164, test_loss 0.8225970680003046).
    # It trains as well: within 3 points of accuracy and 10% of the loss.
    assert resumed["test_accuracy"] == pytest.approx(0.7493036211699164, abs=0.03)
    assert resumed["test_loss"] == pytest.approx(0.8225970680003046, rel=0.1)
    # The first epoch's record is kept and the second appended.
    history = json.loads((run / "history.json").read_text())
    assert len(saved_history["loss"]) == 1 and len(history["loss"]) == 2
    assert history["loss"][0] == saved_history["loss"][0]
    assert history["accuracy"][0] == saved_history["accuracy"][0]
