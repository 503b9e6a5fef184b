"""Tests for ``jaxnn.train.history``: per-epoch metrics, their JSON file, and refusing bad files."""

import json
import os

import numpy as np
import pytest

from jaxnn.train import History


def test_append_records_one_value_per_metric_per_epoch():
    history = History()
    assert history.epochs == 0 and len(history) == 0
    history.append({"loss": 2.0, "accuracy": 0.5})
    history.append({"loss": np.float32(1.5), "accuracy": 0.75})
    assert history.epochs == 2
    assert history["loss"] == [2.0, 1.5] and history["accuracy"] == [0.5, 0.75]
    assert all(type(value) is float for value in history["loss"])
    assert list(history) == ["loss", "accuracy"]
    assert history.to_dict() == {"loss": [2.0, 1.5], "accuracy": [0.5, 0.75]}


def test_missing_metrics_are_none_so_every_list_has_one_entry_per_epoch():
    history = History()
    history.append({"loss": 2.0})
    history.append({"loss": 1.0, "val_loss": 1.5})  # a metric first seen in epoch 2
    history.append({"val_loss": 1.25})              # one missing in epoch 3
    assert history.to_dict() == {"loss": [2.0, 1.0, None], "val_loss": [None, 1.5, 1.25]}
    assert history.epochs == 3


def test_to_dict_is_a_copy():
    history = History({"loss": [1.0]})
    history.to_dict()["loss"].append(5.0)
    assert history["loss"] == [1.0]


def test_truncate_keeps_the_first_epochs():
    history = History({"loss": [3.0, 2.0, 1.0], "lr": [0.1, 0.1, 0.05]})
    history.truncate(2)
    assert history.to_dict() == {"loss": [3.0, 2.0], "lr": [0.1, 0.1]}
    history.truncate(5)  # more epochs than recorded: nothing to drop
    assert history.epochs == 2


def test_metric_lists_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match=r"different lengths \[1, 2\]"):
        History({"loss": [1.0], "accuracy": [0.5, 0.6]})


def test_save_load_round_trip_with_non_finite_values_as_null(tmp_path):
    history = History()
    history.append({"loss": 0.1 + 0.2, "val_loss": float("nan")})
    history.append({"loss": 1e-300, "val_loss": float("inf")})
    history.append({"loss": -float("inf")})
    path = tmp_path / "history.json"
    history.save(path)

    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"loss": [0.1 + 0.2, 1e-300, None], "val_loss": [None, None, None]}
    loaded = History.load(path)
    assert loaded.to_dict() == {"loss": [0.1 + 0.2, 1e-300, None], "val_loss": [None, None, None]}
    assert loaded.epochs == 3


def test_save_creates_missing_directories_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "runs" / "a" / "history.json"
    History({"loss": [1.0]}).save(path)
    History({"loss": [1.0, 0.5]}).save(path)  # replacing an existing file
    assert sorted(p.name for p in path.parent.iterdir()) == ["history.json"]
    assert History.load(path)["loss"] == [1.0, 0.5]


def test_failed_save_keeps_the_old_file_and_removes_the_temporary_one(tmp_path, monkeypatch):
    path = tmp_path / "history.json"
    History({"loss": [1.0]}).save(path)
    before = path.read_bytes()

    def broken_fsync(descriptor):
        raise OSError("disk full")  # the new text is written but cannot be made durable

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        History({"loss": [1.0, 0.5]}).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


def test_save_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("fsync", os.path.isdir(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def replace(source, destination):
        events.append(("replace", os.path.basename(source).startswith(".history.json.")))
        real_replace(source, destination)

    if not (hasattr(os, "O_DIRECTORY") and os.path.isdir("/proc/self/fd")):
        pytest.skip("needs O_DIRECTORY and /proc/self/fd to tell a folder's fsync from a file's")
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    History({"loss": [1.0]}).save(tmp_path / "history.json")
    assert events == [("fsync", False), ("replace", True), ("fsync", True)]


@pytest.mark.parametrize("content", ['{"loss": [1.0,', "[1.0, 2.0]", '{"loss": 1.0}', "", '"loss"'])
def test_malformed_file_is_a_value_error_naming_it(content, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="broken.json is not a valid history file"):
        History.load(path)


@pytest.mark.parametrize("content", ['{"loss": [1.0], "accuracy": [0.5, 0.6]}', '{"loss": ["low"]}',
                                     '{"loss": [[1.0]]}'])
def test_file_with_malformed_values_is_a_value_error_naming_it(content, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="broken.json is not a valid history file"):
        History.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        History.load(tmp_path / "absent.json")


def test_history_is_read_only_mapping():
    history = History({"loss": [1.0]})
    with pytest.raises(TypeError):
        history["loss"] = [2.0]
    assert "loss" in history and "accuracy" not in history
    assert repr(history) == "History(epochs=1, metrics=['loss'])"
