"""labs_utils.workers.distributed (torch.multiprocessing + gloo) and labs_utils.workers.ddp_train (torchrun).

Each kind of multi-process run starts once per module (fixtures), however many tests read it."""

import functools
import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from labs_utils.models import SimpleModel
from labs_utils.toolkit import normalize_keys
from labs_utils.workers import ddp_train
from labs_utils.workers.distributed import (
    CHECKPOINT,
    RESUME_CHECKPOINT,
    WRAPPED_CHECKPOINT,
    StallingFile,
    find_free_port,
    rank0_mistakes,
    resume_ddp,
    run_ddp_training,
    spawn_workers,
    train_ddp,
)

pytestmark = [
    pytest.mark.heavy,
    pytest.mark.skipif(
        not dist.is_available(), reason="this PyTorch build has no torch.distributed"
    ),
]


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_find_free_port():
    port = find_free_port()
    assert isinstance(port, int) and 1024 <= port < 65536


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    """Two ranks train 3 steps, then resume twice for 2 steps (one spawn for the module)."""
    out = tmp_path_factory.mktemp("ddp")
    return run_ddp_training(out, world_size=2, steps=3, timeout_s=120, resume_steps=2)


def test_two_process_run_saves_once_and_ranks_agree(ddp):
    result = ddp
    assert [r["rank"] for r in result.reports] == [0, 1]
    for r in result.reports:
        assert r["backend"] == "gloo" and r["world_size"] == 2 and len(r["losses"]) == 3
        assert r["started_different"] and r["synced_after_wrap"]
        assert r["identical_across_ranks"] and r["matches_checkpoint"]
    rank0, rank1 = _load(result.rank_weights(0)), _load(result.rank_weights(1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)

    plain = SimpleModel()
    plain.load_state_dict(_load(result.checkpoint))  # strict: no prefix
    assert all(torch.equal(plain.state_dict()[k], rank0[k]) for k in rank0)

    wrapped = _load(result.wrapped_checkpoint)
    assert all(k.startswith("module.") for k in wrapped)
    SimpleModel().load_state_dict(normalize_keys(wrapped))
    assert "2 ranks" in repr(result) and str(find_free_port()) not in repr(result)


def test_every_rank_must_load_the_optimizer_to_resume(ddp):
    result = ddp
    # the resume checkpoint holds the optimizer's momentum, which every rank must load itself
    resume = _load(result.out_dir / RESUME_CHECKPOINT)
    assert set(resume) == {"model", "optimizer", "step"} and resume["step"] == 3
    assert len(resume["optimizer"]["state"]) == len(list(SimpleModel().parameters()))
    every, rank0_only = zip(*result.resumes)  # per variant, one report per rank
    assert [r["rank"] for r in every] == [0, 1] and all(
        r["every_rank_loads_optimizer"] for r in every
    )
    assert all(r["optimizer_state_loaded"] and r["identical_across_ranks"] for r in every)
    assert [r["optimizer_state_loaded"] for r in rank0_only] == [True, False]
    # the ranks drifted apart
    assert not any(r["identical_across_ranks"] for r in rank0_only)
    assert every[0]["losses"] == every[1]["losses"] and len(every[0]["losses"]) == 2


def test_a_run_without_resume_has_no_resume_reports(tmp_path):
    result = run_ddp_training(tmp_path, world_size=1, steps=1, timeout_s=120)
    assert result.resumes == [] and (result.out_dir / RESUME_CHECKPOINT).is_file()


def test_a_failing_worker_raises_with_its_log(tmp_path):
    with pytest.raises(RuntimeError, match="steps must be at least 1") as e:
        run_ddp_training(tmp_path, world_size=1, steps=0, timeout_s=120)
    assert "worker logs:" in str(e.value) and "rank 0 (rank0.log)" in str(e.value)


def test_a_stuck_run_times_out_instead_of_hanging(tmp_path):
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish within"):
        # a run far too long for its time limit
        run_ddp_training(tmp_path, world_size=2, steps=10**9, timeout_s=0.25)
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("world_size", [0, -1, 1.5, "2"])
def test_bad_world_size(tmp_path, world_size):
    with pytest.raises(ValueError, match="world_size"):
        run_ddp_training(tmp_path, world_size=world_size)


@pytest.mark.parametrize("resume_steps", [-1, 1.5, "2"])
def test_bad_resume_steps(tmp_path, resume_steps):
    with pytest.raises(ValueError, match="resume_steps"):
        run_ddp_training(tmp_path, resume_steps=resume_steps)


def test_train_ddp_needs_a_process_group(tmp_path):
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="init_process_group"):
        train_ddp(0, 1, tmp_path)
    with pytest.raises(RuntimeError, match="init_process_group"):
        resume_ddp(0, 1, tmp_path)


def test_resume_without_a_checkpoint_names_the_file(tmp_path):
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{find_free_port()}", rank=0, world_size=1
    )
    try:
        with pytest.raises(FileNotFoundError, match=RESUME_CHECKPOINT):
            resume_ddp(0, 1, tmp_path)
    finally:
        dist.destroy_process_group()


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


