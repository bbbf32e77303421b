"""Checks for notebooks/05_amp_and_scheduler_resume.ipynb."""
from __future__ import annotations

import io

import torch
import torch.nn as nn

from . import Wrong, call_answer, exercise

NB = "05_amp_and_scheduler_resume"


@exercise("fresh_scaler_skips", notebook=NB, wrong=[
    (6, "2**16"),
    (8, "2**9 itself"),
    (0, "starts at 2**16"),
    (2**7, "halving"),
    ("7", "int"),
])
def fresh_scaler_skips(answer) -> str:
    """``answer``: steps a fresh GradScaler skips to get from 2**16 down to a settled scale of 2**9."""
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise Wrong(f"give a whole number of steps as an int, e.g. 3; got {type(answer).__name__}")
    if answer == 0:
        raise Wrong("a fresh GradScaler starts at 2**16, far above 2**9, so its first steps overflow and are skipped")
    if answer == 2**7:
        raise Wrong("each skipped step multiplies the scale by backoff_factor=0.5, one halving per step; count the "
                    "halvings from 2**16 to 2**9, not the ratio 2**16 / 2**9")
    if answer == 8:
        raise Wrong("the step that runs at 2**9 itself does not overflow: count only the steps with a scale above it")
    if answer != 7:
        raise Wrong("each skipped step halves the scale once: count the halvings from 2**16 down to 2**9")
    return "2**16 -> 2**9 is seven halvings: seven batches thrown away, which restoring the scaler's state avoids."


def _objects(enabled: bool):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    scaler = torch.amp.GradScaler("cpu", enabled=enabled, growth_interval=3)
    for _ in range(5):
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(torch.randn(8, 4)).float().pow(2).mean()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
    return model, optimizer, scheduler, scaler


def _globals_trick(model, optimizer, scheduler, scaler, epoch):
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if "scaler" in globals() else None, "epoch": epoch}


def _scaler_object(model, optimizer, scheduler, scaler, epoch):
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler, "epoch": epoch}


def _no_scheduler(model, optimizer, scheduler, scaler, epoch):
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "epoch": epoch}


def _enabled_only(model, optimizer, scheduler, scaler, epoch):
    ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "epoch": epoch}
    if scaler.is_enabled():
        ckpt["scaler"] = scaler.state_dict()
    return ckpt


def _model_object(model, optimizer, scheduler, scaler, epoch):
    return {"model": model, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "epoch": epoch}


def _right(model, optimizer, scheduler, scaler, epoch):
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "epoch": epoch}


@exercise("amp_checkpoint", notebook=NB, right=[_right], wrong=[
    (_globals_trick, "globals()"),
    (_scaler_object, "scaler.state_dict()"),
    (_no_scheduler, "'scheduler'"),
    (_enabled_only, "disabled"),
    (_model_object, "model.state_dict()"),
])
def amp_checkpoint(fn) -> str:
    """``fn(model, optimizer, scheduler, scaler, epoch)`` returns a loadable checkpoint dict, scaler included."""
    return _amp_checkpoint(fn)  # the check framework restores the learner's random generators afterwards


def _amp_checkpoint(fn) -> str:
    for enabled in (True, False):
        model, optimizer, scheduler, scaler = _objects(enabled)
        ckpt = call_answer(fn, model, optimizer, scheduler, scaler, 4)
        label = "an enabled" if enabled else "a disabled"
        if not isinstance(ckpt, dict):
            raise Wrong(f"return a dict, got {type(ckpt).__name__}")
        missing = [k for k in ("model", "optimizer", "scheduler", "scaler", "epoch") if k not in ckpt]
        if missing:
            extra = " (a disabled scaler's state_dict() is {}: save it anyway)" if missing == ["scaler"] and not enabled else ""
            raise Wrong(f"with {label} scaler your checkpoint has no {missing[0]!r} entry{extra}")
        if ckpt["scaler"] is None:
            raise Wrong(f"with {label} scaler your checkpoint says scaler=None: a test like \"scaler\" in globals() "
                        "does not see the scaler you were given; store scaler.state_dict() always")
        if isinstance(ckpt["scaler"], torch.amp.GradScaler) or not isinstance(ckpt["scaler"], dict):
            raise Wrong("store scaler.state_dict(), not the GradScaler object: weights_only loading refuses objects")
        if ckpt["scaler"] != scaler.state_dict():
            raise Wrong("the 'scaler' entry differs from scaler.state_dict()")
        if isinstance(ckpt["model"], nn.Module):
            raise Wrong("store model.state_dict(), not the model object")
        if ckpt["epoch"] != 4:
            raise Wrong(f"'epoch' should be the epoch you were given (4), got {ckpt['epoch']!r}")
        buf = io.BytesIO()
        torch.save(ckpt, buf)
        buf.seek(0)
        try:
            loaded = torch.load(buf, weights_only=True)
        except Exception as e:
            raise Wrong(f"the checkpoint does not load with weights_only=True ({type(e).__name__}); store "
                        "state_dict()s and plain numbers only") from None
        fresh = torch.amp.GradScaler("cpu", enabled=enabled)
        fresh.load_state_dict(loaded["scaler"])
        if enabled and fresh.get_scale() != scaler.get_scale():
            raise Wrong("a scaler loaded from your checkpoint does not get the saved scale back")
    return "one pattern for AMP on and off: the scaler's state_dict() is always saved and always loads."
