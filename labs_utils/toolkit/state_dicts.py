"""Look inside state_dicts and compare them with models before loading: ``summarize``, ``diff``
and ``load_matching`` take a model, a state_dict or the path of a saved one.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import torch
import torch.nn as nn
from torch.nn.parameter import is_lazy

from .inputs import as_state_dict, with_metadata_of
from .render import Report, Table, human_bytes

__all__ = ["summarize", "diff", "load_matching", "StateDictSummary", "StateDictDiff", "LoadReport"]


def _shape(v: Any) -> str:
    if isinstance(v, torch.Tensor) and is_lazy(v):
        return "uninitialized"
    return str(tuple(v.shape)) if isinstance(v, torch.Tensor) else "-"


def _dtype(v: Any) -> str:
    return str(v.dtype).replace("torch.", "") if isinstance(v, torch.Tensor) else type(v).__name__


@dataclass(repr=False)
class StateDictSummary(Report):
    """Rows of ``summarize`` (dicts: key, shape, dtype, device, numel, bytes, kind); a table."""

    rows: list[dict[str, Any]]
    non_persistent_buffers: list[str] = field(default_factory=list)

    def table(self) -> Table:
        columns = ["key", "shape", "dtype", "device", "numel", "bytes"]
        columns += ["kind"] if any(r.get("kind") for r in self.rows) else []
        elements = sum(r["numel"] for r in self.rows)
        size = human_bytes(sum(r["bytes"] for r in self.rows))
        notes = [f"{len(self.rows)} entries, {elements:,} elements, {size}"]
        if self.non_persistent_buffers:
            notes.append(
                "not in the state_dict (non-persistent buffers): "
                + ", ".join(self.non_persistent_buffers)
            )
        return Table(columns, [[r.get(c, "") for c in columns] for r in self.rows], notes=notes)


def summarize(obj: Any) -> StateDictSummary:
    """One row per state_dict entry; for a model, its kind (``parameter`` or ``buffer``) and the
    non-persistent buffers (not saved) under the table.

    Example::

        >>> import torch
        >>> from labs_utils.toolkit import summarize
        >>> print(summarize(torch.nn.BatchNorm1d(3)))
        key                  shape  dtype    device  numel  bytes  kind
        -------------------  -----  -------  ------  -----  -----  ---------
        weight               (3,)   float32  cpu     3      12     parameter
        bias                 (3,)   float32  cpu     3      12     parameter
        running_mean         (3,)   float32  cpu     3      12     buffer
        running_var          (3,)   float32  cpu     3      12     buffer
        num_batches_tracked  ()     int64    cpu     1      8      buffer
        5 entries, 13 elements, 56 B
    """
    sd, model = as_state_dict(obj)
    params, buffers = set(), set()
    if model is not None:
        params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
        buffers = {n for n, _ in model.named_buffers(remove_duplicate=False)}
    rows = []
    for key, v in sd.items():
        # a lazy module's parameter holds nothing yet
        is_t = isinstance(v, torch.Tensor) and not is_lazy(v)
        row = {
            "key": key,
            "shape": _shape(v),
            "dtype": _dtype(v),
            "device": str(v.device) if isinstance(v, torch.Tensor) else "-",
            "numel": v.numel() if is_t else 0,
            "bytes": v.numel() * v.element_size() if is_t else 0,
        }
        if model is not None:
            row["kind"] = (
                "parameter" if key in params else "buffer" if key in buffers else "extra state"
            )
        rows.append(row)
    non_persistent = sorted(buffers - set(sd)) if model is not None else []
    return StateDictSummary(rows, non_persistent)


# --- a dry run of load_state_dict: the modules' own loading rules, on a copy without data


def _named_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every parameter and buffer under each of its names (a tied one under each)."""
    named = model.named_parameters(remove_duplicate=False)
    return [*named, *model.named_buffers(remove_duplicate=False)]


