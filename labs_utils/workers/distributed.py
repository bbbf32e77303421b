"""DistributedDataParallel training on one machine, for the DDP lesson (notebook 07).

Spawned workers import their target by name, so it must live in a module, not in a notebook
cell. ``train_ddp`` and ``resume_ddp`` are what every rank runs once a process group exists
(also used by ``ddp_train``, the ``torchrun`` entry point); ``run_ddp_training`` starts the
ranks (gloo over localhost), waits with a timeout and returns what they reported. Workers
write their output to ``rank<N>.log`` in the output folder, so cell outputs stay stable.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = ["find_free_port", "train_ddp", "resume_ddp", "run_ddp_training", "DDPRun"]
__all__ += ["CHECKPOINT", "WRAPPED_CHECKPOINT", "RESUME_CHECKPOINT", "MOMENTUM"]

#: What rank 0 saves: ``ddp_model.module.state_dict()``, keys without a prefix.
CHECKPOINT = "ddp_checkpoint.pth"
#: What saving ``ddp_model.state_dict()`` gives instead (every key starts with ``module.``).
WRAPPED_CHECKPOINT = "ddp_wrapped_state_dict.pth"
#: What rank 0 saves to resume from: ``{"model", "optimizer", "step"}``.
RESUME_CHECKPOINT = "ddp_resume.pth"
#: SGD's momentum: the optimizer keeps one buffer per parameter, state that a resume must restore.
MOMENTUM = 0.9


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
def train_ddp(
    rank: int,
    world_size: int,
    out_dir: str | os.PathLike,
    *,
    steps: int = 5,
    seed: int = 0,
    lr: float = 0.1,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Train ``SimpleModel`` under DDP for ``steps`` steps and save it from rank 0.

    Needs an initialized default process group. Every rank builds its model from a different
    seed on purpose: DDP's constructor broadcasts rank 0's weights, so they agree anyway.
    Each rank trains on its own shard of the data (``DistributedSampler``); DDP averages
    gradients across ranks in ``backward()``, so every rank takes the same step.

    The optimizer is SGD with momentum, so it has state of its own (one buffer per parameter).
    Files in ``out_dir``: ``ddp_checkpoint.pth`` (rank 0, ``model.module.state_dict()``),
    ``ddp_wrapped_state_dict.pth`` (rank 0, ``model.state_dict()``, to show the prefix),
    ``ddp_resume.pth`` (rank 0, model + optimizer + step, for ``resume_ddp``),
    ``rank<N>_weights.pth`` and ``rank<N>.json`` (every rank, what it holds and saw).
    Returns the same dict as ``rank<N>.json``.
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    from ..models import SimpleModel

    if not dist.is_initialized():
        raise RuntimeError(
            "train_ddp() needs a process group: call torch.distributed.init_process_group first, "
            "or use run_ddp_training() / torchrun -m labs_utils.workers.ddp_train"
        )
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
    report = {
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
        "matches_checkpoint": saved.keys() == mine.keys()
        and all(torch.equal(saved[k], mine[k]) for k in mine),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(report, indent=1))
    return report
# fmt: on


# notebook 07 prints this source: its stored output keeps this layout
# fmt: off
def resume_ddp(
    rank: int,
    world_size: int,
    out_dir: str | os.PathLike,
    *,
    every_rank_loads_optimizer: bool = True,
    steps: int = 3,
    seed: int = 0,
    lr: float = 0.1,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Resume from ``ddp_resume.pth`` (written by ``train_ddp``) under DDP and train ``steps`` more.

    Every rank reads the file with ``map_location`` pointing at its own device: rank 0 saved
    from ``cuda:0``, so rank ``r`` maps ``{"cuda:0": f"cuda:{r's local index}"}`` on GPUs, and
    ``"cpu"`` here. Without it every rank would put its copy on GPU 0. Every rank loads the
    model before wrapping it (DDP would broadcast rank 0's anyway) and then the optimizer:
    nothing broadcasts optimizer state. With ``every_rank_loads_optimizer=False`` only rank 0
    loads it, the mistake this function can demonstrate: the other ranks start with empty
    momentum, take other steps from the same averaged gradients, and their weights drift apart.

    Returns ``{"rank", "every_rank_loads_optimizer", "optimizer_state_loaded",
    "identical_across_ranks", "losses"}``.
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    from ..models import SimpleModel

    if not dist.is_initialized():
        raise RuntimeError(
            "resume_ddp() needs a process group: call torch.distributed.init_process_group first"
        )
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
    # the next epoch's shuffle
    losses = _train_steps(
        ddp_model, optimizer, rank, world_size, steps, seed, device, first_epoch=1
    )
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


@contextlib.contextmanager
def rank_process(
    rank: int, world_size: int, port: int, log_dir, timeout_s: float
) -> Iterator[None]:
    """One spawned rank's life: its output (warnings included) to ``log_dir/rank<N>.log``, not the
    notebook; a gloo group on 127.0.0.1:port, torn down after the body; then the process ends."""
    log = open(Path(log_dir) / f"rank{rank}.log", "w")
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    url = f"tcp://127.0.0.1:{port}"
    timeout = timedelta(seconds=timeout_s)
    dist.init_process_group(
        "gloo", init_method=url, rank=rank, world_size=world_size, timeout=timeout
    )
    try:
        yield
        dist.barrier()  # every rank is done with the group before anyone tears it down
    finally:
        dist.destroy_process_group()
        log.flush()
    exit_without_teardown()


def _spawn_worker(
    rank: int, world_size: int, port, out_dir: str, steps, seed, timeout_s: float, resume_steps=0
) -> None:
    """One rank: trains, and with ``resume_steps`` resumes twice (every rank loading the optimizer,
    then rank 0 only)."""
    with rank_process(rank, world_size, port, out_dir, timeout_s):
        train_ddp(rank, world_size, out_dir, steps=steps, seed=seed)
        if resume_steps:
            kw = dict(steps=resume_steps, seed=seed)
            resumes = [
                resume_ddp(rank, world_size, out_dir, every_rank_loads_optimizer=every, **kw)
                for every in (True, False)
            ]
            (Path(out_dir) / f"rank{rank}_resume.json").write_text(json.dumps(resumes, indent=1))


def exit_without_teardown(code: int = 0) -> None:
    """End a finished worker with ``os._exit`` after flushing its output: gloo's threads can abort
    the interpreter's teardown with SIGABRT now and then (pytorch/pytorch#179291).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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
    def resume_checkpoint(self) -> Path:
        return self.out_dir / RESUME_CHECKPOINT

    @property
    def losses(self) -> list[float]:
        return self.reports[0]["losses"]

    def __repr__(self) -> str:
        r0 = self.reports[0]
        return (
            f"DDPRun({len(self.reports)} ranks, backend={r0['backend']}, steps={r0['steps']}, "
            f"identical_across_ranks={all(r['identical_across_ranks'] for r in self.reports)})"
        )


