"""Checks for notebooks/04_checkpoints_and_resume.ipynb."""
from __future__ import annotations

import io
import tempfile

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from . import Wrong, call_answer, exercise

NB = "04_checkpoints_and_resume"

NEEDED = {"model", "optimizer", "scheduler", "epoch", "rng"}
WHY_NEEDED = {
    "model": "the weights themselves",
    "optimizer": "AdamW's running averages and step counts: without them the first steps after the resume are "
                 "different",
    "scheduler": "the position on the learning-rate schedule: without it the schedule starts again at its peak",
    "epoch": "where the loop starts again (the resume trains from epoch + 1)",
    "rng": "the generators behind dropout and the loader's shuffling: without them each step sees other masks "
           "and batches",
}
WHY_NOT = {
    "step": "step is only a counter for logs here: the loop restarts from epoch, and the scheduler keeps its own "
            "count inside its state",
    "metrics": "metrics record how the run went; no training computation reads them (the manager uses the best "
               "value to choose best.pth, which does not change the weights)",
    "versions": "versions are for people explaining a difference later; the resume never reads them",
}


@exercise("resume_keys", notebook=NB, wrong=[
    ({"model", "optimizer", "epoch"}, "scheduler"),
    ({"model", "optimizer", "scheduler", "epoch"}, "rng"),
    ({"model", "scheduler", "epoch", "rng"}, "optimizer"),
    ({"model", "optimizer", "scheduler", "rng"}, "epoch"),
    (NEEDED | {"versions"}, "versions"),
    (NEEDED | {"metrics"}, "no training computation reads them"),
    (NEEDED | {"step"}, "counter"),
    (["model", "optimizer"], "set"),
    (NEEDED | {"weights"}, "not a key"),
])
def resume_keys(answer) -> str:
    """``answer``: the set of checkpoint keys an exact resume must read."""
    if not isinstance(answer, (set, frozenset)):
        raise Wrong(f"give a set of key names, e.g. {{'model', 'epoch'}}; got {type(answer).__name__}")
    known = NEEDED | set(WHY_NOT)
    unknown = sorted(str(k) for k in answer if k not in known)
    if unknown:
        raise Wrong(f"{unknown[0]!r} is not a key of the checkpoint; pick from {sorted(known)}")
    for key in ("model", "optimizer", "scheduler", "epoch", "rng"):
        if key not in answer:
            raise Wrong(f"the resume needs {key!r}: {WHY_NEEDED[key]}")
    for key in ("versions", "metrics", "step"):
        if key in answer:
            raise Wrong(f"{key!r} is not needed for identical weights: {WHY_NOT[key]}")
    return "model, optimizer, scheduler, epoch and the RNG states: everything the next step depends on."


# --------------------------------------------------------------------------- resume_exactly

EPOCHS, CRASH = 4, 2


def _make(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    g = torch.Generator().manual_seed(11)
    x = torch.randn(96, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(3))
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
    from ..checkpoints import capture_rng_state

    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "epoch": epoch, "step": (epoch + 1) * len(loader), "metrics": {"val_loss": 1.0},
             "rng": capture_rng_state(generators={"train_loader": loader.generator}),
             "versions": {"torch": str(torch.__version__)}}
    buf = io.BytesIO()  # through a file, as in the notebook
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _states_equal(a, b) -> bool:
    return all(torch.equal(v, b[k]) for k, v in a.items())


def _weights_only(ckpt, model, optimizer, scheduler, loader):
    model.load_state_dict(ckpt["model"])
    return ckpt["epoch"] + 1


def _no_scheduler(ckpt, model, optimizer, scheduler, loader):
    from ..checkpoints import restore_rng_state

    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    restore_rng_state(ckpt["rng"], generators={"train_loader": loader.generator})
    return ckpt["epoch"] + 1


def _no_rng(ckpt, model, optimizer, scheduler, loader):
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    return ckpt["epoch"] + 1


def _no_loader_generator(ckpt, model, optimizer, scheduler, loader):
    from ..checkpoints import restore_rng_state

    _no_rng(ckpt, model, optimizer, scheduler, loader)
    restore_rng_state(ckpt["rng"])
    return ckpt["epoch"] + 1


def _off_by_one(ckpt, model, optimizer, scheduler, loader):
    _no_loader_generator(ckpt, model, optimizer, scheduler, loader)
    loader.generator.set_state(ckpt["rng"]["generators"]["train_loader"])
    return ckpt["epoch"]


_RESUME_WRONG = [
    (_weights_only, "optimizer.load_state_dict"),
    (_no_scheduler, "scheduler.load_state_dict"),
    (_no_rng, "dropout masks"),
    (_no_loader_generator, "shuffling order"),
    (_off_by_one, "checkpoint['epoch'] + 1"),
]


def _right_resume(ckpt, model, optimizer, scheduler, loader):
    from ..checkpoints import restore_rng_state

    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    restore_rng_state(ckpt["rng"], generators={"train_loader": loader.generator})
    return ckpt["epoch"] + 1