def _meta_like(t: torch.Tensor) -> torch.Tensor:
    """A stand-in for one of the model's tensors: same kind, shape and dtype, on the meta device."""
    if isinstance(t, nn.UninitializedParameter):
        return nn.UninitializedParameter(t.requires_grad, device="meta", dtype=t.dtype)
    if isinstance(t, nn.UninitializedBuffer):
        return nn.UninitializedBuffer(t.requires_grad, device="meta", dtype=t.dtype)
    if isinstance(t, nn.Parameter):
        return nn.Parameter(torch.empty_like(t, device="meta"), requires_grad=t.requires_grad)
    return torch.empty_like(t, device="meta")


def _on_meta(v: Any) -> Any:
    """A state_dict value without its data (tensors on the meta device), to be loaded in a dry run."""
    if not isinstance(v, torch.Tensor) or is_lazy(v) or v.is_meta:
        return v
    try:
        return torch.empty_like(v, device="meta")
    except Exception:  # a tensor kind without meta support keeps its data
        return v


@dataclass
class _DryRun:
    """What ``load_state_dict`` said when loading into a meta copy of the model."""

    missing: list[str]  # model keys
    unexpected: list[str]  # state_dict keys
    rejected: dict[str, str]  # state_dict key -> load_state_dict's message (size mismatch ...)
    model: dict[str, Any]  # the copy's state_dict afterwards: shapes and dtypes as the model's
    other_errors: list[str] = field(default_factory=list)  # messages that name no key
    renamed: dict[str, str] = field(default_factory=dict)  # model key -> key a hook renamed
    by_keys: bool = False  # compared key by key: the model could not be copied to meta

    def model_key(self, key: str) -> str:
        """The model's name for state_dict ``key``."""
        return next((m for m, s in self.renamed.items() if s == key), key)


def _dry_run(model: nn.Module, sd: Mapping[str, Any]) -> _DryRun | None:
    """Run the real ``load_state_dict(sd, strict=False)`` on a copy of ``model`` whose tensors are on
    the meta device, so each module applies its own rules (BatchNorm's version fill-in, lazy
    shapes, hooks that rename keys) and ``model`` is untouched; ``None`` when that cannot run.
    """
    memo: dict[int, Any] = {}
    for _, t in _named_tensors(model):
        if id(t) not in memo:  # tied tensors stay tied in the copy
            memo[id(t)] = _meta_like(t)
    try:
        shadow = copy.deepcopy(model, memo)
    except Exception:
        return None
    seen: dict[str, Any] = {}

    def keep_names(module, state_dict, prefix, metadata, strict, missing, unexpected, errors):
        # each module loads from its own copy, which its hooks (registered earlier) have changed
        seen.setdefault("names", []).append(state_dict)
        seen["errors"] = errors  # one list for all modules: load_state_dict raises with it

    def keep_keys(module, incompatible_keys) -> None:
        seen["keys"] = incompatible_keys  # runs last, when every module has been loaded

    shadow.register_load_state_dict_post_hook(keep_keys)
    for module in shadow.modules():
        module.register_load_state_dict_pre_hook(keep_names)
    # the versions in _metadata decide some rules; the copy drops the assign=True flag
    meta_sd = with_metadata_of(sd, {k: _on_meta(v) for k, v in sd.items()})
    with warnings.catch_warnings():
        # e.g. "copying from a non-meta parameter ... is a no-op"
        warnings.simplefilter("ignore")
        try:
            shadow.load_state_dict(meta_sd, strict=False)
        except RuntimeError:
            pass  # load_state_dict collected every problem in error_msgs, then raised
        except Exception:
            return None
    if "keys" not in seen:
        return None  # it stopped before the end: a hook that cannot run on meta tensors
    by_id = {id(v): k for k, v in meta_sd.items()}
    renamed = {
        k: by_id[id(v)]
        for names in seen["names"]
        for k, v in names.items()
        if k not in meta_sd and id(v) in by_id
    }
    # a name in a message -> the state_dict's key
    source = {**{k: k for k in sd}, **renamed}
    rejected: dict[str, str] = {}
    other: list[str] = []
    for msg in seen.get("errors", []):
        names = (
            k for k in source if msg.startswith(f"size mismatch for {k}: ") or f'named "{k}"' in msg
        )
        key = next(names, None)
        if key is None:
            other.append(msg)
        else:
            rejected[source[key]] = msg
    keys = seen["keys"]
    unexpected = [source.get(k, k) for k in keys.unexpected_keys]
    return _DryRun(keys.missing_keys, unexpected, rejected, shadow.state_dict(), other, renamed)


