"""Checks of notebooks/04_checkpoints_and_resume.ipynb: right answers pass, and the cases the generic tests in
test_checks.py do not cover (each wrong answer's hint is tested there, from the check's ``wrong=[...]``)."""

import os

import pytest
import torch

from labs_utils.checks import check, fixtures, nb04
from tests.checks import answers_nb04


def test_resume_keys():
    assert check.resume_keys({"model", "optimizer", "scheduler", "epoch", "rng"})
    assert check.resume_keys(frozenset({"rng", "epoch", "scheduler", "optimizer", "model"}))
    state_keys = {
        "model",
        "optimizer",
        "scheduler",
        "epoch",
        "step",
        "metrics",
        "rng",
        "versions",
    }
    # from section 1's state
    assert check.resume_keys(state_keys - {"step", "metrics", "versions"})


def test_resume_exactly_right():
    assert check.resume_exactly(answers_nb04._right_resume)


def test_resume_exactly_reports_a_crashing_answer():
    def broken(ckpt, model, optimizer, scheduler, loader):
        return ckpt["no_such_key"]

    r = check.resume_exactly(broken)
    assert r.status == "wrong" and "KeyError" in r.message


def _final_weights(resume):
    """Resume the check's crashed run with ``resume``, train to the end, return the final weights."""
    model, optimizer, scheduler, loader = nb04._make(0)
    nb04._train(model, optimizer, scheduler, loader, range(nb04.CRASH))
    ckpt = nb04._checkpoint(model, optimizer, scheduler, loader, nb04.CRASH - 1)
    model, optimizer, scheduler, loader = nb04._make(99)
    start = int(resume(ckpt, model, optimizer, scheduler, loader) or nb04.CRASH)
    nb04._train(model, optimizer, scheduler, loader, range(start, nb04.EPOCHS))
    return model.state_dict()


@pytest.mark.filterwarnings("ignore:Detected call of")
@pytest.mark.parametrize(
    "resume",
    [
        answers_nb04._weights_only,
        answers_nb04._no_scheduler,
        answers_nb04._no_rng,
        answers_nb04._no_loader_generator,
        answers_nb04._draws_a_batch_after,
        answers_nb04._forward_after,
        answers_nb04._rng_first_then_new_model,
        answers_nb04._seeds_instead,
        answers_nb04._fast_forward_scheduler,
        answers_nb04._new_optimizer,
    ],
)
def test_every_rejected_resume_really_ends_elsewhere(resume):
    """The check rejects these by looking at the restored state; each one does change the final weights on the
    check's run (a fresh scheduler too: the check's cosine schedule scales the restored rate)."""
    torch.manual_seed(0)
    reference = nb04._make(0)
    nb04._train(*reference, range(nb04.EPOCHS))
    right = _final_weights(answers_nb04._right_resume)
    wrong = _final_weights(resume)
    assert all(torch.equal(v, reference[0].state_dict()[k]) for k, v in right.items())
    assert not all(torch.equal(v, reference[0].state_dict()[k]) for k, v in wrong.items())


def test_a_batch_drawn_after_the_restore_is_named_as_such():
    """The simulation's case: everything restored, then next(iter(train_loader)). The hint says to restore
    last, and does not tell the learner to pass generators=..., which they did."""
    r = check.resume_exactly(answers_nb04._draws_a_batch_after)
    assert r.status == "wrong"
    assert "restore the rng states last" in r.message.lower() and "pass generators" not in r.message


def test_drew_after_restoring_follows_the_stream_across_refills():
    g = torch.Generator().manual_seed(5)
    torch.randn(10, generator=g)
    saved = g.get_state()
    assert fixtures.drew_after_restoring(saved, saved)
    torch.randperm(16, generator=g)  # a few draws: the word array is unchanged
    assert fixtures.drew_after_restoring(saved, g.get_state())
    torch.rand(3000, generator=g)  # many draws: the array is regenerated several times
    assert fixtures.drew_after_restoring(saved, g.get_state())
    other = torch.Generator().manual_seed(6)
    torch.randn(10, generator=other)
    assert not fixtures.drew_after_restoring(saved, other.get_state())
    # reseeded
    assert not fixtures.drew_after_restoring(saved, torch.Generator().manual_seed(5).get_state())


def test_best_by_accuracy():
    from labs_utils.toolkit import CheckpointManager

    assert check.best_by_accuracy(
        lambda folder: CheckpointManager(folder, metric="val_accuracy", mode="max")
    )
    assert check.best_by_accuracy(answers_nb04._str_folder_keep_one)


def test_best_by_accuracy_writes_nothing_outside_its_sandbox(tmp_path, monkeypatch):
    """An answer that ignores folder (the simulation's case) is rejected and leaves no file in the learner's
    folders; a right answer leaves nothing either."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "04_checkpoints_and_resume").mkdir(parents=True)
    r = check.best_by_accuracy(answers_nb04._own_folder)
    assert r.status == "wrong" and "the folder you were given" in r.message
    from labs_utils.toolkit import CheckpointManager

    assert check.best_by_accuracy(
        lambda folder: CheckpointManager(folder, metric="val_accuracy", mode="max")
    )
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert os.getcwd() == str(tmp_path)


def test_best_by_accuracy_rejects_writes_beside_the_folder():
    from labs_utils.toolkit import CheckpointManager, save_checkpoint

    def also_writes_elsewhere(folder):
        save_checkpoint({"note": 1}, "notes.pth")  # relative to the current folder
        return CheckpointManager(folder, metric="val_accuracy", mode="max")

    r = check.best_by_accuracy(also_writes_elsewhere)
    assert r.status == "wrong" and "outside the folder" in r.message and "notes.pth" in r.message
