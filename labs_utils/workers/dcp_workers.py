"""Distributed checkpoints (``torch.distributed.checkpoint``, DCP) on one machine, for notebook 11.

``train_and_save`` and ``load_and_verify`` are what each rank runs (FSDP2-sharded, checked against
rank 0's full reference); ``run_dcp_job`` starts the ranks. For one process: ``check_dcp_folder``,
``describe`` and ``load_single_process``.

Trusted folders only: reading a DCP folder runs code from it (``.metadata`` is read with plain
``pickle.load``, and ``dcp.load`` reads non-tensor entries with ``weights_only=False``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from ..toolkit.render import Table
from .distributed import equal, need_group, spawn_workers

__all__ = ["build_model", "shard_model", "make_batches", "train_and_save", "load_and_verify"]
__all__ += ["run_dcp_job", "DCPJob", "check_dcp_folder", "describe", "load_single_process"]
__all__ += ["REFERENCE", "EXPORT"]

#: What rank 0 writes next to the logs: the full weights and optimizer state right after saving.
REFERENCE = "reference.pth"
#: What rank 0 writes next to the logs for serving: the model's full state_dict, one torch.save file.
EXPORT = "full_model.pth"


def build_model(seed: int = 0) -> nn.Module:
    """The model every lesson process builds: ``labs_utils.models.Net`` (32 -> 64 -> 10), seeded."""
    from ..models import Net

    torch.manual_seed(seed)
    return Net()


def make_batches(
    steps: int, rank: int = 0, world_size: int = 1, *, batch_size: int = 16, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` batches of this rank's share of a fixed data set (blobs: 32 features, 10 classes)."""
    from ..data import blobs

    x, y = blobs(steps * batch_size * world_size, n_features=32, n_classes=10, seed=seed).tensors
    x, y = x[rank::world_size], y[rank::world_size]
    return list(zip(x.split(batch_size), y.split(batch_size)))[:steps]


# notebook 11 prints this source: its stored output keeps this layout
# fmt: off
def shard_model(model: nn.Module, world_size: int) -> nn.Module:
    """Shard every parameter of ``model`` across the ranks (FSDP2's ``fully_shard``, on CPU)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world_size,))
    return fully_shard(model, mesh=mesh)
# fmt: on


def _full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The unsharded model and optimizer state (every rank takes part; every rank gets it all)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    msd, osd = get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True))
    detach = lambda t: t.detach().clone().cpu() if isinstance(t, torch.Tensor) else t  # noqa: E731
    return {
        "model": {k: detach(v) for k, v in msd.items()},
        "optim": {k: {n: detach(v) for n, v in s.items()} for k, s in osd["state"].items()},
    }


# notebook 11 prints this source: its stored output keeps this layout
# fmt: off
def train_and_save(rank: int, world_size: int, checkpoint_dir: str | os.PathLike, *,
                   log_dir: str | os.PathLike, steps: int = 3, seed: int = 0) -> dict[str, Any]:
    """Train a sharded ``Net`` for ``steps`` steps (every rank at once), then save it three ways:
    sharded (``dcp.save`` to ``checkpoint_dir``: a file per rank plus ``.metadata``), full (rank 0,
    ``EXPORT``) and local (each rank's shards as plain tensors, ``local_rank<N>.pth``). Rank 0 also
    writes ``REFERENCE`` to check later loads against. Files but the DCP folder go to ``log_dir``.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_state_dict,
    )

    need_group("train_and_save")
    model = shard_model(build_model(seed), world_size)  # the same start on every rank
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for x, y in make_batches(steps, rank, world_size, seed=seed):
        optimizer.zero_grad()
        nn.functional.cross_entropy(
            model(x), y
        ).backward()  # FSDP averages gradients across ranks
        optimizer.step()

    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save(
        {"model": model_sd, "optim": optim_sd, "step": steps},
        checkpoint_id=checkpoint_dir,
    )

    # One file for serving. Every rank takes part in gathering each tensor; with cpu_offload=True
    # the full tensor goes to rank 0's CPU memory and the other ranks get an empty dict.
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    if rank == 0:
        torch.save(weights, Path(log_dir) / EXPORT)

    full = _full_state(model, optimizer)
    if rank == 0:
        torch.save({**full, "step": steps}, Path(log_dir) / REFERENCE)
    dist.barrier()  # nobody reads the reference before rank 0 has written it

    # FSDP's "local" state dict: this rank's shards as plain tensors, one file per rank.
    shards = {name: t.to_local() for name, t in model_sd.items()}
    torch.save(shards, Path(log_dir) / f"local_rank{rank}.pth")
    local = model_sd["net.0.weight"]
    return {
        "rank": rank,
        "world_size": world_size,
        "steps": steps,
        "local_type": type(local).__name__,
        "local_shape": list(local.to_local().shape),
        "global_shape": list(local.shape),
        "export_keys": len(weights),
        "export_devices": sorted({str(t.device) for t in weights.values()}),
    }