def _in_order(keys: list[str], order: list[str]) -> list[str]:
    """``keys`` sorted by their position in ``order`` (keys not in it last, as they came)."""
    pos = {k: i for i, k in enumerate(order)}
    return sorted(dict.fromkeys(keys), key=lambda k: pos.get(k, len(pos)))


@dataclass(repr=False)
class StateDictDiff(Report):
    """What ``load_state_dict`` would say; truthy only when the two are fully compatible (see ``diff``)."""

    missing: list[str]
    unexpected: list[str]
    shape_mismatches: dict[str, tuple[tuple, tuple]]
    dtype_differences: dict[str, tuple[str, str]]
    # load_state_dict's other complaints, e.g. a non-tensor value
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def loads_strictly(self) -> bool:
        """True when ``load_state_dict(strict=True)`` would succeed (dtypes are cast on copy)."""
        return not (self.missing or self.unexpected or self.shape_mismatches or self.errors)

    def __bool__(self) -> bool:
        return self.loads_strictly and not self.dtype_differences

    def table(self) -> Table:
        rows = [[k, "missing from the state_dict", "", ""] for k in self.missing]
        rows += [[k, "unexpected (not in the model)", "", ""] for k in self.unexpected]
        rows += [
            [k, "shape mismatch", str(m), str(s)] for k, (m, s) in self.shape_mismatches.items()
        ]
        rows += [
            [k, "dtype differs (cast on load)", m, s]
            for k, (m, s) in self.dtype_differences.items()
        ]
        rows += [["", e, "", ""] for e in self.errors]
        if bool(self):
            verdict = "compatible: load_state_dict(strict=True) will load every entry as is"
        elif self.loads_strictly:
            verdict = (
                "loads with strict=True, but some dtypes differ and will be cast to the model's"
            )
        else:
            verdict = (
                f"not compatible: {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
                f"{len(self.shape_mismatches)} shape mismatches, {len(self.dtype_differences)} dtype differences"
                + (f", {len(self.errors)} other errors" if self.errors else "")
            )
        return Table(
            ["key", "problem", "in model", "in state_dict"], rows, notes=[verdict, *self.notes]
        )


def _model_first(model: Any, fn: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"{fn}() takes the model first, then the state_dict: got {type(model).__name__} as "
            f"the model; call {fn}(model, state_dict)"
        )


