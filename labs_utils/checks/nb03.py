"""Checks for notebooks/03_partial_loading_and_transfer.ipynb: each answer is run on cases and
compared with a reference; the hint comes from the known mistake that behaves like it."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

from ..models import SmallCNN
from . import Case, Wrong, behaves_like, call_answer, exercise, same
from .fixtures import snapshot

NB = "03_partial_loading_and_transfer"


def _new_dict(fn, state_dict, other):
    """Call the answer once: it must return a new mapping and leave its arguments as they were."""
    before = {k: v.clone() for k, v in state_dict.items()}
    weights = snapshot(other) if isinstance(other, nn.Module) else None
    out = call_answer(fn, state_dict, other)
    if out is state_dict or not same(state_dict, before):
        raise Wrong(
            "return a new dict and leave the state_dict you were given as it was: your function changed it (deleted or replaced entries); build {k: v for k, v in state_dict.items() if ...}"
        )
    if not isinstance(out, Mapping):
        raise Wrong(
            f"return a dict of key -> tensor (a state_dict you can save), got {type(out).__name__}"
        )
    if weights is not None and not same(other.state_dict(), weights):
        raise Wrong("you changed the model; only select entries, let the caller load them")


def _layers_state_dict() -> dict[str, torch.Tensor]:
    keys = """conv1.weight fc1.weight fc1.bias fc10.weight mlp.fc1.weight fc_norm.weight fc2.weight
        fc2.bias head.fc2.bias bn.running_mean bn.num_batches_tracked""".split()
    return {k: torch.full((2,), float(i)) for i, k in enumerate(keys)}


def _keep(state_dict, names):
    return {k: v for k, v in state_dict.items() if k.split(".")[0] in names}


def _entry(key: str, names: str, why: str) -> Case:
    make = lambda: ({key: _layers_state_dict()[key]}, names.split())
    return Case(f"{key!r} with names={names.split()} ({why})", make)


_KEEP_CASES = [
    _entry("fc1.bias", "fc1 fc2", "it is under fc1"),
    _entry("mlp.fc1.weight", "fc1", "its top-level module is mlp, the key's first part"),
    _entry("fc10.weight", "fc1", "fc10 is another module: the name ends at the dot"),
    _entry("bn.running_mean", "bn", "the buffers of bn belong to it too"),
    _entry("mlp.fc1.weight", "conv1 mlp", "entries of mlp's submodules belong to mlp"),
    Case("a state_dict and names=['fc1', 'fc2']", lambda: (_layers_state_dict(), ["fc1", "fc2"])),
    Case("a state_dict and names=[]", lambda: (_layers_state_dict(), [])),
]
_fixed_names = lambda sd, names: {k: v for k, v in sd.items() if k.startswith(("fc1.", "fc2."))}
_KEEP_MISTAKES = {
    _fixed_names: "you kept fc1 and fc2 whatever names says: use the names argument instead of fixed prefixes",
}


@exercise("keep_layers", notebook=NB)
def keep_layers(fn) -> str:
    """``fn(state_dict, names)`` returns a new dict with the entries of the top-level modules called
    ``names`` (e.g. ``["fc1", "fc2"]``), and leaves the given dict as it was."""
    _new_dict(fn, _layers_state_dict(), ["fc1", "fc2"])
    behaves_like(fn, _keep, _KEEP_CASES, list(_KEEP_MISTAKES.items()))
    return "whole modules only ('fc1.' keeps fc1, not fc10 or mlp.fc1), buffers included, a new dict, the input left as it was."


class Pair(nn.Module):
    """The check's model: two linear layers, a BatchNorm (buffers in the state_dict), a non-persistent
    buffer (not in it) and a head tied to ``a`` (two keys, one Parameter)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 6)  # weight (6, 4)
        self.b = nn.Linear(6, 6)
        self.norm = nn.BatchNorm1d(6)
        self.register_buffer("mask", torch.ones(6), persistent=False)
        self.tied = nn.Linear(4, 6, bias=False)
        self.tied.weight = self.a.weight


def _fits_state_dict() -> dict[str, torch.Tensor]:
    return {
        "a.weight": torch.full((4, 6), 2.0),  # same 24 elements, transposed shape: does not fit
        "a.bias": torch.full((6,), 3.0),  # fits
        "b.weight": torch.full((6, 6), 4.0),  # fits
        "b.bias": torch.full((3,), 5.0),  # wrong shape
        "c.weight": torch.full((6,), 6.0),  # not in the model (same shape as a.bias)
        "norm.running_mean": torch.full((6,), 7.0),  # a buffer: fits
        "norm.running_var": torch.full((2,), 8.0),  # a buffer of the wrong shape
        "norm.num_batches_tracked": torch.tensor(9),  # a 0-dim buffer: fits
        "mask": torch.full((6,), 10.0),  # a non-persistent buffer: not in model.state_dict()
        "tied.weight": torch.full((6, 4), 11.0),  # the second name of a tied weight: fits
    }


