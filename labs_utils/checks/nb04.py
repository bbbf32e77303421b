"""Checks for notebooks/04_checkpoints_and_resume.ipynb."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from ..toolkit import CheckpointManager, capture_rng_state
from . import Wrong, as_int, call_answer, exercise, same
from .fixtures import drew_after_restoring, through_file

NB = "04_checkpoints_and_resume"

NEEDED = {"model", "optimizer", "scheduler", "epoch", "rng"}
CHECKPOINT_KEYS = NEEDED | {"step", "metrics", "versions"}
# why each key is needed, or not, for identical weights after the resume
WHY = {
    "model": "the weights themselves",
    "optimizer": "AdamW's running averages and step counts: without them the first steps after the resume are different",
    "scheduler": "the position on the learning-rate schedule: a fresh scheduler counts its epochs from 0 again (section 4 shows the rates it then gives)",
    "epoch": "where the loop starts again (the resume trains from epoch + 1)",
    "rng": "the generators behind dropout and the loader's shuffling: without them each step sees other masks and batches",
    "versions": "versions are for people explaining a difference later; the resume never reads them",
    "metrics": "metrics record how the run went; no training computation reads them (the manager uses the best value to choose best.pth, which does not change the weights)",
    "step": "this resume restarts at an epoch boundary, from epoch; step would matter only for a resume in the middle of an epoch, and the scheduler keeps its own count inside its state",
}
# names a learner may take from the PyTorch recipe or invent, and what this notebook does instead
_LOADER = "the loader's generator state is saved inside 'rng': capture_rng_state(generators={'train_loader': ...})"
_OTHER_NAMES = {
    **dict.fromkeys(("model_state_dict", "weights"), "it calls that entry 'model'"),
    "optimizer_state_dict": "it calls that entry 'optimizer'",
    **dict.fromkeys(("scheduler_state_dict", "lr_scheduler"), "it calls that entry 'scheduler'"),
    **dict.fromkeys(("rng_state", "random"), "it calls that entry 'rng'"),
    **dict.fromkeys(("generators", "train_loader", "loader"), _LOADER),
    **dict.fromkeys(("loss", "val_loss"), "it calls that entry 'metrics'"),
}


@exercise("resume_keys", notebook=NB)
def resume_keys(answer) -> str:
    """``answer``: the set of checkpoint keys an exact resume must read."""
    if not isinstance(answer, (set, frozenset)):
        what = type(answer).__name__
        extra = " (a dict's keys would be set(your_dict))" if isinstance(answer, dict) else ""
        raise Wrong(f"give a set of key names, e.g. {{'model', 'epoch'}}; got {what}{extra}")
    unknown = sorted(str(k) for k in answer if k not in CHECKPOINT_KEYS)
    if unknown:
        why = f" ({_OTHER_NAMES[unknown[0]]})" if unknown[0] in _OTHER_NAMES else ""
        raise Wrong(
            f"{unknown[0]!r} is not a key of this notebook's checkpoint{why}; pick from {sorted(CHECKPOINT_KEYS)}"
        )
    if set(answer) == CHECKPOINT_KEYS:
        raise Wrong(
            "that is every key of the checkpoint; some are saved for people or for later, and the resume never reads them: which ones change the next training step?"
        )
    for key, why in WHY.items():
        if key in NEEDED and key not in answer:
            raise Wrong(f"the resume needs {key!r}: {why}")
        if key in answer and key not in NEEDED:
            raise Wrong(f"{key!r} is not needed for identical weights: {why}")
    return "model, optimizer, scheduler, epoch and the RNG states: everything the next step depends on."


EPOCHS, CRASH = 4, 2


def _make(seed: int):
    """The check's run: a fresh cosine scheduler gives other rates after a resume (it scales the
    current rate); the loader's generator is seeded from ``seed``, apart from the checkpoint's."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS)
    g = torch.Generator().manual_seed(11)
    x = torch.randn(96, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    shuffle = torch.Generator().manual_seed(3 + seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=shuffle)
    return model, optimizer, scheduler, loader


def _train(model, optimizer, scheduler, loader, epochs) -> None:
    for _ in epochs:
        model.train()
        for x, y in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        scheduler.step()


def _checkpoint(model, optimizer, scheduler, loader, epoch) -> dict:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "step": (epoch + 1) * len(loader),
        "metrics": {"val_loss": 1.0},
        "rng": capture_rng_state(generators={"train_loader": loader.generator}),
        "versions": {"torch": str(torch.__version__)},
    }
    return through_file(state)  # saved and loaded back, as in the notebook


@exercise("resume_exactly", notebook=NB)
def resume_exactly(fn) -> str:
    """``fn(checkpoint, model, optimizer, scheduler, train_loader)`` restores everything, returns the next epoch."""
    ref = _make(0)
    _train(*ref, range(EPOCHS))
    model, optimizer, scheduler, loader = _make(0)
    _train(model, optimizer, scheduler, loader, range(CRASH))
    ckpt = _checkpoint(model, optimizer, scheduler, loader, CRASH - 1)
    saved = through_file(ckpt)  # a copy the answer cannot change
    model, optimizer, scheduler, loader = _make(99)
    start = call_answer(fn, ckpt, model, optimizer, scheduler, loader)
    if hint := _restore_hint(saved, model, optimizer, loader.generator, scheduler):
        raise Wrong(hint)
    start = as_int(start, "the next epoch")
    if start != CRASH:
        raise Wrong(
            f"checkpoint['epoch'] is the last epoch that finished ({CRASH - 1}); the next one is checkpoint['epoch'] + 1, you returned {start}"
        )
    _train(model, optimizer, scheduler, loader, range(start, EPOCHS))
    if not same(ref[0].state_dict(), model.state_dict()):  # a safety net: every piece was checked
        raise Wrong(
            "every piece was restored, but the final weights differ: restore the RNG state last, right before training continues"
        )
    return "the resumed run ends with exactly the uninterrupted run's weights."