def diff(model: nn.Module, state_dict: Any) -> StateDictDiff:
    """What ``model.load_state_dict(state_dict)`` would say (``state_dict``: a mapping, a model or
    a file path), without loading: ``load_state_dict`` itself runs on a meta-device copy of the
    model, so each module's own rules apply (a model that cannot be copied is compared key by key,
    and the notes say so). Dtype differences, which loading casts, are listed too.

    Example::

        >>> import torch
        >>> from labs_utils.toolkit import diff
        >>> model = torch.nn.Linear(2, 3)
        >>> result = diff(model, torch.nn.Linear(2, 4).state_dict())
        >>> print(result)
        key     problem         in model  in state_dict
        ------  --------------  --------  -------------
        weight  shape mismatch  (3, 2)    (4, 2)
        bias    shape mismatch  (3,)      (4,)
        not compatible: 0 missing, 0 unexpected, 2 shape mismatches, 0 dtype differences
        >>> bool(result), bool(diff(model, model.state_dict()))
        (False, True)
    """
    _model_first(model, "diff")
    sd, _ = as_state_dict(state_dict)
    run = _dry_run(model, sd) or _by_keys(model, sd)
    order = [run.renamed.get(k, k) for k in model.state_dict()]
    shapes = {
        k: (_shape_of(run.model.get(run.model_key(k))), _shape_of(sd[k]))
        for k in _in_order(list(run.rejected), order)
        if run.rejected[k].startswith("size mismatch for ")
    }
    errors = [m for k, m in run.rejected.items() if k not in shapes] + run.other_errors
    dtypes = {}
    for k in _in_order([k for k in sd if run.model_key(k) in run.model], order):
        mv, sv = run.model[run.model_key(k)], sd[k]
        tensors = all(isinstance(v, torch.Tensor) and not is_lazy(v) for v in (mv, sv))
        if k not in run.rejected and tensors and mv.dtype != sv.dtype:
            dtypes[k] = (_dtype(mv), _dtype(sv))
    notes = [
        "compared key by key: the model could not be copied to the meta device to run its own "
        "loading rules, so version fill-ins and loading hooks are not taken into account"
    ]
    return StateDictDiff(
        _in_order(run.missing, list(model.state_dict())),
        _in_order(run.unexpected, list(sd)),
        shapes,
        dtypes,
        errors,
        notes if run.by_keys else [],
    )


def _shape_of(v: Any) -> tuple | None:
    """``tuple(v.shape)``; ``None`` for a non-tensor or an uninitialized (lazy) parameter."""
    return tuple(v.shape) if isinstance(v, torch.Tensor) and not is_lazy(v) else None


def _by_keys(model: nn.Module, sd: Mapping[str, Any]) -> _DryRun:
    """The fallback when the model cannot be copied to the meta device: names and shapes compared
    one by one, without the modules' own rules (version fill-ins, loading hooks)."""
    expected = model.state_dict()
    rejected = {}
    for k, v in sd.items():
        mv = expected.get(k, v)
        if isinstance(mv, torch.Tensor) != isinstance(v, torch.Tensor):
            rejected[k] = (
                f"{k}: the model holds a {type(mv).__name__}, the state_dict a {type(v).__name__}"
            )
        elif isinstance(v, torch.Tensor) and not is_lazy(mv) and mv.shape != v.shape:
            rejected[k] = (
                f"size mismatch for {k}: {tuple(v.shape)} in the state_dict, {tuple(mv.shape)} in the model"
            )
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    return _DryRun(missing, unexpected, rejected, dict(expected), by_keys=True)


# --- load_matching: a partial load that reports exactly what it did --------------------------

KeyMap: TypeAlias = Mapping[str, str | None] | Callable[[str], str | None]


@dataclass(repr=False)
class LoadReport(Report):
    """What ``load_matching`` did, entry by entry, in the model's names; renders as a table.
    ``params_loaded``/``params_fresh`` count parameter elements (tied ones once)."""

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
        def ms(k: str) -> str:
            return "-" if self.model_shapes.get(k) is None else str(self.model_shapes[k])

        def ss(k: str) -> str:
            return "-" if self.source_shapes.get(k) is None else str(self.source_shapes[k])

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
        title = (
            f"loaded {len(self.loaded) + len(tied_only)} of {n_model} model entries; "
            f"{len(self.shape_mismatches)} skipped (shape), {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected"
        )
        pct = 100.0 * self.params_loaded / self.params_total if self.params_total else 0.0
        notes = [
            f"parameters: {self.params_loaded:,} loaded, {self.params_fresh:,} left as initialised "
            f"({pct:.1f}% loaded)"
        ]
        if not self.loaded:
            notes.append(
                "nothing was loaded: compare the names with diff(model, state_dict), "
                "or rename them with key_map="
            )
        return Table(["key", "status", "in model", "in state_dict"], rows, title=title, notes=notes)


