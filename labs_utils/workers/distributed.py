"""What the ranks of notebook 07 run (``train_ddp``/``resume_ddp``, ``rank0_mistakes``: saving
without ``if rank == 0`` or a barrier, staged), and ``spawn_workers``, which starts the local ranks
of notebooks 07 and 11: a rank imports its function by name, so it lives here.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = ["find_free_port", "train_ddp", "resume_ddp", "run_ddp_training", "DDPRun"]
__all__ += ["spawn_workers", "StallingFile", "rank0_mistakes", "every_rank_saves"]
__all__ += ["load_right_after_save", "download_once", "CHECKPOINT", "WRAPPED_CHECKPOINT"]
__all__ += ["RESUME_CHECKPOINT", "MOMENTUM", "equal"]

#: What rank 0 saves: ``ddp_model.module.state_dict()``, keys without a prefix.
CHECKPOINT = "ddp_checkpoint.pth"
#: What saving ``ddp_model.state_dict()`` gives instead (every key starts with ``module.``).
WRAPPED_CHECKPOINT = "ddp_wrapped_state_dict.pth"
#: What rank 0 saves to resume from: ``{"model", "optimizer", "step"}``.
RESUME_CHECKPOINT = "ddp_resume.pth"
#: SGD's momentum: the optimizer keeps one buffer per parameter, state that a resume must restore.
MOMENTUM = 0.9


def equal(a: Any, b: Any) -> bool:
    """Exactly equal through nested dicts, tensors with ``torch.equal``."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_group(fn: str) -> None:
    """Raise a clear error when ``fn`` runs outside a process group."""
    if not dist.is_initialized():
        raise RuntimeError(
            f"{fn}() needs a process group: call torch.distributed.init_process_group first, or start it with run_ddp_training(), run_dcp_job() or torchrun"
        )


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().cpu()


def _all_equal_across_ranks(vec: torch.Tensor, world_size: int) -> bool:
    gathered = [torch.empty_like(vec) for _ in range(world_size)]
    dist.all_gather(gathered, vec)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def _train_steps(
    ddp_model, optimizer, rank: int, world_size: int, steps: int, seed: int, device, first_epoch=0
) -> list[float]:
    """``steps`` optimizer steps on this rank's shard of the data; returns the mean loss over ranks."""
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    from ..data import blobs

    dataset = blobs(256, seed=seed)
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, seed=seed)
    loader = DataLoader(dataset, batch_size=16, sampler=sampler)
    losses: list[float] = []
    epoch, batches = first_epoch, iter(())
    for _ in range(steps):
        try:
            x, y = next(batches)
        except StopIteration:
            sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every rank
            epoch += 1
            batches = iter(loader)
            x, y = next(batches)
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(ddp_model(x), y)
        loss.backward()  # DDP all-reduces (averages) the gradients here
        optimizer.step()
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)  # for the log only: the mean loss over ranks
        losses.append(mean_loss.item() / world_size)
    return losses


# notebook 07 prints this source: its stored output keeps this layout
# fmt: off
def train_ddp(rank: int, world_size: int, out_dir: str | os.PathLike, *, steps: int = 5, seed: int = 0,
              lr: float = 0.1, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train ``SimpleModel`` under DDP for ``steps`` steps (needs a process group), SGD with momentum.

    Every rank starts from another seed on purpose: DDP's constructor broadcasts rank 0's weights.
    Rank 0 saves ``CHECKPOINT``, ``WRAPPED_CHECKPOINT`` and ``RESUME_CHECKPOINT`` in ``out_dir``;
    every rank ``rank<N>_weights.pth``, the weights it holds. Returns what this rank saw.
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    from ..models import SimpleModel

    need_group("train_ddp")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)

    torch.manual_seed(seed + rank)  # different start on every rank, on purpose
    model = SimpleModel().to(device)
    started_different = not _all_equal_across_ranks(_flat(model).to(device), world_size)
    ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    synced_after_wrap = _all_equal_across_ranks(
        _flat(ddp_model.module).to(device), world_size
    )

    optimizer = torch.optim.SGD(ddp_model.parameters(), lr=lr, momentum=MOMENTUM)
    losses = _train_steps(ddp_model, optimizer, rank, world_size, steps, seed, device)

    if rank == 0:
        # the plain model: no prefix
        torch.save(ddp_model.module.state_dict(), out / CHECKPOINT)
        # what forgetting .module gives
        torch.save(ddp_model.state_dict(), out / WRAPPED_CHECKPOINT)
        torch.save(
            {
                "model": ddp_model.module.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": steps,
            },
            out / RESUME_CHECKPOINT,
        )
    dist.barrier()  # nobody reads the checkpoint before rank 0 has finished writing it

    saved = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True)
    mine = {k: v.detach().cpu() for k, v in ddp_model.module.state_dict().items()}
    torch.save(mine, out / f"rank{rank}_weights.pth")
    return {
        "rank": rank,
        "world_size": world_size,
        "backend": dist.get_backend(),
        "steps": steps,
        "losses": losses,
        "started_different": started_different,
        "synced_after_wrap": synced_after_wrap,
        "identical_across_ranks": _all_equal_across_ranks(
            _flat(ddp_model.module).to(device), world_size
        ),
        "matches_checkpoint": equal(saved, mine),
    }
