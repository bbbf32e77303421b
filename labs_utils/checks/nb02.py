"""Checks for notebooks/02_architecture_mismatch.ipynb."""
from __future__ import annotations

import torch

from . import Wrong, call_answer, exercise

NB = "02_architecture_mismatch"


def _only_features(sd):
    return {k.replace("features.", "backbone.", 1): v for k, v in sd.items()}


def _params_only(sd):
    return {k.replace("features.", "backbone.").replace("classifier.", "head."): v
            for k, v in sd.items() if "running" not in k and "num_batches" not in k}


def _in_place(sd):
    for k in list(sd):
        sd[k.replace("features.", "backbone.").replace("classifier.", "head.")] = sd.pop(k)
    return sd


def _everywhere(sd):
    # replaces the word anywhere in the key, and reorders nothing: correct for SmallCNN, but the
    # check also feeds a key that merely contains "features" inside another name
    return {k.replace("features", "backbone").replace("classifier", "head"): v for k, v in sd.items()}


@exercise("remap_keys", notebook=NB, wrong=[
    (_only_features, "classifier"),
    (_params_only, "missing"),
    (_in_place, "modify"),
    (_everywhere, "start"),
])
def remap_keys(fn) -> str:
    """``fn(state_dict)`` returns a new state_dict whose SmallCNN keys fit RenamedCNN."""
    from ..models import RenamedCNN, SmallCNN
    from ..state_dicts import diff

    torch.manual_seed(0)
    source = SmallCNN().state_dict()
    original_keys = list(source)
    out = call_answer(fn, source)
    if list(source) != original_keys:
        raise Wrong("do not modify the state_dict you were given: build and return a new dict")
    if not isinstance(out, dict):
        raise Wrong(f"return a dict of new names to tensors, got {type(out).__name__}")
    report = diff(RenamedCNN(), out)
    if any(k.startswith("classifier.") for k in out):
        raise Wrong("the classifier.* keys still have their old names: they must start with head.")
    if any(k.startswith("features.") for k in out):
        raise Wrong("the features.* keys still have their old names: they must start with backbone.")
    if report.missing:
        raise Wrong(f"{len(report.missing)} keys are missing, e.g. {report.missing[0]}: keep every entry, "
                    "buffers included, and rename only the prefix")
    if report.unexpected or report.shape_mismatches:
        raise Wrong(f"RenamedCNN does not expect {(report.unexpected or list(report.shape_mismatches))[0]}")
    for k, v in source.items():
        new = k.replace("features.", "backbone.", 1) if k.startswith("features.") else "head." + k[len("classifier."):]
        if not torch.equal(out[new], v):
            raise Wrong(f"{new} does not hold the tensor that was {k}")
    tricky = {"extra_features.weight": torch.zeros(1), "features.0.weight": torch.ones(1)}
    out2 = call_answer(fn, tricky)
    if "extra_features.weight" not in out2:
        raise Wrong("rename only keys that start with 'features.' or 'classifier.': a key such as "
                    "'extra_features.weight' merely contains the word and must stay as it is")
    return "every key renamed at the prefix, tensors untouched, the input left as it was."


@exercise("doc_input_size", notebook=NB, wrong=[
    (32, "30x30"),
    (26, "output"),
    (24, "bigger"),
    ("28", "number"),
])
def doc_input_size(answer) -> str:
    """The square input size for which the document's ``16*26*26`` would be right (3x3 conv, no padding)."""
    from ..models import conv_output_size

    import operator

    if isinstance(answer, bool):
        raise Wrong("give a whole number, got a bool")
    try:
        answer = operator.index(answer)  # ints, numpy ints and one-element integer tensors
    except TypeError:
        raise Wrong(f"give a whole number (an int), got {type(answer).__name__}") from None
    if answer == 32:
        raise Wrong("32 is the size the document assumed: a 3x3 convolution without padding turns it into 30x30")
    if answer == 26:
        raise Wrong("26 is the output side the document wrote; the input must be larger by kernel_size - 1")
    if conv_output_size(answer, 3) != 26:
        raise Wrong(f"an input of {answer} gives {conv_output_size(answer, 3)}x{conv_output_size(answer, 3)}; "
                    "the input must be bigger than the output by kernel_size - 1 = 2")
    return "a 28x28 input gives a 26x26 feature map (28 - 3 + 1 = 26)."
