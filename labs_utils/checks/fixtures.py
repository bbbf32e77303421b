"""Setups that several check modules build: a model with moved BatchNorm statistics, a
snapshot of a model's tensors, a file in a fresh temporary folder, and ``torch.load`` or
``torch.save`` replaced while a learner's function runs (under whatever name it imported it as).

Each check module keeps the setups only it uses; what two or more modules need lives here.
"""

from __future__ import annotations

import collections
import contextlib
import io
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.nn as nn


def cnn_with_moved_statistics(seed: int, **kwargs: Any) -> nn.Module:
    """A seeded ``SmallCNN(**kwargs)`` after one forward pass in training mode, so its
    BatchNorm buffers (running statistics, batch counter) are not their defaults."""
    from ..models import SmallCNN

    torch.manual_seed(seed)
    model = SmallCNN(**kwargs)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, kwargs.get("in_channels", 1), 16, 16))
    return model


def named(**layers: nn.Module) -> nn.Sequential:
    """A Sequential whose layers have the names given (keys ``<name>.weight``)."""
    return nn.Sequential(collections.OrderedDict(layers))


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
def replaced(fn: Any, owners: tuple, **new: Callable[..., Any]) -> Iterator[None]:
    """While the learner's ``fn`` runs, replace each function ``name`` with ``new[name]`` in every
    module of ``owners`` that has it (``torch`` and ``torch.serialization`` for ``load=...``), and
    under any name ``fn``'s module bound it to (``from torch import load as read``)."""
    real = [(getattr(next(o for o in owners if hasattr(o, n)), n), f) for n, f in new.items()]
    globals_ = getattr(fn, "__globals__", {})
    aliases = {k: f for k, v in globals_.items() for r, f in real if v is r}
    with contextlib.ExitStack() as stack:
        for owner, name in ((o, n) for o in owners for n in new if hasattr(o, n)):
            stack.enter_context(mock.patch.object(owner, name, new[name]))
        stack.enter_context(mock.patch.dict(globals_, aliases))
        yield


# torch's CPU generator state (5056 bytes) holds the Mersenne Twister's word array at bytes 24..5016;
# the bytes before it count the draws left before the array is regenerated.
_MT_WORDS = slice(24, 5016)


def drew_after_restoring(saved: torch.Tensor, now: torch.Tensor, max_refills: int = 8) -> bool:
    """Whether ``now`` is ``saved`` advanced by some draws: the learner restored this generator, then
    something drew random numbers from it before training went on."""
    if saved.numel() != 5056 or now.numel() != 5056:  # pragma: no cover - another torch layout
        return False
    target = now[_MT_WORDS]
    g = torch.Generator()
    g.set_state(saved)
    words = saved[_MT_WORDS]
    for _ in range(max_refills + 1):
        if torch.equal(words, target):
            return True
        for _ in range(2000):  # one draw at a time until the word array is regenerated
            torch.randint(0, 2, (1,), generator=g)
            new = g.get_state()[_MT_WORDS]
            if not torch.equal(new, words):
                words = new
                break
    return False


def refused_global(err: BaseException) -> str:
    """The global that ``torch.load(weights_only=True)`` refused, named in its error, or ''."""
    m = re.search(r"GLOBAL (\S+) was not an allowed global|but got <class '([^']+)'>", str(err))
    return (m.group(1) or m.group(2)) if m else ""


def through_file(obj: Any) -> Any:
    """``obj`` saved and loaded back with ``weights_only=True``, as a checkpoint file would be."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)
