"""Wrong and right answers for the checks in labs_utils/checks/nb18.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import json

import torch
from huggingface_hub import load_torch_model
from safetensors import safe_open
from safetensors.torch import load_file


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
        k: sum(sd[k] for sd in state_dicts) / len(state_dicts) if v.dtype.is_floating_point else v
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


def average_no_return(state_dicts):
    average_checkpoints(state_dicts)


def average_all(state_dicts):
    return {k: torch.stack([sd[k] for sd in state_dicts]).mean(0) for k in state_dicts[-1]}


def average_all_as_float(state_dicts):
    return {k: torch.stack([sd[k].float() for sd in state_dicts]).mean(0) for k in state_dicts[-1]}


def ints_from_first(state_dicts):
    return {
        k: torch.stack([sd[k] for sd in state_dicts]).mean(0)
        if v.is_floating_point()
        else state_dicts[0][k]
        for k, v in state_dicts[-1].items()
    }


def only_float32(state_dicts):
    return {
        k: torch.stack([sd[k] for sd in state_dicts]).mean(0) if v.dtype == torch.float32 else v
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


WRONG = {
    "load_sharded": [
        (glob_all, "old shard"),
        (first_shard_only, "not only the first"),
        (strict_per_shard, "strict load of one shard"),
        (no_final_check, "one layer deeper"),
        (raises_per_shard, "collect the keys loaded from all shards"),
        (no_return, "end it with `return model`"),
    ],
    "average_checkpoints": [
        (average_all, "`mean` refuses integer tensors"),
        (average_all_as_float, "keep their dtype"),
        (ints_from_first, "*last* checkpoint"),
        (only_float32, "every floating-point dtype"),
        (in_place, "changed the checkpoints it was given"),
        (average_no_return, "end it with `return` and the new dict"),
    ],
}

RIGHT = {
    "load_sharded": [load_sharded, by_hub, key_by_key],
    "average_checkpoints": [average_checkpoints, summed, running_mean],
}
