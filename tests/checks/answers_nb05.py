"""Wrong and right answers for the checks in labs_utils/checks/nb05.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch


def _globals_trick(model, optimizer, scheduler, scaler, epoch):
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if "scaler" in globals() else None,
        "epoch": epoch,
    }


def _scaler_object(model, optimizer, scheduler, scaler, epoch):
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler,
        "epoch": epoch,
    }


def _no_scheduler(model, optimizer, scheduler, scaler, epoch):
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
    }


def _enabled_only(model, optimizer, scheduler, scaler, epoch):
    ckpt = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
    }
    if scaler.is_enabled():
        ckpt["scaler"] = scaler.state_dict()
    return ckpt


def _none_when_disabled(model, optimizer, scheduler, scaler, epoch):
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "epoch": epoch,
    }


def _model_object(model, optimizer, scheduler, scaler, epoch):
    return {
        "model": model,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
    }


def _optimizer_is_model(model, optimizer, scheduler, scaler, epoch):
    """Copy-paste slip: the optimizer entry holds the model's state_dict (the simulation's case)."""
    return {
        "model": model.state_dict(),
        "optimizer": model.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
    }


def _model_is_optimizer(model, optimizer, scheduler, scaler, epoch):
    """Copy-paste slip: the model entry holds the optimizer's state_dict (the simulation's case)."""
    return {
        "model": optimizer.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
    }


def _scheduler_is_optimizer(model, optimizer, scheduler, scaler, epoch):
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
    }


def _parameters_only(model, optimizer, scheduler, scaler, epoch):
    """Weights from named_parameters(): BatchNorm's running statistics (buffers) are lost."""
    return {
        "model": {k: v.detach() for k, v in model.named_parameters()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
    }


def _optimizer_state_only(model, optimizer, scheduler, scaler, epoch):
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict()["state"],
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
    }


def _bound_method(model, optimizer, scheduler, scaler, epoch):
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict,
        "scaler": scaler.state_dict(),
        "epoch": epoch,
    }


def _next_epoch(model, optimizer, scheduler, scaler, epoch):
    return {**_right(model, optimizer, scheduler, scaler, epoch), "epoch": epoch + 1}


def _right(model, optimizer, scheduler, scaler, epoch):
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
    }


def _right_deepcopy_loop(model, optimizer, scheduler, scaler, epoch):
    ckpt = dict(epoch=int(epoch))
    for name, obj in (
        ("model", model),
        ("optimizer", optimizer),
        ("scheduler", scheduler),
        ("scaler", scaler),
    ):
        ckpt[name] = copy.deepcopy(obj.state_dict())
    return ckpt


def _right_with_extras(model, optimizer, scheduler, scaler, epoch):
    from labs_utils.toolkit import capture_rng_state

    return {
        **_right(model, optimizer, scheduler, scaler, epoch),
        "rng": capture_rng_state(),
        "versions": {"torch": str(torch.__version__)},
    }


def _as_tuple(model, optimizer, scheduler, scaler, epoch):
    return tuple(_right(model, optimizer, scheduler, scaler, epoch).items())


WRONG = {
    "fresh_scaler_skips": [
        (6, "2**16"),
        (8, "2**9 itself"),
        (0, "starts at 2**16"),
        (2**7, "halving"),
        ("7", "int"),
        (math.log2(2**16 / 2**9), "7 as int"),
        (np.float64(7.0), "float64"),
        (9, "exponent of the settled scale"),
        (16, "exponent of the start scale"),
        (True, "bool"),
    ],
    "amp_checkpoint": [
        (_globals_trick, "globals()"),
        (_scaler_object, "scaler.state_dict()"),
        (_no_scheduler, "'scheduler'"),
        (_enabled_only, "disabled"),
        (_model_object, "model.state_dict()"),
        (_optimizer_is_model, "the 'optimizer' entry holds the model's"),
        (_model_is_optimizer, "the 'model' entry holds the optimizer's"),
        (_scheduler_is_optimizer, "the 'scheduler' entry holds the optimizer's"),
        (_parameters_only, "buffers"),
        (_optimizer_state_only, "param_groups"),
        (_bound_method, "scheduler.state_dict()"),
        (_none_when_disabled, "a disabled scaler's state_dict() is {}"),
        (_next_epoch, "the epoch you were given"),
        (_as_tuple, "return a dict"),
    ],
}
RIGHT = {
    "fresh_scaler_skips": [np.int64(7), int(math.log2(2**16 // 2**9)), torch.tensor(7)],
    "amp_checkpoint": [_right, _right_deepcopy_loop, _right_with_extras],
}