# fmt: on


# notebook 07 prints this source: its stored output keeps this layout
# fmt: off
def resume_ddp(rank: int, world_size: int, out_dir: str | os.PathLike, *, every_rank_loads_optimizer: bool = True,
               steps: int = 3, seed: int = 0, lr: float = 0.1, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Resume from ``RESUME_CHECKPOINT`` under DDP and train ``steps`` more. Nothing broadcasts
    optimizer state: every rank loads it, or with ``every_rank_loads_optimizer=False`` only rank 0
    (the mistake: the other ranks start with empty momentum, and the weights drift apart)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from ..models import SimpleModel

    need_group("resume_ddp")
    device = torch.device(device)
    path = Path(out_dir) / RESUME_CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no checkpoint to resume from; run train_ddp() first, it writes it"
        )
    map_location = {"cuda:0": str(device)} if device.type == "cuda" else "cpu"
    # on every rank
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)

    # a different fresh model on every rank, as before
    torch.manual_seed(seed + 100 + rank)
    model = SimpleModel().to(device)
    model.load_state_dict(checkpoint["model"])
    ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD(ddp_model.parameters(), lr=lr, momentum=MOMENTUM)
    if every_rank_loads_optimizer or rank == 0:
        optimizer.load_state_dict(checkpoint["optimizer"])
    loaded = len(optimizer.state) > 0
    # first_epoch=1: the next epoch's shuffle
    losses = _train_steps(ddp_model, optimizer, rank, world_size, steps, seed, device, 1)
    return {
        "rank": rank,
        "every_rank_loads_optimizer": every_rank_loads_optimizer,
        "optimizer_state_loaded": loaded,
        "identical_across_ranks": _all_equal_across_ranks(
            _flat(ddp_model.module).to(device), world_size
        ),
        "losses": losses,
    }
# fmt: on


# --- Rank 0 only, then a barrier: the mistakes, staged in a fixed order (notebook 07, section 8)


# notebook 07 prints this source: its stored output keeps this layout
class StallingFile(io.FileIO):
    """Opened for writing as ``torch.save(obj, path)`` opens it ("wb": emptied first); after the
    first write that passes 64 KiB it stalls once in ``pause()``: a slow disk that stops at the
    same byte on every run (here after the 256 KiB weight: all but the bias and the zip's end)."""

    def __init__(self, path: str | os.PathLike, pause) -> None:
        super().__init__(path, "wb")
        self.pause = pause

    def write(self, data) -> int:
        written = super().write(data)
        if self.pause and self.tell() >= 64 * 1024:
            pause, self.pause = self.pause, None
            pause()
        return written


def _checkpoint(epoch: int) -> dict[str, Any]:
    torch.manual_seed(0)  # 256 KiB, the same on every rank (as under DDP)
    return {"epoch": epoch, "model": nn.Linear(256, 256).state_dict()}


def _what_loads(path: Path) -> str:
    try:  # the checkpoint's epoch, or the first sentence of the error
        return f"epoch {torch.load(path, weights_only=True)['epoch']}"
    except Exception as e:  # a torn file: RuntimeError, OSError or EOFError
        return f"{type(e).__name__}: {str(e).split('. ')[0]}"


def _let_read() -> None:
    dist.barrier()  # staging: the writer has stalled; the reader reads now
    dist.barrier()  # staging: it has read


def _read_partway(path: Path) -> str:
    """The reader's side of ``_let_read``; keeps a copy of the torn file for the notebook."""
    dist.barrier()
    shutil.copyfile(path, path.with_name("torn_" + path.name))
    seen = _what_loads(path)
    dist.barrier()
    return seen


# notebook 07 prints this source: its stored output keeps this layout
# fmt: off
def every_rank_saves(rank: int, out_dir: str | os.PathLike) -> str:
    """No ``if rank == 0``: every rank saves the same checkpoint to one path, then loads it
    (to evaluate, say). Staged: rank 0 is done first; rank 1 opens the file again ("wb"
    empties it) and stalls before its end while rank 0 loads it."""
    path = Path(out_dir) / "every_rank.pth"
    if rank == 0:
        torch.save(_checkpoint(epoch=1), path)
    dist.barrier()  # staging: rank 0's save is done
    if rank == 0:
        return _read_partway(path)
    with StallingFile(path, pause=_let_read) as f:  # as torch.save(obj, path) opens it
        torch.save(_checkpoint(epoch=1), f)
    return _what_loads(path)


