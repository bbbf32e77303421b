"""Tests for labs_utils.toolkit.load_matching and its LoadReport."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from labs_utils.models import ComplexModel, ModifiedComplexModel, SmallCNN
from labs_utils.toolkit import diff, load_matching
from labs_utils.toolkit.state_dicts import LoadReport


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


class Tied(nn.Module):
    """An embedding and an output layer that share one weight (as in many language models)."""

    def __init__(self, vocab: int = 7, dim: int = 3):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.out = nn.Linear(dim, vocab)
        self.out.weight = self.emb.weight


class Backboned(nn.Module):
    """SmallCNN's layers under other names: ``backbone`` and ``head``."""

    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.backbone = SmallCNN().features
        self.head = nn.Linear(16 * 4 * 4, num_classes)


def test_loads_matching_entries_and_leaves_the_rest():
    torch.manual_seed(0)
    src = ComplexModel()
    fc_only = {k: v for k, v in src.state_dict().items() if k.startswith(("fc1.", "fc2."))}
    model = ModifiedComplexModel()
    before = _snapshot(model)
    report = load_matching(model, fc_only)
    assert isinstance(report, LoadReport)
    assert report.loaded == ["fc2.bias"]
    assert report.shape_mismatches == {
        "fc1.weight": ((12, 14400), (10, 14400)),
        "fc1.bias": ((12,), (10,)),
        "fc2.weight": ((2, 12), (2, 10)),
    }
    assert report.missing == ["conv1.weight", "conv1.bias"]
    assert report.unexpected == []
    assert torch.equal(model.fc2.bias, src.fc2.bias)
    for k in ("conv1.weight", "conv1.bias", "fc1.weight", "fc1.bias", "fc2.weight"):
        assert torch.equal(model.state_dict()[k], before[k]), k
    assert report.params_loaded == 2
    assert report.params_fresh == sum(p.numel() for p in model.parameters()) - 2


def test_strict_false_would_have_raised_on_the_same_input():
    src = ComplexModel()
    fc_only = {k: v for k, v in src.state_dict().items() if "fc" in k}
    with pytest.raises(RuntimeError, match="size mismatch for fc1.weight"):
        ModifiedComplexModel().load_state_dict(fc_only, strict=False)


def test_new_head_with_buffers_and_unexpected_keys():
    torch.manual_seed(0)
    src = SmallCNN(num_classes=4)
    src.features[1].running_mean.fill_(0.5)  # buffers must travel too
    src.features[1].num_batches_tracked.fill_(9)
    sd = dict(src.state_dict(), extra_head_weight=torch.ones(3))
    model = SmallCNN(num_classes=2)
    report = load_matching(model, sd)
    assert set(report.loaded) == {k for k in sd if k.startswith("features.")}
    assert list(report.shape_mismatches) == ["classifier.2.weight", "classifier.2.bias"]
    assert report.unexpected == ["extra_head_weight"]
    assert report.missing == []
    assert torch.equal(model.features[1].running_mean, torch.full((8,), 0.5))
    assert model.features[1].num_batches_tracked.item() == 9
    assert report.params_loaded == sum(p.numel() for p in model.features.parameters())
    assert report.params_fresh == sum(p.numel() for p in model.classifier.parameters())


def test_tied_weights_load_once_and_are_reported():
    model = Tied()
    weight = torch.arange(21, dtype=torch.float32).reshape(7, 3)
    report = load_matching(model, {"emb.weight": weight})
    assert model.out.weight is model.emb.weight
    assert torch.equal(model.out.weight, weight)
    assert report.loaded == ["emb.weight"]
    assert report.tied == {"out.weight": "emb.weight"}
    assert report.missing == ["out.bias"]
    assert report.params_loaded == 21  # the shared weight counts once
    assert report.params_fresh == 7
    assert "loaded through tied emb.weight" in str(report)


def test_tied_weights_with_equal_values_from_a_full_state_dict():
    src, model = Tied(), Tied()
    report = load_matching(model, src.state_dict())
    assert report.loaded == ["emb.weight", "out.weight", "out.bias"] and report.tied == {}
    assert report.params_loaded == 21 + 7 and report.params_fresh == 0


