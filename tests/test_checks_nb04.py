"""Checks of notebooks/04_checkpoints_and_resume.ipynb: right answers pass and the cases the generic tests in test_checks.py do not cover."""

from labs_utils.checks import check, nb04



def test_resume_keys():
    assert check.resume_keys({"model", "optimizer", "scheduler", "epoch", "rng"})
    assert check.resume_keys(frozenset({"model", "optimizer", "scheduler", "epoch", "rng"}))


def test_resume_exactly_right():
    assert check.resume_exactly(nb04._right_resume)


def test_resume_exactly_reports_a_crashing_answer():
    def broken(ckpt, model, optimizer, scheduler, loader):
        return ckpt["no_such_key"]

    r = check.resume_exactly(broken)
    assert r.status == "wrong" and "KeyError" in r.message


def test_best_by_accuracy():
    from labs_utils.checkpoints import CheckpointManager

    assert check.best_by_accuracy(lambda folder: CheckpointManager(folder, metric="val_accuracy", mode="max"))
