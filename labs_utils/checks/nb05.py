"""Checks for notebooks/05_amp_and_scheduler_resume.ipynb."""

from __future__ import annotations

import torch
import torch.nn as nn

from . import Wrong, as_int, call_answer, exercise, same
from .fixtures import refused_global, through_file

NB = "05_amp_and_scheduler_resume"


_SKIP_HINTS = {
    0: "a fresh GradScaler starts at 2**16, far above 2**9, so its first steps overflow and are skipped",
    128: "each skipped step multiplies the scale by backoff_factor=0.5, one halving per step; count the halvings from 2**16 to 2**9, not the ratio 2**16 / 2**9",
    8: "the step that runs at 2**9 itself does not overflow: count only the steps with a scale above it",
    9: "9 is the exponent of the settled scale, 2**9; count the halvings from 2**16 down to it",
    16: "16 is the exponent of the start scale, 2**16; count the halvings from it down to 2**9",
    None: "each skipped step halves the scale once: count the halvings from 2**16 down to 2**9",
}


@exercise("fresh_scaler_skips", notebook=NB)
def fresh_scaler_skips(answer) -> str:
    """``answer``: steps a fresh GradScaler skips to get from 2**16 down to a settled scale of 2**9."""
    answer = as_int(answer, "the number of skipped steps")
    if answer != 7:
        raise Wrong(_SKIP_HINTS.get(answer, _SKIP_HINTS[None]))
    return "2**16 -> 2**9 is seven halvings: seven batches thrown away, which restoring the scaler's state avoids."


KEYS = ("model", "optimizer", "scheduler", "scaler", "epoch")
EPOCH = 4


def _objects(enabled: bool):
    """A model with BatchNorm buffers, Adam, StepLR and a GradScaler, each with state after 5 steps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    scaler = torch.amp.GradScaler("cpu", enabled=enabled, init_scale=2.0**10, growth_interval=3)
    for _ in range(5):
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(torch.randn(8, 4)).float().pow(2).mean()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
    return model, optimizer, scheduler, scaler


@exercise("amp_checkpoint", notebook=NB)
def amp_checkpoint(fn) -> str:
    """``fn(model, optimizer, scheduler, scaler, epoch)`` returns a loadable checkpoint dict, scaler included."""
    for enabled in (True, False):
        objects = _objects(enabled)
        real = {k: obj.state_dict() for k, obj in zip(KEYS, objects)}
        ckpt = call_answer(fn, *objects, EPOCH)
        label = "an enabled" if enabled else "a disabled"
        if not isinstance(ckpt, dict):
            raise Wrong(f"return a dict, got {type(ckpt).__name__}")
        missing = [k for k in KEYS if k not in ckpt]
        if missing:
            extra = ""
            if missing == ["scaler"] and not enabled:
                extra = " (a disabled scaler's state_dict() is {}: save it anyway)"
            raise Wrong(f"with {label} scaler your checkpoint has no {missing[0]!r} entry{extra}")
        for name in ("scaler", "model", "optimizer", "scheduler"):
            if hint := _entry_hint(name, ckpt[name], real, label):
                raise Wrong(hint)
        epoch = as_int(ckpt["epoch"], "the 'epoch' entry")
        if epoch != EPOCH:
            raise Wrong(
                f"'epoch' should be the epoch you were given ({EPOCH}), got {epoch!r}: the resume adds the 1"
            )
        _round_trip(ckpt)
    return "one pattern for AMP on and off: the scaler's state_dict() is always saved and always loads."


def _entry_hint(name: str, value, real: dict, label: str) -> str | None:
    if value is None and name == "scaler":
        why = {
            "an enabled": 'whatever decided that did not look at the scaler you were given (a test like "scaler" in globals() does this)',
            "a disabled": "a disabled scaler's state_dict() is {}, and the resume loads it with no condition",
        }
        return f"with {label} scaler your checkpoint says scaler=None: {why[label]}; store scaler.state_dict() always"
    if callable(value) or hasattr(value, "state_dict"):
        what = (
            f"the {type(value).__name__} object" if hasattr(value, "state_dict") else "a function"
        )
        return f"the {name!r} entry is {what}, not {name}.state_dict() (parentheses included): store {name}.state_dict(), since weights_only loading refuses objects"
    if same(value, real[name]):
        return
    other = next((k for k, sd in real.items() if sd and same(value, sd)), None)
    if other and other != name:
        return f"the {name!r} entry holds the {other}'s state_dict (a copy-paste slip?): store {name}.state_dict() there"
    if name == "model" and isinstance(value, dict) and set(real["model"]) - set(value):
        lost = sorted(set(real["model"]) - set(value))
        return f"the 'model' entry misses {lost[:3]}: BatchNorm's running statistics are buffers, not parameters; model.state_dict() holds both"
    if name == "optimizer" and isinstance(value, dict) and "param_groups" not in value:
        return "the 'optimizer' entry has no 'param_groups' (learning rate, betas ...): store the whole optimizer.state_dict(), not only its 'state'"
    return f"the {name!r} entry is not {name}.state_dict(): store exactly that"


def _round_trip(ckpt: dict) -> None:
    for key, value in ckpt.items():
        try:
            through_file({key: value})
        except Exception as e:  # torch names the class it refuses: "GLOBAL module.Class"
            raise Wrong(
                f"the checkpoint does not load with weights_only=True: its {key!r} entry holds a {refused_global(e) or type(value).__name__}; store state_dict()s, plain numbers (int(x), float(x)) and strings only"
            ) from None
