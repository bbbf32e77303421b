"""Setups shared by the capstone's checks (notebook 12, in three modules)."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from . import Wrong, run_answer
from .fixtures import cnn_with_moved_statistics


def net(seed: int = 0) -> nn.Module:
    from ..models import Net

    torch.manual_seed(seed)
    return Net()


def cnn(seed: int = 0) -> nn.Module:
    """A SmallCNN whose BatchNorm buffers are not their defaults (one forward pass in train mode)."""
    return cnn_with_moved_statistics(seed, dropout=0.0)


def load_cpu(path: Path, **kwargs: Any) -> Any:
    """The check's own torch.load: weights_only=True, on the CPU, quiet."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True, **kwargs)


def refused_global(err: BaseException) -> str | None:
    m = re.search(r"GLOBAL (\S+) was not an allowed global", str(err))
    return m.group(1) if m else None


def run_saver(fn: Any, *args: Any, path: Path) -> None:
    """Run a learner's save function (it returns nothing by design); the file must appear."""
    run_answer(fn, *args)
    if not Path(path).exists():
        raise Wrong(
            f"your function ran, but nothing was written to {Path(path).name}: save to the path it was given"
        )


def same_file(f: Any, path: Path) -> bool:
    """Whether torch.load's ``f`` is the file at ``path`` (a path, or a file object opened on it)."""
    name = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", None)
    if isinstance(name, (str, os.PathLike)):
        try:
            return os.path.samefile(name, path)
        except OSError:
            return False
    # a file object of unknown origin (BytesIO of the file's bytes, say)
    return hasattr(f, "read")
