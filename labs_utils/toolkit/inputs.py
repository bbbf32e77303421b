"""What the toolkit's functions accept (a model, a state_dict or a file path), where a training
checkpoint keeps its weights, and state_dict ``_metadata`` copied without the flag a
``load_state_dict(..., assign=True)`` leaves in it (pytorch#188166), so toolkit loads copy and cast.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

__all__ = ["as_state_dict", "WEIGHT_KEYS", "is_state_dict", "weights_entry", "metadata_copy"]
__all__ += ["with_metadata_of"]

#: Keys under which training checkpoints keep the model's state_dict, most common first.
WEIGHT_KEYS = ("model", "state_dict", "model_state_dict", "module", "net", "weights")
_ASSIGN_FLAG = "assign_to_params_buffers"


def metadata_copy(sd: Any) -> OrderedDict | None:
    """A copy of ``sd._metadata`` without the ``assign=True`` flag, or ``None`` if it has none."""
    meta = getattr(sd, "_metadata", None)
    if not isinstance(meta, Mapping):
        return None
    return OrderedDict(
        (name, {k: v for k, v in info.items() if k != _ASSIGN_FLAG})
        if isinstance(info, Mapping)
        else (name, info)
        for name, info in meta.items()
    )


def with_metadata_of(sd: Any, entries: Mapping[str, Any]) -> OrderedDict[str, Any]:
    """``entries`` as an OrderedDict carrying a copy of ``sd``'s ``_metadata``, if any."""
    out: OrderedDict[str, Any] = OrderedDict(entries)
    meta = metadata_copy(sd)
    if meta is not None:
        out._metadata = meta  # type: ignore[attr-defined]
    return out


def is_state_dict(m: Any) -> bool:
    """A non-empty mapping of string keys with at least one tensor value."""
    return (
        isinstance(m, Mapping)
        and len(m) > 0
        and all(isinstance(k, str) for k in m)
        and any(isinstance(v, torch.Tensor) for v in m.values())
    )


def weights_entry(obj: Any) -> tuple[str | None, Mapping[str, Any] | None]:
    """Where a loaded file's weights are: ``("model", obj["model"])`` for a training checkpoint,
    ``("", obj)`` for a state_dict (none of whose values is one), else ``(None, None)``. A known
    weights key wins over the top level. (``as_state_dict`` refuses a checkpoint instead.)
    """
    if isinstance(obj, Mapping):
        for k in WEIGHT_KEYS:
            if is_state_dict(obj.get(k)):
                return k, obj[k]
    if is_state_dict(obj) and not any(is_state_dict(v) for v in obj.values()):
        return "", obj
    return None, None


def as_state_dict(
    obj: Any, *, what: str = "state_dict"
) -> tuple[Mapping[str, Any], nn.Module | None]:
    """A model, a state_dict or a file path as ``(state_dict, model_or_None)``; errors say what to
    pass instead (for a training checkpoint, the key that holds the weights).
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
            nested = [k for k in WEIGHT_KEYS if isinstance(obj.get(k), Mapping)]
            hint = (
                "; pass model.state_dict() or the entry of your checkpoint that holds the weights"
            )
            if nested:
                hint = f"; it looks like a training checkpoint: pass checkpoint[{nested[0]!r}]"
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
