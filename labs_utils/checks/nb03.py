"""Checks for notebooks/03_partial_loading_and_transfer.ipynb."""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

from . import Wrong, call_answer, exercise

NB = "03_partial_loading_and_transfer"


# --- keep_layers: select whole modules, never substrings -------------------------------------

def _layers_state_dict() -> dict[str, torch.Tensor]:
    keys = ["conv1.weight", "fc1.weight", "fc1.bias", "fc10.weight", "mlp.fc1.weight", "fc_norm.weight",
            "fc2.weight", "fc2.bias"]
    return {k: torch.full((2,), float(i)) for i, k in enumerate(keys)}


def _substring(sd, names):
    return {k: v for k, v in sd.items() if any(n in k for n in names)}


def _no_dot(sd, names):
    return {k: v for k, v in sd.items() if k.startswith(tuple(names))}


def _hard_coded(sd, names):
    return {k: v for k, v in sd.items() if k.startswith(("fc1.", "fc2."))}


def _keys_only(sd, names):
    return [k for k in sd if k.startswith(tuple(n + "." for n in names))]


@exercise("keep_layers", notebook=NB, wrong=[
    (_substring, "mlp.fc1.weight"),
    (_no_dot, "fc10.weight"),
    (_hard_coded, "names argument"),
    (_keys_only, "dict"),
])
def keep_layers(fn) -> str:
    """``fn(state_dict, names)`` keeps the entries of the modules called ``names`` (e.g. ``["fc1", "fc2"]``)."""
    for names in (["fc1", "fc2"], ["conv1", "mlp"]):
        sd = _layers_state_dict()
        out = call_answer(fn, sd, list(names))
        if not isinstance(out, Mapping):
            raise Wrong(f"return a dict of key -> tensor (a state_dict you can save), got {type(out).__name__}")
        expected = [k for k in sd if k.split(".")[0] in names]
        extra = [k for k in out if k not in expected]
        for k in extra:
            if not k.startswith(tuple(names)) and any(n in k for n in names):
                raise Wrong(f"you kept {k!r}, which only contains one of the names; a substring test matches "
                            "by accident: keep keys that start with name + '.'")
        if "fc10.weight" in extra:
            raise Wrong("'fc10.weight' starts with 'fc1' but belongs to the module fc10: match the name "
                        "followed by a dot, k.startswith('fc1.')")
        if extra and names != ["fc1", "fc2"]:
            raise Wrong(f"with names={names} you kept {extra}: use the names argument instead of fixed prefixes")
        if extra:
            raise Wrong(f"{extra[0]!r} does not belong to any of {names}")
        missing = [k for k in expected if k not in out]
        if missing:
            raise Wrong(f"with names={names} you dropped {missing[0]!r}: keep every entry under those modules "
                        "(use the names argument, with a dot after each name)")
        for k in expected:
            if not torch.equal(out[k], sd[k]):
                raise Wrong(f"the value of {k!r} changed; keep the tensors as they are")
    return "whole modules only: 'fc1.' keeps fc1 and nothing that merely contains 'fc1'."


# --- fits: entries whose name and shape match a model ----------------------------------------

class _Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 6)  # weight (6, 4)
        self.b = nn.Linear(6, 6)


def _fits_state_dict() -> dict[str, torch.Tensor]:
    return {
        "a.weight": torch.ones(4, 6),   # same 24 elements, transposed shape: does not fit
        "a.bias": torch.ones(6),        # fits
        "b.weight": torch.ones(6, 6),   # fits
        "b.bias": torch.ones(3),        # wrong shape
        "c.weight": torch.ones(6),      # not in the model (same shape as a.bias)
    }


def _names_only(sd, model):
    return {k: v for k, v in sd.items() if k in model.state_dict()}


def _same_numel(sd, model):
    t = model.state_dict()
    return {k: v for k, v in sd.items() if k in t and v.numel() == t[k].numel()}


def _shapes_only(sd, model):
    shapes = {tuple(v.shape) for v in model.state_dict().values()}
    return {k: v for k, v in sd.items() if tuple(v.shape) in shapes}


