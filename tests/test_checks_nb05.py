"""Checks of notebooks/05_amp_and_scheduler_resume.ipynb: right answers pass, wrong ones get their hint."""
import torch

from labs_utils.checks import REGISTRY, check, nb05


def _placeholder(*args):
    pass


def test_fresh_scaler_skips():
    assert check.fresh_scaler_skips(7)
    assert not check.fresh_scaler_skips(True)
    for answer, hint in REGISTRY["fresh_scaler_skips"].wrong:
        r = check.fresh_scaler_skips(answer)
        assert r.status == "wrong" and hint.lower() in r.message.lower(), r


def test_amp_checkpoint_right_and_wrong():
    assert check.amp_checkpoint(nb05._right)
    for answer, hint in REGISTRY["amp_checkpoint"].wrong:
        r = check.amp_checkpoint(answer)
        assert r.status == "wrong" and hint in r.message, r


def test_amp_checkpoint_leaves_the_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.get_rng_state()
    check.amp_checkpoint(nb05._right)
    assert torch.equal(torch.get_rng_state(), expected)


def test_amp_checkpoint_refuses_unloadable_extras():
    def with_version(model, optimizer, scheduler, scaler, epoch):
        return {**nb05._right(model, optimizer, scheduler, scaler, epoch), "torch": torch.__version__}

    r = check.amp_checkpoint(with_version)
    assert r.status == "wrong" and "weights_only=True" in r.message
