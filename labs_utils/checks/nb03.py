"""Checks for notebooks/03_partial_loading_and_transfer.ipynb."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

from . import Wrong, call_answer, exercise, run_answer
from .fixtures import changed_keys, snapshot

NB = "03_partial_loading_and_transfer"


def _layers_state_dict() -> dict[str, torch.Tensor]:
    keys = """conv1.weight fc1.weight fc1.bias fc10.weight mlp.fc1.weight fc_norm.weight fc2.weight
        fc2.bias head.fc2.bias bn.running_mean bn.num_batches_tracked""".split()
    return {k: torch.full((2,), float(i)) for i, k in enumerate(keys)}


_KEEP_CASES = (["fc1", "fc2"], ["bn"], ["conv1", "mlp"], [])


@exercise("keep_layers", notebook=NB)
def keep_layers(fn) -> str:
    """``fn(state_dict, names)`` returns a new dict with the entries of the top-level modules called
    ``names`` (e.g. ``["fc1", "fc2"]``), and leaves the given dict as it was."""
    for names in _KEEP_CASES:
        sd = _layers_state_dict()
        keys, values = list(sd), list(sd.values())
        out = call_answer(fn, sd, list(names))
        if out is sd or list(sd) != keys or any(a is not b for a, b in zip(sd.values(), values)):
            raise Wrong(
                "return a new dict and leave the one you were given as it was: your function changed it (deleted or replaced entries); build {k: v for k, v in state_dict.items() if ...}"
            )
        if not isinstance(out, Mapping):
            raise Wrong(
                f"return a dict of key -> tensor (a state_dict you can save), got {type(out).__name__}"
            )
        expected = [k for k in sd if k.split(".")[0] in names]
        extra = [k for k in out if k not in expected]
        inside = [k for k in extra if not k.startswith(tuple(names))]  # a name further in the key
        if inside:
            k, first = inside[0], inside[0].split(".")[0]
            if any(n in e and n not in e.split(".") for e in extra for n in names):
                raise Wrong(
                    f"you kept {k!r}, which only contains one of the names; a substring test matches by accident: keep keys that start with name + '.'"
                )
            if any(n in k.split(".") for n in names):
                raise Wrong(
                    f"you kept {k!r}, which belongs to the top-level module {first!r}: a key belongs to the module named by its first part, so test the start of the key, k.startswith(name + '.') (or k.split('.')[0] in names)"
                )
        for k in extra:
            n = next((n for n in names if k.startswith(n) and not k.startswith(n + ".")), None)
            if n is not None:
                raise Wrong(
                    f"{k!r} starts with {n!r} but belongs to the module {k.split('.')[0]}: match the name followed by a dot, k.startswith('{n}.')"
                )
        if extra and names != ["fc1", "fc2"]:
            raise Wrong(
                f"with names={names} you kept {extra}: use the names argument instead of fixed prefixes"
            )
        if extra:
            raise Wrong(f"{extra[0]!r} does not belong to any of {names}")
        missing = [k for k in expected if k not in out]
        if missing:
            k = missing[0]
            if k.count(".") > 1:
                detail = f" (entries of its submodules too, such as {k}: everything that starts with the name)"
            elif k.split(".")[-1] not in ("weight", "bias"):
                detail = " (its buffers too, not only weight and bias: everything that starts with the name)"
            else:
                detail = " (use the names argument, with a dot after each name)"
            raise Wrong(
                f"with names={names} you dropped {missing[0]!r}: keep every entry under those modules{detail}"
            )
        for k in expected:
            if (
                not isinstance(out[k], torch.Tensor)
                or out[k].dtype != sd[k].dtype
                or not torch.equal(out[k], sd[k])
            ):
                raise Wrong(f"the value of {k!r} changed; keep the tensors as they are")
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


_FITTING = {"a.bias", "b.weight", "norm.running_mean", "norm.num_batches_tracked", "tied.weight"}


def _cnn_case():
    """SmallCNN(num_classes=2) and a 4-class SmallCNN's state_dict: the backbone fits, buffers
    included; the head does not."""
    from ..models import SmallCNN

    torch.manual_seed(3)
    sd = SmallCNN(num_classes=4).state_dict()
    model = SmallCNN(num_classes=2)
    fitting = {k for k in sd if not k.startswith("classifier.")}
    return sd, model, fitting


@exercise("fits", notebook=NB)
def fits(fn) -> str:
    """``fn(state_dict, model)`` returns the entries whose key is in ``model.state_dict()`` with the same shape.
    Tried on the check's ``Pair`` (BatchNorm buffers, a non-persistent buffer, tied weights) and on SmallCNN."""
    for sd, model, fitting in [(_fits_state_dict(), Pair(), _FITTING), _cnn_case()]:
        _judge_fits(fn, sd, model, fitting)
    return "the entries with the model's names and shapes, buffers included; transposed, wrong-shaped, unknown and non-persistent entries stay out; model and input untouched."


