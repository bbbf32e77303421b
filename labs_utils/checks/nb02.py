"""Checks for notebooks/02_architecture_mismatch.ipynb."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from . import Wrong, as_int, call_answer, exercise
from .fixtures import cnn_with_moved_statistics

NB = "02_architecture_mismatch"


_PREFIXES = {"features.": "backbone.", "classifier.": "head."}


def _expected_key(key: str) -> str:
    for old, new in _PREFIXES.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return key


# Keys that a correct answer leaves alone, or renames, each built to catch a usual slip:
# the word inside another name, the word without its dot, the prefix further in the key, and
# a rest of the key made of letters that str.lstrip would eat.
_TRICKY_KEYS = [
    "extra_features.weight",  # contains "features." -> stays
    "features_old.weight",  # starts with "features" but not "features." -> stays
    "aux.features.0.weight",  # "features." further in -> stays
    "classifier_bias",  # no dot -> stays
    "epoch",  # unrelated -> stays
    "features.scale",  # renamed: backbone.scale (lstrip("features.") eats "sca")
    "classifier.scale",  # renamed: head.scale
    "features.0.weight",
    "classifier.2.bias",
]


def _tricky_state_dict() -> dict[str, torch.Tensor]:
    return {k: torch.full((2,), float(i)) for i, k in enumerate(_TRICKY_KEYS)}


def _source_state_dict():
    """A SmallCNN state_dict whose shapes are not the notebook's (2 input channels, 3 classes) and
    whose BatchNorm statistics moved, so that copies of another model's tensors show."""
    return cnn_with_moved_statistics(0, in_channels=2, num_classes=3).state_dict()


@exercise("remap_keys", notebook=NB)
def remap_keys(fn) -> str:
    """``fn(state_dict)`` returns a new state_dict whose SmallCNN keys fit RenamedCNN, renaming
    ``features.``/``classifier.`` at the start of a key only and leaving every other key as it is."""
    from ..models import RenamedCNN
    from ..toolkit import diff

    source = _source_state_dict()
    out = _call_untouched(fn, source)
    for k in out:
        if k.startswith("classifier."):
            raise Wrong(
                "the classifier.* keys still have their old names: they must start with head."
            )
        if k.startswith("features."):
            raise Wrong(
                "the features.* keys still have their old names: they must start with backbone."
            )
    report = diff(RenamedCNN(in_channels=2, num_classes=3), out)
    if report.missing:
        raise Wrong(
            f"{len(report.missing)} keys are missing, e.g. {report.missing[0]}: keep every entry, buffers included, and rename only the prefix"
        )
    if report.unexpected or report.shape_mismatches:
        bad = (report.unexpected or list(report.shape_mismatches))[0]
        raise Wrong(f"RenamedCNN does not expect {bad!r}: rename each key from its own prefix")
    for k, v in source.items():
        new = _expected_key(k)
        if not (
            isinstance(out[new], torch.Tensor)
            and out[new].dtype == v.dtype
            and torch.equal(out[new], v)
        ):
            raise Wrong(
                f"{new} does not hold the tensor that was {k}: map each key to its own value (not by position), unchanged"
            )

    tricky = _tricky_state_dict()
    out = _call_untouched(fn, tricky)
    if out and set(out) <= set(RenamedCNN().state_dict()):
        raise Wrong(
            "given other keys, your function still returned RenamedCNN's names, paired with the values by position: rename each key from its own name instead (keys of other models exist too)"
        )
    # one key at a time, so that two keys sent to one name cannot hide each other
    for old in _TRICKY_KEYS:
        expected = _expected_key(old)
        single = _call_untouched(fn, {old: tricky[old]})
        if not single:
            raise Wrong(
                f"you dropped {old!r}: keep every key; rename only those that start with 'features.' or 'classifier.', and leave the others as they are"
            )
        got = next(iter(single))
        if got == expected:
            continue
        if expected == old:
            if old.startswith(("features", "classifier")):
                raise Wrong(
                    f"{old!r} should stay as it is (you made it {got!r}): match the prefix with its dot, 'features.', at the start of the key"
                )
            raise Wrong(
                f"{old!r} should stay as it is (you made it {got!r}): rename only at the start of a key; a key such as 'extra_features.weight' merely contains the word"
            )
        prefix = next(p for p in _PREFIXES if old.startswith(p))
        if got == _PREFIXES[prefix] + old.lstrip(prefix):
            raise Wrong(
                f"{old!r} became {got!r}, not {expected!r}: str.lstrip(prefix) strips any of the prefix's characters, not the prefix; use key[len(prefix):] or key.removeprefix(prefix)"
            )
        raise Wrong(f"{old!r} became {got!r}, expected {expected!r}: replace only the prefix")
    wanted = {_expected_key(k): v for k, v in tricky.items()}
    if set(out) != set(wanted) or any(not torch.equal(out[k], v) for k, v in wanted.items()):
        raise Wrong(
            "each key alone is renamed right, but the whole dict comes out different: keep every entry, each with its own tensor"
        )
    return "every key renamed at its prefix and only there, tensors untouched, the input left as it was (tried on a SmallCNN state_dict and on keys built to catch str.replace, lstrip and a missing dot)."


def _call_untouched(fn, state_dict: dict) -> Mapping:
    """Call the answer and check it returned a new mapping and left its input as it was."""
    keys, values = list(state_dict), list(state_dict.values())
    copies = [v.clone() for v in values]
    out = call_answer(fn, state_dict)
    if (
        out is state_dict
        or list(state_dict) != keys
        or any(a is not b for a, b in zip(state_dict.values(), values))
        or any(not torch.equal(v, c) for v, c in zip(values, copies))
    ):
        raise Wrong("do not modify the state_dict you were given: build and return a new dict")
    if not isinstance(out, Mapping):
        raise Wrong(f"return a dict of new names to tensors, got {type(out).__name__}")
    return out


_INPUT_HINTS = {
    32: "32 is the size the document assumed: a 3x3 convolution without padding turns it into 30x30",
    26: "26 is the output side the document wrote; the input must be larger by kernel_size - 1",
}


@exercise("doc_input_size", notebook=NB)
def doc_input_size(answer) -> str:
    """The square input size for which the document's ``16*26*26`` would be right (3x3 conv, no padding)."""
    from ..models import conv_output_size

    answer = as_int(answer, "the input size")
    if answer in _INPUT_HINTS:
        raise Wrong(_INPUT_HINTS[answer])
    side = conv_output_size(answer, 3)
    if side != 26:
        raise Wrong(
            f"an input of {answer} gives {side}x{side}; the input must be bigger than the output by kernel_size - 1 = 2"
        )
    return "a 28x28 input gives a 26x26 feature map (28 - 3 + 1 = 26)."
