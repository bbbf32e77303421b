"""Checks of notebooks/08_safe_loading.ipynb: right answers pass, wrong ones get their hint."""
from __future__ import annotations

import argparse
import dataclasses
import enum

import numpy as np
import pytest

from labs_utils.checks import REGISTRY, check

check.make_loadable  # noqa: B018  (loads the module)
NAMES = [n for n, ex in REGISTRY.items() if ex.notebook == "08_safe_loading"]


def make_loadable(ckpt):
    out = {}
    for k, v in ckpt.items():
        if isinstance(v, np.generic):
            v = v.item()
        elif dataclasses.is_dataclass(v):
            v = dataclasses.asdict(v)
        elif isinstance(v, enum.Enum):
            v = v.value
        elif isinstance(v, argparse.Namespace):
            v = vars(v)
        out[k] = v
    return out


def test_right_answers():
    assert check.make_loadable(make_loadable)
    assert check.allowlist_for_exercise_file(
        [np._core.multiarray.scalar, np.dtype, np.dtypes.Float64DType, argparse.Namespace])


@pytest.mark.parametrize("name", NAMES)
def test_wrong_answers_get_their_hint(name):
    ex = REGISTRY[name]
    assert ex.wrong
    for answer, hint in ex.wrong:
        res = ex.fn(answer)
        assert res.status == "wrong" and hint in res.message, (answer, res)
        assert "08_safe_loading" in repr(res)


@pytest.mark.parametrize("name", NAMES)
def test_placeholders_are_not_attempted(name):
    def placeholder(ckpt):
        pass

    for answer in (..., None, placeholder):
        res = REGISTRY[name].fn(answer)
        assert res.status == "not attempted" or name == "allowlist_for_exercise_file" and res.status == "wrong"
    assert REGISTRY[name].fn(...).status == "not attempted"
    assert "Not attempted yet" in repr(REGISTRY[name].fn(None))
