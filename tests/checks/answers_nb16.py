"""Wrong and right answers for the checks in labs_utils/checks/nb16.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import math
from pathlib import Path

import torch


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _whole_state_dict(path, attribute):
    return _load(path)["state_dict"]


def _keeps_prefix(path, attribute):
    return {k: v for k, v in _load(path)["state_dict"].items() if k.startswith(attribute + ".")}


def _replace_everywhere(path, attribute):
    sd = _load(path)["state_dict"]
    return {
        k.replace(attribute + ".", ""): v for k, v in sd.items() if k.startswith(attribute + ".")
    }


def _normalize_without_like(path, attribute):
    from labs_utils.toolkit import normalize_keys

    sd = _load(path)["state_dict"]
    under = {k: v for k, v in sd.items() if k.startswith(attribute + ".")}
    return dict(normalize_keys(under, prefixes=(attribute + ".",)))


def _no_dot(path, attribute):
    sd = _load(path)["state_dict"]
    return {k[len(attribute) + 1 :]: v for k, v in sd.items() if k.startswith(attribute)}


def _keeps_other_attributes(path, attribute):  # notebook 07's strip_prefix
    sd = _load(path)["state_dict"]
    p = attribute + "."
    return {(k[len(p) :] if k.startswith(p) else k): v for k, v in sd.items()}


def _unsafe(path, attribute):
    sd = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    p = attribute + "."
    return {k[len(p) :]: v for k, v in sd.items() if k.startswith(p)}


def _retry_unsafe(path, attribute):
    import pickle

    try:
        ckpt = _load(path)
    except pickle.UnpicklingError:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    p = attribute + "."
    return {k[len(p) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(p)}


def _swallows_refusal(path, attribute):
    try:
        ckpt = _load(path)
    except Exception:
        return {}
    p = attribute + "."
    return {k[len(p) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(p)}


def _right_removeprefix(path, attribute):
    from collections import OrderedDict

    with open(path, "rb") as f:
        ckpt = torch.load(f, weights_only=True)
    return OrderedDict(
        (k.removeprefix(attribute + "."), v)
        for k, v in ckpt["state_dict"].items()
        if k.startswith(attribute + ".")
    )


def _right_consume_prefix(path, attribute):
    from collections import OrderedDict

    from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

    sd = torch.load(path, weights_only=True)["state_dict"]
    mine = OrderedDict((k, v) for k, v in sd.items() if k.split(".", 1)[0] == attribute)
    consume_prefix_in_state_dict_if_present(mine, attribute + ".")
    return mine


def _read(adapter_dir):
    import json

    from safetensors.torch import load_file

    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    return config, load_file(Path(adapter_dir) / "adapter_model.safetensors")


def _pairs(adapter):
    for key, a in adapter.items():
        if key.endswith(".lora_A.weight"):
            module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            yield module, a, adapter[key.replace(".lora_A.", ".lora_B.")]


def _merge_with(name, scale_of):
    def merge(base_state_dict, adapter_dir):
        config, adapter = _read(adapter_dir)
        merged = dict(base_state_dict)
        for module, a, b in _pairs(adapter):
            merged[module + ".weight"] = merged[module + ".weight"] + (b @ a) * scale_of(config)
        return merged

    merge.__name__ = merge.__qualname__ = name
    return merge


_no_scale = _merge_with("_no_scale", lambda c: 1.0)


_upside_down = _merge_with("_upside_down", lambda c: c["r"] / c["lora_alpha"])


_ignores_rslora = _merge_with("_ignores_rslora", lambda c: c["lora_alpha"] / c["r"])


def _in_place(base_state_dict, adapter_dir):
    config, adapter = _read(adapter_dir)
    scale = config["lora_alpha"] / (math.sqrt(config["r"]) if config["use_rslora"] else config["r"])
    for module, a, b in _pairs(adapter):
        base_state_dict[module + ".weight"] += (b @ a) * scale
    return base_state_dict


def _keeps_peft_names(base_state_dict, adapter_dir):
    config, adapter = _read(adapter_dir)
    scale = config["lora_alpha"] / (math.sqrt(config["r"]) if config["use_rslora"] else config["r"])
    merged = dict(base_state_dict)
    for key, a in adapter.items():
        if key.endswith(".lora_A.weight"):
            module = key.removesuffix(".lora_A.weight")  # still "base_model.model.fc1"
            b = adapter[key.replace(".lora_A.", ".lora_B.")]
            merged[module + ".weight"] = (
                base_state_dict[module.removeprefix("base_model.model.") + ".weight"]
                + (b @ a) * scale
            )
    return merged


def _transposed(base_state_dict, adapter_dir):
    config, adapter = _read(adapter_dir)
    scale = config["lora_alpha"] / (math.sqrt(config["r"]) if config["use_rslora"] else config["r"])
    merged = dict(base_state_dict)
    for module, a, b in _pairs(adapter):
        merged[module + ".weight"] = merged[module + ".weight"] + (a.T @ b.T) * scale
    return merged


def _right_float64(base_state_dict, adapter_dir):
    import json

    from safetensors import safe_open

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    r = config["r"]
    scale = config["lora_alpha"] / (r**0.5 if config.get("use_rslora", False) else r)
    merged = {k: v.clone() for k, v in base_state_dict.items()}
    with safe_open(adapter_dir / "adapter_model.safetensors", framework="pt") as f:
        for key in f.keys():
            if ".lora_A." not in key:
                continue
            weight_key = key.split("base_model.model.", 1)[1].split(".lora_A.")[0] + ".weight"
            a = f.get_tensor(key).double()
            b = f.get_tensor(key.replace("lora_A", "lora_B")).double()
            w = merged[weight_key]
            merged[weight_key] = (w.double() + scale * (b @ a)).to(w.dtype)
    return merged


def _right_addmm(base_state_dict, adapter_dir):
    config, adapter = _read(adapter_dir)
    scale = config["lora_alpha"] / (math.sqrt(config["r"]) if config["use_rslora"] else config["r"])
    merged = {k: v.clone() for k, v in base_state_dict.items()}
    for module, a, b in _pairs(adapter):
        # on the copy, not the given tensor
        merged[module + ".weight"].addmm_(b, a, alpha=scale)
    return merged


WRONG = {
    "weights_from_ckpt": [
        (_whole_state_dict, "whole state_dict"),
        (_keeps_prefix, "still start with"),
        (_replace_everywhere, "str.replace"),
        (_normalize_without_like, "like="),
        (_no_dot, "with the dot"),
        (_keeps_other_attributes, "belongs to another attribute"),
        (_unsafe, "weights_only=True"),
        (_retry_unsafe, "never retry"),
        (_swallows_refusal, "instead of raising"),
    ],
    "merge_lora": [
        (_no_scale, "without the scale"),
        (_upside_down, "upside down"),
        (_ignores_rslora, "use_rslora"),
        (_in_place, "changed the state_dict you were given"),
        (_keeps_peft_names, "base_model.model."),
        (_transposed, "B @ A is (out x in)"),
    ],
}
RIGHT = {
    "weights_from_ckpt": [_right_removeprefix, _right_consume_prefix],
    "merge_lora": [_right_float64, _right_addmm],
}
