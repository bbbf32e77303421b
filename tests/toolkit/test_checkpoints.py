"""labs_utils.toolkit.checkpoints: atomic saves, clear load errors, RNG states, CheckpointManager."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import math
import os
import pathlib
import pickle
import random
import stat
import warnings
import zipfile

import numpy as np
import pytest
import torch

import labs_utils.toolkit.manager as C  # CheckpointManager calls save_checkpoint from here
from labs_utils.toolkit import (
    CheckpointError,
    CheckpointManager,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from labs_utils.toolkit.checkpoints import atomic_write


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.pth"
    torch.save({"w": torch.arange(20000, dtype=torch.float32), "epoch": 3}, path)
    return path


# ---------------------------------------------------------------- save_checkpoint / atomic_write


def test_save_checkpoint_round_trip_and_creates_folders(tmp_path):
    path = save_checkpoint({"w": torch.ones(3)}, tmp_path / "a" / "b" / "last.pth")
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == ["last.pth"]


def test_failed_save_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "last.pth"
    save_checkpoint({"v": 1}, path)
    with pytest.raises((pickle.PicklingError, AttributeError)):
        save_checkpoint({"v": 2, "bad": lambda: 0}, path)  # lambdas cannot be pickled
    assert load_checkpoint(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]


def test_atomic_write_error_inside_block(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write(b"new")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old"


def test_atomic_write_bad_paths(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder"):
        save_checkpoint({}, tmp_path)
    with pytest.raises(TypeError, match="file path"):
        save_checkpoint({}, 42)


# ---------------------------------------------------------------- load_checkpoint errors


def test_load_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth: no such file"):
        load_checkpoint(tmp_path / "nope.pth")


def test_load_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder"):
        load_checkpoint(tmp_path)
    (tmp_path / ".metadata").write_bytes(b"x")
    with pytest.raises(IsADirectoryError, match="torch.distributed.checkpoint"):
        load_checkpoint(tmp_path)


def test_load_wrong_type():
    with pytest.raises(TypeError, match="BytesIO"):
        load_checkpoint(b"PK\x03\x04")


def test_load_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty.pth: the file is empty \(0 bytes\)"):
        load_checkpoint(path)


@pytest.mark.parametrize("cut", [10, 100, 0.5, -100, -5])
def test_load_truncated_file(good, cut):
    data = good.read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else (cut if cut > 0 else len(data) + cut)
    bad = good.with_name("cut.pth")
    bad.write_bytes(data[:n])
    # one message for a cut zip, whoever reads it (load_checkpoint, the inspector)
    with pytest.raises(CheckpointError, match=r"cut.pth: (the file is )?truncated"):
        load_checkpoint(bad)


def test_load_truncated_legacy_file(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(5000)}, path, _use_new_zipfile_serialization=False)
    # the old format still loads
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(5000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "content, expected",
    [
        (
            lambda: bytes(random.Random(0).randrange(256) for _ in range(4000)),
            "not a PyTorch checkpoint",
        ),
        (lambda: b"hello world\n" * 10, "not a PyTorch checkpoint"),
        (lambda: pickle.dumps({"w": [1.0, 2.0]}), "plain pickle"),
        (lambda: b'{"epoch": 3}', "JSON"),
        (
            lambda: b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n",
            "Git LFS",
        ),
        (lambda: b"\x1f\x8b\x08\x00" + b"\x00" * 20, "gzip"),
    ],
)
def test_load_files_that_are_not_checkpoints(tmp_path, content, expected):
    path = tmp_path / "x.pth"
    path.write_bytes(content())
    with pytest.raises(CheckpointError, match=expected) as info:
        load_checkpoint(path)
    assert "x.pth" in str(info.value)


def test_load_npy_and_safetensors_and_foreign_zip(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "a.pth").write_bytes((tmp_path / "a.npy").read_bytes())
    with pytest.raises(CheckpointError, match="numpy.load"):
        load_checkpoint(tmp_path / "a.pth")
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="load_file"):
        load_checkpoint(tmp_path / "w.safetensors")
    (tmp_path / "w.pth").write_bytes((tmp_path / "w.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(tmp_path / "w.pth")
    with zipfile.ZipFile(tmp_path / "z.pth", "w") as z:
        z.writestr("notes.txt", "hi")
    with pytest.raises(CheckpointError, match="not one written by torch.save"):
        load_checkpoint(tmp_path / "z.pth")


def test_load_numpy_scalar_is_refused_with_the_global_named(tmp_path):
    path = tmp_path / "np.pth"
    torch.save({"metrics": {"val_loss": np.float64(0.5)}}, path)
    with pytest.raises(CheckpointError, match=r"refused by safe loading.*numpy") as info:
        load_checkpoint(path)
    assert "safe_globals" in str(info.value)
    # a file we made ourselves
    assert load_checkpoint(path, weights_only=False)["metrics"]["val_loss"] == 0.5


def test_load_map_location(good):
    assert load_checkpoint(good, map_location=torch.device("cpu"))["w"].device.type == "cpu"


# ---------------------------------------------------------------- RNG state


def _draw(g=None):
    return (
        random.random(),
        float(np.random.rand()),
        torch.rand(3),
        torch.randperm(10, generator=g),
    )


def test_rng_round_trip_through_a_weights_only_file(tmp_path):
    g = torch.Generator().manual_seed(5)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # leaves a cached gauss value, which is part of numpy's state
    state = capture_rng_state(generators={"loader": g})
    expected = _draw(g)
    path = save_checkpoint({"rng": state}, tmp_path / "rng.pth")
    _draw(g), _draw(g)  # move every generator on
    restored = restore_rng_state(load_checkpoint(path)["rng"], generators={"loader": g})
    assert restored[:3] == ["python", "numpy", "torch"] and restored[-1] == "loader"
    got = _draw(g)
    assert got[0] == expected[0] and got[1] == expected[1]
    assert torch.equal(got[2], expected[2]) and torch.equal(got[3], expected[3])


def test_rng_capture_without_generators_and_cuda_field():
    state = capture_rng_state()
    assert state["generators"] == {}
    assert (state["cuda"] is None) == (not torch.cuda.is_available())


def test_rng_bad_input():
    with pytest.raises(TypeError, match="capture_rng_state"):
        restore_rng_state([1, 2])
    with pytest.raises(ValueError, match=r"pass checkpoint\['rng'\]"):
        restore_rng_state({"model": {}, "rng": {}})
    with pytest.raises(TypeError, match="loader.generator None"):
        capture_rng_state(generators={"train_loader": None})
    with pytest.raises(TypeError, match="dict of name"):
        capture_rng_state(generators=[torch.Generator()])
    state = capture_rng_state(generators={"a": torch.Generator()})
    with pytest.raises(ValueError, match=r"no saved state for generator\(s\) \['b'\]"):
        restore_rng_state(state, generators={"b": torch.Generator()})


# ---------------------------------------------------------------- CheckpointManager


def _state(i: int) -> dict:
    return {
        "model": {"w": torch.full((3,), float(i))},
        "optimizer": {"state": {}, "param_groups": []},
    }


def test_manager_last_every_time_best_on_improvement(tmp_path):
    m = CheckpointManager(tmp_path / "run", keep_last=2)
    losses = [0.9, 0.5, 0.7, 0.4, 0.6]
    results = [
        m.save(_state(i), epoch=i, metrics={"val_loss": v, "val_acc": 0.5})
        for i, v in enumerate(losses)
    ]
    assert [r.is_best for r in results] == [True, True, False, True, False]
    assert (m.best_value, m.best_epoch) == (0.4, 3)
    last = load_checkpoint(m.last_path)
    assert last["epoch"] == 4 and last["metrics"] == {"val_loss": 0.6, "val_acc": 0.5}
    assert last["checkpoint_manager"]["best_epoch"] == 3
    best = m.load_best()
    # weights only
    assert set(best) == {"w"} and torch.equal(best["w"], torch.full((3,), 3.0))
    assert [p.name for p in m.epoch_paths()] == ["epoch_0003.pth", "epoch_0004.pth"]
    assert load_checkpoint(m.epoch_paths()[0])["epoch"] == 3
    assert "new best" in repr(results[0]) and "best: 0.4 at epoch 3" in repr(results[4])
    assert "last.pth" in repr(results[4]) and "best.pth" not in repr(results[4])


def test_manager_mode_max_and_best_key_none(tmp_path):
    m = CheckpointManager(tmp_path, metric="val_acc", mode="max", keep_last=0, best_key=None)
    for i, acc in enumerate([0.5, 0.8, 0.7]):
        m.save(_state(i), epoch=i, metrics={"val_acc": acc})
    assert m.best_epoch == 1
    assert m.epoch_paths() == []
    assert set(m.load_best()) == {"model", "optimizer"}  # whole state


def test_manager_resume_remembers_best(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=1)
    m.save(_state(0), epoch=0, metrics={"val_loss": 0.3})
    m.save(_state(1), epoch=1, metrics={"val_loss": 0.5})
    fresh = CheckpointManager(tmp_path, keep_last=1)
    with pytest.raises(FileExistsError, match="call load_last"):
        fresh.save(_state(2), epoch=2, metrics={"val_loss": 0.4})
    ckpt = fresh.load_last()
    assert ckpt["epoch"] == 1 and (fresh.best_value, fresh.best_epoch) == (0.3, 0)
    assert not fresh.save(
        _state(2), epoch=2, metrics={"val_loss": 0.4}
    ).is_best  # 0.4 is worse than 0.3
    assert torch.equal(fresh.load_best()["w"], torch.zeros(3))


def test_manager_load_last_on_empty_folder(tmp_path):
    assert CheckpointManager(tmp_path / "new").load_last() is None


def test_manager_falls_back_to_newest_loadable_and_cleans_temp_files(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=3)
    for i in range(3):
        m.save(_state(i), epoch=i, metrics={"val_loss": 1.0 - i / 10})
    (tmp_path / ".last.pth.abc123.tmp").write_bytes(b"half a save")
    # damaged by something else than our saves
    m.last_path.write_bytes(m.last_path.read_bytes()[:100])
    (tmp_path / "epoch_0002.pth").unlink()
    fresh = CheckpointManager(tmp_path, keep_last=3)
    with pytest.warns(UserWarning, match="skipping last.pth"):
        ckpt = fresh.load_last()
    assert ckpt["epoch"] == 1 and len(fresh.skipped) == 1
    assert not (tmp_path / ".last.pth.abc123.tmp").exists()


def test_manager_raises_when_nothing_loads(tmp_path):
    (tmp_path / "last.pth").write_bytes(b"")
    m = CheckpointManager(tmp_path)
    with (
        pytest.warns(UserWarning),
        pytest.raises(CheckpointError, match="no checkpoint in it loads"),
    ):
        m.load_last()


def test_manager_refuses_other_metric_on_resume(tmp_path):
    CheckpointManager(tmp_path).save(_state(0), epoch=0, metrics={"val_loss": 0.3, "acc": 0.9})
    with pytest.raises(ValueError, match="same metric and mode"):
        CheckpointManager(tmp_path, metric="acc", mode="max").load_last()


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"mode": "lowest"}, ValueError, "mode must be 'min'"),
        ({"metric": ""}, TypeError, "name of a metric"),
        ({"keep_last": -1}, ValueError, "keep_last"),
        ({"keep_last": True}, ValueError, "keep_last"),
        ({"best_key": 3}, TypeError, "best_key"),
    ],
)
def test_manager_bad_arguments(tmp_path, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        CheckpointManager(tmp_path, **kwargs)


def test_manager_folder_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        CheckpointManager(tmp_path / "f")
    with pytest.raises(TypeError, match="folder path"):
        CheckpointManager(None)


@pytest.mark.parametrize(
    "state, epoch, metrics, exc, match",
    [
        (
            _state(0),
            0,
            {"loss": 0.1},
            ValueError,
            r"metrics has no 'val_loss' \(it has \['loss'\]\)",
        ),
        (_state(0), 0, {"val_loss": float("nan")}, ValueError, "not a finite number"),
        (_state(0), 0, {"val_loss": math.inf}, ValueError, "diverged"),
        (
            _state(0),
            0,
            {"val_loss": np.float64(0.1)},
            TypeError,
            r"metrics\['val_loss'\] is a numpy.float64",
        ),
        (
            _state(0),
            0,
            {"val_loss": 0.1, "acc": np.float32(0.9)},
            TypeError,
            "weights_only=True refuses it",
        ),
        (_state(0), 0, {"val_loss": torch.tensor(0.1)}, TypeError, r"\.item\(\)"),
        (_state(0), 0, {"val_loss": "low"}, TypeError, "must be a number"),
        (_state(0), 0, [0.1], TypeError, "metrics must be a dict"),
        (
            {**_state(0), "extra": {"arr": np.zeros(2)}},
            0,
            {"val_loss": 0.1},
            TypeError,
            r"state\['extra'\]\['arr'\] is a numpy.ndarray",
        ),
        (
            {**_state(0), "versions": {"torch": torch.__version__}},
            0,
            {"val_loss": 0.1},
            TypeError,
            r"state\['versions'\]\['torch'\] is a torch.torch_version.TorchVersion \(a subclass of str\); store str\(x\)",
        ),
        (_state(0), True, {"val_loss": 0.1}, TypeError, "epoch must be a plain int"),
        (
            _state(0),
            np.int64(2),
            {"val_loss": 0.1},
            TypeError,
            "epoch must be a plain int",
        ),
        (_state(0), -1, {"val_loss": 0.1}, TypeError, "epoch must be a plain int"),
        ([1, 2], 0, {"val_loss": 0.1}, TypeError, "training state as a dict"),
        ({"optimizer": {}}, 0, {"val_loss": 0.1}, ValueError, "no 'model' entry"),
        (
            {**_state(0), "epoch": 5},
            0,
            {"val_loss": 0.1},
            ValueError,
            "pass the epoch once",
        ),
        (
            {**_state(0), "checkpoint_manager": 1},
            0,
            {"val_loss": 0.1},
            ValueError,
            "writes itself",
        ),
    ],
)
def test_manager_bad_save_input(tmp_path, state, epoch, metrics, exc, match):
    m = CheckpointManager(tmp_path / "run")
    with pytest.raises(exc, match=match):
        m.save(state, epoch=epoch, metrics=metrics)
    assert not (tmp_path / "run").exists()  # nothing was written


def test_manager_nan_after_good_save_keeps_last(tmp_path):
    m = CheckpointManager(tmp_path)
    m.save(_state(0), epoch=0, metrics={"val_loss": 0.5})
    with pytest.raises(ValueError, match="last.pth still holds the previous save"):
        m.save(_state(1), epoch=1, metrics={"val_loss": float("nan")})
    assert load_checkpoint(m.last_path)["epoch"] == 0


def test_manager_checkpoint_loads_weights_only_with_rng(tmp_path):
    m = CheckpointManager(tmp_path)
    m.save({**_state(0), "rng": capture_rng_state()}, epoch=0, metrics={"val_loss": 0.5})
    ckpt = CheckpointManager(tmp_path).load_last(weights_only=True)
    assert set(ckpt["rng"]) == {"python", "numpy", "torch", "cuda", "generators"}


# ---------------------------------------------------------------- links and file permissions


def test_save_checkpoint_writes_through_a_symlink_like_torch_save(tmp_path):
    shared = tmp_path / "shared volume"
    run = tmp_path / "run"
    shared.mkdir()
    run.mkdir()
    target, link = shared / "last.pth", run / "last.pth"
    torch.save({"epoch": 1}, target)
    link.symlink_to(target)
    torch.save({"epoch": 2}, link)  # what torch.save does: the link stays, the target changes
    assert link.is_symlink() and torch.load(target)["epoch"] == 2
    assert save_checkpoint({"epoch": 3}, link) == link
    assert link.is_symlink() and load_checkpoint(target)["epoch"] == 3
    assert sorted(p.name for p in shared.iterdir()) == ["last.pth"]  # no temp file left
    assert sorted(p.name for p in run.iterdir()) == ["last.pth"]


def test_save_checkpoint_through_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "latest.pth"
    link.symlink_to(tmp_path / "run_07" / "last.pth")
    (tmp_path / "run_07").mkdir()
    save_checkpoint({"epoch": 1}, link)
    assert link.is_symlink() and load_checkpoint(tmp_path / "run_07" / "last.pth")["epoch"] == 1


def _as_another_user(d) -> list[str]:
    """What save_checkpoint and load_checkpoint say to a user without write or read permission,
    run in a forked child (as root, the child drops to nobody: root ignores file modes)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        lines = []
        try:
            os.close(r)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            try:
                save_checkpoint({"w": torch.zeros(2)}, d / "best.pth")
                lines.append("save: replaced")
            except PermissionError as e:
                lines.append(f"save: PermissionError: {e}")
            try:
                load_checkpoint(d / "secret.pth")
            except CheckpointError as e:
                lines.append(f"load: CheckpointError: {e}")
            except Exception as e:
                lines.append(f"load: {type(e).__name__} {e}")
            os.write(w, "\n".join(lines).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as reader:
        out = reader.read()
    os.waitpid(pid, 0)
    return out.splitlines()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_write_protected_and_unreadable_files_are_refused_clearly():
    import shutil
    import tempfile
    from pathlib import Path

    # not under pytest's tmp_path: its parents are private to this user, and as root the check
    # runs as nobody
    d = Path(tempfile.mkdtemp())
    try:
        best, secret = d / "best.pth", d / "secret.pth"
        torch.save({"w": torch.ones(2)}, best)
        secret.write_bytes(best.read_bytes())
        os.chmod(d, 0o755)
        os.chmod(best, 0o444)  # the user's protection
        os.chmod(secret, 0o000)
        if os.geteuid() == 0:
            os.chown(d, 65534, 65534)
            os.chown(best, 65534, 65534)
        before = best.read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
            lines = _as_another_user(d)
        assert len(lines) == 2, lines
        assert lines[0].startswith(f"save: PermissionError: {best}: "), lines[0]
        assert "chmod u+w" in lines[0]
        assert best.read_bytes() == before and os.stat(best).st_mode & 0o777 == 0o444
        assert sorted(p.name for p in d.iterdir()) == ["best.pth", "secret.pth"]
        assert lines[1].startswith(f"load: CheckpointError: {secret}: "), lines[1]
        assert "permission" in lines[1]
    finally:
        shutil.rmtree(d)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the umask for one test, and put the old one back afterwards."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


# ---------------------------------------------------------------- file modes


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_file_gets_the_mode_torch_save_gives(tmp_path, umask, mask):
    umask(mask)
    torch.save({"a": torch.ones(1)}, tmp_path / "plain.pth")
    save_checkpoint({"a": torch.ones(1)}, tmp_path / "atomic.pth")
    assert mode(tmp_path / "atomic.pth") == mode(tmp_path / "plain.pth") == 0o666 & ~mask


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


# ---------------------------------------------------------------- a crash between best.pth and last.pth


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


def test_crash_between_best_and_last_never_lets_a_worse_model_replace_best(tmp_path, monkeypatch):
    folder = tmp_path / "mgr"
    mgr = CheckpointManager(folder, keep_last=1)
    mgr.save({"model": {"w": torch.tensor([0.0])}}, epoch=0, metrics={"val_loss": 1.0})
    _crash_after_best(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        mgr.save({"model": {"w": torch.tensor([1.0])}}, epoch=1, metrics={"val_loss": 0.2})
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
    rerun = resumed.save({"model": {"w": torch.tensor([2.0])}}, epoch=1, metrics={"val_loss": 0.5})
    assert not rerun.is_best
    assert _w(folder / "best.pth") == 1.0
    better = resumed.save({"model": {"w": torch.tensor([3.0])}}, epoch=2, metrics={"val_loss": 0.1})
    assert better.is_best and _w(folder / "best.pth") == 3.0


def test_crash_in_the_very_first_save_after_best(tmp_path, monkeypatch):
    folder = tmp_path / "mgr"
    _crash_after_best(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        CheckpointManager(folder).save(
            {"model": {"w": torch.tensor([1.0])}}, epoch=0, metrics={"val_loss": 0.2}
        )
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".tmp")) == ["best.pth"]
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
    with pytest.raises(TypeError, match=r"state\['model'\] is a Tensor, not a state_dict"):
        CheckpointManager(tmp_path / "run").save(
            {"model": torch.ones(1)}, epoch=0, metrics={"val_loss": 1.0}
        )
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- refuse what would not load back


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
        assert m.save({"model": {}, "cfg": Config()}, epoch=0, metrics={"val_loss": 1.0}).is_best
        assert CheckpointManager(tmp_path).load_last()["cfg"] == Config()


def test_save_checkpoint_checks_safe_loading_only_when_asked(tmp_path):
    path = tmp_path / "ck.pth"
    save_checkpoint({"v": 1}, path, check_safe_load=True)
    # the default: torch.save's rules
    save_checkpoint({"cfg": argparse.Namespace(a=1)}, tmp_path / "unchecked.pth")
    with pytest.raises(TypeError, match=r"ck\.pth: obj\['cfg'\] is an argparse\.Namespace"):
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
