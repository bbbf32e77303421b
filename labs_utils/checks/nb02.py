"""Checks for notebooks/02_architecture_mismatch.ipynb: the renaming is run on cases and compared
with a reference; the hint comes from the known mistake that behaves like it."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..models import RenamedCNN, conv_output_size
from . import Case, Wrong, as_int, behaves_like, call_answer, exercise, same
from .fixtures import cnn_with_moved_statistics

NB = "02_architecture_mismatch"


_PREFIXES = {"features.": "backbone.", "classifier.": "head."}


def _expected_key(key: str) -> str:
    for old, new in _PREFIXES.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def _remap(state_dict):
    return {_expected_key(k): v for k, v in state_dict.items()}


# keys that a right answer leaves alone or renames, each built to catch a slip (see _REMAP_CASES)
_TRICKY_KEYS = """extra_features.weight features_old.weight aux.features.0.weight classifier_bias epoch
    features.scale classifier.scale features.0.weight classifier.2.bias""".split()


def _tricky_state_dict() -> dict[str, torch.Tensor]:
    return {k: torch.full((2,), float(i)) for i, k in enumerate(_TRICKY_KEYS)}


def _source_state_dict():
    """A SmallCNN state_dict whose shapes are not the notebook's (2 input channels, 3 classes) and
    whose BatchNorm statistics moved, so that copies of another model's tensors show."""
    return cnn_with_moved_statistics(0, in_channels=2, num_classes=3).state_dict()


def _one(key: str, why: str) -> Case:
    return Case(f"the key {key!r} ({why})", lambda: ({key: _tricky_state_dict()[key]},))


_STAYS = "so it should stay as it is"
_LSTRIP = "str.lstrip(prefix) strips characters, not a prefix, and eats the start of 'scale': use key[len(prefix):] or key.removeprefix(prefix)"
_REMAP_CASES = [
    Case("a SmallCNN state_dict (every entry, buffers included)", lambda: (_source_state_dict(),)),
    _one("extra_features.weight", f"inside the key, not at the start of a key, {_STAYS}"),
    _one("features_old.weight", f"'features' without its dot, {_STAYS}"),
    _one("aux.features.0.weight", f"'features.' not at the start of a key, {_STAYS}"),
    _one("classifier_bias", f"no dot after the word, {_STAYS}"),
    _one("epoch", f"not under features. or classifier., {_STAYS}"),
    _one("features.scale", _LSTRIP),
    _one("classifier.scale", _LSTRIP),
    Case("all these keys in one dict", lambda: (_tricky_state_dict(),)),
]
_drops_the_rest = lambda sd: {
    _expected_key(k): v for k, v in sd.items() if k.startswith(("features.", "classifier."))
}
_by_position = lambda sd: dict(zip(RenamedCNN().state_dict(), sd.values()))
_REMAP_MISTAKES = {
    _drops_the_rest: "you dropped the keys that do not start with 'features.' or 'classifier.': keep every key; rename only those that start with 'features.' or 'classifier.', and leave the others as they are",
    _by_position: "given other keys, your function still returned RenamedCNN's names, paired with the values by position: rename each key from its own name instead (keys of other models exist too)",
}


@exercise("remap_keys", notebook=NB)
def remap_keys(fn) -> str:
    """``fn(state_dict)`` returns a new state_dict whose SmallCNN keys fit RenamedCNN, renaming
    ``features.``/``classifier.`` at the start of a key only and leaving every other key as it is."""
    sd = _source_state_dict()
    before = {k: v.clone() for k, v in sd.items()}
    out = call_answer(fn, sd)
    if out is sd or not same(sd, before):
        raise Wrong("do not modify the state_dict you were given: build and return a new dict")
    if not isinstance(out, Mapping):
        raise Wrong(f"return a dict of new names to tensors, got {type(out).__name__}")
    old = next((p for k in out for p in _PREFIXES if k.startswith(p)), None)
    if old:
        raise Wrong(
            f"the {old}* keys still have their old names: they must start with {_PREFIXES[old]}"
        )
    behaves_like(fn, _remap, _REMAP_CASES, list(_REMAP_MISTAKES.items()))
    return "every key renamed at its prefix and only there, tensors untouched, the input left as it was (tried on a SmallCNN state_dict and on keys built to catch str.replace, lstrip and a missing dot)."


_INPUT_HINTS = {
    32: "32 is the size the document assumed: a 3x3 convolution without padding turns it into 30x30",
    26: "26 is the output side the document wrote; the input must be larger by kernel_size - 1",
}


@exercise("doc_input_size", notebook=NB)
def doc_input_size(answer) -> str:
    """The square input size for which the document's ``16*26*26`` would be right (3x3 conv, no padding)."""
    answer = as_int(answer, "the input size")
    if answer in _INPUT_HINTS:
        raise Wrong(_INPUT_HINTS[answer])
    side = conv_output_size(answer, 3)
    if side != 26:
        raise Wrong(
            f"an input of {answer} gives {side}x{side}; the input must be bigger than the output by kernel_size - 1 = 2"
        )
    return "a 28x28 input gives a 26x26 feature map (28 - 3 + 1 = 26)."