def test_torchrun_entry_point(tmp_path):
    """What users run on a cluster: torchrun starts 2 ranks of labs_utils.workers.ddp_train."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = _torchrun() + [
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "labs_utils.workers.ddp_train",
        "--out",
        "out",
        "--steps",
        "3",
        "--timeout",
        "60",
        "--resume-steps",
        "2",
    ]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "rank 0 of 2 (gloo)" in done.stdout
    assert "weights identical on all ranks: True" in done.stdout
    assert (
        "resumed model and optimizer on every rank, trained 2 more steps; weights identical on all ranks: True"
        in done.stdout
    )

    saved = _load(tmp_path / "out" / CHECKPOINT)
    # model.module.state_dict(): no prefix
    assert list(saved) == list(SimpleModel().state_dict())
    model = SimpleModel()
    model.load_state_dict(saved)  # strict
    assert all(k.startswith("module.") for k in _load(tmp_path / "out" / WRAPPED_CHECKPOINT))
    rank1 = _load(tmp_path / "out" / "rank1_weights.pth")
    assert all(torch.equal(saved[k], rank1[k]) for k in saved)


def test_ddp_train_without_torchrun_says_how_to_start_it(tmp_path, monkeypatch, capsys):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    assert ddp_train.main(["--out", str(tmp_path)]) == 2
    assert (
        "torchrun --standalone --nproc_per_node=2 -m labs_utils.workers.ddp_train"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize("bad", [["--steps", "0"], ["--resume-steps", "-1"]])
def test_ddp_train_rejects_bad_steps(tmp_path, bad):
    with pytest.raises(SystemExit) as e:
        ddp_train.main(["--out", str(tmp_path), *bad])
    assert e.value.code == 2


# ---------------------------------------------------------------- rank 0 only, then a barrier


class _Hub(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; logs each request's path; answers after 0.3 s, so that ranks that ask at
    the same moment both ask before either has the file (a distant server)."""

    def do_GET(self):
        self.server.requests.append(self.path)
        time.sleep(0.3)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def mistakes(tmp_path_factory):
    """notebook 07's section 8: the three staged mistakes in one spawn of two ranks."""
    root = tmp_path_factory.mktemp("rank0")
    torch.manual_seed(1)
    (root / "site").mkdir()
    torch.save(SimpleModel().state_dict(), root / "site" / "pretrained.pth")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Hub, directory=root / "site")
    )
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/pretrained.pth"
    try:
        reports = spawn_workers(
            rank0_mistakes,
            str(root / "ranks"),
            url,
            world_size=2,
            timeout_s=120,
            log_dir=root / "ranks",
        )
    finally:
        server.shutdown()
        server.server_close()
    return root, reports, server.requests


TORN = (
    "RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central directory"
)


def test_every_rank_saving_to_one_path_tears_the_file_another_rank_reads(mistakes):
    root, reports, _ = mistakes
    assert [r["every_rank_saves"] for r in reports] == [TORN, "epoch 1"]
    with pytest.raises(RuntimeError, match="failed finding central directory"):
        _load(root / "ranks" / "torn_every_rank.pth")
    assert _load(root / "ranks" / "every_rank.pth")["epoch"] == 1  # whole again once rank 1 is done


def test_without_a_barrier_rank1_loads_the_old_file_then_a_torn_one(mistakes):
    root, reports, _ = mistakes
    assert [r["no_barrier"] for r in reports] == [["epoch 2"], ["epoch 1", TORN]]
    assert [r["barrier"] for r in reports] == [["epoch 2"], ["epoch 2"]]
    with pytest.raises(RuntimeError, match="failed finding central directory"):
        _load(root / "ranks" / "torn_barrier_False.pth")
    assert _load(root / "ranks" / "barrier_True.pth")["epoch"] == 2


def test_rank0_first_downloads_once_and_the_others_load_from_the_cache(mistakes):
    root, reports, requests = mistakes
    assert sorted(requests) == ["/pretrained.pth?every_rank"] * 2 + ["/pretrained.pth?rank0_first"]
    expected = list(SimpleModel().state_dict())
    for r in reports:
        assert r["every_rank"] == expected and r["rank0_first"] == expected
    for flag in (False, True):
        cached = root / "ranks" / f"torch_home_{flag}" / "hub" / "checkpoints" / "pretrained.pth"
        assert cached.read_bytes() == (root / "site" / "pretrained.pth").read_bytes()


def test_a_stalling_file_pauses_once_past_64_kib_and_then_completes(tmp_path):
    calls = []
    path = tmp_path / "x.pth"
    state = {"w": torch.arange(40_000, dtype=torch.float32)}  # 160 KB
    with StallingFile(path, pause=lambda: calls.append(path.stat().st_size)) as f:
        torch.save(state, f)
    assert len(calls) == 1 and calls[0] >= 64 * 1024
    assert torch.equal(_load(path)["w"], state["w"])


def test_spawn_workers_checks_world_size(tmp_path):
    with pytest.raises(ValueError, match="world_size"):
        spawn_workers(
            rank0_mistakes, str(tmp_path), "http://x", world_size=0, timeout_s=5, log_dir=tmp_path
        )


def _environ(rank: int, world_size: int, name: str):
    """A rank's target: the value it sees of environment variable ``name``."""
    return os.environ.get(name)


def test_ranks_see_the_callers_environment_at_each_call(tmp_path, monkeypatch):
    # the fork server starts with the first call; a variable set after it still reaches the
    # ranks of the next call, as it would reach freshly spawned ones
    monkeypatch.delenv("WORKBOOK_RANK_ENV", raising=False)
    kw = dict(timeout_s=60, log_dir=tmp_path)
    assert spawn_workers(_environ, "WORKBOOK_RANK_ENV", world_size=1, **kw) == [None]
    monkeypatch.setenv("WORKBOOK_RANK_ENV", "set later")
    assert spawn_workers(_environ, "WORKBOOK_RANK_ENV", world_size=2, **kw) == ["set later"] * 2
