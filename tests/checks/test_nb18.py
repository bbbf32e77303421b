"""Checks of notebooks/18_big_models_and_serving.ipynb: the notebook's answers and other right
answers pass; each usual mistake gets its own hint; a placeholder is "not attempted". The answers
are test data in tests/checks/answers_nb18.py (tests/checks/test_framework.py runs them too)."""

from __future__ import annotations

import tempfile

import pytest
import torch
from safetensors.torch import load_file

from labs_utils.checks import REGISTRY, check, nb18
from tests.checks.answers_nb18 import (
    RIGHT,
    WRONG,
    _index,
    glob_all,
    load_sharded,
    no_final_check,
)

check.load_sharded  # noqa: B018  (loads the modules)
NAMES = [n for n, ex in REGISTRY.items() if ex.notebook == nb18.NB]


def test_names():
    assert sorted(NAMES) == ["average_checkpoints", "load_sharded"]


@pytest.mark.parametrize("name", ["load_sharded", "average_checkpoints"])
def test_several_right_answers_are_listed(name):
    # the notebook's and others unlike it; test_framework.py runs each and asserts that it passes
    assert len(RIGHT[name]) >= 3


MISTAKES = [(name, answer, hint) for name, pairs in WRONG.items() for answer, hint in pairs]


@pytest.mark.parametrize(
    ("name", "answer", "hint"), MISTAKES, ids=[m[1].__name__ for m in MISTAKES]
)
def test_each_mistake_gets_its_own_hint(name, answer, hint):
    result = REGISTRY[name].fn(answer)
    assert not result and result.status == "wrong"
    assert hint in str(result), str(result)
    others = [h for n, _, h in MISTAKES if n == name and h != hint]
    assert not any(h in str(result) for h in others), str(result)


def test_placeholders_are_not_attempted():
    def load_sharded(model, folder):
        pass  # Your turn: replace this line

    def average_checkpoints(state_dicts): ...

    assert check.load_sharded(load_sharded).status == "not attempted"
    assert check.average_checkpoints(average_checkpoints).status == "not attempted"


def test_the_stale_folder_really_has_an_old_shard_with_other_values(tmp_path):
    _, folder = nb18._with_stale_shard(tmp_path)
    listed = set(_index(folder)["weight_map"].values())
    on_disk = {p.name for p in folder.glob("*.safetensors")}
    assert listed < on_disk
    stale = load_file(folder / sorted(on_disk - listed)[0])
    fresh = no_final_check(nb18._mlp(1), folder).state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in stale.items())


def test_checks_leave_no_folders_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    check.load_sharded(load_sharded)
    check.load_sharded(glob_all)
    assert list(tmp_path.iterdir()) == []
