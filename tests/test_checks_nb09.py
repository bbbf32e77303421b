"""Checks of notebooks/09_safetensors.ipynb: right answers pass, wrong ones get their hint."""
from __future__ import annotations

from safetensors import safe_open
from safetensors.torch import save_file

from labs_utils.checks import REGISTRY, check

check.save_with_epoch  # noqa: B018  (loads the module)
NAMES = [n for n, ex in REGISTRY.items() if ex.notebook == "09_safetensors"]


def save_with_epoch(state_dict, path, epoch):
    save_file({k: v.clone().contiguous() for k, v in state_dict.items()}, path, metadata={"epoch": str(epoch)})
    return path


def read_one(path, key):
    with safe_open(path, framework="pt") as f:
        return f.get_tensor(key)


def test_right_answers():
    assert check.save_with_epoch(save_with_epoch)
    assert check.read_one_tensor(read_one)


def test_names():
    assert sorted(NAMES) == ["read_one_tensor", "save_with_epoch"]
