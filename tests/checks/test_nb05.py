"""Checks of notebooks/05_amp_and_scheduler_resume.ipynb: right answers pass, and the cases the generic tests in
test_checks.py do not cover (each wrong answer's hint is tested there, from the check's ``wrong=[...]``)."""

import math

import numpy as np
import pytest
import torch

from labs_utils.checks import check
from tests.checks import answers_nb05


def test_fresh_scaler_skips():
    assert check.fresh_scaler_skips(7)
    assert not check.fresh_scaler_skips(True)


@pytest.mark.parametrize(
    "answer", [np.int64(7), np.int32(7), int(math.log2(2**16 // 2**9)), 16 - 9]
)
def test_fresh_scaler_skips_accepts_every_integer_form(answer):
    """One rule for whole numbers across the workbook: NumPy integers pass (the simulation's false reject)."""
    assert check.fresh_scaler_skips(answer)


def test_amp_checkpoint_right():
    assert check.amp_checkpoint(answers_nb05._right)
    assert check.amp_checkpoint(answers_nb05._right_deepcopy_loop)


def test_amp_checkpoint_refuses_unloadable_extras():
    def with_version(model, optimizer, scheduler, scaler, epoch):
        return {
            **answers_nb05._right(model, optimizer, scheduler, scaler, epoch),
            "torch": torch.__version__,
        }

    r = check.amp_checkpoint(with_version)
    assert r.status == "wrong" and "weights_only=True" in r.message and "'torch' entry" in r.message


SLOTS = ("model", "optimizer", "scheduler")


@pytest.mark.parametrize("slot", SLOTS)
@pytest.mark.parametrize("source", SLOTS)
def test_amp_checkpoint_compares_every_entry_with_the_right_object(slot, source):
    """Every copy-paste slip, not only the two of the simulation: the entry ``slot`` holds ``source``'s
    state_dict. Only the right pairing passes."""
    objects = {}

    def answer(model, optimizer, scheduler, scaler, epoch):
        objects.update(model=model, optimizer=optimizer, scheduler=scheduler)
        ckpt = answers_nb05._right(model, optimizer, scheduler, scaler, epoch)
        ckpt[slot] = objects[source].state_dict()
        return ckpt

    r = check.amp_checkpoint(answer)
    if slot == source:
        assert r, repr(r)
    else:
        assert r.status == "wrong" and f"the {slot!r} entry holds the {source}'s" in r.message, (
            repr(r)
        )


def test_amp_checkpoint_rejects_weights_of_another_model():
    """Right keys, wrong numbers: a state_dict of a freshly built model is not this model's."""

    def fresh_weights(model, optimizer, scheduler, scaler, epoch):
        other = torch.nn.Sequential(
            torch.nn.Linear(4, 6),
            torch.nn.BatchNorm1d(6),
            torch.nn.ReLU(),
            torch.nn.Linear(6, 3),
        )
        return {
            **answers_nb05._right(model, optimizer, scheduler, scaler, epoch),
            "model": other.state_dict(),
        }

    r = check.amp_checkpoint(fresh_weights)
    assert r.status == "wrong" and "is not model.state_dict()" in r.message
