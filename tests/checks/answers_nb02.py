"""Wrong and right answers for the checks in labs_utils/checks/nb02.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import re

import numpy as np
import torch

from labs_utils.checks.nb02 import _expected_key


def _only_features(sd):
    return {k.replace("features.", "backbone.", 1): v for k, v in sd.items()}


def _params_only(sd):
    return {
        k.replace("features.", "backbone.").replace("classifier.", "head."): v
        for k, v in sd.items()
        if "running" not in k and "num_batches" not in k
    }


def _in_place(sd):
    for k in list(sd):
        sd[_expected_key(k)] = sd.pop(k)
    return sd


def _everywhere(sd):
    return {
        k.replace("features", "backbone").replace("classifier", "head"): v for k, v in sd.items()
    }


def _regex_without_dot(sd):
    return {
        re.sub(r"^classifier", "head", re.sub(r"^features", "backbone", k)): v
        for k, v in sd.items()
    }


def _lstrip(sd):
    out = {}
    for k, v in sd.items():
        if k.startswith("features."):
            k = "backbone." + k.lstrip("features.")
        elif k.startswith("classifier."):
            k = "head." + k.lstrip("classifier.")
        out[k] = v
    return out


def _drops_the_rest(sd):
    return {
        _expected_key(k): v for k, v in sd.items() if k.startswith(("features.", "classifier."))
    }


def _by_position(sd):
    from labs_utils.models import RenamedCNN

    return dict(zip(RenamedCNN().state_dict(), sd.values()))


def _classifier_else_head(sd):
    return {
        ("backbone." + k[len("features.") :])
        if k.startswith("features.")
        else "head." + k.split(".", 1)[-1]: v
        for k, v in sd.items()
    }


def _right_split(sd):
    names = {"features": "backbone", "classifier": "head"}
    out = {}
    for k, v in sd.items():
        first, dot, rest = k.partition(".")
        out[names[first] + dot + rest if dot and first in names else k] = v.clone()
    return out


def _right_regex(sd):
    from collections import OrderedDict

    return OrderedDict(
        (re.sub(r"^classifier\.", "head.", re.sub(r"^features\.", "backbone.", k)), v)
        for k, v in sd.items()
    )


def _keys_only(sd):
    return [_expected_key(k) for k in sd]


WRONG = {
    "remap_keys": [
        (_only_features, "classifier"),
        (_params_only, "buffers included"),
        (_in_place, "modify"),
        (_everywhere, "start"),
        (_regex_without_dot, "dot"),
        (_lstrip, "lstrip"),
        (_drops_the_rest, "dropped"),
        (_by_position, "by position"),
        (_classifier_else_head, "stay as it is"),
        (_keys_only, "return a dict of new names"),
    ],
    "doc_input_size": [
        (32, "30x30"),
        (26, "output"),
        (24, "bigger"),
        ("28", "whole number"),
        (28.0, "whole number"),
        (30, "28x28"),
        (True, "bool"),
    ],
}
RIGHT = {
    "remap_keys": [_right_split, _right_regex],
    "doc_input_size": [np.int64(28), 26 + 3 - 1, torch.tensor(28)],
}
