"""DDP training and saving, started by ``torchrun`` (what you run on a real cluster).

    torchrun --standalone --nproc_per_node=2 -m labs_utils.workers.ddp_train --out runs/ddp --steps 5

``torchrun`` gives each process its identity in environment variables, so ``init_process_group``
needs only the backend. It runs the notebook's ``train_ddp`` (then, with ``--resume-steps N``,
``resume_ddp``); rank 0 prints one summary line per phase.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from .distributed import CHECKPOINT, exit_without_teardown, resume_ddp, train_ddp

__all__ = ["main"]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_START = "torchrun --standalone --nproc_per_node=2 -m labs_utils.workers.ddp_train"


# notebook 07 prints this source: its stored output keeps this layout
# fmt: off
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=_START, description="Train SimpleModel with DistributedDataParallel and save it from rank 0.")
    parser.add_argument("--out", required=True, help="folder for the checkpoint (created if missing)")
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a collective may wait (default 120)")
    parser.add_argument("--resume-steps", type=int, default=0, help="then resume from the saved checkpoint on every rank and train this many steps (default 0)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.resume_steps < 0:
        parser.error(f"--steps must be at least 1 and --resume-steps 0 or more, got {args.steps} and {args.resume_steps}")

    missing = [v for v in _TORCHRUN_VARS if v not in os.environ]
    if missing:
        print(f"labs_utils.workers.ddp_train: {', '.join(missing)} not set; this module is meant to be started by torchrun:\n  {_START} --out {args.out}", file=sys.stderr)
        return 2

    local_rank = int(os.environ["LOCAL_RANK"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    # One GPU per process, or none: with fewer GPUs than processes on this machine, use the CPU.
    if torch.cuda.is_available() and torch.cuda.device_count() >= local_world:
        torch.cuda.set_device(local_rank)
        backend, device = "nccl", torch.device("cuda", local_rank)
    else:
        backend, device = "gloo", torch.device("cpu")
    # env:// from torchrun
    dist.init_process_group(backend, timeout=timedelta(seconds=args.timeout))
    try:
        rank, world_size = dist.get_rank(), dist.get_world_size()
        report = train_ddp(
            rank, world_size, args.out, steps=args.steps, seed=args.seed, device=device
        )
        if rank == 0:
            print(f"rank 0 of {world_size} ({backend}): trained {args.steps} steps, final mean "
                  f"loss {report['losses'][-1]:.2f}, saved {Path(args.out) / CHECKPOINT}; weights "
                  f"identical on all ranks: {report['identical_across_ranks']}", flush=True)
        ok = report["identical_across_ranks"] and report["matches_checkpoint"]
        if args.resume_steps:
            resumed = resume_ddp(rank, world_size, args.out, steps=args.resume_steps,
                                 seed=args.seed, device=device)
            if rank == 0:
                print("rank 0: resumed model and optimizer on every rank, trained "
                      f"{args.resume_steps} more steps; weights identical on all ranks: "
                      f"{resumed['identical_across_ranks']}", flush=True)
            ok = ok and resumed["identical_across_ranks"]
    finally:
        dist.destroy_process_group()
    return 0 if ok else 1
# fmt: on


if __name__ == "__main__":
    # gloo threads can abort a normal interpreter exit (see there)
    exit_without_teardown(main())