@exercise("fits", notebook=NB, wrong=[
    (_names_only, "compare shapes"),
    (_same_numel, "same number of elements"),
    (_shapes_only, "not a key of the model"),
])
def fits(fn) -> str:
    """``fn(state_dict, model)`` returns the entries whose key is in the model's state_dict with the same shape."""
    model = _Pair()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sd = _fits_state_dict()
    out = call_answer(fn, sd, model)
    if not isinstance(out, Mapping):
        raise Wrong(f"return a dict of key -> tensor that load_state_dict can take, got {type(out).__name__}")
    if any(not torch.equal(v, before[k]) for k, v in model.state_dict().items()):
        raise Wrong("your function changed the model; only select entries, let the caller load them")
    target = model.state_dict()
    for k in out:
        if k not in target:
            raise Wrong(f"{k!r} is not a key of the model: its shape happens to match another entry, "
                        "but the name must match too")
    bad = [k for k in out if tuple(sd[k].shape) != tuple(target[k].shape)]
    for k in bad:
        if sd[k].numel() != target[k].numel():
            raise Wrong(f"{k!r} has shape {tuple(sd[k].shape)} in the state_dict but {tuple(target[k].shape)} "
                        "in the model: compare shapes as well as names")
    if bad:
        k = bad[0]
        raise Wrong(f"{k!r} has the same number of elements but a different shape "
                    f"({tuple(sd[k].shape)} vs {tuple(target[k].shape)}): compare .shape, not numel()")
    missing = {"a.bias", "b.weight"} - set(out)
    if missing:
        raise Wrong(f"{sorted(missing)[0]!r} fits (same name, same shape) but you dropped it")
    model.load_state_dict(dict(out), strict=False)
    return "only a.bias and b.weight fit; a.weight (transposed), b.bias (3 vs 6) and c.weight stay out."


# --- to_small_cnn: a key_map for two renamed modules ------------------------------------------

_RENAMES = {
    "backbone.0.weight": "features.0.weight",
    "backbone.1.running_var": "features.1.running_var",
    "backbone.5.num_batches_tracked": "features.5.num_batches_tracked",
    "head.1.weight": "classifier.2.weight",
    "head.1.bias": "classifier.2.bias",
}


def _backbone_only(key):
    return "features." + key.removeprefix("backbone.") if key.startswith("backbone.") else key


def _head_index_kept(key):
    if key.startswith("backbone."):
        return "features." + key.removeprefix("backbone.")
    return "classifier." + key.removeprefix("head.") if key.startswith("head.") else key


def _replace_anywhere(key):
    return key.replace("backbone.", "features.").replace("head.1.", "classifier.2.")


@exercise("to_small_cnn", notebook=NB, wrong=[
    (_backbone_only, "head.1.weight"),
    (_head_index_kept, "classifier.2"),
    (_replace_anywhere, "only at the start"),
])
def to_small_cnn(fn) -> str:
    """``fn(key)`` renames a ``Classifier`` key (``backbone.`` / ``head.1.``) to SmallCNN's (``features.`` /
    ``classifier.2.``), leaving every other key as it is."""
    first = call_answer(fn, "backbone.0.weight")
    if not isinstance(first, str):
        raise Wrong(f"return the new key as a str, got {type(first).__name__}")
    cases = dict(_RENAMES, **{k: k for k in ("aux.backbone.0.weight", "multihead.1.weight", "epoch_counter")})
    for old, new in cases.items():
        try:
            got = fn(old)
        except Exception as e:
            raise Wrong(f"your function raised {type(e).__name__} on {old!r}: {e}") from None
        if got != new:
            if old == new:
                raise Wrong(f"{old!r} should stay as it is (got {got!r}): rename only keys that start with "
                            "'backbone.' or 'head.1.', and only at the start")
            if old.startswith("head.") and got == old:
                raise Wrong(f"{old!r} kept its name: the head must become SmallCNN's classifier.2")
            if old.startswith("head."):
                raise Wrong(f"{old!r} became {got!r}; in SmallCNN the linear layer is classifier.2 "
                            "(classifier.0 is Flatten, classifier.1 is Dropout)")
            raise Wrong(f"{old!r} became {got!r}, expected {new!r}")
    return "backbone.* -> features.* and head.1.* -> classifier.2.*, nothing else touched."
