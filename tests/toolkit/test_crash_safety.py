"""A process killed with SIGKILL while it saves checkpoints: what is left on disk?

Each test forks a child (fork, not spawn: the child needs no fresh interpreter and no second
``import torch``, so a kill-and-check round takes milliseconds) that saves checkpoints in a loop
(2 MiB each, 8 MiB for plain ``torch.save``) and reports on a pipe when a save begins and when it
has finished. The parent kills it with SIGKILL at a random moment, then inspects the file.

* ``save_checkpoint`` (temporary file + fsync + ``os.replace``): after every kill the file
  loads, is complete, and holds the last save the child reported as finished or a newer one.
* ``CheckpointManager``: the same, across a chain of crash -> resume -> crash, including
  ``best.pth`` and the leftover temporary files.
* plain ``torch.save`` to the same path: the kill lands while ``torch.save`` is writing (the
  parent waits for the child's "begin" message, then 0.5-3 ms), and the file is torn: it no
  longer loads (usually 0 bytes: ``torch.save`` truncates the file when it opens it and the
  kill comes before the data), and the previous checkpoint is gone too. Whether one given kill
  tears the file depends on timing (a kill that arrives before ``torch.save`` opened the file
  leaves the old one intact), so the test asserts that at least half of 8 kills do; in
  practice 7 or 8 do. It never relies on a single kill.

The delays come from a seeded ``random.Random``, so the schedule is the same on every run; the
outcomes asserted do not depend on the exact moments.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from labs_utils.toolkit import (
    CheckpointError,
    CheckpointManager,
    load_checkpoint,
    save_checkpoint,
)

pytestmark = [
    pytest.mark.heavy,
    pytest.mark.skipif(
        not hasattr(os, "fork") or sys.platform == "darwin", reason="needs os.fork (Linux)"
    ),
]

# float32 elements per checkpoint: 2 MiB. The kills come within a few saves of the first one
# (delays of up to 25-50 ms; an atomic save of 2 MiB takes a few ms, fsync included), so a
# larger file would only make each child run longer. Plain torch.save gets 8 MiB: its kill comes
# 0.5-3 ms after a save begins, and must land inside it.
N = 512 * 1024
N_PLAIN = 4 * N
PAYLOADS = {n: [torch.full((n,), 1.0), torch.full((n,), 2.0)] for n in (N, N_PLAIN)}


def _state(i: int, n: int = N) -> dict:
    return {"model": {"w": PAYLOADS[n][i % 2], "marker": torch.tensor(i)}, "step": i}


def _child(mode: str, target: Path, wfd: int) -> None:
    """Runs in the forked child; never returns."""
    try:
        torch.set_num_threads(1)
        start = 0
        manager = None
        if mode == "manager":
            manager = CheckpointManager(target, keep_last=2)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ckpt = manager.load_last()
            start = 0 if ckpt is None else ckpt["epoch"] + 1
        i = start
        while True:
            os.write(wfd, b"b%d\n" % i)
            if mode == "atomic":
                save_checkpoint(_state(i), target)
            elif mode == "plain":
                torch.save(_state(i, N_PLAIN), target)
            else:
                # best on even epochs (loss falls), worse on odd ones
                loss = 1.0 / (1 + i) if i % 2 == 0 else 10.0
                manager.save(_state(i), epoch=i, metrics={"val_loss": loss})
            os.write(wfd, b"s%d\n" % i)
            i += 1
    finally:
        os._exit(0)


def _run_and_kill(
    mode: str, target: Path, delay: float, *, kill_after_begin: bool = False
) -> tuple[int, int]:
    """Fork a saver, let it finish at least one save, wait ``delay`` s (after the next "begin"
    message when ``kill_after_begin``), SIGKILL it. Returns (last finished save, saves begun)."""
    r, w = os.pipe()
    with warnings.catch_warnings():
        # fork with threads (Python >= 3.12)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        _child(mode, target, w)
    os.close(w)
    finished, begun = -1, -1
    with os.fdopen(r, "rb") as reader:
        waiting_for_begin = False
        for line in reader:
            kind, n = line[:1], int(line[1:])
            if kind == b"s":
                finished = n
                if kill_after_begin:
                    waiting_for_begin = True
                    continue
                break
            begun = n
            if waiting_for_begin:
                break
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        for line in reader.read().splitlines():  # what it reported before dying
            if line[:1] == b"s":
                finished = int(line[1:])
            elif line[:1] == b"b":
                begun = int(line[1:])
    return finished, begun


def _check_complete(ckpt: dict, finished: int) -> int:
    step = int(ckpt["model"]["marker"])
    assert finished <= step <= finished + 1, (step, finished)
    assert torch.equal(ckpt["model"]["w"], PAYLOADS[N][step % 2])
    return step


def test_killed_atomic_save_always_leaves_a_complete_checkpoint(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "last.pth"
    mid_save = 0
    for _ in range(12):
        finished, begun = _run_and_kill("atomic", path, rng.uniform(0.0, 0.025))
        mid_save += begun > finished  # the kill landed inside save_checkpoint
        ckpt = load_checkpoint(path)  # never raises
        step = _check_complete(ckpt, finished)
        assert ckpt["step"] == step
        path.unlink()  # the next child starts from nothing, so each kill is checked on its own
    # the child spends nearly all its time inside save_checkpoint, so nearly every kill hits a save
    assert mid_save >= 6, f"only {mid_save} of 12 kills landed during a save"


def test_killed_manager_resumes_from_newest_complete_checkpoint(tmp_path):
    rng = random.Random(1)
    folder = tmp_path / "ckpts"
    previous = -1
    for _ in range(8):
        finished, _ = _run_and_kill("manager", folder, rng.uniform(0.0, 0.05))
        manager = CheckpointManager(folder, keep_last=2)
        ckpt = manager.load_last()
        assert ckpt is not None and manager.skipped == []
        step = _check_complete(ckpt, finished)
        # each child resumed and made progress
        assert ckpt["epoch"] == step and step > previous
        previous = step
        # best.pth: the weights of an even epoch, the one recorded or a newer one saved just before the kill
        best = manager.load_best()
        assert (
            int(best["marker"]) % 2 == 0 and manager.best_epoch <= int(best["marker"]) <= step + 1
        )
        assert not [
            p for p in folder.iterdir() if p.name.endswith(".tmp")
        ]  # load_last removed them
        # keep_last=2, plus at most one the kill interrupted
        assert len(manager.epoch_paths()) <= 3


def test_killed_plain_torch_save_tears_the_file(tmp_path):
    """Why the atomic save matters: the same kill during a plain torch.save destroys the checkpoint."""
    rng = random.Random(2)
    path = tmp_path / "last.pth"
    torn = 0
    for _ in range(8):
        _run_and_kill("plain", path, rng.uniform(0.0005, 0.003), kill_after_begin=True)
        try:
            load_checkpoint(path)
        except CheckpointError as e:
            assert "truncated" in str(e) or "empty" in str(e), e
            torn += 1
        path.unlink()
    # each kill lands within 3 ms of the start of a save of 8 MiB, which takes longer
    assert torn >= 4, f"only {torn} of 8 kills tore the file"
