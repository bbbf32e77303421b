"""Checks for notebooks/05_amp_and_scheduler_resume.ipynb."""

from __future__ import annotations

import torch
import torch.nn as nn

from . import Wrong, as_int, call_answer, exercise, same
from .fixtures import through_file

NB = "05_amp_and_scheduler_resume"


_SKIP_HINTS = {
    0: "a fresh GradScaler starts at 2**16, far above 2**9, so its first steps overflow and are skipped",
    2
    ** 7: "each skipped step multiplies the scale by backoff_factor=0.5, one halving per step; count the halvings from 2**16 to 2**9, not the ratio 2**16 / 2**9",
    8: "the step that runs at 2**9 itself does not overflow: count only the steps with a scale above it",
    9: "9 is the exponent of the settled scale, 2**9; count the halvings from 2**16 down to it",
    16: "16 is the exponent of the start scale, 2**16; count the halvings from it down to 2**9",
}


@exercise("fresh_scaler_skips", notebook=NB)
def fresh_scaler_skips(answer) -> str:
    """``answer``: steps a fresh GradScaler skips to get from 2**16 down to a settled scale of 2**9."""
    answer = as_int(answer, "the number of skipped steps")
    if answer != 7:
        raise Wrong(
            _SKIP_HINTS.get(
                answer,
                "each skipped step halves the scale once: count the halvings from 2**16 down to 2**9",
            )
        )
    return "2**16 -> 2**9 is seven halvings: seven batches thrown away, which restoring the scaler's state avoids."


KEYS = ("model", "optimizer", "scheduler", "scaler", "epoch")
EPOCH = 4


def _built(enabled: bool, **scaler_options) -> tuple:
    """A model with buffers (BatchNorm), Adam, a StepLR scheduler and a GradScaler."""
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    return (
        model,
        optimizer,
        scheduler,
        torch.amp.GradScaler("cpu", enabled=enabled, **scaler_options),
    )


def _objects(enabled: bool):
    """``_built`` after a few steps: Adam with state, the scheduler stepped, the scale moved."""
    torch.manual_seed(0)
    model, optimizer, scheduler, scaler = _built(enabled, init_scale=2.0**10, growth_interval=3)
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
        model, optimizer, scheduler, scaler = objects = _objects(enabled)
        real = {k: obj.state_dict() for k, obj in zip(KEYS, objects)}
        ckpt = call_answer(fn, model, optimizer, scheduler, scaler, EPOCH)
        label = "an enabled" if enabled else "a disabled"
        if not isinstance(ckpt, dict):
            raise Wrong(f"return a dict, got {type(ckpt).__name__}")
        missing = [k for k in KEYS if k not in ckpt]
        if missing:
            extra = ""
            if missing == ["scaler"] and not enabled:
                extra = " (a disabled scaler's state_dict() is {}: save it anyway)"
            raise Wrong(f"with {label} scaler your checkpoint has no {missing[0]!r} entry{extra}")
        _check_scaler_entry(ckpt["scaler"], scaler, enabled, label)
        for name in ("model", "optimizer", "scheduler"):
            _check_entry(name, ckpt[name], real)
        epoch = as_int(ckpt["epoch"], "the 'epoch' entry")
        if epoch != EPOCH:
            raise Wrong(
                f"'epoch' should be the epoch you were given ({EPOCH}), got {epoch!r}: the resume adds the 1"
            )
        loaded = _round_trip(ckpt)
        _check_loads_back(loaded, enabled, real)
    return "one pattern for AMP on and off: the scaler's state_dict() is always saved and always loads."


def _check_scaler_entry(entry, scaler, enabled: bool, label: str) -> None:
    if entry is None:
        if enabled:
            raise Wrong(
                f"with {label} scaler your checkpoint says scaler=None: whatever decided that did not look at "
                'the scaler you were given (a test like "scaler" in globals() does this); store '
                "scaler.state_dict() always"
            )
        raise Wrong(
            "with a disabled scaler your checkpoint says scaler=None: store scaler.state_dict() always (a disabled scaler's state_dict() is {}), so the resume loads it with no condition"
        )
    if isinstance(entry, torch.amp.GradScaler) or not isinstance(entry, dict):
        raise Wrong(
            "store scaler.state_dict(), not the GradScaler object: weights_only loading refuses objects"
        )
    if entry != scaler.state_dict():
        raise Wrong(f"with {label} scaler the 'scaler' entry differs from scaler.state_dict()")


def _kind(value, real: dict) -> str:
    """Which object's state_dict ``value`` is, by its structure ('' if none)."""
    if not isinstance(value, dict):
        return ""
    for name, sd in real.items():
        if value.keys() == sd.keys() and (name != "model" or same(value, sd)):
            return name
    return ""


def _check_entry(name: str, value, real: dict) -> None:
    if isinstance(value, (nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)):
        raise Wrong(
            f"store {name}.state_dict(), not the {type(value).__name__} object: weights_only loading refuses objects"
        )
    if callable(value):
        raise Wrong(
            f"the {name!r} entry is a function ({name}.state_dict without parentheses?): store {name}.state_dict()"
        )
    if same(value, real[name]):
        return
    other = _kind(value, real)
    if other and other != name:
        raise Wrong(
            f"the {name!r} entry holds the {other}'s state_dict (a copy-paste slip?): store {name}.state_dict() there"
        )
    if name == "model" and isinstance(value, dict):
        lost = sorted(set(real["model"]) - set(value))
        if lost:
            raise Wrong(
                f"the 'model' entry misses {lost[:3]}: BatchNorm's running statistics are buffers, not parameters; model.state_dict() holds both"
            )
    if name == "optimizer" and isinstance(value, dict) and "param_groups" not in value:
        raise Wrong(
            "the 'optimizer' entry has no 'param_groups' (learning rate, betas ...): store the whole optimizer.state_dict(), not only its 'state'"
        )
    raise Wrong(f"the {name!r} entry is not {name}.state_dict(): store exactly that")


def _round_trip(ckpt: dict):
    try:
        return through_file(ckpt)
    except Exception as e:
        for key, value in ckpt.items():
            try:
                through_file({key: value})
            except Exception:
                inside = _type_inside(value) or type(value).__name__
                raise Wrong(
                    f"the checkpoint does not load with weights_only=True: its {key!r} entry holds a {inside}; store state_dict()s, plain numbers (int(x), float(x)) and strings only"
                ) from None
        raise Wrong(
            f"the checkpoint does not load with weights_only=True ({type(e).__name__}); store state_dict()s and plain numbers only"
        ) from None


def _type_inside(value, depth: int = 0) -> str:
    """The type of the first thing in ``value`` that is not a tensor, a plain Python value or container."""
    from collections import OrderedDict

    if isinstance(value, torch.Tensor) or type(value) in (str, bytes, int, float, bool, type(None)):
        return ""
    if isinstance(value, (dict, list, tuple)) and depth < 10:
        for v in value.values() if isinstance(value, dict) else value:
            inner = _type_inside(v, depth + 1)
            if inner:
                return inner
        if type(value) in (dict, OrderedDict, list, tuple):
            return ""
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _check_loads_back(loaded: dict, enabled: bool, real: dict) -> None:
    """Every entry loads into a freshly built object of the right kind and gives the saved state back."""
    for name, obj in zip(KEYS, _built(enabled)):
        obj.load_state_dict(loaded[name])
        if not same(obj.state_dict(), real[name]):  # pragma: no cover - compared above
            raise Wrong(
                f"after a weights_only load, the {name!r} entry does not give the saved state back"
            )
