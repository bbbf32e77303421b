"""Checks of notebooks/08_safe_loading.ipynb: the notebook's answers pass; an allowance the learner
made for the whole process neither helps an answer nor is taken away; the checks load with
weights_only=True said explicitly."""

from __future__ import annotations

import argparse
import dataclasses
import enum

import numpy as np
import pytest
import torch

from labs_utils.checks import check, nb08

ALLOW = [
    np._core.multiarray.scalar,
    np.dtype,
    np.dtypes.Float64DType,
    argparse.Namespace,
]
EVERYTHING = [
    np._core.multiarray.scalar,
    np.dtype,
    np.dtypes.Float64DType,
    np.dtypes.Int64DType,
    np.dtypes.Float32DType,
    np.dtypes.Int32DType,
    argparse.Namespace,
    nb08._Info,
    nb08._Stage,
    nb08._Run,
    nb08._Phase,
]


def make_loadable(ckpt):  # the notebook's solution
    out = {}
    for key, value in ckpt.items():
        if isinstance(value, np.generic):
            value = value.item()
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        elif isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, argparse.Namespace):
            value = vars(value)
        out[key] = value
    return out


@pytest.fixture
def learner_allowed_everything():
    """The learner called add_safe_globals for every class of the exercises, for the whole process."""
    before = set(torch.serialization.get_safe_globals())
    torch.serialization.add_safe_globals(EVERYTHING)
    yield set(torch.serialization.get_safe_globals())
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(list(before))


def test_notebook_answers_pass():
    assert check.make_loadable(make_loadable)
    assert check.allowlist_for_exercise_file(ALLOW)


def test_process_wide_allowance_does_not_make_an_unconverted_checkpoint_pass(
    learner_allowed_everything,
):
    result = check.make_loadable(lambda ckpt: dict(ckpt))
    assert result.status == "wrong" and "still refuses" in result.message
    # says why it loaded for them and not here
    assert "add_safe_globals" in result.message
    assert set(torch.serialization.get_safe_globals()) == learner_allowed_everything


def test_process_wide_allowance_then_an_empty_list_is_refused(
    learner_allowed_everything,
):
    """The simulation's false accept: add_safe_globals([...]) in the cell, then allow = []."""
    result = check.allowlist_for_exercise_file([])
    assert result.status == "wrong" and "empty" in result.message
    result = check.allowlist_for_exercise_file([argparse.Namespace])
    assert result.status == "wrong" and "scalar" in result.message
    assert set(torch.serialization.get_safe_globals()) == learner_allowed_everything


def test_the_learners_own_entries_survive_a_right_answer(learner_allowed_everything):
    """The old check's safe_globals blocks removed the learner's entries on exit."""
    assert check.allowlist_for_exercise_file(ALLOW)
    assert check.make_loadable(make_loadable)
    assert set(torch.serialization.get_safe_globals()) == learner_allowed_everything
    assert argparse.Namespace in torch.serialization.get_safe_globals()


def test_an_answer_that_allows_for_the_whole_process_is_refused_and_undone():
    def allow_then_return(ckpt):
        torch.serialization.add_safe_globals([np._core.multiarray.scalar, np.dtype])
        return make_loadable(ckpt)

    before = set(torch.serialization.get_safe_globals())
    result = check.make_loadable(allow_then_return)
    assert result.status == "wrong" and "process" in result.message
    assert set(torch.serialization.get_safe_globals()) == before


def test_float_for_an_integer_numpy_scalar_gets_the_kind_hint():
    """The notebook recommends .item(), which keeps an int an int; float() is accepted for floats."""

    def float_for_floats_only(ckpt):
        out = make_loadable(ckpt)
        return {k: (float(v) if isinstance(v, np.floating) else out[k]) for k, v in ckpt.items()}

    assert check.make_loadable(float_for_floats_only)
    result = check.make_loadable(
        lambda ckpt: {
            k: (float(v) if isinstance(v, np.generic) else w)
            for (k, v), w in zip(ckpt.items(), make_loadable(ckpt).values())
        }
    )
    assert (
        result.status == "wrong"
        and "integer NumPy scalar" in result.message
        and ".item()" in result.message
    )


def test_a_forced_unsafe_default_does_not_fool_the_check(monkeypatch):
    """With TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, a load that relies on the default is unsafe; the
    checks say weights_only=True, so an unconverted checkpoint is still refused."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    result = check.make_loadable(lambda ckpt: dict(ckpt))
    assert result.status == "wrong" and "still refuses" in result.message
    assert check.allowlist_for_exercise_file([]).status == "wrong"


def test_the_cases_include_a_top_level_tensor_and_other_numpy_types():
    kinds = {type(v) for case in nb08._cases() for v in case.values()}
    assert {np.float64, np.int64, np.float32, np.int32, torch.Tensor} <= kinds
