"""Checks of notebooks/04_checkpoints_and_resume.ipynb: right answers pass, wrong ones get their hint."""
import torch

from labs_utils.checks import REGISTRY, check, nb04


def _placeholder(*args):
    pass


def test_resume_keys():
    assert check.resume_keys({"model", "optimizer", "scheduler", "epoch", "rng"})
    assert check.resume_keys(frozenset({"model", "optimizer", "scheduler", "epoch", "rng"}))
    for answer, hint in REGISTRY["resume_keys"].wrong:
        r = check.resume_keys(answer)
        assert r.status == "wrong" and hint.lower() in r.message.lower(), r


def test_resume_exactly_right_and_wrong():
    assert check.resume_exactly(nb04._right_resume)
    for answer, hint in REGISTRY["resume_exactly"].wrong:
        r = check.resume_exactly(answer)
        assert r.status == "wrong" and hint in r.message, r


def test_resume_exactly_leaves_the_global_rng_alone():
    torch.manual_seed(42)
    expected = torch.get_rng_state()
    check.resume_exactly(nb04._right_resume)
    assert torch.equal(torch.get_rng_state(), expected)


def test_resume_exactly_reports_a_crashing_answer():
    def broken(ckpt, model, optimizer, scheduler, loader):
        return ckpt["no_such_key"]

    r = check.resume_exactly(broken)
    assert r.status == "wrong" and "KeyError" in r.message


def test_best_by_accuracy():
    from labs_utils.checkpoints import CheckpointManager

    assert check.best_by_accuracy(lambda folder: CheckpointManager(folder, metric="val_accuracy", mode="max"))
    for answer, hint in REGISTRY["best_by_accuracy"].wrong:
        r = check.best_by_accuracy(answer)
        assert r.status == "wrong" and hint in r.message, r
