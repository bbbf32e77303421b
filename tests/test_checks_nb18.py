"""Checks of notebooks/18_big_models_and_serving.ipynb: the notebook's answers and other right
answers pass; each usual mistake gets its own hint; a placeholder is "not attempted"."""

from __future__ import annotations

import json

import pytest
import torch
from huggingface_hub import load_torch_model
from safetensors import safe_open
from safetensors.torch import load_file

from labs_utils.checks import REGISTRY, check, nb18

check.load_sharded  # noqa: B018  (loads the modules)
NAMES = [n for n, ex in REGISTRY.items() if ex.notebook == nb18.NB]


def _index(folder):
    return json.loads((folder / "model.safetensors.index.json").read_text())


# --- load_sharded -------------------------------------------------------------------------------


def load_sharded(model, folder):  # the notebook's solution
    loaded = set()
    for shard in sorted(set(_index(folder)["weight_map"].values())):
        part = load_file(folder / shard)
        model.load_state_dict(part, strict=False)
        loaded |= part.keys()
    missing = sorted(set(model.state_dict()) - loaded)
    if missing:
        raise KeyError(f"no shard holds {missing}")
    return model


def by_hub(model, folder):  # huggingface_hub's loader, strict
    load_torch_model(model, folder, strict=True)
    return model


def key_by_key(model, folder):  # safe_open, one tensor at a time, copied in by hand
    index = _index(folder)["weight_map"]
    own = model.state_dict()
    if set(own) - set(index):
        raise RuntimeError(f"not in the checkpoint: {sorted(set(own) - set(index))}")
    with torch.no_grad():
        for key, shard in index.items():
            with safe_open(folder / shard, framework="pt") as f:
                own[key].copy_(f.get_tensor(key))
    return model


def glob_all(model, folder):
    for path in sorted(folder.glob("*.safetensors")):
        model.load_state_dict(load_file(path), strict=False)
    return model


def first_shard_only(model, folder):
    shard = next(iter(_index(folder)["weight_map"].values()))
    model.load_state_dict(load_file(folder / shard), strict=False)
    return model


def strict_per_shard(model, folder):
    for shard in sorted(set(_index(folder)["weight_map"].values())):
        model.load_state_dict(load_file(folder / shard))
    return model


def no_final_check(model, folder):
    for shard in sorted(set(_index(folder)["weight_map"].values())):
        model.load_state_dict(load_file(folder / shard), strict=False)
    return model


def raises_per_shard(model, folder):
    for shard in sorted(set(_index(folder)["weight_map"].values())):
        result = model.load_state_dict(load_file(folder / shard), strict=False)
        if result.missing_keys:
            raise KeyError(f"missing: {result.missing_keys}")
    return model


def no_return(model, folder):
    no_final_check(model, folder)


# --- average_checkpoints --------------------------------------------------------------------------


def average_checkpoints(state_dicts):  # the notebook's solution
    averaged = {}
    for key, value in state_dicts[-1].items():
        if value.is_floating_point():
            averaged[key] = torch.stack([sd[key] for sd in state_dicts]).mean(0)
        else:
            averaged[key] = value.clone()
    return averaged


def summed(state_dicts):  # sum / len, integer entries not copied
    last = state_dicts[-1]
    return {
        k: sum(sd[k] for sd in state_dicts) / len(state_dicts)
        if v.dtype.is_floating_point
        else v
        for k, v in last.items()
    }


def running_mean(state_dicts):  # an incremental average, in float64
    out = {}
    for k, v in state_dicts[-1].items():
        if not torch.is_floating_point(v):
            out[k] = v
            continue
        acc = torch.zeros_like(v, dtype=torch.float64)
        for n, sd in enumerate(state_dicts, 1):
            acc += (sd[k].double() - acc) / n
        out[k] = acc.to(v.dtype)
    return out


def average_all(state_dicts):
    return {
        k: torch.stack([sd[k] for sd in state_dicts]).mean(0) for k in state_dicts[-1]
    }


def average_all_as_float(state_dicts):
    return {
        k: torch.stack([sd[k].float() for sd in state_dicts]).mean(0)
        for k in state_dicts[-1]
    }


def ints_from_first(state_dicts):
    return {
        k: torch.stack([sd[k] for sd in state_dicts]).mean(0)
        if v.is_floating_point()
        else state_dicts[0][k]
        for k, v in state_dicts[-1].items()
    }


def only_float32(state_dicts):
    return {
        k: torch.stack([sd[k] for sd in state_dicts]).mean(0)
        if v.dtype == torch.float32
        else v
        for k, v in state_dicts[-1].items()
    }


def in_place(state_dicts):
    first = state_dicts[0]
    for k, v in first.items():
        if v.is_floating_point():
            for sd in state_dicts[1:]:
                v += sd[k]
            v /= len(state_dicts)
        else:
            first[k] = state_dicts[-1][k]
    return first


def test_names():
    assert sorted(NAMES) == ["average_checkpoints", "load_sharded"]


@pytest.mark.parametrize(
    "answer", [load_sharded, by_hub, key_by_key], ids=lambda f: f.__name__
)
def test_right_sharded_loaders_pass(answer):
    result = check.load_sharded(answer)
    assert result, str(result)


@pytest.mark.parametrize(
    "answer", [average_checkpoints, summed, running_mean], ids=lambda f: f.__name__
)
def test_right_averages_pass(answer):
    result = check.average_checkpoints(answer)
    assert result, str(result)


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (glob_all, "old shard"),
        (first_shard_only, "not only the first"),
        (strict_per_shard, "strict=False"),
        (no_final_check, "one layer deeper"),
        (raises_per_shard, "collect the keys loaded from all shards"),
        (no_return, "returned None"),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_sharded_mistakes_get_their_own_hint(answer, hint):
    result = check.load_sharded(answer)
    assert not result and result.status == "wrong"
    assert hint in str(result), str(result)


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (average_all, "`mean` refuses integer tensors"),
        (average_all_as_float, "keep their dtype"),
        (ints_from_first, "*last* checkpoint"),
        (only_float32, "is_floating_point()"),
        (in_place, "changed the checkpoints it was given"),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_average_mistakes_get_their_own_hint(answer, hint):
    result = check.average_checkpoints(answer)
    assert not result and result.status == "wrong"
    assert hint in str(result), str(result)


def test_placeholders_are_not_attempted():
    def load_sharded(model, folder):
        pass  # Your turn: replace this line

    def average_checkpoints(state_dicts): ...

    assert check.load_sharded(load_sharded).status == "not attempted"
    assert check.average_checkpoints(average_checkpoints).status == "not attempted"


def test_the_stale_folder_really_has_an_old_shard_with_other_values():
    _, folder = nb18._with_stale_shard()
    try:
        listed = set(_index(folder)["weight_map"].values())
        on_disk = {p.name for p in folder.glob("*.safetensors")}
        assert listed < on_disk
        stale = load_file(folder / sorted(on_disk - listed)[0])
        fresh = no_final_check(nb18._mlp(1), folder).state_dict()
        assert any(not torch.equal(fresh[k], v) for k, v in stale.items())
    finally:
        nb18._cleanup()


def test_checks_leave_no_folders_behind():
    check.load_sharded(load_sharded)
    check.load_sharded(glob_all)
    assert nb18._TMP == []