@exercise("resume_exactly", notebook=NB, wrong=_RESUME_WRONG, right=[_right_resume])
def resume_exactly(fn) -> str:
    """``fn(checkpoint, model, optimizer, scheduler, train_loader)`` restores everything, returns the next epoch."""
    return _resume_exactly(fn)  # the check framework restores the learner's random generators afterwards


def _resume_exactly(fn) -> str:
    ref = _make(0)
    _train(*ref, range(EPOCHS))
    model, optimizer, scheduler, loader = _make(0)
    _train(model, optimizer, scheduler, loader, range(CRASH))
    ckpt = _checkpoint(model, optimizer, scheduler, loader, CRASH - 1)

    model, optimizer, scheduler, loader = _make(99)
    start = call_answer(fn, ckpt, model, optimizer, scheduler, loader)
    if not _states_equal(ckpt["model"], model.state_dict()):
        raise Wrong("the model's weights differ from the checkpoint's: call model.load_state_dict(checkpoint['model'])")
    if not optimizer.state_dict()["state"]:
        raise Wrong("the optimizer has no state (SGD's momentum buffers are empty): call "
                    "optimizer.load_state_dict(checkpoint['optimizer'])")
    if scheduler.last_epoch != ckpt["scheduler"]["last_epoch"]:
        raise Wrong("the scheduler starts its schedule again: call scheduler.load_state_dict(checkpoint['scheduler'])")
    if not torch.equal(torch.get_rng_state(), ckpt["rng"]["torch"]):
        raise Wrong("torch's global generator (dropout masks) was not restored: call "
                    "restore_rng_state(checkpoint['rng'], generators=...)")
    if not torch.equal(loader.generator.get_state(), ckpt["rng"]["generators"]["train_loader"]):
        raise Wrong("the loader's generator (the shuffling order) was not restored: pass "
                    "generators={'train_loader': train_loader.generator} to restore_rng_state")
    if isinstance(start, bool) or not isinstance(start, int):
        raise Wrong(f"return the next epoch as an int, got {type(start).__name__}")
    if start != CRASH:
        raise Wrong(f"checkpoint['epoch'] is the last epoch that finished ({CRASH - 1}); the next one is "
                    f"checkpoint['epoch'] + 1, you returned {start}")
    _train(model, optimizer, scheduler, loader, range(start, EPOCHS))
    if not _states_equal(ref[0].state_dict(), model.state_dict()):  # pragma: no cover - all pieces were checked
        raise Wrong("every piece was restored, but the final weights differ: restore the RNG state last, right "
                    "before training continues")
    return "the resumed run ends with exactly the uninterrupted run's weights."


# --------------------------------------------------------------------------- best_by_accuracy

# epoch: (val_loss, val_accuracy); the lowest loss (epoch 1) is not the highest accuracy (epoch 2)
_EPOCH_METRICS = [(0.9, 0.60), (0.5, 0.70), (0.6, 0.80), (0.7, 0.75)]


def _default_manager(folder):
    from ..checkpoints import CheckpointManager

    return CheckpointManager(folder)


def _accuracy_min(folder):
    from ..checkpoints import CheckpointManager

    return CheckpointManager(folder, metric="val_accuracy", mode="min")


def _loss_max(folder):
    from ..checkpoints import CheckpointManager

    return CheckpointManager(folder, metric="val_loss", mode="max")


@exercise("best_by_accuracy", notebook=NB, wrong=[
    (_default_manager, "tracks 'val_loss'"),
    (_accuracy_min, "mode='max'"),
    (_loss_max, "tracks 'val_loss'"),
    (lambda folder: str(folder), "return the CheckpointManager"),
])
def best_by_accuracy(fn) -> str:
    """``fn(folder)`` returns a CheckpointManager whose best.pth follows the highest val_accuracy."""
    from ..checkpoints import CheckpointManager

    with tempfile.TemporaryDirectory() as tmp:
        manager = call_answer(fn, tmp)
        if not isinstance(manager, CheckpointManager):
            raise Wrong(f"return the CheckpointManager you built, got {type(manager).__name__}")
        if manager.metric != "val_accuracy":
            raise Wrong(f"your manager tracks {manager.metric!r}: pass metric='val_accuracy'")
        for epoch, (loss, acc) in enumerate(_EPOCH_METRICS):
            manager.save({"model": {"w": torch.full((2,), float(epoch))}}, epoch=epoch,
                         metrics={"val_loss": loss, "val_accuracy": acc})
        best = manager.load_best()
    if manager.best_epoch != 2 or not torch.equal(best["w"], torch.full((2,), 2.0)):
        raise Wrong(f"best.pth holds epoch {manager.best_epoch}, the lowest accuracy: for accuracy higher is better, "
                    "pass mode='max'")
    return "best.pth now follows the highest validation accuracy (epoch 2 here), not the lowest loss (epoch 1)."