def _judge_fits(fn, sd: dict, model: nn.Module, fitting: set[str]) -> None:
    before = snapshot(model)
    keys, values = list(sd), list(sd.values())
    copies = [v.clone() for v in values]
    out = call_answer(fn, sd, model)
    if (
        out is sd
        or list(sd) != keys
        or any(a is not b or not torch.equal(a, c) for a, b, c in zip(sd.values(), values, copies))
    ):
        raise Wrong(
            "return a new dict and leave the state_dict you were given as it was: your function changed it"
        )
    if not isinstance(out, Mapping):
        raise Wrong(
            f"return a dict of key -> tensor that load_state_dict can take, got {type(out).__name__}"
        )
    if changed_keys(model, before):
        raise Wrong(
            "your function changed the model; only select entries, let the caller load them"
        )
    if set(out) == set(sd) != fitting:
        raise Wrong(
            "you returned every entry of the state_dict you were given: keep only those whose name is a key of model.state_dict() and whose shape is the model's"
        )
    target = model.state_dict()
    for k in out:
        if k not in target:
            if k in {n for n, _ in model.named_buffers()}:
                raise Wrong(
                    f"{k!r} is a non-persistent buffer of the model: it is not in model.state_dict(), so load_state_dict would call it unexpected; compare with model.state_dict()"
                )
            raise Wrong(
                f"{k!r} is not a key of the model: its shape happens to match another entry, but the name must match too"
            )
    bad = [k for k in out if tuple(sd[k].shape) != tuple(target[k].shape)]
    for k in bad:
        if sd[k].numel() != target[k].numel():
            raise Wrong(
                f"{k!r} has shape {tuple(sd[k].shape)} in the state_dict but {tuple(target[k].shape)} in the model: compare shapes as well as names"
            )
    if bad:
        k = bad[0]
        raise Wrong(
            f"{k!r} has the same number of elements but a different shape ({tuple(sd[k].shape)} vs {tuple(target[k].shape)}): compare .shape, not numel()"
        )
    missing = sorted(fitting - set(out))
    if missing:
        k = missing[0]
        params = {n for n, _ in model.named_parameters()}
        if k not in params and k in {n for n, _ in model.named_parameters(remove_duplicate=False)}:
            raise Wrong(
                f"{k!r} fits but you dropped it: it is the second name of a tied weight, which named_parameters() lists once; model.state_dict() has every key"
            )
        if k not in params:
            raise Wrong(
                f"{k!r} is a buffer that fits (same name, same shape) but you dropped it: compare with model.state_dict(), which holds buffers too, not named_parameters()"
            )
        raise Wrong(f"{k!r} fits (same name, same shape) but you dropped it")
    for k, v in out.items():
        if not isinstance(v, torch.Tensor) or v.dtype != sd[k].dtype or not torch.equal(v, sd[k]):
            if isinstance(v, torch.Tensor) and torch.equal(v, target[k]):
                raise Wrong(
                    f"{k!r} holds the model's own tensor: return the entries of the state_dict you were given (its values), not the model's"
                )
            raise Wrong(f"the value of {k!r} changed; return the state_dict's tensors as they are")


_RENAMES = {
    "backbone.0.weight": "features.0.weight",
    "backbone.1.running_var": "features.1.running_var",
    "backbone.5.num_batches_tracked": "features.5.num_batches_tracked",
    "backbone.norm.weight": "features.norm.weight",  # lstrip("backbone.") would eat "no"
    "head.1.weight": "classifier.2.weight",
    "head.1.bias": "classifier.2.bias",
}
_STAY = tuple(
    """aux.backbone.0.weight multihead.1.weight epoch_counter backbone_old.weight head.10.weight
    head.0.scale classifier.2.weight""".split()
)


@exercise("to_small_cnn", notebook=NB)
def to_small_cnn(fn) -> str:
    """``fn(key)`` renames a ``Classifier`` key (``backbone.`` / ``head.1.``) to SmallCNN's (``features.`` /
    ``classifier.2.``), leaving every other key as it is."""
    first = call_answer(fn, "backbone.0.weight")
    if not isinstance(first, str):
        raise Wrong(f"return the new key as a str, got {type(first).__name__}")
    cases = dict(_RENAMES, **{k: k for k in _STAY})
    for old, new in cases.items():
        try:
            got = run_answer(fn, old)
        except Wrong as w:
            raise Wrong(f"on {old!r}: {w}") from None
        if got == new:
            continue
        if old == new:
            if got is None:
                raise Wrong(
                    f"{old!r} should stay as it is (got None): end the function with `return key`, so that every other key comes back unchanged"
                )
            if old.startswith("head.1") and not old.startswith("head.1."):
                raise Wrong(
                    f"{old!r} should stay as it is (got {got!r}): 'head.10' is another module than 'head.1'; match the prefix with its dot, 'head.1.'"
                )
            raise Wrong(
                f"{old!r} should stay as it is (got {got!r}): rename only keys that start with 'backbone.' or 'head.1.', and only at the start"
            )
        prefix = "backbone." if old.startswith("backbone.") else "head.1."
        target = new[: len(new) - len(old) + len(prefix)]
        if got is not None and got == target + old.lstrip(prefix):
            raise Wrong(
                f"{old!r} became {got!r}, not {new!r}: str.lstrip(prefix) strips any of the prefix's characters, not the prefix; use key[len(prefix):] or key.removeprefix(prefix)"
            )
        if old.startswith("head.") and got == old:
            raise Wrong(f"{old!r} kept its name: the head must become SmallCNN's classifier.2")
        if old.startswith("head.1.") and isinstance(got, str) and got.startswith("classifier.2."):
            raise Wrong(
                f"{old!r} became {got!r}: replace the whole prefix 'head.1.', index included, so that only what follows it ({old[len('head.1.') :]!r}) comes after 'classifier.2.'"
            )
        if old.startswith("head."):
            raise Wrong(
                f"{old!r} became {got!r}; in SmallCNN the linear layer is classifier.2 (classifier.0 is Flatten, classifier.1 is Dropout)"
            )
        raise Wrong(f"{old!r} became {got!r}, expected {new!r}")
    return "backbone.* -> features.* and head.1.* -> classifier.2.*, only at the start; nothing else touched."
