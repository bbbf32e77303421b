"""The toolkit's result objects and internal helpers, as their docstring examples showed them.

The public functions keep their ``Example::`` (tests/toolkit/test_toolkit_examples.py runs them); the
result classes and the helpers that only the toolkit uses are checked here instead.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from labs_utils.toolkit import (
    convert_to_safetensors,
    diff,
    inspect_checkpoint,
    load_matching,
    save_checkpoint,
    summarize,
)
from labs_utils.toolkit.checkpoints import atomic_write
from labs_utils.toolkit.inputs import as_state_dict
from labs_utils.toolkit.prefixes import WRAPPER_PREFIXES, detect_prefixes, strip_wrapper_prefixes


def test_state_dict_summary_rows_and_totals():
    summary = summarize(torch.nn.Linear(2, 3))
    assert summary.rows[0] == {
        "key": "weight",
        "shape": "(3, 2)",
        "dtype": "float32",
        "device": "cpu",
        "numel": 6,
        "bytes": 24,
        "kind": "parameter",
    }
    assert [r["key"] for r in summary.rows] == ["weight", "bias"]
    assert "2 entries, 9 elements, 36 B" in str(summary)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    assert summarize(model.state_dict()).rows[-1]["key"] == "1.num_batches_tracked"


def test_state_dict_diff_fields():
    model = torch.nn.Linear(2, 3)
    result = diff(model, {"weight": torch.zeros(3, 2), "extra": torch.zeros(1)})
    assert (result.missing, result.unexpected, result.loads_strictly, bool(result)) == (
        ["bias"],
        ["extra"],
        False,
        False,
    )
    result = diff(model, {k: v.double() for k, v in model.state_dict().items()})
    assert (result.loads_strictly, bool(result)) == (True, False)
    assert result.dtype_differences["weight"] == ("float32", "float64")
    assert diff(model, torch.nn.Linear(2, 4).state_dict()).shape_mismatches == {
        "weight": ((3, 2), (4, 2)),
        "bias": ((3,), (4,)),
    }


def test_load_report_with_a_key_map():
    saved = {"fc.weight": torch.ones(3, 2), "fc.bias": torch.ones(3)}
    report = load_matching(
        torch.nn.Linear(2, 3), saved, key_map=lambda key: key.removeprefix("fc.")
    )
    assert report.loaded == ["weight", "bias"]
    assert report.renamed == {"weight": "fc.weight", "bias": "fc.bias"}
    assert (report.missing, report.params_loaded, report.params_fresh) == ([], 9, 0)


def test_convert_result_of_a_plain_state_dict(tmp_path):
    src = tmp_path / "weights.pth"
    torch.save(torch.nn.Linear(2, 3).state_dict(), src)
    result = convert_to_safetensors(src, tmp_path / "weights.safetensors")
    assert (result.entry, result.tensors, result.stripped) == ("", 2, [])
    assert result.metadata == {"format": "pt", "source": "weights.pth"}
    assert str(result) == repr(result)
    assert str(result).splitlines()[-1] == "round trip: every tensor is torch.equal to the source"


def test_checkpoint_report_of_a_refused_file(tmp_path):
    path = tmp_path / "run.pth"
    args = argparse.Namespace(lr=0.1)  # a Python object: safe loading refuses it
    torch.save({"model": torch.nn.Linear(2, 3).state_dict(), "args": args}, path)
    report = inspect_checkpoint(path)
    assert (report.safe_to_load, report.refused_globals, report.storages, report.tensors) == (
        False,
        ["argparse.Namespace"],
        2,
        None,
    )
    assert json.loads(report.to_json())["refused_globals"] == ["argparse.Namespace"]


def test_as_state_dict_takes_a_model_a_path_or_refuses_a_checkpoint(tmp_path):
    model = torch.nn.Linear(2, 2)
    sd, found = as_state_dict(model)
    assert list(sd) == ["weight", "bias"] and found is model
    path = save_checkpoint(model.state_dict(), tmp_path / "weights.pth")
    sd, found = as_state_dict(path)
    assert list(sd) == ["weight", "bias"] and found is None
    with pytest.raises(ValueError) as e:
        as_state_dict({"model": model.state_dict(), "epoch": 3})
    assert str(e.value) == (
        "expected a state_dict (a mapping of names to tensors), but no value is a tensor "
        "(top-level keys: ['epoch', 'model']); it looks like a training checkpoint: "
        "pass checkpoint['model']"
    )


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "notes.txt"
    with atomic_write(path) as f:
        f.write(b"epoch 3")
    with pytest.raises(OSError, match="disk full"), atomic_write(path) as f:
        f.write(b"epoch 4, half writ")
        raise OSError("disk full")
    assert path.read_bytes() == b"epoch 3"
    assert [p.name for p in Path(tmp_path).iterdir()] == ["notes.txt"]


def test_strip_and_detect_wrapper_prefixes():
    assert WRAPPER_PREFIXES == ("module.", "_orig_mod.")
    assert strip_wrapper_prefixes("module._orig_mod.fc1.weight") == "fc1.weight"
    assert strip_wrapper_prefixes("encoder.module.weight") == "encoder.module.weight"
    assert strip_wrapper_prefixes("module.fc1.weight", prefixes=("_orig_mod.",)) == (
        "module.fc1.weight"
    )
    keys = ["module._orig_mod.fc.weight", "module._orig_mod.fc.bias"]
    assert detect_prefixes(keys) == ["module.", "_orig_mod."]
    assert detect_prefixes(["module.weight", "fc.weight"]) == []  # not every key: a submodule
