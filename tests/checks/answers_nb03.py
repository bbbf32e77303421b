"""Wrong and right answers for the checks in labs_utils/checks/nb03.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import re


def _substring(sd, names):
    return {k: v for k, v in sd.items() if any(n in k for n in names)}


def _no_dot(sd, names):
    return {k: v for k, v in sd.items() if k.startswith(tuple(names))}


def _hard_coded(sd, names):
    return {k: v for k, v in sd.items() if k.startswith(("fc1.", "fc2."))}


def _keys_only(sd, names):
    return [k for k in sd if k.startswith(tuple(n + "." for n in names))]


def _deletes_in_place(sd, names):
    for k in list(sd):
        if k.split(".")[0] not in names:
            del sd[k]
    return sd


def _parent_module(sd, names):
    return {k: v for k, v in sd.items() if k.split(".")[-2] in names}


def _unanchored_regex(sd, names):
    pattern = re.compile("|".join(re.escape(n) + r"\." for n in names)) if names else None
    return {k: v for k, v in sd.items() if pattern and pattern.search(k)}


def _weights_and_biases_only(sd, names):
    wanted = {f"{n}.{p}" for n in names for p in ("weight", "bias")}
    return {k: v for k, v in sd.items() if k in wanted}


def _right_partition(sd, names):
    from collections import OrderedDict

    chosen = set(names)
    return OrderedDict((k, v.clone()) for k, v in sd.items() if k.partition(".")[0] in chosen)


def _right_submodule_prefix(sd, names):
    out = {}
    for k, v in sd.items():
        for n in names:
            if k.startswith(f"{n}."):
                out[k] = v
    return out


def _names_only(sd, model):
    return {k: v for k, v in sd.items() if k in model.state_dict()}


def _same_numel(sd, model):
    t = model.state_dict()
    return {k: v for k, v in sd.items() if k in t and v.numel() == t[k].numel()}


def _shapes_only(sd, model):
    shapes = {tuple(v.shape) for v in model.state_dict().values()}
    return {k: v for k, v in sd.items() if tuple(v.shape) in shapes}


def _named_parameters(sd, model):
    own = dict(model.named_parameters())
    return {k: v for k, v in sd.items() if k in own and v.shape == own[k].shape}


def _parameters_and_buffers(sd, model):
    own = dict(model.named_parameters()) | dict(model.named_buffers())
    return {k: v for k, v in sd.items() if k in own and v.shape == own[k].shape}


def _models_tensors(sd, model):
    t = model.state_dict()
    return {k: t[k] for k, v in sd.items() if k in t and v.shape == t[k].shape}


def _drops_in_place(sd, model):
    t = model.state_dict()
    for k in list(sd):
        if k not in t or sd[k].shape != t[k].shape:
            del sd[k]
    return sd


def _same_dim(sd, model):
    t = model.state_dict()
    return {k: v for k, v in sd.items() if k in t and v.dim() == t[k].dim()}


def _right_size_loop(sd, model):
    own = model.state_dict()
    out = {}
    for name, tensor in sd.items():
        if name in own and tensor.size() == own[name].size():
            out[name] = tensor
    return out


def _right_shape_table(sd, model):
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return {k: v for k, v in sd.items() if shapes.get(k) == tuple(v.shape)}


def _backbone_only(key):
    return "features." + key.removeprefix("backbone.") if key.startswith("backbone.") else key


def _head_index_kept(key):
    if key.startswith("backbone."):
        return "features." + key.removeprefix("backbone.")
    return "classifier." + key.removeprefix("head.") if key.startswith("head.") else key


def _replace_anywhere(key):
    return key.replace("backbone.", "features.").replace("head.1.", "classifier.2.")


def _index_glued(key):
    if key.startswith("backbone."):
        return "features." + key[len("backbone.") :]
    if key.startswith("head.1."):
        return "classifier.2." + key[len("head.") :]
    return key


def _head_without_dot(key):
    if key.startswith("backbone."):
        return "features." + key[len("backbone.") :]
    if key.startswith("head.1"):
        return key.replace("head.1", "classifier.2", 1)
    return key


def _lstrip(key):
    if key.startswith("backbone."):
        return "features." + key.lstrip("backbone.")
    if key.startswith("head.1."):
        return "classifier.2." + key.lstrip("head.1.")
    return key


def _search_not_match(key):
    key = re.sub(r"backbone\.", "features.", key, count=1)
    return re.sub(r"head\.1\.", "classifier.2.", key, count=1)


def _only_renamed(key):
    if key.startswith("backbone."):
        return "features." + key.removeprefix("backbone.")
    if key.startswith("head.1."):
        return "classifier.2." + key.removeprefix("head.1.")


def _right_table(key):
    for old, new in (("backbone.", "features."), ("head.1.", "classifier.2.")):
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def _right_regex(key):
    key = re.sub(r"^backbone\.", "features.", key)
    return re.sub(r"^head\.1\.", "classifier.2.", key)


WRONG = {
    "keep_layers": [
        (_substring, "mlp.fc1.weight"),
        (_no_dot, "fc10.weight"),
        (_hard_coded, "names argument"),
        (_keys_only, "dict"),
        (_deletes_in_place, "new dict"),
        (_parent_module, "first part"),
        (_unanchored_regex, "first part"),
        (_weights_and_biases_only, "buffers"),
    ],
    "fits": [
        (_names_only, "compare shapes"),
        (_same_numel, "same number of elements"),
        (_shapes_only, "not a key of the model"),
        (_named_parameters, "buffer"),
        (_parameters_and_buffers, "non-persistent"),
        (_models_tensors, "the model's own"),
        (_drops_in_place, "new dict"),
        (_same_dim, "compare shapes"),
    ],
    "to_small_cnn": [
        (_backbone_only, "head.1.weight"),
        (_head_index_kept, "classifier.2"),
        (_replace_anywhere, "only at the start"),
        (_index_glued, "index included"),
        (_head_without_dot, "dot"),
        (_lstrip, "lstrip"),
        (_search_not_match, "only at the start"),
        (_only_renamed, "got None"),
    ],
}
RIGHT = {
    "keep_layers": [_right_partition, _right_submodule_prefix],
    "fits": [_right_size_loop, _right_shape_table],
    "to_small_cnn": [_right_table, _right_regex],
}
