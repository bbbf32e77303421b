"""Look inside state_dicts and compare them with models before loading.

* ``summarize(obj)``: one row per entry (key, shape, dtype, device, elements, bytes, and
  parameter/buffer when given a model).
* ``diff(model, state_dict)``: what ``model.load_state_dict(state_dict)`` would complain about,
  without loading anything.

Both accept a model, a state_dict, or the path of a file holding a state_dict.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ._render import Table, human_bytes

__all__ = ["summarize", "diff", "as_state_dict", "StateDictSummary", "StateDictDiff"]

_CHECKPOINT_KEYS = ("model", "state_dict", "model_state_dict", "module", "net", "weights")


def as_state_dict(obj: Any, *, what: str = "state_dict") -> tuple[Mapping[str, Any], nn.Module | None]:
    """Turn a model, a state_dict or a file path into ``(state_dict, model_or_None)``.

    Raises a ``TypeError``/``ValueError``/``FileNotFoundError`` that says what was wrong and what
    to pass instead.
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
            hint = (f"; it looks like a training checkpoint: pass checkpoint[{nested[0]!r}]" if nested
                    else "; pass model.state_dict() or the entry of your checkpoint that holds the weights")
            raise ValueError(f"expected a {what} (a mapping of names to tensors), but no value is a tensor "
                             f"(top-level keys: {sorted(map(str, obj))[:8]}){hint}")
        bad = [k for k in obj if not isinstance(k, str)]
        if bad:
            raise TypeError(f"a {what} has string keys such as 'fc1.weight', got key {bad[0]!r} "
                            f"of type {type(bad[0]).__name__}")
        return obj, None
    raise TypeError(f"expected an nn.Module, a {what} (a mapping of names to tensors) or a file path, "
                    f"got {type(obj).__name__}; for example pass model.state_dict() or 'weights.pth'")


def _shape(v: Any) -> str:
    return str(tuple(v.shape)) if isinstance(v, torch.Tensor) else "-"


def _dtype(v: Any) -> str:
    return str(v.dtype).replace("torch.", "") if isinstance(v, torch.Tensor) else type(v).__name__


@dataclass
class StateDictSummary:
    """Rows of ``summarize``. ``rows`` are dicts; the object renders as a table."""

    rows: list[dict[str, Any]]
    non_persistent_buffers: list[str] = field(default_factory=list)

    @property
    def total_elements(self) -> int:
        return sum(r["numel"] for r in self.rows)

    @property
    def total_bytes(self) -> int:
        return sum(r["bytes"] for r in self.rows)

    def keys(self) -> list[str]:
        return [r["key"] for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def table(self) -> Table:
        with_kind = any(r.get("kind") for r in self.rows)
        columns = ["key", "shape", "dtype", "device", "numel", "bytes"] + (["kind"] if with_kind else [])
        rows = [[r["key"], r["shape"], r["dtype"], r["device"], r["numel"], r["bytes"]]
                + ([r.get("kind", "")] if with_kind else []) for r in self.rows]
        notes = [f"{len(self.rows)} entries, {self.total_elements:,} elements, {human_bytes(self.total_bytes)}"]
        if self.non_persistent_buffers:
            notes.append("not in the state_dict (non-persistent buffers): " + ", ".join(self.non_persistent_buffers))
        return Table(columns, rows, notes=notes)

    def __str__(self) -> str:
        return self.table().to_text()

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.table().to_html()


def summarize(obj: Any) -> StateDictSummary:
    """One row per state_dict entry: key, shape, dtype, device, numel, bytes (and kind for a model).

    ``obj`` may be a model (rows then say ``parameter`` or ``buffer``, and non-persistent buffers,
    which are not saved, are listed under the table), a state_dict, or a path to a saved one.
    """
    sd, model = as_state_dict(obj)
    params = {n for n, _ in model.named_parameters(remove_duplicate=False)} if model is not None else set()
    buffers = {n for n, _ in model.named_buffers(remove_duplicate=False)} if model is not None else set()
    rows = []
    for key, v in sd.items():
        is_t = isinstance(v, torch.Tensor)
        row = {
            "key": key,
            "shape": _shape(v),
            "dtype": _dtype(v),
            "device": str(v.device) if is_t else "-",
            "numel": v.numel() if is_t else 0,
            "bytes": v.numel() * v.element_size() if is_t else 0,
        }
        if model is not None:
            row["kind"] = "parameter" if key in params else "buffer" if key in buffers else "extra state"
        rows.append(row)
    non_persistent = sorted(buffers - set(sd)) if model is not None else []
    return StateDictSummary(rows, non_persistent)


@dataclass
class StateDictDiff:
    """What ``load_state_dict`` would say. Truthy only when the two are fully compatible."""

    missing: list[str]
    unexpected: list[str]
    shape_mismatches: dict[str, tuple[tuple, tuple]]
    dtype_differences: dict[str, tuple[str, str]]

    @property
    def loads_strictly(self) -> bool:
        """True when ``load_state_dict(strict=True)`` would succeed (dtypes are cast on copy)."""
        return not (self.missing or self.unexpected or self.shape_mismatches)

    def __bool__(self) -> bool:
        return self.loads_strictly and not self.dtype_differences

    def table(self) -> Table:
        rows = [[k, "missing from the state_dict", "", ""] for k in self.missing]
        rows += [[k, "unexpected (not in the model)", "", ""] for k in self.unexpected]
        rows += [[k, "shape mismatch", str(m), str(s)] for k, (m, s) in self.shape_mismatches.items()]
        rows += [[k, "dtype differs (cast on load)", m, s] for k, (m, s) in self.dtype_differences.items()]
        if bool(self):
            verdict = "compatible: load_state_dict(strict=True) will load every entry as is"
        elif self.loads_strictly:
            verdict = "loads with strict=True, but some dtypes differ and will be cast to the model's"
        else:
            verdict = (f"not compatible: {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
                       f"{len(self.shape_mismatches)} shape mismatches, {len(self.dtype_differences)} dtype differences")
        return Table(["key", "problem", "in model", "in state_dict"], rows, notes=[verdict])

    def __str__(self) -> str:
        return self.table().to_text()

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.table().to_html()


def diff(model: nn.Module, state_dict: Any) -> StateDictDiff:
    """Compare ``state_dict`` (a mapping, a model or a file path) with ``model`` without loading.

    Reports missing keys, unexpected keys, shape mismatches (model shape, state_dict shape) and
    dtype differences, in the model's key order.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"diff() takes the model first, then the state_dict: got {type(model).__name__} "
                        "as the model; call diff(model, state_dict)")
    sd, _ = as_state_dict(state_dict)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes, dtypes = {}, {}
    for k, mv in expected.items():
        if k not in sd or not isinstance(mv, torch.Tensor) or not isinstance(sd[k], torch.Tensor):
            continue
        sv = sd[k]
        if mv.shape != sv.shape:
            shapes[k] = (tuple(mv.shape), tuple(sv.shape))
        elif mv.dtype != sv.dtype:
            dtypes[k] = (_dtype(mv), _dtype(sv))
    return StateDictDiff(missing, unexpected, shapes, dtypes)
