"""Checks for notebooks/18_big_models_and_serving.ipynb: each answer is run on cases and compared
with a reference; the hint comes from the known mistake that behaves like it."""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from . import Case, Wrong, behaves_like, exercise, explained, run_answer, same

NB = "18_big_models_and_serving"


def _index(folder: Path) -> dict:
    return json.loads((folder / "model.safetensors.index.json").read_text())


def _shards(folder: Path) -> list[str]:
    return sorted(set(_index(folder)["weight_map"].values()))


def _loader(shards=_shards, final_check: bool = True, returns: bool = True):
    """The reference (no arguments) and its known variants: load ``shards(folder)`` one at a time
    with strict=False, then raise when a key of the model is in none of them, return the model."""

    def load(model, folder):
        from safetensors.torch import load_file

        loaded = set()
        for shard in shards(folder):
            part = load_file(folder / shard)
            model.load_state_dict(part, strict=False)
            loaded |= part.keys()
        missing = sorted(set(model.state_dict()) - loaded)
        if final_check and missing:
            raise KeyError(f"no shard holds {missing}")
        return model if returns else None

    return load


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(32, 64), nn.LayerNorm(64), nn.Linear(64, 64), nn.Linear(64, 4))


def _bn_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))


def _save(model: nn.Module, root: Path, max_shard_size: int) -> Path:
    """``model``'s state_dict saved in shards, in a new folder under ``root``."""
    from huggingface_hub import save_torch_state_dict

    folder, state = Path(tempfile.mkdtemp(dir=root)), model.state_dict()
    if "1.num_batches_tracked" in state:  # statistics a fresh model does not have
        state["1.running_mean"].uniform_(-1, 1)
        state["1.num_batches_tracked"].fill_(7)
    save_torch_state_dict(state, folder, max_shard_size=max_shard_size)
    return folder


def _three_shards(root: Path):
    return _mlp(1), _save(_mlp(18), root, 9_000)


def _with_stale_shard(root: Path):
    folder = _save(_mlp(18), root, 20_000)  # two shards
    old = _save(_mlp(5), root, 5_000)  # an earlier save, in more, smaller shards
    for shard in _shards(old)[:2]:
        shutil.copy(old / shard, folder / shard)
    return (_mlp(1), folder)


def _one_shard_with_buffers(root: Path):
    return (_bn_net(1), _save(_bn_net(18), root, 400))


def _loaded(out, args):
    """Whether the model given came back, and each entry: the checkpoint's value or not."""
    if not isinstance(out, nn.Module):
        return ("not a model", type(out).__name__)
    from safetensors.torch import load_file

    saved = {}
    for shard in _shards(args[1]):
        saved.update(load_file(args[1] / shard))
    got = out.state_dict()
    values = {
        k: "from the checkpoint" if torch.equal(got[k], v) else "other values"
        for k, v in saved.items()
        if k in got
    }
    return ("the model given" if out is args[0] else "another model", values)


_SHARDED_MISTAKES = [
    (
        _loader(final_check=False, returns=False),
        "your function returned None: end it with `return model`",
    ),
    (
        _loader(lambda folder: sorted(p.name for p in folder.glob("*.safetensors")), False),
        "load only the shards the index lists (`set(index['weight_map'].values())`): the folder held an old shard from an earlier save, and its values overwrote the new ones",
    ),
    (
        _loader(lambda folder: list(_index(folder)["weight_map"].values())[:1], False),
        "some weights kept their initial values: load every shard the index names, `sorted(set(index['weight_map'].values()))`, not only the first",
    ),
]


@exercise("load_sharded", notebook=NB)
def load_sharded(fn) -> str:
    """``fn(model, folder)`` loads every shard the folder's index lists into ``model``, one at a
    time, raises when a key of the model is in no shard, and returns ``model``."""
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        cases = [
            Case(label, functools.partial(make, Path(tmp)), _loaded)
            for label, make in [
                ("a model saved in three shards", _three_shards),
                ("a folder that also holds old shards the index does not list", _with_stale_shard),
                ("a model with BatchNorm buffers, in three shards", _one_shard_with_buffers),
            ]
        ]
        with (
            explained(
                "^your function raised",
                "your function raised {error} -- on a complete folder (every key of the model is in some shard). One shard's `missing_keys` are only the keys of the other shards: collect the keys loaded from all shards and compare them at the end",
            ),
            explained(
                r"Missing key\(s\)",
                "a shard holds only some of the keys, so a strict load of one shard reports all the others as missing: load each with `strict=False`, and check the keys once, after the last shard",
            ),
        ):
            behaves_like(fn, _loader(), cases, _SHARDED_MISTAKES)
        deeper = nn.Sequential(*_mlp(1), nn.Linear(4, 4))
        try:
            run_answer(fn, deeper, _three_shards(Path(tmp))[1])
        except Wrong:
            pass  # it raised, as asked
        else:
            raise Wrong(
                "a model one layer deeper than the checkpoint loaded without an error, and its last layer kept random weights: `strict=False` reports nothing, so compare the keys you loaded with `model.state_dict()` at the end and raise if some are missing"
            )
    return "every shard the index lists, one at a time, stale shards ignored, and an error when the model has keys no shard holds (tried on three folders and a deeper model)."


