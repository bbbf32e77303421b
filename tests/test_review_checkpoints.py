"""Regression tests for the technical review's findings on labs_utils.toolkit.checkpoints.

A5 (files written 0600), A6 (a crash between best.pth and last.pth let a worse model replace
best.pth), B6 (CheckpointManager saved states it could not load back). Each test is built from
the review's experiment script (e9_mode.py, e_mgr_race.py, e11_mgr.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import pathlib
import stat

import pytest
import torch

import labs_utils.toolkit.manager as C  # CheckpointManager calls save_checkpoint from here
from labs_utils.toolkit import CheckpointManager, load_checkpoint, save_checkpoint


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the umask for one test, and put the old one back afterwards."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


# ---------------------------------------------------------------- A5: file modes


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_file_gets_the_mode_torch_save_gives(tmp_path, umask, mask):
    umask(mask)
    torch.save({"a": torch.ones(1)}, tmp_path / "plain.pth")
    save_checkpoint({"a": torch.ones(1)}, tmp_path / "atomic.pth")
    assert (
        mode(tmp_path / "atomic.pth") == mode(tmp_path / "plain.pth") == 0o666 & ~mask
    )


def test_replacing_a_file_keeps_its_mode(tmp_path, umask):
    path = tmp_path / "shared.pth"
    torch.save({"a": torch.ones(1)}, path)
    for wanted in (0o644, 0o640, 0o600):
        os.chmod(path, wanted)
        save_checkpoint({"a": torch.zeros(1)}, path)
        assert mode(path) == wanted


def test_atomic_write_of_bytes_and_a_failed_write_leave_modes_right(tmp_path, umask):
    path = tmp_path / "x.bin"
    with C.atomic_write(path) as f:
        f.write(b"new")
    assert mode(path) == 0o644
    os.chmod(path, 0o664)
    with pytest.raises(RuntimeError):
        with C.atomic_write(path) as f:
            f.write(b"half")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"new" and mode(path) == 0o664
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


def test_manager_files_get_the_default_mode(tmp_path, umask):
    m = CheckpointManager(tmp_path / "run", keep_last=2)
    m.save({"model": {"w": torch.ones(2)}}, epoch=0, metrics={"val_loss": 1.0})
    files = sorted((tmp_path / "run").iterdir())
    assert [p.name for p in files] == ["best.pth", "epoch_0000.pth", "last.pth"]
    assert {mode(p) for p in files} == {0o644}


# ---------------------------------------------------------------- A6: crash between best.pth and last.pth


def _crash_after_best(monkeypatch):
    """Make save_checkpoint die (as a killed process would) right after it has written best.pth."""
    real = C.save_checkpoint

    def save_then_die(obj, path, **kw):
        out = real(obj, path, **kw)
        if str(path).endswith("best.pth"):
            raise KeyboardInterrupt("killed after best.pth, before last.pth")
        return out

    monkeypatch.setattr(C, "save_checkpoint", save_then_die)


def _w(path) -> float:
    return load_checkpoint(path)["w"].item()


def test_crash_between_best_and_last_never_lets_a_worse_model_replace_best(
    tmp_path, monkeypatch
):
    folder = tmp_path / "mgr"
    mgr = CheckpointManager(folder, keep_last=1)
    mgr.save({"model": {"w": torch.tensor([0.0])}}, epoch=0, metrics={"val_loss": 1.0})
    _crash_after_best(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        mgr.save(
            {"model": {"w": torch.tensor([1.0])}}, epoch=1, metrics={"val_loss": 0.2}
        )
    monkeypatch.undo()
    assert _w(folder / "best.pth") == 1.0  # the new best is on disk ...
    # ... and last.pth is the old one
    assert load_checkpoint(folder / "last.pth")["epoch"] == 0

    resumed = CheckpointManager(folder, keep_last=1)
    ckpt = resumed.load_last()
    assert ckpt["epoch"] == 0
    # read from best.pth itself
    assert (resumed.best_value, resumed.best_epoch) == (
        0.2,
        1,
    )
    rerun = resumed.save(
        {"model": {"w": torch.tensor([2.0])}}, epoch=1, metrics={"val_loss": 0.5}
    )
    assert not rerun.is_best
    assert _w(folder / "best.pth") == 1.0
    better = resumed.save(
        {"model": {"w": torch.tensor([3.0])}}, epoch=2, metrics={"val_loss": 0.1}
    )
    assert better.is_best and _w(folder / "best.pth") == 3.0


def test_crash_in_the_very_first_save_after_best(tmp_path, monkeypatch):
    folder = tmp_path / "mgr"
    _crash_after_best(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        CheckpointManager(folder).save(
            {"model": {"w": torch.tensor([1.0])}}, epoch=0, metrics={"val_loss": 0.2}
        )
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".tmp")) == [
        "best.pth"
    ]
    with pytest.raises(
        FileExistsError, match="best.pth"
    ):  # a new run would overwrite it by mistake
        CheckpointManager(folder).save(
            {"model": {"w": torch.tensor([2.0])}}, epoch=0, metrics={"val_loss": 0.5}
        )
    resumed = CheckpointManager(folder)
    assert resumed.load_last() is None and resumed.best_value == 0.2
    assert not resumed.save(
        {"model": {"w": torch.tensor([2.0])}}, epoch=0, metrics={"val_loss": 0.5}
    ).is_best
    assert _w(folder / "best.pth") == 1.0


def test_best_pth_is_a_plain_state_dict_carrying_its_record(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    m = CheckpointManager(tmp_path)
    m.save({"model": model.state_dict()}, epoch=3, metrics={"val_loss": 0.25})
    best = torch.load(tmp_path / "best.pth", weights_only=True)
    assert list(best) == list(model.state_dict())
    assert best._checkpoint_manager == {
        "metric": "val_loss",
        "mode": "min",
        "best_value": 0.25,
        "best_epoch": 3,
    }
    assert best._metadata == model.state_dict()._metadata  # version entries survive
    fresh = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    assert str(fresh.load_state_dict(best)) == "<All keys matched successfully>"


def test_resume_with_another_mode_is_refused_by_the_best_record(tmp_path):
    m = CheckpointManager(tmp_path, metric="acc", mode="max")
    m.save({"model": {"w": torch.ones(1)}}, epoch=0, metrics={"acc": 0.5})
    for p in [m.last_path, *m.epoch_paths()]:
        p.unlink()  # only best.pth says what was tracked
    with pytest.raises(
        ValueError, match="best.pth was saved tracking 'acc' .max.*same metric and mode"
    ):
        CheckpointManager(tmp_path, metric="acc", mode="min").load_last()


def test_best_written_without_a_record_falls_back_to_last(tmp_path):
    m = CheckpointManager(tmp_path)
    m.save({"model": {"w": torch.ones(1)}}, epoch=0, metrics={"val_loss": 0.5})
    # e.g. written by an older version
    torch.save({"w": torch.ones(1)}, tmp_path / "best.pth")
    fresh = CheckpointManager(tmp_path)
    fresh.load_last()
    assert (fresh.best_value, fresh.best_epoch) == (0.5, 0)


def test_best_key_must_name_a_state_dict(tmp_path):
    with pytest.raises(
        TypeError, match=r"state\['model'\] is a Tensor, not a state_dict"
    ):
        CheckpointManager(tmp_path / "run").save(
            {"model": torch.ones(1)}, epoch=0, metrics={"val_loss": 1.0}
        )
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- B6: refuse what would not load back


@dataclasses.dataclass
class Config:
    lr: float = 0.1


class Color(enum.Enum):
    RED = 1


@pytest.mark.parametrize(
    "value, where, name",
    [
        (
            {"out_dir": pathlib.Path("runs/run1")},
            r"state\['config'\]\['out_dir'\]",
            r"pathlib\.\w*Path",
        ),
        (Config(), r"state\['config'\]", "Config"),
        (argparse.Namespace(lr=0.1), r"state\['config'\]", r"argparse\.Namespace"),
        ([Color.RED], r"state\['config'\]\[0\]", "Color"),
    ],
)
def test_manager_refuses_a_state_it_could_not_load_back(tmp_path, value, where, name):
    folder = tmp_path / "mgr"
    m = CheckpointManager(folder, keep_last=2)
    m.save({"model": {"w": torch.ones(1)}}, epoch=0, metrics={"val_loss": 0.5})
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(
        TypeError,
        match=rf"last\.pth: {where} is an? \S*{name}\S*, which torch\.load"
        r"\(weights_only=True\) refuses.*nothing was replaced",
    ):
        m.save(
            {"model": {"w": torch.zeros(1)}, "config": value},
            epoch=1,
            metrics={"val_loss": 0.1},
        )
    assert {
        p.name: p.read_bytes() for p in folder.iterdir()
    } == before  # every file as it was, no temp file
    resumed = CheckpointManager(folder, keep_last=2)
    assert resumed.load_last()["epoch"] == 0 and resumed.skipped == []
    assert m.save(
        {"model": {"w": torch.zeros(1)}, "config": {"out_dir": "runs/run1"}},
        epoch=1,
        metrics={"val_loss": 0.1},
    ).is_best  # the plain-data fix saves


def test_manager_refusal_on_the_first_save_writes_nothing(tmp_path):
    folder = tmp_path / "mgr"
    with pytest.raises(TypeError, match="pathlib"):
        CheckpointManager(folder).save(
            {"model": {}, "cfg": pathlib.Path("x")}, epoch=0, metrics={"val_loss": 1.0}
        )
    assert list(folder.iterdir()) == []


def test_a_class_allowed_in_this_process_is_accepted(tmp_path):
    m = CheckpointManager(tmp_path)
    with torch.serialization.safe_globals([Config]):
        assert m.save(
            {"model": {}, "cfg": Config()}, epoch=0, metrics={"val_loss": 1.0}
        ).is_best
        assert CheckpointManager(tmp_path).load_last()["cfg"] == Config()


def test_save_checkpoint_checks_safe_loading_only_when_asked(tmp_path):
    path = tmp_path / "ck.pth"
    save_checkpoint({"v": 1}, path, check_safe_load=True)
    # the default: torch.save's rules
    save_checkpoint({"cfg": argparse.Namespace(a=1)}, tmp_path / "unchecked.pth")
    with pytest.raises(
        TypeError, match=r"ck\.pth: obj\['cfg'\] is an argparse\.Namespace"
    ):
        save_checkpoint({"cfg": argparse.Namespace(a=1)}, path, check_safe_load=True)
    assert load_checkpoint(path) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pth", "unchecked.pth"]


def test_load_checkpoint_mmap(tmp_path):
    path = save_checkpoint({"w": torch.arange(4.0)}, tmp_path / "a.pth")
    assert torch.equal(load_checkpoint(path, mmap=True)["w"], torch.arange(4.0))
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.arange(4.0)}, legacy, _use_new_zipfile_serialization=False)
    # read as usual
    assert torch.equal(load_checkpoint(legacy, mmap=True)["w"], torch.arange(4.0))