def _restore_hint(saved: dict, model, optimizer, generator, scheduler) -> str | None:
    """What the answer left unrestored among the objects passed in, if anything."""
    if not same(saved["model"], model.state_dict()):
        return "the model's weights differ from the checkpoint's: call model.load_state_dict(checkpoint['model'])"
    if not optimizer.state_dict()["state"]:
        return "the optimizer you were given has no state (SGD's momentum buffers are empty): call optimizer.load_state_dict(checkpoint['optimizer']) on that object (training goes on with the optimizer passed in, so loading into a new one made inside the function would not count)"
    if not same(saved["optimizer"]["state"], optimizer.state_dict()["state"]):
        return "the optimizer's momentum buffers differ from the checkpoint's: call optimizer.load_state_dict(checkpoint['optimizer'])"
    if scheduler.state_dict()["last_epoch"] == 0:
        return "the scheduler starts its schedule again (last_epoch 0, a fresh scheduler counts from 0): call scheduler.load_state_dict(checkpoint['scheduler'])"
    lr, saved_lr = optimizer.param_groups[0]["lr"], saved["scheduler"]["_last_lr"][0]
    if scheduler.state_dict() != saved["scheduler"] or lr != saved_lr:
        return f"the scheduler's state differs from the checkpoint's (learning rate {lr:g}, saved {saved_lr:g}): call scheduler.load_state_dict(checkpoint['scheduler']). Stepping a fresh scheduler forward does not rebuild it: it scales the rate that optimizer.load_state_dict restored again"
    return _rng_hint(
        saved["rng"]["torch"],
        torch.get_rng_state(),
        "torch's global generator (dropout masks)",
        "a forward pass in train mode, torch.randn, building a layer",
        "...",
    ) or _rng_hint(
        saved["rng"]["generators"]["train_loader"],
        generator.get_state(),
        "the loader's generator (the shuffling order)",
        "iterating over train_loader, even next(iter(train_loader))",
        "{'train_loader': train_loader.generator}",
    )


def _rng_hint(
    saved: torch.Tensor, now: torch.Tensor, what: str, examples: str, fix: str
) -> str | None:
    if torch.equal(saved, now):
        return
    if drew_after_restoring(saved, now):
        return f"your function restored {what}, then drew random numbers from it before returning ({examples}): the resumed run then starts from another point of the stream. Restore the RNG states last, right before training continues"
    return f"{what} is not in the checkpoint's state (a seed, even the run's first one, does not bring back the state at the crash): call restore_rng_state(checkpoint['rng'], generators={fix})"


# epoch: (val_loss, val_accuracy); the lowest loss (epoch 1) is not the highest accuracy (epoch 2)
_EPOCH_METRICS = [(0.9, 0.60), (0.5, 0.70), (0.6, 0.80), (0.7, 0.75)]


@exercise("best_by_accuracy", notebook=NB)
def best_by_accuracy(fn) -> str:
    """``fn(folder)`` returns a CheckpointManager in ``folder`` whose best.pth follows the highest val_accuracy."""
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Path(tmp).resolve()
        folder = sandbox / "given" / "accuracy_run"  # does not exist yet: the manager makes it
        here = os.getcwd()
        os.chdir(sandbox)  # a relative path in the answer lands in the sandbox
        try:
            hint = _manager_hint(call_answer(fn, folder), folder, sandbox)
        finally:
            os.chdir(here)
    if hint:
        raise Wrong(hint)
    return "best.pth now follows the highest validation accuracy (epoch 2 here), not the lowest loss (epoch 1)."


def _manager_hint(manager, folder: Path, sandbox: Path) -> str | None:
    if isinstance(manager, type):
        return "you returned the class itself; build a manager with CheckpointManager(folder, ...) and return it"
    if not isinstance(manager, CheckpointManager):
        return f"return the CheckpointManager you built, got {type(manager).__name__}"
    used = Path(manager.folder).resolve()
    if used != folder:
        where = used.relative_to(sandbox).as_posix() if used.is_relative_to(sandbox) else ""
        if used.is_relative_to(folder):
            where = f"a subfolder of it ({used.relative_to(folder).as_posix()})"
        return f"your manager keeps its files in {where or 'another folder'}, not in the folder you were given: pass the function's folder argument to CheckpointManager, as it is"
    if manager.metric != "val_accuracy":
        return f"your manager tracks {manager.metric!r}: pass metric='val_accuracy'"
    for epoch, (loss, acc) in enumerate(_EPOCH_METRICS):
        metrics = {"val_loss": loss, "val_accuracy": acc}
        manager.save({"model": {"w": torch.full((2,), float(epoch))}}, epoch=epoch, metrics=metrics)
    files = {p for p in sandbox.rglob("*") if p.is_file() and not p.is_relative_to(folder)}
    if files:
        elsewhere = sorted(p.relative_to(sandbox).as_posix() for p in files)
        return f"your function wrote files outside the folder it was given ({', '.join(elsewhere[:3])}): everything the manager writes belongs in folder"
    best = manager.load_best()
    if not isinstance(best, dict) or "w" not in best:
        return "best.pth should hold the model's weights only (state['model']); keep the default best_key='model'"
    if manager.best_epoch != 2 or not torch.equal(best["w"], torch.full((2,), 2.0)):
        return f"best.pth holds epoch {manager.best_epoch}, the lowest accuracy: for accuracy higher is better, pass mode='max'"
    return None
