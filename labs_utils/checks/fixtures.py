"""Setups that several check modules build: a model with moved BatchNorm statistics, a
snapshot of a model's tensors, a file in a fresh temporary folder, and ``torch.load``
replaced while a learner's function runs (under whatever name it imported it as).

Each check module keeps the setups only it uses; what two or more modules need lives here.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.nn as nn

__all__ = [
    "changed_keys",
    "cnn_with_moved_statistics",
    "patched_torch_load",
    "scratch_file",
    "snapshot",
]


def cnn_with_moved_statistics(seed: int, **kwargs: Any) -> nn.Module:
    """A seeded ``SmallCNN(**kwargs)`` after one forward pass in training mode, so its
    BatchNorm buffers (running statistics, batch counter) are not their defaults."""
    from ..models import SmallCNN

    torch.manual_seed(seed)
    model = SmallCNN(**kwargs)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 1, 16, 16))
    return model


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every tensor in ``model.state_dict()``, to compare with later."""
    return {k: v.clone() for k, v in model.state_dict().items()}


def changed_keys(model: nn.Module, before: dict[str, torch.Tensor]) -> list[str]:
    """The state_dict keys of ``model`` whose tensors differ from ``snapshot``'s ``before``."""
    return [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]


@contextlib.contextmanager
def scratch_file(name: str) -> Iterator[Path]:
    """The path ``name`` in a fresh temporary folder, removed with all it holds on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp) / name


@contextlib.contextmanager
def patched_torch_load(fn: Any, load: Callable[..., Any]) -> Iterator[None]:
    """Replace ``torch.load`` with ``load`` while the learner's ``fn`` runs: as
    ``torch.load``, as ``torch.serialization.load``, and under any name ``fn``'s module
    bound it to (``from torch import load``)."""
    real = torch.serialization.load
    globals_ = getattr(fn, "__globals__", {})
    aliases = {name: load for name, value in globals_.items() if value is real}
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(torch, "load", load))
        stack.enter_context(mock.patch.object(torch.serialization, "load", load))
        if aliases:
            stack.enter_context(mock.patch.dict(fn.__globals__, aliases))
        yield