def log_tails(log_dir: Path, world_size: int, lines: int = 15) -> str:
    """The last ``lines`` lines of each rank's ``rank<N>.log`` in ``log_dir``."""
    parts = []
    for rank in range(world_size):
        p = log_dir / f"rank{rank}.log"
        text = p.read_text(errors="replace").splitlines()[-lines:] if p.exists() else ["(no log)"]
        parts.append(f"--- rank {rank} ({p.name}) ---\n" + "\n".join(text))
    return "\n".join(parts)


def _stop(ctx) -> None:
    for p in ctx.processes:
        if p.is_alive():
            p.kill()
        p.join(timeout=5)


def spawn_workers(
    worker, args_for_port, *, world_size: int, timeout_s: float, log_dir: Path, what: str = "worker"
) -> None:
    """Start ``world_size`` spawned processes running ``worker(rank, *args_for_port(port))`` and wait.

    After ``timeout_s`` they are killed and ``TimeoutError`` is raised with the end of their logs
    (``log_dir/rank<N>.log``); a failing worker raises ``RuntimeError`` with its log. A port taken
    in between is retried once.
    """
    import torch.multiprocessing as mp

    for attempt in range(2):
        port = find_free_port()
        ctx = mp.start_processes(
            worker, args=args_for_port(port), nprocs=world_size, join=False, start_method="spawn"
        )
        deadline = time.monotonic() + timeout_s
        try:
            while not ctx.join(timeout=max(0.1, deadline - time.monotonic())):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{what}s did not finish within {timeout_s:.0f} s; they were stopped.\n"
                        + log_tails(log_dir, world_size)
                    )
        except TimeoutError:
            _stop(ctx)
            raise
        except Exception as e:  # a worker raised or died
            _stop(ctx)
            logs = log_tails(log_dir, world_size)
            if attempt == 0 and ("address already in use" in logs.lower() or "EADDRINUSE" in logs):
                continue
            # the worker's exception, last lines
            detail = "\n".join(str(e).strip().splitlines()[-3:])
            raise RuntimeError(f"a {what} failed: {detail}\nworker logs:\n{logs}") from None
        return


def run_ddp_training(
    out_dir: str | os.PathLike,
    *,
    world_size: int = 2,
    steps: int = 5,
    seed: int = 0,
    timeout_s: float = 120.0,
    resume_steps: int = 0,
) -> DDPRun:
    """Run DDP training in ``world_size`` local processes (gloo, CPU) and return a ``DDPRun``.

    Waits at most ``timeout_s`` (see ``spawn_workers``). With ``resume_steps`` > 0 the same
    processes then resume from ``ddp_resume.pth`` twice (``resume_ddp``: every rank loading the
    optimizer, then rank 0 only) and train that many more steps; see ``DDPRun.resumes``.
    """

    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(
            f"world_size must be a positive int (number of processes), got {world_size!r}"
        )
    if not isinstance(resume_steps, int) or resume_steps < 0:
        raise ValueError(f"resume_steps must be an int >= 0 (0: no resume), got {resume_steps!r}")
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; install a standard build")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = (CHECKPOINT, WRAPPED_CHECKPOINT, RESUME_CHECKPOINT)
    for stale in [*out.glob("rank*.json"), *(out / n for n in names)]:
        stale.unlink(missing_ok=True)

    spawn_workers(
        _spawn_worker,
        lambda port: (world_size, port, str(out), steps, seed, timeout_s, resume_steps),
        world_size=world_size,
        timeout_s=timeout_s,
        log_dir=out,
        what="DDP worker",
    )
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in range(world_size)]
    read = [] if not resume_steps else range(world_size)
    resumes = [json.loads((out / f"rank{r}_resume.json").read_text()) for r in read]
    return DDPRun(out, reports, resumes)
