"""labs_utils.toolkit.state_dicts: summarize and diff, which agree with load_state_dict itself
(BatchNorm without ``num_batches_tracked``, lazy modules, 0-dim parameters saved as ``(1,)``,
modules' own loading hooks); load_matching has its own file."""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn

from labs_utils.models import SimpleModel, SimpleModelDifferent, SmallCNN
from labs_utils.toolkit import diff, load_matching, summarize


def test_summarize_model_marks_parameters_and_buffers():
    s = summarize(SmallCNN())
    kinds = {r["key"]: r["kind"] for r in s.rows}
    assert kinds["features.0.weight"] == "parameter"
    assert kinds["features.1.running_mean"] == "buffer"
    assert kinds["features.1.num_batches_tracked"] == "buffer"
    assert s.non_persistent_buffers == ["input_scale"]
    assert "input_scale" not in kinds
    assert "non-persistent" in str(s) and "input_scale" in s._repr_html_()


def test_summarize_counts_bytes_and_elements():
    s = summarize(SimpleModel().state_dict())
    assert [r["numel"] for r in s.rows] == [10 * 5, 5, 5 * 2, 2]
    assert [r["bytes"] for r in s.rows] == [4 * 10 * 5, 4 * 5, 4 * 5 * 2, 4 * 2]
    assert "4 entries, 67 elements, 268 B" in str(s)
    row = s.rows[0]
    assert row["key"] == "fc1.weight" and row["shape"] == "(5, 10)" and row["dtype"] == "float32"
    assert row["device"] == "cpu" and "kind" not in row
    text = str(s)
    assert "fc1.weight" in text and "(5, 10)" in text and "268 B" in text
    assert "<table>" in s._repr_html_()


def test_summarize_dtypes_and_non_tensor_entries():
    s = summarize(
        {
            "a": torch.zeros(3, dtype=torch.float16),
            "b": torch.zeros((), dtype=torch.int64),
        }
    )
    assert [r["bytes"] for r in s.rows] == [6, 8]
    assert [r["dtype"] for r in s.rows] == ["float16", "int64"]


def test_summarize_empty_state_dict():
    s = summarize({})
    assert s.rows == [] and "0 entries" in str(s)


def test_summarize_from_file(tmp_path):
    p = tmp_path / "w.pth"
    torch.save(SimpleModel().state_dict(), p)
    keys = [r["key"] for r in summarize(p).rows]
    assert keys == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert "67 elements" in str(summarize(str(p)))


def test_summarize_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        summarize(tmp_path / "nope.pth")


def test_summarize_training_checkpoint_says_which_entry(tmp_path):
    ckpt = {"model": SimpleModel().state_dict(), "epoch": 3}
    with pytest.raises(ValueError, match=r"checkpoint\['model'\]"):
        summarize(ckpt)
    p = tmp_path / "last.pth"
    torch.save(ckpt, p)
    with pytest.raises(ValueError, match=r"last.pth.*checkpoint\['model'\]"):
        summarize(p)


@pytest.mark.parametrize("bad", [42, [1, 2], torch.zeros(3)])
def test_summarize_wrong_types(bad):
    with pytest.raises(TypeError, match="expected an nn.Module"):
        summarize(bad)


def test_summarize_rejects_non_string_keys():
    with pytest.raises(TypeError, match="string keys"):
        summarize({0: torch.zeros(1)})


def test_diff_identical_is_truthy():
    m = SimpleModel()
    d = diff(m, SimpleModel().state_dict())
    assert d and d.loads_strictly and not d.missing and "compatible" in str(d)


def test_diff_reports_what_load_state_dict_reports():
    saved = SimpleModel().state_dict()
    saved["extra.weight"] = torch.zeros(1)
    del saved["fc2.bias"]
    model = SimpleModelDifferent()
    d = diff(model, saved)
    assert not d
    assert d.missing == ["fc2.bias"] and d.unexpected == ["extra.weight"]
    assert d.shape_mismatches == {
        "fc1.weight": ((6, 10), (5, 10)),
        "fc1.bias": ((6,), (5,)),
        "fc2.weight": ((2, 6), (2, 5)),
    }
    with pytest.raises(RuntimeError) as err:
        model.load_state_dict(saved)
    for key in ["fc2.bias", "extra.weight", "fc1.weight", "fc1.bias", "fc2.weight"]:
        assert key in str(err.value)
    text = str(d)
    assert "(6, 10)" in text and "(5, 10)" in text and "not compatible" in text


def test_diff_dtype_difference_loads_but_is_not_fully_compatible():
    half = {k: v.half() for k, v in SimpleModel().state_dict().items()}
    d = diff(SimpleModel(), half)
    assert d.loads_strictly and not d
    assert d.dtype_differences["fc1.weight"] == ("float32", "float16")
    SimpleModel().load_state_dict(half)  # really loads (cast)


def test_diff_empty_state_dict_all_missing():
    d = diff(SimpleModel(), {})
    assert d.missing == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"] and not d


def test_diff_non_persistent_buffers_are_not_expected():
    cnn = SmallCNN()
    assert diff(cnn, SmallCNN().state_dict())
    assert "input_scale" not in diff(cnn, {}).missing


def test_diff_arguments_in_wrong_order():
    with pytest.raises(TypeError, match="model first"):
        diff(SimpleModel().state_dict(), SimpleModel())


def test_diff_with_tied_weights():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 3)
            self.out = nn.Linear(3, 5, bias=False)
            self.out.weight = self.emb.weight

    sd = Tied().state_dict()
    assert set(sd) == {"emb.weight", "out.weight"}
    assert diff(Tied(), sd)


# ---------------------------------------------------------------- diff and load_matching agree with load_state_dict
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
    except RuntimeError:  # strict=False still raises on shape errors; compare the keys without them
        bad = set(d.shape_mismatches) | {
            k for k, v in make_sd().items() if not isinstance(v, torch.Tensor)
        }
        keys = make_model().load_state_dict(
            {k: v for k, v in make_sd().items() if k not in bad}, strict=False
        )
        keys.missing_keys[:] = [k for k in keys.missing_keys if k not in bad]
    assert d.missing == keys.missing_keys and d.unexpected == keys.unexpected_keys


def test_batchnorm_lazy_and_0_dim_cases_are_compatible():
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
    report = load_matching(model, {"weight": torch.ones(3, 2), "bias": torch.ones(2), "x": 1})
    assert report.loaded == ["weight"] and report.unexpected == ["x"]
    assert report.shape_mismatches == {"bias": ((3,), (2,))}
    assert torch.equal(model.weight, torch.ones(3, 2)) and not torch.equal(
        model.bias, torch.ones(3)
    )
    d = diff(model, {"weight": torch.ones(3, 2).double(), "bias": "not a tensor"})
    assert d.dtype_differences == {"weight": ("float32", "float64")}
    assert d.errors and "bias" in d.errors[0] and not d.loads_strictly


def test_load_matching_loads_into_a_lazy_model():
    model = nn.Sequential(nn.LazyLinear(3))
    report = load_matching(model, {"0.weight": torch.ones(3, 5), "0.bias": torch.full((3,), 2.0)})
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
    assert report.loaded == ["s"] and not report.shape_mismatches and model.s.item() == 2.0
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