def _mean_where(averaged=torch.Tensor.is_floating_point, rest: int = -1):
    """Average the entries ``averaged`` says yes to, take the others from checkpoint ``rest``."""

    def average(sds):
        mean = lambda k: torch.stack([sd[k] for sd in sds]).mean(0)
        return {k: mean(k) if averaged(v) else sds[rest][k].clone() for k, v in sds[-1].items()}

    return average


_average = _mean_where()  # the reference


def _bn_checkpoints(steps=(1, 2, 3)):
    out = []
    for step in steps:
        sd = _bn_net(10 + step).state_dict()
        sd["1.running_mean"].uniform_(-1, 1)
        sd["1.num_batches_tracked"].fill_(10 * step)
        out.append(sd)
    return (out,)


def _one_checkpoint():
    return _bn_checkpoints((4,))


def _mixed_dtypes():
    g = torch.Generator().manual_seed(0)
    return (
        [
            {
                "w": torch.randn(3, 3, generator=g),
                "w64": torch.randn(4, dtype=torch.float64, generator=g),
                "step": torch.tensor(step),
                "mask": torch.tensor([True, step > 1]),
            }
            for step in (1, 2)
        ],
    )


def _which(value, key, state_dicts):
    if not isinstance(value, torch.Tensor):
        return type(value).__name__
    ref = state_dicts[-1][key]
    if value.dtype != ref.dtype or value.shape != ref.shape:
        return f"{value.dtype} {tuple(value.shape)}"
    if ref.is_floating_point():
        mean = torch.stack([sd[key] for sd in state_dicts]).double().mean(0).to(ref.dtype)
        if torch.allclose(value, mean, rtol=1e-5, atol=1e-6):
            return "the mean"
    if len(state_dicts) > 1 and torch.equal(value, state_dicts[0][key]):
        return "the first checkpoint's"
    if torch.equal(value, ref):
        return "the last checkpoint's"
    return "other values"


def _averaged(make):
    def look(out, args):
        fresh = make()[0]
        unchanged = same(list(args[0]), fresh)
        if not isinstance(out, Mapping):
            return (type(out).__name__, unchanged)
        return ({k: _which(v, k, fresh) for k, v in out.items()}, unchanged)

    return look


def _everything_as_float(state_dicts):
    return {k: torch.stack([sd[k].float() for sd in state_dicts]).mean(0) for k in state_dicts[-1]}


def _in_place(state_dicts):
    first = state_dicts[0]
    for k, v in first.items():
        if v.is_floating_point():
            for sd in state_dicts[1:]:
                v += sd[k]
            v /= len(state_dicts)
        else:
            first[k] = state_dicts[-1][k]
    return first


_AVERAGE_MISTAKES = [
    (
        lambda state_dicts: None,
        "your function returned None: end it with `return` and the new dict",
    ),
    (
        _in_place,
        "your function changed the checkpoints it was given (`+=` on their tensors): build a new dict from new tensors, e.g. `torch.stack([...]).mean(0)`",
    ),
    (
        _everything_as_float,
        "integer buffers (`num_batches_tracked`, a step count) and bool masks keep their dtype and are not averaged: take them from the last checkpoint",
    ),
    (
        _mean_where(rest=0),
        "take the entries that are not floats from the *last* checkpoint, `state_dicts[-1]`, not the first",
    ),
    (
        _mean_where(lambda v: v.dtype == torch.float32),
        "average every floating-point dtype (a float64 or float16 entry too): test `value.is_floating_point()` instead of `dtype == torch.float32`",
    ),
]


@exercise("average_checkpoints", notebook=NB)
def average_checkpoints(fn) -> str:
    """``fn(state_dicts)`` returns a new state_dict: floats averaged, other entries the last's."""
    cases = [
        Case(
            "three checkpoints of a net with BatchNorm", _bn_checkpoints, _averaged(_bn_checkpoints)
        ),
        Case("a single checkpoint", _one_checkpoint, _averaged(_one_checkpoint)),
        Case("float32, float64, int64 and bool entries", _mixed_dtypes, _averaged(_mixed_dtypes)),
    ]
    with explained(
        r"could not infer output dtype|mean\(\): ",
        "`mean` refuses integer tensors such as `num_batches_tracked`: average only the entries where `value.is_floating_point()`, and keep the others from the last checkpoint",
    ):
        behaves_like(fn, _average, cases, _AVERAGE_MISTAKES)
    return "floats of every dtype averaged, integer and bool entries taken from the last checkpoint, and the checkpoints given left as they were."
