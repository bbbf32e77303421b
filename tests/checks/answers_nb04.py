"""Wrong and right answers for the checks in labs_utils/checks/nb04.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

from pathlib import Path

import torch

from labs_utils.checks.nb04 import _RESUME_WRONG, CHECKPOINT_KEYS, NEEDED, _right_resume


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
