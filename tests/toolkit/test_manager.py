"""CheckpointManager's history and cleanup: save order after going back to an earlier epoch, the
fallback of load_last, and a reader that never deletes the temporary file of a save in progress."""

from __future__ import annotations

import os
import signal
import time
import warnings
from pathlib import Path

import torch

from labs_utils.toolkit.checkpoints import atomic_write, load_checkpoint
from labs_utils.toolkit.manager import CheckpointManager


def _save(m: CheckpointManager, epoch: int, run: str, loss: float):
    state = {"model": {"w": torch.full((1,), float(epoch))}, "run": run}
    return m.save(state, epoch=epoch, metrics={"val_loss": loss})


def _run_a_then_go_back(folder: Path, keep_last: int) -> CheckpointManager:
    """Run A trains epochs 0-5; a new process resumes it, goes back and trains epoch 2 again (run B)."""
    m = CheckpointManager(folder, keep_last=keep_last)
    for epoch in range(6):
        _save(m, epoch, "A", 1.0 - 0.1 * epoch)
    m = CheckpointManager(folder, keep_last=keep_last)
    m.load_last()
    return m


def test_going_back_keeps_the_epoch_file_just_written(tmp_path):
    m = _run_a_then_go_back(tmp_path / "run", keep_last=2)
    saved = _save(m, 2, "B", 0.65)
    assert saved.files == ("last.pth", "epoch_0002.pth")
    assert load_checkpoint(tmp_path / "run" / "epoch_0002.pth")["run"] == "B"
    # the history holds one run: run A's epochs from 2 on were abandoned
    assert [p.name for p in m.epoch_paths()] == ["epoch_0002.pth"]
    _save(m, 3, "B", 0.6)
    _save(m, 4, "B", 0.55)
    assert [p.name for p in m.epoch_paths()] == ["epoch_0003.pth", "epoch_0004.pth"]
    assert [load_checkpoint(p)["run"] for p in m.epoch_paths()] == ["B", "B"]


def test_going_back_keeps_the_earlier_epochs_of_the_run(tmp_path):
    m = _run_a_then_go_back(tmp_path / "run", keep_last=4)  # A keeps epochs 2-5
    _save(m, 4, "B", 0.65)  # B went back to epoch 3's weights
    assert [p.name for p in m.epoch_paths()] == [
        "epoch_0002.pth",
        "epoch_0003.pth",
        "epoch_0004.pth",
    ]
    assert [load_checkpoint(p)["run"] for p in m.epoch_paths()] == ["A", "A", "B"]


def test_fallback_resumes_the_newest_save_not_the_abandoned_run(tmp_path):
    folder = tmp_path / "run"
    m = _run_a_then_go_back(folder, keep_last=2)
    _save(m, 2, "B", 0.65)
    (folder / "last.pth").unlink()  # lost, e.g. a partial copy to another disk
    (folder / "last.pth").write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed = CheckpointManager(folder, keep_last=2)
        ckpt = resumed.load_last()
    assert (ckpt["run"], ckpt["epoch"]) == ("B", 2)


def test_fallback_never_resumes_the_abandoned_run(tmp_path):
    import pytest

    from labs_utils.toolkit.checkpoints import CheckpointError

    folder = tmp_path / "run"
    m = _run_a_then_go_back(folder, keep_last=2)
    _save(m, 2, "B", 0.65)
    # damaged in place: the hard-linked epoch_0002.pth with it, so no file of run B loads
    (folder / "last.pth").write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match="no checkpoint in it loads"):
            CheckpointManager(folder, keep_last=2).load_last()


# --------------------------------------------------------------- a save in progress elsewhere


def _start_saver(path: Path) -> int:
    """A forked process in the middle of an atomic save to ``path`` (written, not yet committed),
    until it is killed; returns its pid."""
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (Python >= 3.12)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            with atomic_write(path) as f:
                torch.save({"model": {"w": torch.ones(2)}, "epoch": 1, "metrics": {}}, f)
                f.flush()
                os.write(w, b"written")
                time.sleep(600)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as reader:
        assert reader.read(7) == b"written"
    return pid


def _temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_load_last_leaves_the_temp_file_of_a_save_in_progress(tmp_path):
    """In this process: the save holds a lock on its temporary file, a second reader sees it."""
    folder = tmp_path / "run"
    CheckpointManager(folder).save(
        {"model": {"w": torch.zeros(2)}}, epoch=0, metrics={"val_loss": 1.0}
    )
    with atomic_write(folder / "last.pth") as f:
        torch.save({"model": {"w": torch.ones(2)}, "epoch": 1, "metrics": {}}, f)
        f.flush()
        assert len(_temp_files(folder)) == 1
        reader = CheckpointManager(folder)  # an evaluation job polling the newest checkpoint
        assert reader.load_last()["epoch"] == 0
        assert len(_temp_files(folder)) == 1
    assert load_checkpoint(folder / "last.pth")["epoch"] == 1
    assert _temp_files(folder) == []


def test_a_save_in_another_process_is_left_alone_until_it_is_killed(tmp_path):
    folder = tmp_path / "run"
    CheckpointManager(folder).save(
        {"model": {"w": torch.zeros(2)}}, epoch=0, metrics={"val_loss": 1.0}
    )
    saver = _start_saver(folder / "last.pth")
    try:
        assert len(_temp_files(folder)) == 1
        assert CheckpointManager(folder).load_last()["epoch"] == 0
        assert len(_temp_files(folder)) == 1  # its process holds the lock
    finally:
        os.kill(saver, signal.SIGKILL)
        os.waitpid(saver, 0)
    assert CheckpointManager(folder).load_last()["epoch"] == 0
    assert _temp_files(folder) == []  # the killed save's leftover


# --------------------------------------------------------------- best.pth and the assign flag


def _assign_flagged_state_dict():
    """A float64 state_dict whose _metadata carries the flag load_state_dict(assign=True) leaves
    in it (pytorch#188166, notebook 10 §6)."""
    sd = torch.nn.Linear(2, 2).state_dict()
    sd64 = type(sd)((k, v.double()) for k, v in sd.items())
    sd64._metadata = sd._metadata
    with torch.device("meta"):
        torch.nn.Linear(2, 2).load_state_dict(sd64, assign=True)
    assert sd64._metadata[""]["assign_to_params_buffers"] is True
    return sd64


def test_best_pth_does_not_carry_the_assign_flag(tmp_path):
    sd64 = _assign_flagged_state_dict()
    m = CheckpointManager(tmp_path / "run")
    m.save({"model": sd64}, epoch=0, metrics={"val_loss": 1.0})
    model = torch.nn.Linear(2, 2)
    weight = model.weight
    model.load_state_dict(m.load_best())  # a plain load copies, and casts
    assert model.weight is weight and model.weight.dtype == torch.float32
    assert sd64._metadata[""]["assign_to_params_buffers"] is True  # the caller's dict untouched
