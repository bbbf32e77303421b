"""Checks of notebooks/13_export_without_the_class.ipynb: the notebook's answers and other right
answers pass; the check model's class cannot be imported; each usual mistake gets its own hint.
(tests/checks/test_framework.py runs every declared wrong answer and placeholder.)"""

from __future__ import annotations

import importlib
import pickle

import pytest
import torch
import torch.nn as nn
from torch.export import Dim

from labs_utils.checks import REGISTRY, check, nb13
from tests.checks import answers_nb13

pytestmark = pytest.mark.heavy  # started early by make test (tests/conftest.py)

check.export_for_serving  # noqa: B018  (loads the module)
NAMES = [n for n, ex in REGISTRY.items() if ex.notebook == "13_export_without_the_class"]


def export_for_serving(model, example, path):  # the notebook's solution
    model.eval()
    batch = Dim("batch")
    program = torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, path)


class Branches(nn.Module):  # the notebook's solution to exercise 2
    def __init__(self, gated):
        super().__init__()
        self.gated = gated

    def forward(self, x):
        return torch.cond(x.mean() > 0, self.gated.hot, self.gated.cold, (x,))


def export_gated(model, example):
    return torch.export.export(Branches(model), (example,))


def test_names():
    assert sorted(NAMES) == ["export_for_serving", "export_gated"]


def test_notebook_answers_pass():
    assert check.export_for_serving(export_for_serving)
    assert check.export_gated(export_gated)


def test_the_check_models_class_cannot_be_imported_or_pickled():
    model = nb13._serving_net()
    with pytest.raises(ImportError):
        importlib.import_module(type(model).__module__)
    with pytest.raises((pickle.PicklingError, AttributeError, ImportError)):
        pickle.dumps(model)


def test_the_check_model_is_in_training_mode_with_trained_statistics():
    model = nb13._serving_net()
    assert model.training
    assert not torch.equal(model.body[1].running_var, torch.ones(6))


def test_gated_batches_take_both_branches_and_rows_disagree_with_their_batch():
    batches = nb13._gated_batches(5, 6)
    signs = {name: bool(x.mean() > 0) for name, x in batches.items()}
    assert sorted(signs.values()) == [False, False, True, True]
    for name, x in batches.items():
        if "rows" in name:
            rows = x.mean(dim=1) > 0
            assert bool(rows.any()) and not bool(rows.all()), name


def test_static_export_is_told_which_batch_it_was_made_for():
    result = check.export_for_serving(answers_nb13._static)
    assert result.status == "wrong" and "batch of 2" in result.message


def test_export_without_saving_returns_the_program_but_is_wrong():
    result = check.export_for_serving(answers_nb13._not_saved)
    assert result.status == "wrong" and "nothing was written" in result.message


def test_an_answer_that_exports_a_copy_leaves_the_callers_model_in_training_mode():
    seen = {}

    def spy(model, example, path):
        answers_nb13._copy_then_export(model, example, path)
        seen["training"] = model.training

    assert check.export_for_serving(spy)
    assert seen["training"] is True


def test_gated_answer_that_decides_on_the_example_at_export_time_is_wrong():
    def decided_at_export(model, example):
        branch = model.hot if example.mean() > 0 else model.cold

        class Fixed(nn.Module):
            def __init__(self):
                super().__init__()
                self.branch = branch

            def forward(self, x):
                return self.branch(x)

        return torch.export.export(Fixed(), (example,))

    result = check.export_gated(decided_at_export)
    assert result.status == "wrong" and "one branch" in result.message


def test_gated_blend_by_arithmetic_is_accepted():
    class Blend(nn.Module):
        def __init__(self, gated):
            super().__init__()
            self.gated = gated

        def forward(self, x):
            hot = (x.mean() > 0).to(x.dtype)
            return hot * self.gated.hot(x) + (1 - hot) * self.gated.cold(x)

    assert check.export_gated(lambda model, example: torch.export.export(Blend(model), (example,)))


def test_a_batch_minimum_is_not_a_mistake_when_one_still_runs():
    """Dim(min=2) adds no runtime guard for a batch of 1 (0/1 are special cases), so it passes."""

    def min_two(model, example, path):
        batch = Dim("batch", min=2)
        program = torch.export.export(model.eval(), (example,), dynamic_shapes={"x": {0: batch}})
        torch.export.save(program, path)

    assert check.export_for_serving(min_two)


def test_gated_hints_name_the_branch_the_program_took():
    result = check.export_gated(answers_nb13._baked_branch)
    assert "`hot` for every batch" in result.message
    result = check.export_gated(answers_nb13._swapped)
    assert "swapped" in result.message and "true_fn" in result.message
