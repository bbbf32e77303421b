"""Checks of notebooks/05_amp_and_scheduler_resume.ipynb: right answers pass and the cases the generic tests in test_checks.py do not cover."""
import torch

from labs_utils.checks import check, nb05



def test_fresh_scaler_skips():
    assert check.fresh_scaler_skips(7)
    assert not check.fresh_scaler_skips(True)


def test_amp_checkpoint_right():
    assert check.amp_checkpoint(nb05._right)


def test_amp_checkpoint_refuses_unloadable_extras():
    def with_version(model, optimizer, scheduler, scaler, epoch):
        return {**nb05._right(model, optimizer, scheduler, scaler, epoch), "torch": torch.__version__}

    r = check.amp_checkpoint(with_version)
    assert r.status == "wrong" and "weights_only=True" in r.message