# fmt: on


# notebook 11 prints this source: its stored output keeps this layout
# fmt: off
def load_and_verify(rank: int, world_size: int, checkpoint_dir: str | os.PathLike, *,
                    log_dir: str | os.PathLike, seed: int = 100) -> dict[str, Any]:
    """Load the DCP checkpoint into a fresh sharded model and optimizer (another seed); compare
    with the reference. ``get_state_dict`` (what to fill: this rank's shards), ``dcp.load`` (fills
    it in place, reading only this rank's bytes), ``set_state_dict`` (into model and optimizer)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    need_group("load_and_verify")
    reference = torch.load(Path(log_dir) / REFERENCE, map_location="cpu", weights_only=True)
    model = shard_model(build_model(seed), world_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    differs_before = not equal(_full_state(model, optimizer)["model"], reference["model"])

    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd, "step": 0}
    dcp.load(state, checkpoint_id=checkpoint_dir)
    set_state_dict(
        model,
        optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optim"],
    )

    full = _full_state(model, optimizer)
    return {
        "rank": rank,
        "world_size": world_size,
        "differs_before_load": differs_before,
        "model_equal": equal(full["model"], reference["model"]),
        "optimizer_equal": equal(full["optim"], reference["optim"]),
        "step": state["step"],
        "local_shape": list(model_sd["net.0.weight"].to_local().shape),
    }
# fmt: on


# --- Starting the processes


def _dcp_actions(rank: int, world_size: int, checkpoint_dir: str, log_dir, actions, steps, seed):
    """One rank of ``run_dcp_job``: its ``actions``; returns its report."""
    report: dict[str, Any] = {}
    if "save" in actions:
        report["save"] = train_and_save(
            rank, world_size, checkpoint_dir, log_dir=log_dir, steps=steps, seed=seed
        )
    if "load" in actions:
        report["load"] = load_and_verify(
            rank, world_size, checkpoint_dir, log_dir=log_dir, seed=seed + 100
        )
    return report


@dataclass
class DCPJob:
    """What ``run_dcp_job`` returns: the checkpoint folder, the log folder and each rank's report."""

    checkpoint_dir: Path
    log_dir: Path
    reports: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reference(self) -> Path:
        return self.log_dir / REFERENCE

    @property
    def export(self) -> Path:
        return self.log_dir / EXPORT

    def table(self) -> Table:
        """One row per rank and phase: what each rank held and whether its load matched."""
        rows = []
        for s in (r["save"] for r in self.reports if "save" in r):
            held = f"{s['local_type']} {tuple(s['local_shape'])} of {tuple(s['global_shape'])}"
            rows.append([s["rank"], "save", held, "", ""])
        for lo in (r["load"] for r in self.reports if "load" in r):
            held = f"shard {tuple(lo['local_shape'])}"
            rows.append([lo["rank"], "load", held, lo["model_equal"], lo["optimizer_equal"]])
        return Table(
            ["rank", "phase", "net.0.weight on this rank", "model == saved", "optimizer == saved"],
            rows,
        )

    def __repr__(self) -> str:
        return f"DCPJob({len(self.reports)} ranks)\n{self.table()}"

    def _repr_html_(self) -> str:
        return self.table().to_html()


def run_dcp_job(
    checkpoint_dir: str | os.PathLike,
    *,
    world_size: int = 2,
    actions: tuple[str, ...] = ("save", "load"),
    steps: int = 3,
    seed: int = 0,
    timeout_s: float = 120.0,
    log_dir: str | os.PathLike | None = None,
) -> DCPJob:
    """Run ``actions`` ("save": train and ``dcp.save``; "load": ``dcp.load`` into fresh models and
    compare) in ``world_size`` local processes (see ``spawn_workers``). Logs, reports and the other
    files go to ``log_dir`` (default: the checkpoint folder's name plus ``_logs``, next to it)."""
    actions = tuple(actions)
    if not actions or set(actions) - {"save", "load"}:
        raise ValueError(f"actions must be 'save' and/or 'load', got {actions!r}")
    if not isinstance(checkpoint_dir, (str, os.PathLike)):
        raise TypeError(
            f"checkpoint_dir must be a folder path such as 'runs/dcp_ckpt', got {type(checkpoint_dir).__name__}"
        )
    ckpt = Path(checkpoint_dir)
    logs = Path(log_dir) if log_dir is not None else ckpt.with_name(ckpt.name + "_logs")
    if "save" not in actions:
        check_dcp_folder(ckpt)
        if not (logs / REFERENCE).exists():
            raise FileNotFoundError(
                f"{logs / REFERENCE}: no reference weights to compare with; run the job with "
                "actions=('save',) first (same checkpoint_dir and log_dir)"
            )
    elif ckpt.exists() and any(ckpt.iterdir()):
        raise FileExistsError(
            f"{ckpt}: is not empty; save a new checkpoint into an empty or new folder "
            "(DCP would mix old and new files)"
        )
    ckpt.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    reports = spawn_workers(
        _dcp_actions, str(ckpt), str(logs), actions, steps, seed,
        world_size=world_size, timeout_s=timeout_s, log_dir=logs,
    )  # fmt: skip
    return DCPJob(ckpt, logs, reports)


