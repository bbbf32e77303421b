"""What the toolkit's functions accept: a model, a state_dict, or the path of a file holding one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

__all__ = ["as_state_dict"]

_CHECKPOINT_KEYS = (
    "model",
    "state_dict",
    "model_state_dict",
    "module",
    "net",
    "weights",
)


def as_state_dict(
    obj: Any, *, what: str = "state_dict"
) -> tuple[Mapping[str, Any], nn.Module | None]:
    """Turn a model, a state_dict or a file path into ``(state_dict, model_or_None)``.

    Raises a ``TypeError``/``ValueError``/``FileNotFoundError`` that says what was wrong and what
    to pass instead.

    Example::

        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from labs_utils.toolkit import as_state_dict, save_checkpoint
        >>> tmp = tempfile.TemporaryDirectory()
        >>> model = torch.nn.Linear(2, 2)
        >>> sd, found = as_state_dict(model)
        >>> list(sd), found is model
        (['weight', 'bias'], True)
        >>> path = save_checkpoint(model.state_dict(), Path(tmp.name) / "weights.pth")
        >>> sd, found = as_state_dict(path)
        >>> list(sd), found
        (['weight', 'bias'], None)
        >>> as_state_dict({"model": model.state_dict(), "epoch": 3})
        Traceback (most recent call last):
        ...
        ValueError: expected a state_dict (a mapping of names to tensors), but no value is a
        tensor (top-level keys: ['epoch', 'model']); it looks like a training checkpoint:
        pass checkpoint['model']
        >>> tmp.cleanup()
    """
    if isinstance(obj, nn.Module):
        return obj.state_dict(), obj
    if isinstance(obj, (str, os.PathLike)):
        from .checkpoints import load_checkpoint

        loaded = load_checkpoint(obj)
        try:
            sd, _ = as_state_dict(loaded, what=what)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{Path(obj)}: {e}") from None
        return sd, None
    if isinstance(obj, Mapping):
        if len(obj) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            nested = [k for k in _CHECKPOINT_KEYS if isinstance(obj.get(k), Mapping)]
            hint = (
                f"; it looks like a training checkpoint: pass checkpoint[{nested[0]!r}]"
                if nested
                else "; pass model.state_dict() or the entry of your checkpoint that holds the weights"
            )
            raise ValueError(
                f"expected a {what} (a mapping of names to tensors), but no value is a tensor "
                f"(top-level keys: {sorted(map(str, obj))[:8]}){hint}"
            )
        bad = [k for k in obj if not isinstance(k, str)]
        if bad:
            raise TypeError(
                f"a {what} has string keys such as 'fc1.weight', got key {bad[0]!r} "
                f"of type {type(bad[0]).__name__}"
            )
        return obj, None
    raise TypeError(
        f"expected an nn.Module, a {what} (a mapping of names to tensors) or a file path, "
        f"got {type(obj).__name__}; for example pass model.state_dict() or 'weights.pth'"
    )
