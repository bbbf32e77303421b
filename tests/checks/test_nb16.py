"""Checks of notebooks/16_ecosystem_formats.ipynb: the notebook's answers and other right answers
pass; the checkpoints and adapters the checks build are what they claim to be (real Lightning and
PEFT files with the traps the exercises describe); each usual mistake gets its own hint.
(tests/checks/test_framework.py runs every declared wrong answer, right answer and placeholder.)"""

from __future__ import annotations

import io
import json
import math
import pickle
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from labs_utils.checks import REGISTRY, check, nb16

check.weights_from_ckpt  # noqa: B018  (loads the module)
NAMES = [n for n, ex in REGISTRY.items() if ex.notebook == "16_ecosystem_formats"]


def weights_from_ckpt(path, attribute):  # the notebook's solution
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    prefix = attribute + "."
    return {
        key[len(prefix) :]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(prefix)
    }


def merge_lora(base_state_dict, adapter_dir):  # the notebook's solution
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    r, alpha = config["r"], config["lora_alpha"]
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    adapter = load_file(adapter_dir / "adapter_model.safetensors")
    merged = dict(base_state_dict)
    for key, lora_a in adapter.items():
        if key.endswith(".lora_A.weight"):
            module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            lora_b = adapter[key.replace(".lora_A.", ".lora_B.")]
            merged[module + ".weight"] = (
                base_state_dict[module + ".weight"] + (lora_b @ lora_a) * scale
            )
    return merged


def test_names():
    assert sorted(NAMES) == ["merge_lora", "weights_from_ckpt"]


def test_notebook_answers_pass():
    assert check.weights_from_ckpt(weights_from_ckpt)
    assert check.merge_lora(merge_lora)


def test_the_checkpoints_are_real_lightning_files_with_the_traps():
    cases = {name: (data, attributes) for name, data, attributes in nb16._lightning_cases()}
    assert set(cases) == {"ema.ckpt", "nested.ckpt"}
    for data, attributes in cases.values():
        ckpt = torch.load(io.BytesIO(data), weights_only=True)
        assert {
            "state_dict",
            "optimizer_states",
            "lr_schedulers",
            "loops",
            "callbacks",
            "hyper_parameters",
            "pytorch-lightning_version",
        } <= set(ckpt)
        assert ckpt["global_step"] == 2
        assert all(any(k.startswith(a + ".") for k in ckpt["state_dict"]) for a in attributes)
    ema = torch.load(io.BytesIO(cases["ema.ckpt"][0]), weights_only=True)["state_dict"]
    assert any(k.startswith("net_ema.") for k in ema) and "loss_fn.weight" in ema
    nested = torch.load(io.BytesIO(cases["nested.ckpt"][0]), weights_only=True)["state_dict"]
    assert "model.model.weight" in nested and "model.norm.num_batches_tracked" in nested
    assert any(k.startswith("teacher.") for k in nested)


def test_the_tampered_checkpoint_is_refused_by_safe_loading_and_runs_code_otherwise(
    tmp_path,
):
    marker, path = tmp_path / "marker.txt", tmp_path / "stranger.ckpt"
    nb16._tampered(nb16._lightning_cases()[0][1], marker, path)
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        torch.load(path, weights_only=True)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # what a careless answer does
    assert marker.exists()


def test_the_adapters_are_peft_files_with_the_traps(tmp_path):
    """The check writes its adapters itself (PEFT takes seconds to import); PEFT loads each one,
    and its merge_and_unload gives the check's reference weights."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        from peft import PeftModel

    for index, (_, model_cls, *_) in enumerate(nb16._LORA_CASES):
        folder = tmp_path / f"adapter_{index}"
        name, base, merged, scale = nb16._adapter(folder, index)
        config = json.loads((folder / "adapter_config.json").read_text())
        keys = set(load_file(folder / "adapter_model.safetensors"))
        assert all(k.startswith("base_model.model.") and ".lora_" in k for k in keys)
        targeted = {k for k in base if not torch.equal(base[k], merged[k])}
        assert targeted and all(k.endswith(".weight") for k in targeted)
        assert scale != 1.0 and scale != config["r"] / config["lora_alpha"]
        if index == 1:
            assert "base_model.model.blocks.0.proj.lora_A.weight" in keys
            assert not any("out_proj" in k for k in keys)
            assert config["r"] > config["lora_alpha"]
        if index == 2:
            assert config["use_rslora"] and scale != config["lora_alpha"] / config["r"]
        model = model_cls()
        model.load_state_dict(base)
        peft_merged = PeftModel.from_pretrained(model, folder).merge_and_unload().state_dict()
        assert set(peft_merged) == set(merged)
        assert all(torch.allclose(peft_merged[k], merged[k], rtol=0, atol=1e-6) for k in merged)
        assert any(not torch.equal(peft_merged[k], base[k]) for k in targeted)


def test_solution_is_close_to_peft_but_tolerance_is_what_passes_it(tmp_path):
    """The check must accept an answer that rounds differently from PEFT's merge."""
    name, base, merged, scale = nb16._adapter(tmp_path / "adapter_0", 0)
    ours = _right_other_order(base, tmp_path / "adapter_0")
    diffs = [(ours[k] - merged[k]).abs().max().item() for k in base]
    assert max(diffs) < 1e-5
    assert check.merge_lora(_right_other_order)


