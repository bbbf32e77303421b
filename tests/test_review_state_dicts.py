"""Regression tests for the technical review's finding A10 on labs_utils.toolkit.state_dicts.

``diff`` and ``load_matching`` must agree with ``load_state_dict``: BatchNorm without
``num_batches_tracked`` and without ``_metadata``, lazy modules, 0-dim parameters saved with
shape ``(1,)`` (the review's e14_diff.py), and more generally whatever a module's own loading
rules and hooks decide.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn

from labs_utils.toolkit import diff, load_matching


class Scalar(nn.Module):
    def __init__(self):
        super().__init__()
        self.s = nn.Parameter(torch.tensor(1.0))


class Renames(nn.Module):
    """A module whose own pre-hook accepts an old name for its weight (as real libraries do)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2))
        self.register_load_state_dict_pre_hook(self._rename)

    @staticmethod
    def _rename(module, state_dict, prefix, *args):
        if prefix + "old_weight" in state_dict:
            state_dict[prefix + "weight"] = state_dict.pop(prefix + "old_weight")


class ExtraState(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.calls = 0

    def get_extra_state(self):
        return {"v": 1}

    def set_extra_state(self, state):
        self.calls += 1


def bn_without_num_batches_tracked(keep_metadata: bool):
    sd = nn.BatchNorm1d(4).state_dict()
    out = OrderedDict((k, v) for k, v in sd.items() if k != "num_batches_tracked")
    if keep_metadata:
        out._metadata = sd._metadata  # version 2: num_batches_tracked is expected
    return out


CASES = {
    "batchnorm, no num_batches_tracked, no metadata": (
        lambda: nn.BatchNorm1d(4),
        lambda: bn_without_num_batches_tracked(False),
    ),
    "batchnorm, no num_batches_tracked, version 2": (
        lambda: nn.BatchNorm1d(4),
        lambda: bn_without_num_batches_tracked(True),
    ),
    "lazy linear": (
        lambda: nn.Sequential(nn.LazyLinear(3)),
        lambda: {"0.weight": torch.ones(3, 5), "0.bias": torch.ones(3)},
    ),
    "0-dim parameter saved as (1,)": (Scalar, lambda: {"s": torch.tensor([2.0])}),
    "0-dim parameter saved as (2,)": (Scalar, lambda: {"s": torch.tensor([2.0, 3.0])}),
    "old name renamed by the module's hook": (
        Renames,
        lambda: {"old_weight": torch.ones(2)},
    ),
    "shape mismatch and an unexpected key": (
        lambda: nn.Linear(2, 3),
        lambda: {
            "weight": torch.ones(3, 4),
            "bias": torch.ones(3),
            "extra": torch.ones(1),
        },
    ),
    "a missing key": (lambda: nn.Linear(2, 3), lambda: {"weight": torch.ones(3, 2)}),
    "a parameter given as a number": (
        lambda: nn.Linear(2, 3),
        lambda: {"weight": 1.0, "bias": torch.ones(3)},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_diff_agrees_with_load_state_dict(case):
    make_model, make_sd = CASES[case]
    d = diff(make_model(), make_sd())
    try:
        result = make_model().load_state_dict(make_sd(), strict=True)
        loaded = True
    except RuntimeError:
        loaded = False
    assert d.loads_strictly == loaded, d
    if loaded:
        assert str(result) == "<All keys matched successfully>" and bool(d)
    relaxed = copy.deepcopy(make_model())
    try:
        keys = relaxed.load_state_dict(make_sd(), strict=False)
    except (
        RuntimeError
    ):  # strict=False still raises on shape errors; compare the keys without them
        bad = set(d.shape_mismatches) | {
            k for k, v in make_sd().items() if not isinstance(v, torch.Tensor)
        }
        keys = make_model().load_state_dict(
            {k: v for k, v in make_sd().items() if k not in bad}, strict=False
        )
        keys.missing_keys[:] = [k for k in keys.missing_keys if k not in bad]
    assert d.missing == keys.missing_keys and d.unexpected == keys.unexpected_keys


def test_the_review_cases_are_compatible():
    assert diff(nn.BatchNorm1d(4), bn_without_num_batches_tracked(False)).missing == []
    assert diff(
        nn.Sequential(nn.LazyLinear(3)),
        {"0.weight": torch.ones(3, 5), "0.bias": torch.ones(3)},
    )
    assert diff(Scalar(), {"s": torch.tensor([2.0])})
    mismatch = diff(Scalar(), {"s": torch.tensor([2.0, 3.0])})
    assert mismatch.shape_mismatches == {"s": ((), (2,))}
    assert "shape mismatch" in str(mismatch)
    number = diff(nn.Linear(2, 3), {"weight": 1.0, "bias": torch.ones(3)})
    assert not number.loads_strictly and "expected torch.Tensor" in number.errors[0]


def test_diff_leaves_the_model_untouched():
    lazy = nn.Sequential(nn.LazyLinear(3))
    diff(lazy, {"0.weight": torch.ones(3, 5), "0.bias": torch.ones(3)})
    assert lazy[0].has_uninitialized_params()
    bn = nn.BatchNorm1d(4)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    diff(bn, {k: v + 1 for k, v in before.items()})
    assert all(torch.equal(bn.state_dict()[k], v) for k, v in before.items())
    extra = ExtraState()
    assert diff(extra, {"w": torch.ones(1), "_extra_state": {"v": 2}})
    assert extra.calls == 0 and torch.equal(extra.w, torch.zeros(1))


def test_a_model_that_cannot_be_copied_is_compared_key_by_key():
    model = nn.Linear(2, 3)
    model.lock = threading.Lock()  # deepcopy fails on it
    d = diff(model, {"weight": torch.ones(3, 2), "bias": torch.ones(2)})
    assert d.shape_mismatches == {"bias": ((3,), (2,))} and "key by key" in str(d)
    assert load_matching(model, {"weight": torch.ones(3, 2)}).loaded == ["weight"]


def test_load_matching_loads_into_a_lazy_model():
    model = nn.Sequential(nn.LazyLinear(3))
    report = load_matching(
        model, {"0.weight": torch.ones(3, 5), "0.bias": torch.full((3,), 2.0)}
    )
    assert report.loaded == ["0.weight", "0.bias"] and not report.shape_mismatches
    assert torch.equal(model[0].weight, torch.ones(3, 5)) and torch.equal(
        model[0].bias, torch.full((3,), 2.0)
    )
    assert report.model_shapes["0.weight"] == (3, 5) and report.params_loaded == 18
    assert "loaded 2 of 2 model entries" in str(report)


def test_load_matching_on_a_lazy_model_with_part_of_the_weights():
    model = nn.Sequential(nn.LazyLinear(3))
    report = load_matching(model, {"0.bias": torch.ones(3)})
    assert report.loaded == ["0.bias"] and report.missing == ["0.weight"]
    # the weight has no elements yet
    assert report.params_loaded == 3 and report.params_fresh == 0
    assert "-" in str(report)


def test_load_matching_takes_a_0_dim_parameter_saved_as_shape_1():
    model = Scalar()
    report = load_matching(model, {"s": torch.tensor([2.0])})
    assert (
        report.loaded == ["s"] and not report.shape_mismatches and model.s.item() == 2.0
    )
    skipped = load_matching(Scalar(), {"s": torch.tensor([2.0, 3.0])})
    assert skipped.shape_mismatches == {"s": ((), (2,))} and skipped.loaded == []


def test_load_matching_uses_the_modules_own_hooks_and_versions():
    model = Renames()
    report = load_matching(model, {"old_weight": torch.ones(2)})
    assert report.unexpected == [] and torch.equal(model.weight, torch.ones(2))
    bn = nn.BatchNorm1d(4)
    # version kept: nothing filled in
    report = load_matching(bn, bn_without_num_batches_tracked(True))
    assert report.missing == ["num_batches_tracked"] and len(report.loaded) == 4