def test_tied_weights_with_different_values_is_a_clear_error():
    sd = {"emb.weight": torch.zeros(7, 3), "out.weight": torch.ones(7, 3)}
    with pytest.raises(ValueError, match="tied"):
        load_matching(Tied(), sd)


def test_empty_state_dict_loads_nothing_and_says_so():
    model = SmallCNN()
    before = _snapshot(model)
    report = load_matching(model, {})
    assert report.loaded == [] and report.unexpected == []
    assert report.missing == list(before)
    assert report.params_loaded == 0 and report.params_fresh == sum(
        p.numel() for p in model.parameters()
    )
    assert "nothing was loaded" in str(report)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_dtype_difference_is_cast_to_the_model_dtype_and_reported():
    model = nn.Linear(3, 2)
    sd = {
        "weight": torch.ones(2, 3, dtype=torch.float64),
        "bias": torch.zeros(2, dtype=torch.float16),
    }
    report = load_matching(model, sd)
    assert report.loaded == ["weight", "bias"]
    assert report.cast == {
        "weight": ("float64", "float32"),
        "bias": ("float16", "float32"),
    }
    assert model.weight.dtype == torch.float32 and torch.equal(model.weight, torch.ones(2, 3))
    assert "cast float64 -> float32" in str(report)


def test_key_map_function_renames_a_prefix():
    torch.manual_seed(0)
    src = SmallCNN()
    model = Backboned()
    report = load_matching(
        model,
        src.state_dict(),
        key_map=lambda k: "backbone." + k[len("features.") :] if k.startswith("features.") else k,
    )
    assert len(report.loaded) == 14
    assert report.renamed["backbone.0.weight"] == "features.0.weight"
    assert report.missing == ["head.weight", "head.bias"]
    assert report.unexpected == ["classifier.2.weight", "classifier.2.bias"]
    assert torch.equal(model.backbone[0].weight, src.features[0].weight)
    assert "(from features.0.weight)" in str(report)
    backbone_only = {
        k.replace("features.", "backbone.", 1): v
        for k, v in src.state_dict().items()
        if k.startswith("features.")
    }
    assert diff(model, backbone_only).missing == ["head.weight", "head.bias"]


def test_key_map_dict_and_none_drops():
    model = nn.Linear(3, 2)
    sd = {"w": torch.ones(2, 3), "bias": torch.ones(2), "junk": torch.ones(1)}
    report = load_matching(model, sd, key_map={"w": "weight", "junk": None})
    assert report.loaded == ["weight", "bias"]
    assert report.dropped == ["junk"]
    assert report.renamed == {"weight": "w"}
    assert "dropped by key_map" in str(report)


def test_key_map_mapping_two_keys_onto_one_is_a_clear_error():
    sd = {
        "a.weight": torch.ones(2, 3),
        "b.weight": torch.zeros(2, 3),
        "bias": torch.ones(2),
    }
    model = nn.Linear(3, 2)
    before = _snapshot(model)
    with pytest.raises(
        ValueError,
        match=r"two state_dict keys onto 'weight': 'a.weight' and 'b.weight'",
    ):
        load_matching(model, sd, key_map=lambda k: k.split(".")[-1])
    # an unmapped key that already has the target name counts too
    with pytest.raises(ValueError, match="onto 'bias'"):
        load_matching(model, sd, key_map={"a.weight": "bias"})
    # nothing was loaded
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_key_map_bad_input():
    model = nn.Linear(3, 2)
    sd = nn.Linear(3, 2).state_dict()
    with pytest.raises(ValueError, match="'wieght', which is not a key"):
        load_matching(model, sd, key_map={"wieght": "weight"})
    with pytest.raises(TypeError, match="must give the model's key as a str"):
        load_matching(model, sd, key_map=lambda k: 3)
    with pytest.raises(TypeError, match="key_map must be a dict"):
        load_matching(model, sd, key_map=["weight"])


def test_bad_arguments():
    model = nn.Linear(3, 2)
    with pytest.raises(TypeError, match="takes the model first"):
        load_matching(model.state_dict(), model)
    with pytest.raises(TypeError, match="expected an nn.Module"):
        load_matching(model, 42)
    with pytest.raises(ValueError, match=r"checkpoint\['model'\]"):
        load_matching(model, {"model": model.state_dict(), "epoch": 3})
    with pytest.raises(FileNotFoundError):
        load_matching(model, "no_such_file.pth")