# --- One process, no process group


def check_dcp_folder(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path`` if it is a DCP checkpoint folder (judged by its files' names only),
    else a clear error (``dcp.load`` would raise a ``CheckpointException`` per rank)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected the path of a DCP checkpoint folder, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such folder; a DCP checkpoint is a folder written by "
            "torch.distributed.checkpoint.save: check the path"
        )
    if path.is_file():
        raise NotADirectoryError(
            f"{path}: is a file, not a DCP checkpoint folder; a single torch.save file "
            "loads with torch.load (or labs_utils.toolkit.load_checkpoint)"
        )
    if not (path / ".metadata").is_file():
        raise FileNotFoundError(
            f"{path}: has no .metadata file, so it is not a complete DCP checkpoint "
            "(dcp.save writes .metadata last: the save may have been interrupted); "
            "use an earlier checkpoint"
        )
    return path


def describe(checkpoint_dir: str | os.PathLike, prefix: str = "") -> Table:
    """What a DCP folder holds, read from its ``.metadata`` only (no tensor data): one row per saved
    chunk of each tensor whose key starts with ``prefix`` (global shape, chunk offset and shape,
    file). Trusted folders only: ``.metadata`` is unpickled."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    path = check_dcp_folder(checkpoint_dir)
    meta = FileSystemReader(str(path)).read_metadata()
    files = {
        (idx.fqn, tuple(idx.offset or ())): info.relative_path
        for idx, info in meta.storage_data.items()
    }
    rows = []
    for key, item in meta.state_dict_metadata.items():
        if not key.startswith(prefix) or not isinstance(item, TensorStorageMetadata):
            continue
        for chunk in item.chunks:
            file = files.get((key, tuple(chunk.offsets)), "?")
            rows.append([key, tuple(item.size), tuple(chunk.offsets), tuple(chunk.sizes), file])
    notes = [
        f"{len(meta.state_dict_metadata)} entries in .metadata; files: "
        + ", ".join(sorted(p.name for p in path.iterdir()))
    ]
    return Table(["key", "global shape", "chunk offset", "chunk shape", "file"], rows, notes=notes)


def load_single_process(
    model: nn.Module, optimizer: torch.optim.Optimizer | None, checkpoint_dir: str | os.PathLike
) -> dict[str, Any]:
    """Load a DCP checkpoint (saved by any number of ranks) into a plain model and optimizer.

    One process, no process group: ``get_state_dict`` gives the structure to fill, ``dcp.load``
    with ``no_dist=True`` reads every rank's shards into it, ``set_state_dict`` puts it in place;
    ``optimizer=None`` loads the model only. Returns the checkpoint's other entries (``step``).
    Trusted folders only: it unpickles ``.metadata`` and non-tensor entries."""
    import warnings

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    if not isinstance(model, nn.Module):
        raise TypeError(
            f"load_single_process() needs the model to load into (an nn.Module), got {type(model).__name__}"
        )
    path = check_dcp_folder(checkpoint_dir)
    meta = dcp.FileSystemReader(str(path)).read_metadata()
    extras = {
        k: None
        for k, v in meta.state_dict_metadata.items()
        if "." not in k and not isinstance(v, TensorStorageMetadata)
    }
    optimizers = () if optimizer is None else optimizer
    model_sd, optim_sd = get_state_dict(model, optimizers)
    state = {"model": model_sd, "optim": optim_sd, **extras}
    with warnings.catch_warnings():  # "assuming a single process": it is the intent
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=str(path), no_dist=True)
    set_state_dict(model, optimizers, model_state_dict=model_sd, optim_state_dict=state["optim"])
    return {k: state[k] for k in extras}