def _right_other_order(base_state_dict, adapter_dir):
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    scale = config["lora_alpha"] / (math.sqrt(config["r"]) if config["use_rslora"] else config["r"])
    adapter = load_file(adapter_dir / "adapter_model.safetensors")
    out = {k: v.clone() for k, v in base_state_dict.items()}
    for key in adapter:
        if ".lora_A." in key:
            module = key[len("base_model.model.") : -len(".lora_A.weight")]
            a, b = adapter[key], adapter[key.replace("lora_A", "lora_B")]
            # scale A first
            out[module + ".weight"] = out[module + ".weight"] + b @ (a * scale)
    return out


def _hard_coded_net(path, attribute):
    sd = torch.load(path, weights_only=True)["state_dict"]
    return {k[4:]: v for k, v in sd.items() if k.startswith("net.")}


def _returns_tensors_cast(path, attribute):
    sd = weights_from_ckpt(path, attribute)
    return {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}


@pytest.mark.parametrize(
    "answer,hint",
    [
        (
            _hard_coded_net,
            "attribute 'net_ema' you returned tensor(12, 6) float32 at ['0.weight'], with other values",
        ),
        (
            _returns_tensors_cast,
            "tensor(12, 6) float64 at ['0.weight']; expected tensor(12, 6) float32",
        ),
        (lambda path, attribute: [1, 2], "you returned [1, 2]; expected {'0.weight'"),
    ],
)
def test_more_wrong_weights_answers(answer, hint):
    result = check.weights_from_ckpt(answer)
    assert result.status == "wrong" and hint in result.message, repr(result)


def _merges_onto_float64(base_state_dict, adapter_dir):
    out = merge_lora(base_state_dict, adapter_dir)
    return {k: v.double() for k, v in out.items()}


def _changes_other_entries(base_state_dict, adapter_dir):
    out = merge_lora(base_state_dict, adapter_dir)
    return {k: (v * 1.01 if k.endswith(".bias") else v) for k, v in out.items()}


def _forgets_return(base_state_dict, adapter_dir):
    merge_lora(base_state_dict, adapter_dir)


@pytest.mark.parametrize(
    "answer,hint",
    [
        (_merges_onto_float64, "torch.float32 tensor"),
        (_changes_other_entries, "has nothing for it"),
        (_forgets_return, "return"),
        (42, "expected a function"),
    ],
)
def test_more_wrong_merge_answers(answer, hint):
    result = check.merge_lora(answer)
    assert result.status == "wrong" and hint in result.message, repr(result)


def test_placeholders_stop_before_building_anything():
    def placeholder(path, attribute):
        pass  # Your turn: write your answer here

    start = time.perf_counter()
    assert check.weights_from_ckpt(placeholder).status == "not attempted"
    assert check.merge_lora(placeholder).status == "not attempted"
    assert time.perf_counter() - start < 1.0


def test_the_check_leaves_lightnings_logger_level_alone():
    import logging

    logger = logging.getLogger("lightning.pytorch")
    before = logger.level
    logger.setLevel(logging.WARNING)
    try:
        check.weights_from_ckpt(weights_from_ckpt)
        assert logger.level == logging.WARNING
    finally:
        logger.setLevel(before)


def test_scale_hints():
    assert "upside down" in nb16._scale_hint(0.25, r=4, alpha=16, rslora=False, scale=4.0)
    assert "use_rslora" in nb16._scale_hint(2.0, r=4, alpha=8, rslora=True, scale=4.0)
    assert "only" in nb16._scale_hint(4.0, r=4, alpha=8, rslora=False, scale=2.0)
    assert "alone" in nb16._scale_hint(16.0, r=4, alpha=16, rslora=False, scale=4.0)
    assert "did not change" in nb16._scale_hint(0.0, r=4, alpha=16, rslora=False, scale=4.0)
    assert nb16._scale_hint(3.3, r=4, alpha=16, rslora=False, scale=4.0) is None
    assert Path(nb16.__file__).name == "nb16.py"