def test_accepts_a_model_and_a_file(tmp_path):
    src, model = nn.Linear(3, 2), nn.Linear(3, 2)
    assert load_matching(model, src).loaded == ["weight", "bias"]
    path = tmp_path / "w.pth"
    torch.save(src.state_dict(), path)
    model = nn.Linear(3, 2)
    assert load_matching(model, path).loaded == ["weight", "bias"]
    assert torch.equal(model.weight, src.weight)


def test_non_tensor_extra_state_is_loaded_by_name():
    class WithExtra(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)
            self.note = "fresh"

        def get_extra_state(self):
            return {"note": self.note}

        def set_extra_state(self, state):
            self.note = state["note"]

    src, model = WithExtra(), WithExtra()
    src.note = "trained"
    report = load_matching(model, src.state_dict())
    assert "_extra_state" in report.loaded and model.note == "trained"


def test_report_renders_as_text_and_html():
    report = load_matching(
        ModifiedComplexModel(),
        {k: v for k, v in ComplexModel().state_dict().items() if k.startswith("fc")},
    )
    text = str(report)
    assert text == repr(report)
    assert (
        text.splitlines()[0]
        == "loaded 1 of 6 model entries; 3 skipped (shape), 2 missing, 0 unexpected"
    )
    assert "fc1.weight    skipped: shape differs        (12, 14400)    (10, 14400)" in text
    assert "parameters: 2 loaded, 173,284 left as initialised (0.0% loaded)" in text
    html = report._repr_html_()
    assert (
        html.startswith("<p><b>loaded 1 of 6")
        and "<table>" in html
        and "<code>(12, 14400)</code>" in html
    )


# ---------------------------------------------------------------- what PyTorch really did


def assign_flagged(sd: dict) -> dict:
    """``sd`` in float64, with the flag load_state_dict(assign=True) leaves in a shared _metadata
    (pytorch#188166, notebook 10 §6)."""
    sd64 = type(sd)((k, v.double()) for k, v in sd.items())
    sd64._metadata = sd._metadata
    with torch.device("meta"):
        ComplexModel().load_state_dict(sd64, assign=True)
    assert sd64._metadata[""]["assign_to_params_buffers"] is True
    return sd64


def test_the_assign_flag_of_a_state_dict_does_not_change_load_matching():
    sd64 = assign_flagged(ComplexModel().state_dict())
    model = ComplexModel()
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=0.1)
    report = load_matching(model, sd64)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert list(model.parameters()) == params  # the same Parameter objects: copied, cast
    assert set(report.cast) == set(sd64) - {k for k, v in sd64.items() if v.dtype != torch.float64}
    assert optimizer.param_groups[0]["params"][0] is next(model.parameters())
    assert sd64._metadata[""]["assign_to_params_buffers"] is True  # the caller's dict untouched


def test_the_assign_flag_does_not_hide_dtype_differences_from_diff():
    sd64 = assign_flagged(ComplexModel().state_dict())
    result = diff(ComplexModel(), sd64)
    assert result.dtype_differences and not bool(result)


def test_weight_norm_keys_renamed_by_a_load_hook_are_reported_as_loaded():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.nn.utils.weight_norm is deprecated
        old = nn.Sequential(nn.utils.weight_norm(nn.Conv1d(4, 8, 3)))
    target = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Conv1d(4, 8, 3)))
    report = load_matching(target, old.state_dict())
    x = torch.randn(2, 4, 16)
    with torch.no_grad():
        assert torch.allclose(target(x), old(x))  # PyTorch's hook did load them
    g, v = "0.parametrizations.weight.original0", "0.parametrizations.weight.original1"
    assert report.missing == [] and report.unexpected == []
    assert set(report.loaded) == {"0.bias", g, v}
    assert report.renamed == {g: "0.weight_g", v: "0.weight_v"}
    assert (report.params_loaded, report.params_fresh) == (112, 0)
    assert "loaded (from 0.weight_g)" in str(report)
