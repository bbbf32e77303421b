"""Wrong and right answers for the checks in labs_utils/checks/nb15.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import copy
import warnings

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def _right_resume(checkpoint, model, optimizer, ema, loader):
    from labs_utils.toolkit import restore_rng_state

    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    ema.load_state_dict(checkpoint["ema"])
    loader.load_state_dict(checkpoint["loader"])
    restore_rng_state(checkpoint["rng"])
    return checkpoint["epoch"]


def _rng_first_by_hand(checkpoint, model, optimizer, ema, loader):
    """Right: the global generator first, with plain torch; a NumPy epoch."""
    import numpy as np

    torch.set_rng_state(checkpoint["rng"]["torch"])
    for obj, key in (
        (loader, "loader"),
        (ema, "ema"),
        (optimizer, "optimizer"),
        (model, "model"),
    ):
        obj.load_state_dict(checkpoint[key])
    return np.int64(checkpoint["epoch"])


def _looks_at_the_state(checkpoint, model, optimizer, ema, loader):
    """Right: restores everything, then reads the loader's state back (to log the position)."""
    start = _right_resume(checkpoint, model, optimizer, ema, loader)
    position = loader.state_dict()  # noqa: F841
    return start


def _no_loader_state(checkpoint, model, optimizer, ema, loader):
    from labs_utils.toolkit import restore_rng_state

    for obj, key in ((model, "model"), (optimizer, "optimizer"), (ema, "ema")):
        obj.load_state_dict(checkpoint[key])
    restore_rng_state(checkpoint["rng"])
    return checkpoint["epoch"]


def _next_epoch(checkpoint, model, optimizer, ema, loader):
    """Notebook 04's habit: a checkpoint's epoch is a finished one."""
    return _right_resume(checkpoint, model, optimizer, ema, loader) + 1


def _no_ema(checkpoint, model, optimizer, ema, loader):
    from labs_utils.toolkit import restore_rng_state

    for obj, key in ((model, "model"), (optimizer, "optimizer"), (loader, "loader")):
        obj.load_state_dict(checkpoint[key])
    restore_rng_state(checkpoint["rng"])
    return checkpoint["epoch"]


def _new_average(checkpoint, model, optimizer, ema, loader):
    """Builds its own AveragedModel around the resumed model and loads into that one."""
    _no_ema(checkpoint, model, optimizer, ema, loader)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    ema.load_state_dict(checkpoint["ema"])
    return checkpoint["epoch"]


def _ema_into_module(checkpoint, model, optimizer, ema, loader):
    _no_ema(checkpoint, model, optimizer, ema, loader)
    ema.module.load_state_dict(checkpoint["ema"])
    return checkpoint["epoch"]


def _no_rng(checkpoint, model, optimizer, ema, loader):
    for obj, key in (
        (model, "model"),
        (optimizer, "optimizer"),
        (ema, "ema"),
        (loader, "loader"),
    ):
        obj.load_state_dict(checkpoint[key])
    return checkpoint["epoch"]


def _peeks_a_batch(checkpoint, model, optimizer, ema, loader):
    """Restores everything, then looks at a batch to check the loader."""
    start = _right_resume(checkpoint, model, optimizer, ema, loader)
    next(iter(loader))
    return start


def _forward_after(checkpoint, model, optimizer, ema, loader):
    """Restores everything, then checks that the model runs on a random input (in eval mode)."""
    start = _right_resume(checkpoint, model, optimizer, ema, loader)
    model.eval()
    with torch.no_grad():
        model(torch.randn(4, 6))
    model.train()
    return start