def load_right_after_save(
    rank: int, out_dir: str | os.PathLike, *, barrier: bool
) -> list[str]:
    """Rank 0 saves epoch 2 over epoch 1's checkpoint; every rank loads it right after,
    with or without ``dist.barrier()`` between. Without, rank 1 is early; staged, it loads
    twice: before rank 0 has opened the file, and while rank 0's write is stalled before its end."""
    path = Path(out_dir) / f"barrier_{barrier}.pth"
    if rank == 0:
        torch.save(_checkpoint(epoch=1), path)  # the last epoch's checkpoint
    dist.barrier()  # staging: it is on disk
    if barrier:
        if rank == 0:
            torch.save(_checkpoint(epoch=2), path)
        dist.barrier()  # nobody loads before rank 0 has finished writing
        return [_what_loads(path)]
    if rank == 1:
        seen = [_what_loads(path)]  # rank 0 has not opened the file yet
        dist.barrier()  # staging
        return seen + [_read_partway(path)]
    dist.barrier()  # staging: rank 1 loads first
    with StallingFile(path, pause=_let_read) as f:
        torch.save(_checkpoint(epoch=2), f)
    return [_what_loads(path)]


def download_once(
    rank: int, out_dir: str | os.PathLike, url: str, *, rank0_first: bool
) -> list[str]:
    """Every rank gets pretrained weights from ``url`` into one torch.hub cache (one
    ``TORCH_HOME``, as on one machine). With ``rank0_first`` the others wait until rank 0's
    download is in the cache, and load it from there."""
    os.environ["TORCH_HOME"] = str(Path(out_dir) / f"torch_home_{rank0_first}")
    dist.barrier()  # staging: every rank starts at the same moment
    if rank0_first and rank != 0:
        dist.barrier()  # wait for rank 0's download
    weights = torch.hub.load_state_dict_from_url(url, weights_only=True, progress=False)
    if rank0_first and rank == 0:
        dist.barrier()  # it is in the cache: the others may load it
    return list(weights)
# fmt: on


def rank0_mistakes(rank: int, world_size: int, out_dir: str, url: str) -> dict[str, Any]:
    """Notebook 07's section 8 in one process group of two ranks: what each rank saw."""
    return {
        "every_rank_saves": every_rank_saves(rank, out_dir),
        "no_barrier": load_right_after_save(rank, out_dir, barrier=False),
        "barrier": load_right_after_save(rank, out_dir, barrier=True),
        # the query only tags the server's log; the cached file is named after the path
        "every_rank": download_once(rank, out_dir, f"{url}?every_rank", rank0_first=False),
        "rank0_first": download_once(rank, out_dir, f"{url}?rank0_first", rank0_first=True),
    }


# --- Starting local ranks


