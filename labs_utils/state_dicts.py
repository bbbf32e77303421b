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

__all__ = ["summarize", "diff", "as_state_dict", "StateDictSummary", "StateDictDiff", "load_matching", "LoadReport", "normalize_keys"]

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


# --- load_matching: a partial load that reports exactly what it did --------------------------

from collections.abc import Callable  # noqa: E402

KeyMap = "Mapping[str, str | None] | Callable[[str], str | None]"


@dataclass
class LoadReport:
    """What ``load_matching`` did, entry by entry. Renders as a table (text and HTML).

    All keys are the model's names (after ``key_map``); ``renamed`` maps them to the
    state_dict's original names.

    * ``loaded``: model entries that now hold the state_dict's values (``cast``: dtype converted).
    * ``tied``: entries that share their tensor with a loaded one, so they changed too.
    * ``shape_mismatches``: key -> (shape in model, shape in state_dict); left untouched.
    * ``missing``: model entries with no counterpart in the state_dict; left as initialised.
    * ``unexpected``: state_dict entries the model has no place for; ignored.
    * ``dropped``: state_dict keys the ``key_map`` sent to ``None``; ignored.
    * ``params_loaded`` / ``params_fresh``: parameter elements (tied weights counted once) that
      got values from the state_dict / kept their initial values.
    """

    loaded: list[str]
    shape_mismatches: dict[str, tuple[tuple | None, tuple | None]]
    missing: list[str]
    unexpected: list[str]
    params_loaded: int = 0
    params_fresh: int = 0
    tied: dict[str, str] = field(default_factory=dict)
    cast: dict[str, tuple[str, str]] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    model_shapes: dict[str, tuple | None] = field(default_factory=dict, repr=False)
    source_shapes: dict[str, tuple | None] = field(default_factory=dict, repr=False)

    @property
    def params_total(self) -> int:
        return self.params_loaded + self.params_fresh

    def _from(self, key: str) -> str:
        return f" (from {self.renamed[key]})" if key in self.renamed else ""

    def table(self) -> Table:
        ms = lambda k: "-" if self.model_shapes.get(k) is None else str(self.model_shapes[k])  # noqa: E731
        ss = lambda k: "-" if self.source_shapes.get(k) is None else str(self.source_shapes[k])  # noqa: E731
        rows = []
        for k in self.loaded:
            note = f", cast {self.cast[k][0]} -> {self.cast[k][1]}" if k in self.cast else ""
            rows.append([k, f"loaded{self._from(k)}{note}", ms(k), ss(k)])
        tied_only = {k: src for k, src in self.tied.items() if k not in self.shape_mismatches}
        rows += [[k, f"loaded through tied {src}", ms(k), ""] for k, src in tied_only.items()]
        for k in self.shape_mismatches:
            note = f" (but tied to {self.tied[k]}, which loaded)" if k in self.tied else ""
            rows.append([k, f"skipped: shape differs{self._from(k)}{note}", ms(k), ss(k)])
        rows += [[k, "missing: left as initialised", ms(k), ""] for k in self.missing]
        rows += [[k, f"unexpected: ignored{self._from(k)}", "", ss(k)] for k in self.unexpected]
        rows += [[k, "dropped by key_map", "", ""] for k in self.dropped]
        n_model = len(self.loaded) + len(tied_only) + len(self.shape_mismatches) + len(self.missing)
        title = (f"loaded {len(self.loaded) + len(tied_only)} of {n_model} model entries; "
                 f"{len(self.shape_mismatches)} skipped (shape), {len(self.missing)} missing, "
                 f"{len(self.unexpected)} unexpected")
        pct = 100.0 * self.params_loaded / self.params_total if self.params_total else 0.0
        notes = [f"parameters: {self.params_loaded:,} loaded, {self.params_fresh:,} left as initialised "
                 f"({pct:.1f}% loaded)"]
        if not self.loaded:
            notes.append("nothing was loaded: compare the names with diff(model, state_dict), "
                         "or rename them with key_map=")
        return Table(["key", "status", "in model", "in state_dict"], rows, title=title, notes=notes)

    def __str__(self) -> str:
        return self.table().to_text()

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.table().to_html()