def _pair(entries=None):
    """Part of ``_fits_state_dict()`` (all of it by default) and the check's Pair model."""
    sd = _fits_state_dict()
    torch.manual_seed(3)  # the same model each time a case is built
    return {k: sd[k] for k in entries or sd}, Pair()


def _cnn_case():  # all but the head fits
    torch.manual_seed(3)
    return SmallCNN(num_classes=4).state_dict(), SmallCNN(num_classes=2)


def _fits(state_dict, model):
    target = model.state_dict()
    return {k: v for k, v in state_dict.items() if k in target and v.shape == target[k].shape}


def _fits_case(key: str, why: str) -> Case:
    return Case(f"{key!r} for the check's model Pair ({why})", lambda: _pair([key]))


_FITS_CASES = [
    _fits_case("a.bias", "same name, same shape: it fits"),
    _fits_case("b.bias", "shape (3,) here, (6,) in the model: compare shapes too"),
    _fits_case("a.weight", "(4, 6) here, (6, 4) in the model: same number of elements"),
    _fits_case("c.weight", "not a key of the model, though it has a.bias's shape"),
    _fits_case("norm.running_mean", "a buffer: in model.state_dict(), not in named_parameters()"),
    _fits_case("mask", "non-persistent: in named_buffers(), not in model.state_dict()"),
    _fits_case("tied.weight", "a tied weight's second name: in model.state_dict() only"),
    Case("the whole state_dict and the check's model Pair", _pair),
    Case("a 4-class SmallCNN's state_dict and a 2-class SmallCNN", _cnn_case),
]
_copy = lambda sd, model: dict(sd)
_models_own = lambda sd, model: {k: model.state_dict()[k] for k in _fits(sd, model)}
_FITS_MISTAKES = {
    _copy: "you returned every entry of the state_dict you were given: keep only those whose name is a key of model.state_dict() and whose shape is the model's",
    _models_own: "you returned the model's own tensors: return the entries of the state_dict you were given (its values), not the model's",
}


@exercise("fits", notebook=NB)
def fits(fn) -> str:
    """``fn(state_dict, model)`` returns the entries whose key is in ``model.state_dict()`` with the same shape.
    Tried on the check's ``Pair`` (BatchNorm buffers, a non-persistent buffer, tied weights) and on SmallCNN."""
    _new_dict(fn, *_pair())
    behaves_like(fn, _fits, _FITS_CASES, list(_FITS_MISTAKES.items()))
    return "the entries with the model's names and shapes, buffers included; transposed, wrong-shaped, unknown and non-persistent entries stay out; model and input untouched."


def _to_small_cnn(key):
    for old, new in (("backbone.", "features."), ("head.1.", "classifier.2.")):
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def _key(key: str, why: str = "") -> Case:
    return Case(f"{key!r}" + (f" ({why})" if why else ""), lambda: (key,))


_STAYS = "it should stay as it is: rename only keys that start with 'backbone.' or 'head.1.', and only at the start"
_KEY_CASES = [
    *map(_key, "backbone.0.weight backbone.1.running_var backbone.norm.weight".split()),
    _key(
        "head.1.weight",
        "SmallCNN's linear layer is classifier.2, since classifier.0 is Flatten and classifier.1 Dropout; the whole prefix 'head.1.', index included, becomes 'classifier.2.'",
    ),
    _key("head.1.bias"),
    *(_key(k, _STAYS) for k in "aux.backbone.0.weight multihead.1.weight epoch_counter".split()),
    _key(
        "head.10.weight",
        "it should stay as it is: 'head.10' is another module than 'head.1'; match the prefix with its dot, 'head.1.'",
    ),
    *(_key(k, _STAYS) for k in "backbone_old.weight head.0.scale classifier.2.weight".split()),
]
_none_for_others = lambda key: (
    _to_small_cnn(key) if key.startswith(("backbone.", "head.1.")) else None
)
_lstrip = lambda key: (
    "features." + key.lstrip("backbone.") if key.startswith("backbone.") else _to_small_cnn(key)
)
_KEY_MISTAKES = {
    _none_for_others: "the keys that are not renamed came back as None: end the function with `return key`, so that every other key comes back unchanged (you got None for them)",
    _lstrip: "'backbone.norm.weight' became 'features.rm.weight': str.lstrip(prefix) strips any of the prefix's characters, not the prefix; use key[len(prefix):] or key.removeprefix(prefix)",
}


@exercise("to_small_cnn", notebook=NB)
def to_small_cnn(fn) -> str:
    """``fn(key)`` renames a ``Classifier`` key (``backbone.`` / ``head.1.``) to SmallCNN's (``features.`` /
    ``classifier.2.``), leaving every other key as it is."""
    first = call_answer(fn, "backbone.0.weight")
    if not isinstance(first, str):
        raise Wrong(f"return the new key as a str, got {type(first).__name__}")
    behaves_like(fn, _to_small_cnn, _KEY_CASES, list(_KEY_MISTAKES.items()))
    return "backbone.* -> features.* and head.1.* -> classifier.2.*, only at the start; nothing else touched."