def _apply_key_map(
    sd: Mapping[str, Any], key_map: KeyMap | None
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Rename the state_dict's keys; returns (renamed state_dict, {new: old}, dropped keys)."""
    if key_map is None:
        # the names are the state_dict's own, so its version metadata still applies
        return with_metadata_of(sd, sd), {}, []
    if isinstance(key_map, Mapping):
        unknown = [k for k in key_map if k not in sd]
        if unknown:
            raise ValueError(
                f"key_map renames {unknown[0]!r}, which is not a key of the state_dict "
                f"(it has {len(sd)} keys, e.g. {list(sd)[:3]}); fix or remove that entry"
            )
        new_names = {k: key_map.get(k, k) for k in sd}
    elif callable(key_map):
        new_names = {k: key_map(k) for k in sd}
    else:
        raise TypeError(
            f"key_map must be a dict {{old_key: new_key}} or a function old_key -> new_key, "
            f"got {type(key_map).__name__}"
        )
    out: dict[str, Any] = {}
    source_of: dict[str, str] = {}
    dropped: list[str] = []
    for k, v in sd.items():
        new = new_names[k]
        if new is None:
            dropped.append(k)
            continue
        if not isinstance(new, str):
            raise TypeError(
                f"key_map turned {k!r} into {new!r} ({type(new).__name__}); it must give the "
                "model's key as a str, or None to drop the entry"
            )
        if new in source_of:
            raise ValueError(
                f"key_map maps two state_dict keys onto {new!r}: {source_of[new]!r} and {k!r}; "
                "one model entry can load only one value. Send them to different names, "
                "or map the one you do not want to None"
            )
        source_of[new] = k
        out[new] = v
    renamed = {new: old for new, old in source_of.items() if new != old}
    return out, renamed, dropped


def _alias_groups(model: nn.Module, keys: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """state_dict key -> every state_dict key that names the same tensor (tied weights)."""
    by_id: dict[int, list[str]] = {}
    for name, t in _named_tensors(model):
        if name in keys and t is not None:
            by_id.setdefault(id(t), []).append(name)
    return {n: tuple(g) for g in by_id.values() if len(g) > 1 for n in g}


def load_matching(
    model: nn.Module, state_dict: Any, *, key_map: KeyMap | None = None
) -> LoadReport:
    """Load every entry whose name (after ``key_map``) and shape match ``model``; skip the rest
    (``load_state_dict(strict=False)`` would raise on a shape). ``key_map`` renames keys first: a
    dict ``{old: new}`` or a function; ``None`` drops an entry. Which entries fit is decided as in
    ``diff``; they are loaded with ``model.load_state_dict(matching, strict=False)``.

    Example::

        >>> from torch import nn
        >>> from labs_utils.toolkit import load_matching
        >>> pretrained = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 10))
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))  # a new head
        >>> print(load_matching(model, pretrained.state_dict()))
        loaded 2 of 4 model entries; 2 skipped (shape), 0 missing, 0 unexpected
        key       status                  in model  in state_dict
        --------  ----------------------  --------  -------------
        0.weight  loaded                  (8, 4)    (8, 4)
        0.bias    loaded                  (8,)      (8,)
        2.weight  skipped: shape differs  (3, 8)    (10, 8)
        2.bias    skipped: shape differs  (3,)      (10,)
        parameters: 40 loaded, 27 left as initialised (59.7% loaded)
    """
    _model_first(model, "load_matching")
    sd, _ = as_state_dict(state_dict)
    source, renamed, dropped = _apply_key_map(sd, key_map)
    target = model.state_dict()
    run = _dry_run(model, source) or _by_keys(model, source)  # the split load_state_dict makes
    mismatched = {
        k: (_shape_of(run.model.get(run.model_key(k))), _shape_of(source[k])) for k in run.rejected
    }
    unexpected = _in_order(run.unexpected, list(source))
    fits = [k for k in source if k not in mismatched and k not in unexpected]
    matching = with_metadata_of(source, {k: source[k] for k in fits})
    _check_tied_values(model, target, matching, run.renamed)
    # PyTorch says what it loaded: every model entry it does not call missing
    not_loaded = set(model.load_state_dict(matching, strict=False).missing_keys)
    return _load_report(
        model, target, source, not_loaded, mismatched, unexpected, run.renamed, renamed, dropped
    )


def _check_tied_values(model: nn.Module, target: Mapping, matching: Mapping, by_hook: dict) -> None:
    """Refuse a state_dict that gives two tied entries (one shared tensor) different values;
    ``by_hook`` maps a model key to the ``matching`` key a loading hook renames into it."""
    given = {m: matching[s] for m, s in by_hook.items() if s in matching}
    given |= {k: v for k, v in matching.items() if k in target}
    for group in set(_alias_groups(model, target).values()):
        keys = [k for k in group if k in given]
        for other in keys[1:]:
            if not torch.equal(given[keys[0]].to(given[other].dtype), given[other]):
                raise ValueError(
                    f"{keys[0]!r} and {other!r} are tied in the model (one shared tensor), but the "
                    "state_dict gives them different values; drop one of them (key_map={key: None})"
                )


def _load_report(
    model: nn.Module, target, source, not_loaded, mismatched, unexpected, by_hook, renamed, dropped
) -> LoadReport:
    """The ``LoadReport``, in the model's names: ``by_hook`` maps a model key to the state_dict
    key a loading hook renamed into it, ``renamed`` a state_dict key to its name before key_map."""
    source_of = {k: by_hook.get(k, k) for k in target if by_hook.get(k, k) in source}
    model_key = {s: m for m, s in source_of.items()}
    got = [k for k in target if k not in not_loaded]
    groups = _alias_groups(model, target)
    tied = {
        k: next(p for p in groups[k] if p in got)
        for k in target
        if k in not_loaded and any(p in got for p in groups.get(k, ()))
    }
    skipped = {model_key.get(k, k): v for k, v in mismatched.items()}
    cast = {
        k: (_dtype(source[source_of[k]]), _dtype(target[k]))
        for k in got
        if k in source_of
        and isinstance(source[source_of[k]], torch.Tensor)
        and isinstance(target[k], torch.Tensor)
        and source[source_of[k]].dtype != target[k].dtype
    }
    done = set(got) | set(tied)
    by_id: dict[int, tuple[int, bool]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        numel, was = by_id.get(id(p), (0 if is_lazy(p) else p.numel(), False))
        by_id[id(p)] = (numel, was or name in done)
    return LoadReport(
        # entries a hook took without giving them to a model key come last, as given
        loaded=[k for k in got if k in source_of]
        + [k for k in source if k not in model_key and k not in mismatched and k not in unexpected],
        shape_mismatches={k: skipped[k] for k in _in_order(list(skipped), list(target))},
        # (a module may fill in an entry itself, as BatchNorm's num_batches_tracked: left as is)
        missing=[k for k in target if k not in source_of and k not in tied and k not in skipped],
        unexpected=unexpected,
        params_loaded=sum(n for n, ok in by_id.values() if ok),
        params_fresh=sum(n for n, ok in by_id.values() if not ok),
        tied=tied,
        cast=cast,
        renamed={m: renamed.get(s, s) for m, s in source_of.items() if renamed.get(s, s) != m},
        dropped=dropped,
        # lazy ones now loaded
        model_shapes={k: _shape_of(v) for k, v in model.state_dict().items()},
        source_shapes={model_key.get(k, k): _shape_of(v) for k, v in source.items()},
    )
