"""Wrong and right answers for the checks in labs_utils/checks/nb04.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from labs_utils.checks.nb04 import CHECKPOINT_KEYS, NEEDED
from labs_utils.toolkit import restore_rng_state


def _weights_only(ckpt, model, optimizer, scheduler, loader):
    model.load_state_dict(ckpt["model"])
    return ckpt["epoch"] + 1


def _no_scheduler(ckpt, model, optimizer, scheduler, loader):
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
    _no_rng(ckpt, model, optimizer, scheduler, loader)
    restore_rng_state(ckpt["rng"])
    return ckpt["epoch"] + 1


def _off_by_one(ckpt, model, optimizer, scheduler, loader):
    _no_loader_generator(ckpt, model, optimizer, scheduler, loader)
    loader.generator.set_state(ckpt["rng"]["generators"]["train_loader"])
    return ckpt["epoch"]


def _right_resume(ckpt, model, optimizer, scheduler, loader):
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    restore_rng_state(ckpt["rng"], generators={"train_loader": loader.generator})
    return ckpt["epoch"] + 1


def _draws_a_batch_after(ckpt, model, optimizer, scheduler, loader):
    """Restores everything, then looks at a batch (the simulation's case)."""
    start = _right_resume(ckpt, model, optimizer, scheduler, loader)
    next(iter(loader))
    return start


def _forward_after(ckpt, model, optimizer, scheduler, loader):
    """Restores everything, then checks the model on a random input in train mode (dropout draws)."""
    start = _right_resume(ckpt, model, optimizer, scheduler, loader)
    model(torch.randn(4, 8))
    return start


def _rng_first_then_new_model(ckpt, model, optimizer, scheduler, loader):
    """Restores the RNG first, then builds a throw-away layer (its initialisation draws)."""
    restore_rng_state(ckpt["rng"], generators={"train_loader": loader.generator})
    nn.Linear(8, 16)
    _no_rng(ckpt, model, optimizer, scheduler, loader)
    return ckpt["epoch"] + 1


def _seeds_instead(ckpt, model, optimizer, scheduler, loader):
    _no_rng(ckpt, model, optimizer, scheduler, loader)
    torch.manual_seed(0)
    loader.generator.manual_seed(0)
    return ckpt["epoch"] + 1


def _new_optimizer(ckpt, model, optimizer, scheduler, loader):
    model.load_state_dict(ckpt["model"])
    # rebinds a local name only
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    optimizer.load_state_dict(ckpt["optimizer"])
    restore_rng_state(ckpt["rng"], generators={"train_loader": loader.generator})
    return ckpt["epoch"] + 1


def _fast_forward_scheduler(ckpt, model, optimizer, scheduler, loader):
    """Steps a fresh scheduler to the saved epoch instead of loading its state."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    for _ in range(ckpt["epoch"] + 1):
        scheduler.step()
    restore_rng_state(ckpt["rng"], generators={"train_loader": loader.generator})
    return ckpt["epoch"] + 1


def _wrong_generator_name(ckpt, model, optimizer, scheduler, loader):
    _no_rng(ckpt, model, optimizer, scheduler, loader)
    restore_rng_state(ckpt["rng"], generators={"loader": loader.generator})
    return ckpt["epoch"] + 1


def _step_as_epoch(ckpt, model, optimizer, scheduler, loader):
    _right_resume(ckpt, model, optimizer, scheduler, loader)
    return ckpt["step"]


def _forgot_return(ckpt, model, optimizer, scheduler, loader):
    _right_resume(ckpt, model, optimizer, scheduler, loader)


def _no_model(ckpt, model, optimizer, scheduler, loader):
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    restore_rng_state(ckpt["rng"], generators={"train_loader": loader.generator})
    return ckpt["epoch"] + 1


_RESUME_WRONG = [
    (_weights_only, "optimizer.load_state_dict"),
    (_no_scheduler, "scheduler.load_state_dict"),
    (_no_rng, "torch's global generator (dropout masks) is not"),
    (_no_loader_generator, "the loader's generator (the shuffling order) is not"),
    (_off_by_one, "checkpoint['epoch'] + 1"),
    (_draws_a_batch_after, "restore the rng states last"),
    (_forward_after, "restore the rng states last"),
    (_rng_first_then_new_model, "restore the rng states last"),
    (_seeds_instead, "is not in the checkpoint's state"),
    (_new_optimizer, "the optimizer passed in"),
    (_fast_forward_scheduler, "stepping a fresh scheduler"),
    (_wrong_generator_name, "no saved state for generator(s) ['loader']"),
    (_step_as_epoch, "checkpoint['epoch'] + 1"),
    (_forgot_return, "forget the `return`"),
    (_no_model, "model.load_state_dict(checkpoint['model'])"),
]


def _by_hand_numpy_epoch(ckpt, model, optimizer, scheduler, loader):
    """Right, by hand, with a NumPy integer for the epoch: accepted."""
    import numpy as np

    for obj, key in (
        (model, "model"),
        (optimizer, "optimizer"),
        (scheduler, "scheduler"),
    ):
        obj.load_state_dict(ckpt[key])
    torch.set_rng_state(ckpt["rng"]["torch"])
    loader.generator.set_state(ckpt["rng"]["generators"]["train_loader"])
    return np.int64(ckpt["epoch"]) + 1


def _default_manager(folder):
    from labs_utils.toolkit import CheckpointManager

    return CheckpointManager(folder)


def _accuracy_min(folder):
    from labs_utils.toolkit import CheckpointManager

    return CheckpointManager(folder, metric="val_accuracy", mode="min")


def _loss_max(folder):
    from labs_utils.toolkit import CheckpointManager

    return CheckpointManager(folder, metric="val_loss", mode="max")


def _own_folder(folder):
    """Ignores ``folder`` and uses the notebook's scratch folder (the simulation's case)."""
    from labs_utils.toolkit import CheckpointManager

    return CheckpointManager(
        Path("runs") / "04_checkpoints_and_resume" / "by_accuracy",
        metric="val_accuracy",
        mode="max",
    )


def _subfolder(folder):
    from labs_utils.toolkit import CheckpointManager

    return CheckpointManager(Path(folder) / "best_by_accuracy", metric="val_accuracy", mode="max")


def _forgot_return_manager(folder):
    from labs_utils.toolkit import CheckpointManager

    manager = CheckpointManager(folder, metric="val_accuracy", mode="max")  # noqa: F841


def _accuracy_word(folder):
    from labs_utils.toolkit import CheckpointManager

    return CheckpointManager(folder, metric="accuracy", mode="max")


def _maximize(folder):
    from labs_utils.toolkit import CheckpointManager

    return CheckpointManager(folder, metric="val_accuracy", mode="maximize")


def _class_not_instance(folder):
    from labs_utils.toolkit import CheckpointManager

    return CheckpointManager


def _whole_state_as_best(folder):
    from labs_utils.toolkit import CheckpointManager

    return CheckpointManager(folder, metric="val_accuracy", mode="max", best_key=None)


def _str_folder_keep_one(folder):
    """Right: a str path and another keep_last."""
    from labs_utils.toolkit import CheckpointManager

    return CheckpointManager(str(folder), "val_accuracy", "max", keep_last=1)


WRONG = {
    "resume_keys": [
        ({"model", "optimizer", "epoch"}, "scheduler"),
        ({"model", "optimizer", "scheduler", "epoch"}, "rng"),
        ({"model", "scheduler", "epoch", "rng"}, "optimizer"),
        ({"model", "optimizer", "scheduler", "rng"}, "epoch"),
        (NEEDED | {"versions"}, "versions"),
        (NEEDED | {"metrics"}, "no training computation reads them"),
        (NEEDED | {"step"}, "epoch boundary"),
        (["model", "optimizer"], "set"),
        (NEEDED | {"weights"}, "not a key"),
        # the PyTorch recipe's names
        (
            {
                "model_state_dict",
                "optimizer_state_dict",
                "scheduler_state_dict",
                "epoch",
                "rng",
            },
            "'model_state_dict'",
        ),
        (set(CHECKPOINT_KEYS), "every key of the checkpoint"),
        ("model, optimizer, scheduler, epoch, rng", "set"),
        (NEEDED - {"rng"} | {"train_loader"}, "inside 'rng'"),
        (dict.fromkeys(NEEDED, True), "got dict"),
    ],
    "resume_exactly": _RESUME_WRONG,
    "best_by_accuracy": [
        (_default_manager, "tracks 'val_loss'"),
        (_accuracy_min, "mode='max'"),
        (_loss_max, "tracks 'val_loss'"),
        (lambda folder: str(folder), "return the CheckpointManager"),
        (_own_folder, "the folder you were given"),
        (_subfolder, "the folder you were given"),
        (_forgot_return_manager, "forget the `return`"),
        (_accuracy_word, "metric='val_accuracy'"),
        (_maximize, "mode must be 'min'"),
        (_class_not_instance, "the class itself"),
        (_whole_state_as_best, "best_key"),
    ],
}
RIGHT = {
    "resume_keys": [frozenset(NEEDED), set(CHECKPOINT_KEYS) - {"step", "metrics", "versions"}],
    "resume_exactly": [_right_resume, _by_hand_numpy_epoch],
    "best_by_accuracy": [_str_folder_keep_one],
}