def _apply_key_map(sd: Mapping[str, Any], key_map: KeyMap | None) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Rename the state_dict's keys; returns (renamed state_dict, {new: old}, dropped keys)."""
    if key_map is None:
        return dict(sd), {}, []
    if isinstance(key_map, Mapping):
        unknown = [k for k in key_map if k not in sd]
        if unknown:
            raise ValueError(f"key_map renames {unknown[0]!r}, which is not a key of the state_dict "
                             f"(it has {len(sd)} keys, e.g. {list(sd)[:3]}); fix or remove that entry")
        rename = lambda k: key_map.get(k, k)  # noqa: E731
    elif callable(key_map):
        rename = key_map
    else:
        raise TypeError(f"key_map must be a dict {{old_key: new_key}} or a function old_key -> new_key, "
                        f"got {type(key_map).__name__}")
    out: dict[str, Any] = {}
    source_of: dict[str, str] = {}
    dropped: list[str] = []
    for k, v in sd.items():
        new = rename(k)
        if new is None:
            dropped.append(k)
            continue
        if not isinstance(new, str):
            raise TypeError(f"key_map turned {k!r} into {new!r} ({type(new).__name__}); it must give the "
                            "model's key as a str, or None to drop the entry")
        if new in source_of:
            raise ValueError(f"key_map maps two state_dict keys onto {new!r}: {source_of[new]!r} and {k!r}; "
                             "one model entry can load only one value. Send them to different names, "
                             "or map the one you do not want to None")
        source_of[new] = k
        out[new] = v
    renamed = {new: old for new, old in source_of.items() if new != old}
    return out, renamed, dropped


def _alias_groups(model: nn.Module, keys: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """state_dict key -> every state_dict key that names the same tensor (tied weights)."""
    by_id: dict[int, list[str]] = {}
    named = list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False))
    for name, t in named:
        if name in keys and t is not None:
            by_id.setdefault(id(t), []).append(name)
    return {n: tuple(g) for g in by_id.values() if len(g) > 1 for n in g}


def load_matching(model: nn.Module, state_dict: Any, *,
                  key_map: Mapping[str, str | None] | Callable[[str], str | None] | None = None) -> LoadReport:
    """Load every entry whose name (after ``key_map``) and shape match ``model``; leave the rest.

    ``state_dict`` may be a mapping, a model or the path of a saved state_dict. ``key_map``
    renames the state_dict's keys first: a dict ``{old: new}`` (unlisted keys keep their name)
    or a function ``old -> new``; ``None`` as the new name drops an entry. Two keys mapped onto
    one name raise a ``ValueError``.

    Unlike ``load_state_dict(strict=False)``, entries whose shape differs are skipped instead of
    raising (after copying the others), and the returned ``LoadReport`` lists what was loaded,
    skipped (with both shapes), missing and unexpected. The copy itself is done by
    ``model.load_state_dict(matching, strict=False)``, so dtypes are cast to the model's and
    modules' own loading hooks run.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"load_matching() takes the model first, then the state_dict: got "
                        f"{type(model).__name__} as the model; call load_matching(model, state_dict)")
    sd, _ = as_state_dict(state_dict)
    source, renamed, dropped = _apply_key_map(sd, key_map)
    target = model.state_dict()
    shape = lambda v: tuple(v.shape) if isinstance(v, torch.Tensor) else None  # noqa: E731

    matching: dict[str, Any] = {}
    mismatched: dict[str, tuple] = {}
    cast: dict[str, tuple[str, str]] = {}
    for k, v in source.items():
        if k not in target:
            continue
        mv = target[k]
        if isinstance(mv, torch.Tensor) != isinstance(v, torch.Tensor) or shape(mv) != shape(v):
            mismatched[k] = (shape(mv), shape(v))
            continue
        if isinstance(v, torch.Tensor) and v.dtype != mv.dtype:
            cast[k] = (_dtype(v), _dtype(mv))
        matching[k] = v

    groups = _alias_groups(model, target)
    for group in set(groups.values()):
        given = [k for k in group if k in matching]
        first = given[0] if given else None
        for other in given[1:]:
            if not torch.equal(matching[first].to(matching[other].dtype), matching[other]):
                raise ValueError(f"{first!r} and {other!r} are tied in the model (one shared tensor), but the "
                                 "state_dict gives them different values; drop one of them (key_map={key: None})")
    tied = {k: next(p for p in groups[k] if p in matching) for k in target
            if k not in matching and any(p in matching for p in groups.get(k, ()))}

    result = model.load_state_dict(matching, strict=False)
    if result.unexpected_keys:  # pragma: no cover - every key in `matching` is one of the model's
        raise RuntimeError(f"load_state_dict did not take {result.unexpected_keys}")

    done = set(matching) | set(tied)
    by_id: dict[int, tuple[int, bool]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        numel, was = by_id.get(id(p), (p.numel(), False))
        by_id[id(p)] = (numel, was or name in done)
    params_loaded = sum(n for n, ok in by_id.values() if ok)
    params_fresh = sum(n for n, ok in by_id.values() if not ok)

    return LoadReport(
        loaded=[k for k in target if k in matching],
        shape_mismatches={k: mismatched[k] for k in target if k in mismatched},
        missing=[k for k in target if k not in source and k not in tied],
        unexpected=[k for k in source if k not in target],
        params_loaded=params_loaded,
        params_fresh=params_fresh,
        tied=tied,
        cast=cast,
        renamed=renamed,
        dropped=dropped,
        model_shapes={k: shape(v) for k, v in target.items()},
        source_shapes={k: shape(v) for k, v in source.items()},
    )

from .prefixes import normalize_keys  # noqa: E402,F401  (re-export; lives in prefixes.py)