def _new_loader(checkpoint, model, optimizer, ema, loader):
    """Loads the position into a loader of its own (the one passed in stays fresh)."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    _no_loader_state(checkpoint, model, optimizer, ema, loader)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        own = StatefulDataLoader(
            loader.dataset, batch_size=loader.batch_size, sampler=loader.sampler
        )
    own.load_state_dict(checkpoint["loader"])
    return checkpoint["epoch"]


def _forgot_return(checkpoint, model, optimizer, ema, loader):
    _right_resume(checkpoint, model, optimizer, ema, loader)


def _right_copy(ema):
    return {k: v.detach().clone() for k, v in ema.module.state_dict().items()}


def _deepcopy_state(ema):
    return copy.deepcopy(ema.module.state_dict())


def _consume_prefix(ema):
    from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

    state = copy.deepcopy(ema.state_dict())
    del state["n_averaged"]
    consume_prefix_in_state_dict_if_present(state, "module.")
    return state


def _removeprefix(ema):
    return {
        k.removeprefix("module."): v.clone()
        for k, v in ema.state_dict().items()
        if k != "n_averaged"
    }


def _replace_everywhere(ema):
    return {
        k.replace("module.", ""): v.clone()
        for k, v in ema.state_dict().items()
        if k != "n_averaged"
    }


def _lstrip(ema):
    return {
        k.lstrip("module."): v.clone() for k, v in ema.state_dict().items() if k != "n_averaged"
    }


def _keeps_prefix(ema):
    return {k: v.clone() for k, v in ema.state_dict().items() if k != "n_averaged"}


def _parameters_only(ema):
    return {k: v.detach().clone() for k, v in ema.module.named_parameters()}


def _forgot_return_ema(ema):
    state = copy.deepcopy(ema.module.state_dict())  # noqa: F841


def _right_scaled(checkpoint, optimizer, scheduler, factor):
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    for group in optimizer.param_groups:
        group["lr"] *= factor
    scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]


def _scaled_with_initial_lr(checkpoint, optimizer, scheduler, factor):
    """Right: also scales each group's 'initial_lr' and the scheduler's last rates."""
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] = group["lr"] * factor
        group["initial_lr"] = group["initial_lr"] * factor
        scheduler.base_lrs[i] *= factor
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]


def _scale_before_load(checkpoint, optimizer, scheduler, factor):
    for group in optimizer.param_groups:
        group["lr"] *= factor
    scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])


def _group_lr_only(checkpoint, optimizer, scheduler, factor):
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    for group in optimizer.param_groups:
        group["lr"] *= factor


def _base_lrs_only(checkpoint, optimizer, scheduler, factor):
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]


def _first_group_only(checkpoint, optimizer, scheduler, factor):
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    optimizer.param_groups[0]["lr"] *= factor
    scheduler.base_lrs[0] *= factor


def _set_to_factor(checkpoint, optimizer, scheduler, factor):
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    for group in optimizer.param_groups:
        group["lr"] = factor
    scheduler.base_lrs = [factor for _ in scheduler.base_lrs]


def _no_scheduler_state(checkpoint, optimizer, scheduler, factor):
    optimizer.load_state_dict(checkpoint["optimizer"])
    for group in optimizer.param_groups:
        group["lr"] *= factor
    scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]


def _steps_to_apply(checkpoint, optimizer, scheduler, factor):
    _right_scaled(checkpoint, optimizer, scheduler, factor)
    scheduler.step()  # "to apply the new rate"


def _own_optimizer(checkpoint, optimizer, scheduler, factor):
    """Builds a new optimizer with the lower rate and loads into it (the one passed in stays fresh)."""
    optimizer = torch.optim.AdamW(
        [{"params": g["params"], "lr": g["lr"] * factor} for g in optimizer.param_groups]
    )
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])


WRONG = {
    "resume_mid_epoch": [
        (_no_loader_state, "loader.load_state_dict(checkpoint['loader'])"),
        (_new_loader, "no restored position"),
        (_next_epoch, "is not finished"),
        (_no_ema, "ema.load_state_dict(checkpoint['ema'])"),
        (_new_average, "n_averaged is 0"),
        (_ema_into_module, "unexpected key"),
        (_no_rng, "restore_rng_state(checkpoint['rng'])"),
        (_peeks_a_batch, "iterated over the loader"),
        (_forward_after, "restore the rng states last"),
        (_forgot_return, "forget the `return`"),
    ],
    "ema_weights": [
        (lambda ema: ema.state_dict(), "n_averaged"),
        (_keeps_prefix, "'module.' prefix"),
        (_replace_everywhere, "removes more than"),
        (_lstrip, "removes more than"),
        (lambda ema: ema.module.state_dict(), "share memory"),
        (_parameters_only, "buffers are missing"),
        (lambda ema: copy.deepcopy(ema.module), "returned a module"),
        (_forgot_return_ema, "forget the `return`"),
    ],
    "resume_scaled": [
        (_scale_before_load, "scale after loading both"),
        (_group_lr_only, "scale scheduler.base_lrs too"),
        (_base_lrs_only, "multiply every optimizer.param_groups"),
        (_first_group_only, "only the first parameter group"),
        (_set_to_factor, "instead of setting them"),
        (_no_scheduler_state, "scheduler.load_state_dict(checkpoint['scheduler'])"),
        (_steps_to_apply, "do not call scheduler.step()"),
        (_own_optimizer, "has no state"),
    ],
}
RIGHT = {
    "resume_mid_epoch": [_right_resume, _rng_first_by_hand, _looks_at_the_state],
    "ema_weights": [_right_copy, _deepcopy_state, _consume_prefix, _removeprefix],
    "resume_scaled": [_right_scaled, _scaled_with_initial_lr],
}