def exit_without_teardown(code: int = 0) -> None:
    """End a finished worker with ``os._exit`` after flushing its output: gloo's threads can abort
    the interpreter's teardown with SIGABRT now and then (pytorch/pytorch#179291)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _rank_main(rank: int, world_size: int, port, log_dir, timeout_s: float, target, args, env):
    """One rank, in the caller's ``env``: output to rank<N>.log, target's return to rank<N>.json."""
    os.environ.clear()  # a fork server's child has the server's, from its start
    os.environ.update(env)
    log = open(Path(log_dir) / f"rank{rank}.log", "w")
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    url, timeout = f"tcp://127.0.0.1:{port}", timedelta(seconds=timeout_s)
    dist.init_process_group(
        "gloo", init_method=url, rank=rank, world_size=world_size, timeout=timeout
    )
    try:
        report = target(rank, world_size, *args)
        (Path(log_dir) / f"rank{rank}.json").write_text(json.dumps(report, indent=1))
        dist.barrier()  # every rank is done with the group before anyone tears it down
    finally:
        dist.destroy_process_group()
        log.flush()
    exit_without_teardown()


def spawn_workers(target, *args, world_size: int, timeout_s: float, log_dir) -> list[Any]:
    """Run ``target(rank, world_size, *args)`` (a module's function) in ``world_size`` ranks of a
    gloo group on 127.0.0.1; return their JSON results. A timeout, a failed rank or Ctrl-C stops
    them all (``TimeoutError``/``RuntimeError`` name their logs). On Linux ranks fork from a server
    that imported torch once (spawn: ~2 s of CPU each); they get ``os.environ`` at each call, but
    not later edits to modules or to variables read at import (restart the kernel for those)."""
    import torch.multiprocessing as mp

    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int (processes), got {world_size!r}")
    if not dist.is_available():  # pragma: no cover - standard builds have it
        raise RuntimeError("this PyTorch build has no torch.distributed; install a standard build")
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    for stale in log_dir.glob("rank*.json"):
        stale.unlink()
    method = "forkserver" if sys.platform.startswith("linux") else "spawn"  # macOS: no fork
    if method == "forkserver":
        mp.set_forkserver_preload([__name__, target.__module__, "torch._dynamo"])
    for attempt in range(2):
        args_ = (world_size, find_free_port(), log_dir, timeout_s, target, args, dict(os.environ))
        ctx = mp.start_processes(
            _rank_main, args=args_, nprocs=world_size, join=False, start_method=method
        )
        deadline = time.monotonic() + timeout_s
        try:
            while not ctx.join(timeout=max(0.1, deadline - time.monotonic())):
                if time.monotonic() > deadline:
                    raise TimeoutError
        except BaseException as e:  # a timeout, a worker raised or died, or Ctrl-C
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
                p.join(timeout=5)
            if not isinstance(e, Exception):
                raise
            logs = ""  # the end of each rank's log
            for r in range(world_size):
                log = log_dir / f"rank{r}.log"
                tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
                logs += f"--- rank {r} ({log.name}) ---\n" + "\n".join(tail or ["(no log)"]) + "\n"
            if isinstance(e, TimeoutError):
                message = f"workers did not finish within {timeout_s:.0f} s; they were stopped.\n"
                raise TimeoutError(message + logs) from None
            if attempt == 0 and ("address already in use" in logs.lower() or "EADDRINUSE" in logs):
                continue
            detail = "\n".join(str(e).strip().splitlines()[-3:])  # the worker's exception
            raise RuntimeError(f"a worker failed: {detail}\nworker logs:\n{logs}") from None
        return [json.loads((log_dir / f"rank{r}.json").read_text()) for r in range(world_size)]
    raise AssertionError("unreachable")  # pragma: no cover


# --- DDP training in local ranks


def _train_then_resume(rank: int, world_size: int, out_dir: str, steps, seed, resume_steps):
    """Train; with ``resume_steps``, resume twice (every rank loads the optimizer, then rank 0 only)."""
    train = train_ddp(rank, world_size, out_dir, steps=steps, seed=seed)
    kw = dict(steps=resume_steps, seed=seed)
    resumes = [
        resume_ddp(rank, world_size, out_dir, every_rank_loads_optimizer=every, **kw)
        for every in ((True, False) if resume_steps else ())
    ]
    return {"train": train, "resumes": resumes}


@dataclass
class DDPRun:
    """What ``run_ddp_training`` returns: the output folder and each rank's report."""

    out_dir: Path
    reports: list[dict[str, Any]] = field(default_factory=list)
    #: per rank, when run with ``resume_steps``: ``[every rank loads the optimizer, rank 0 only]``
    resumes: list[list[dict[str, Any]]] = field(default_factory=list)

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / CHECKPOINT

    @property
    def wrapped_checkpoint(self) -> Path:
        return self.out_dir / WRAPPED_CHECKPOINT

    def rank_weights(self, rank: int) -> Path:
        return self.out_dir / f"rank{rank}_weights.pth"

    @property
    def losses(self) -> list[float]:
        return self.reports[0]["losses"]

    def __repr__(self) -> str:
        r0 = self.reports[0]
        return (
            f"DDPRun({len(self.reports)} ranks, backend={r0['backend']}, steps={r0['steps']}, "
            f"identical_across_ranks={all(r['identical_across_ranks'] for r in self.reports)})"
        )


def run_ddp_training(
    out_dir: str | os.PathLike,
    *,
    world_size: int = 2,
    steps: int = 5,
    seed: int = 0,
    timeout_s: float = 120.0,
    resume_steps: int = 0,
) -> DDPRun:
    """Run DDP training in ``world_size`` local processes (gloo, CPU; see ``spawn_workers``); with
    ``resume_steps`` > 0 they then resume twice (``_train_then_resume``), see ``DDPRun.resumes``."""
    if isinstance(resume_steps, bool) or not isinstance(resume_steps, int) or resume_steps < 0:
        raise ValueError(f"resume_steps must be an int >= 0 (0: no resume), got {resume_steps!r}")
    out = Path(out_dir)
    for stale in (CHECKPOINT, WRAPPED_CHECKPOINT, RESUME_CHECKPOINT):
        (out / stale).unlink(missing_ok=True)
    reports = spawn_workers(
        _train_then_resume, str(out), steps, seed, resume_steps,
        world_size=world_size, timeout_s=timeout_s, log_dir=out,
    )  # fmt: skip
    resumes = [r["resumes"] for r in reports] if resume_steps else []
    return DDPRun(out, [r["train"] for r in reports], resumes)
