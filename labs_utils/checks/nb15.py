"""Checks for notebooks/15_resume_mid_epoch_and_ema.ipynb.

``resume_mid_epoch`` crashes runs (a model with BatchNorm and Dropout, SGD with momentum, an EMA
with ``use_buffers=True``, a two-generator ``StatefulDataLoader``) before the first step, in the
middle of an epoch, after the last step of an epoch, at an epoch boundary (the loader's epoch has
ended), and with two worker processes; it looks at every object the answer was given, then finishes
the run and compares the batches, the model and the EMA with the uninterrupted run (``torch.equal``).

``ema_weights`` gives ``AveragedModel``s of three models: BatchNorm with averaged buffers, one with a
submodule of its own named ``module`` (``str.replace`` and ``str.lstrip`` break its keys), and
BatchNorm with copied buffers; the answer must load strictly into a fresh model, answer like the
average, and hold copies that a later ``update_parameters`` does not change.

``resume_scaled`` resumes AdamW with two parameter groups under ``CosineAnnealingLR`` and ``StepLR``
(they scale the current rate), ``LambdaLR`` (it computes from ``base_lrs``) and ``ExponentialLR``,
with factors 0.1 and 0.5, and compares each group's rate over the next steps with the plan.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import TensorDataset

from . import Case, Wrong, as_int, behaves_like, call_answer, exercise, run_answer, same
from .fixtures import drew_after_restoring, through_file

NB = "15_resume_mid_epoch_and_ema"


# --------------------------------------------------------------------------- resume_mid_epoch

_N, _BATCH, _EPOCHS = 64, 16, 2  # 4 steps per epoch
_STEPS = _N // _BATCH
# (stop_at, num_workers): (epoch, step) = stop right after that step; step 0 = before the epoch starts
_CASES = [((0, 2), 0), ((0, _STEPS), 0), ((1, 0), 0), ((0, 0), 0), ((0, 1), 2)]
_DATA: list[TensorDataset] = []


def _data() -> TensorDataset:
    if not _DATA:
        g = torch.Generator().manual_seed(21)
        x = torch.randn(_N, 6, generator=g)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
        _DATA.append(TensorDataset(x, y, torch.arange(_N)))
    return _DATA[0]


def _objects(seed: int, num_workers: int):
    from torchdata.stateful_dataloader import StatefulDataLoader
    from torchdata.stateful_dataloader.sampler import RandomSampler

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(6, 12),
        nn.BatchNorm1d(12),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(12, 3),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    data = _data()
    with (
        warnings.catch_warnings()
    ):  # torchdata 0.11 calls torch.set_vital, which torch 2.13 deprecates
        warnings.filterwarnings("ignore", message="'set_vital' is deprecated")
        loader = StatefulDataLoader(
            data,
            batch_size=_BATCH,
            num_workers=num_workers,
            sampler=RandomSampler(data, generator=torch.Generator().manual_seed(seed + 5)),
            generator=torch.Generator().manual_seed(seed + 6),
        )
    return model, optimizer, ema, loader


def _train(model, optimizer, ema, loader, start: int, log: list, stop_at=None) -> list:
    for epoch in range(start, _EPOCHS):
        if stop_at == (epoch, 0):
            return log
        for x, y, idx in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            ema.update_parameters(model)
            log.append((epoch, idx.tolist()))
            if stop_at == (epoch, sum(1 for e, _ in log if e == epoch)):
                return log
    return log


def _training_state(model, optimizer, ema, loader, epoch: int) -> dict:
    from ..toolkit import capture_rng_state

    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "ema": ema.state_dict(),
        "loader": loader.state_dict(),
        "epoch": epoch,
        "rng": capture_rng_state(),
    }


def _reference(num_workers: int, cache: dict):
    if num_workers not in cache:
        model, optimizer, ema, loader = _objects(0, num_workers)
        log = _train(model, optimizer, ema, loader, 0, [])
        cache[num_workers] = (
            log,
            copy.deepcopy(model.state_dict()),
            copy.deepcopy(ema.state_dict()),
        )
    return cache[num_workers]


def _where(stop_at) -> str:
    epoch, step = stop_at
    if step == 0:
        return f"a checkpoint taken before epoch {epoch} started"
    if step == _STEPS:
        return f"a checkpoint taken after the last step ({step}) of epoch {epoch}"
    return f"a checkpoint taken after step {step} of epoch {epoch}"


def _check_restored(saved: dict, model, optimizer, ema, loader, where: str) -> None:
    if not same(saved["model"], model.state_dict()):
        raise Wrong(
            f"with {where}, the model's weights differ from the checkpoint's: call "
            "model.load_state_dict(checkpoint['model']) on the model passed in"
        )
    now = optimizer.state_dict()
    if saved["optimizer"]["state"] and not now["state"]:
        raise Wrong(
            f"with {where}, the optimizer you were given has no momentum buffers: call "
            "optimizer.load_state_dict(checkpoint['optimizer']) on that object (training goes on with it)"
        )
    if now["state"].keys() != saved["optimizer"]["state"].keys() or not all(
        same(saved["optimizer"]["state"][i], s) for i, s in now["state"].items()
    ):
        raise Wrong(
            f"with {where}, the optimizer's momentum buffers differ from the checkpoint's: call "
            "optimizer.load_state_dict(checkpoint['optimizer'])"
        )
    ema_now = ema.state_dict()
    if int(ema_now["n_averaged"]) == 0 and int(saved["ema"]["n_averaged"]) > 0:
        raise Wrong(
            f"with {where}, the average you were given was not restored (its n_averaged is 0, so its next "
            "update would copy the weights and forget the average): call "
            "ema.load_state_dict(checkpoint['ema']) on the AveragedModel passed in"
        )
    if not same(saved["ema"], ema_now):
        raise Wrong(
            f"with {where}, the average's weights differ from the checkpoint's: load checkpoint['ema'] "
            "with ema.load_state_dict (the AveragedModel's own keys, 'module.' prefix and n_averaged)"
        )
    if loader.next_iter_state is None and not loader._initial_iter_for_state_dict:
        # (after load_state_dict, loader.state_dict() builds the iterator the next iter() reuses: fine)
        if loader._iterator is not None:
            raise Wrong(
                f"with {where}, your function iterated over the loader (iter(loader) or "
                "next(iter(loader))): the first iter() after load_state_dict uses the restored position, "
                "and the training loop's own iter() then starts a new epoch. Leave the loader to the loop"
            )
        raise Wrong(
            f"with {where}, the loader you were given has no restored position: call "
            "loader.load_state_dict(checkpoint['loader']) on it (training goes on with that loader)"
        )
    saved_rng, now_rng = saved["rng"]["torch"], torch.get_rng_state()
    if not torch.equal(saved_rng, now_rng):
        if drew_after_restoring(saved_rng, now_rng):
            raise Wrong(
                f"with {where}, your function restored torch's global generator, then drew from it before "
                "returning (a forward pass in train mode, torch.randn, building a layer): restore the RNG "
                "states last"
            )
        raise Wrong(
            f"with {where}, torch's global generator (the Dropout masks) is not the checkpoint's: "
            "restore_rng_state(checkpoint['rng'])"
        )


def _check_batches(log: list, reference: list, stop_at, start: int, where: str) -> None:
    epoch, step = stop_at
    got = [b for e, b in log if e == epoch]
    expected = [b for e, b in reference if e == epoch]
    if got == expected:
        return
    if start == epoch and step > 0 and len(got) == len(expected) + step:
        raise Wrong(
            f"with {where}, the loader gave all {len(expected)} batches of epoch {epoch} again, not the "
            f"{len(expected) - step} left: load checkpoint['loader'] into the loader passed in"
        )
    raise Wrong(
        f"with {where}, the batches of epoch {epoch} after the resume differ from the uninterrupted run's: "
        "load checkpoint['loader'] into the loader passed in, and do not draw batches in your function"
    )


@exercise("resume_mid_epoch", notebook=NB)
def resume_mid_epoch(fn) -> str:
    """``fn(checkpoint, model, optimizer, ema, loader)`` restores everything and returns the epoch to train next."""
    references: dict = {}
    for stop_at, workers in _CASES:
        ref_log, ref_model, ref_ema = _reference(workers, references)
        model, optimizer, ema, loader = _objects(0, workers)
        log = _train(model, optimizer, ema, loader, 0, [], stop_at=stop_at)
        checkpoint = through_file(_training_state(model, optimizer, ema, loader, stop_at[0]))
        saved = through_file(checkpoint)  # a copy the answer cannot change
        del model, optimizer, ema, loader  # the process dies

        where = _where(stop_at) + (f" and {workers} workers" if workers else "")
        model, optimizer, ema, loader = _objects(99, workers)
        try:
            start = call_answer(fn, checkpoint, model, optimizer, ema, loader)
        except Wrong as w:
            if "n_averaged" in str(w) and "Unexpected key" in str(w):
                raise Wrong(
                    f"{w}: checkpoint['ema'] is the AveragedModel's own state_dict (unexpected keys "
                    "'n_averaged' and 'module.'...); load it with ema.load_state_dict, not into ema.module"
                ) from None
            raise
        start = as_int(start, "the epoch your function returned")
        _check_restored(saved, model, optimizer, ema, loader, where)
        epoch = saved["epoch"]
        if start == epoch + 1:
            raise Wrong(
                f"with {where}, your function returned {start}, the epoch after the checkpoint's: epoch "
                f"{epoch} is not finished, its loader state holds the batches left; return checkpoint['epoch']"
            )
        if start != epoch:
            raise Wrong(
                f"with {where}, your function returned {start}; the run goes on in the checkpoint's epoch "
                f"({epoch}): return checkpoint['epoch']"
            )
        _train(model, optimizer, ema, loader, start, log)
        _check_batches(log, ref_log, stop_at, start, where)
        if log != ref_log:
            raise Wrong(
                f"with {where}, the epochs after the resumed one got other batches than the uninterrupted "
                "run: restore every object passed in, and build nothing that draws from the loader's "
                "generators"
            )
        if not same(ref_model, model.state_dict()) or not same(ref_ema, ema.state_dict()):
            raise Wrong(
                f"with {where}, the run saw the same batches but ended with other weights: restore the "
                "model, the optimizer, the EMA and the RNG states, and draw no random numbers afterwards"
            )
    return (
        "the model and its EMA end identical to uninterrupted runs, resumed before the first step, mid-epoch, "
        "after an epoch's last step, at an epoch boundary, and with 2 workers."
    )


# --------------------------------------------------------------------------- ema_weights


class _HasModule(nn.Module):
    """A model with a submodule of its own named ``module``: its keys start with 'module.'."""

    def __init__(self) -> None:
        super().__init__()
        self.module = nn.Linear(4, 6)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(6, 3))

    def forward(self, x):
        return self.head(self.module(x))


def _bn_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


# (factory, use_buffers, description)
_EMA_CASES = [
    (_bn_model, True, "a model with BatchNorm (use_buffers=True)"),
    (_HasModule, True, "a model with a submodule named 'module'"),
    (_bn_model, False, "a model with BatchNorm (use_buffers=False)"),
]


def _trained_average(factory, use_buffers: bool, seed: int):
    """An AveragedModel that differs from its model: a few SGD steps, an update after each."""
    torch.manual_seed(seed)
    model = factory()
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.8), use_buffers=use_buffers)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(4):
        optimizer.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        optimizer.step()
        ema.update_parameters(model)
    return model, ema


def _average_only(factory, use_buffers: bool, seed: int) -> tuple:
    return (_trained_average(factory, use_buffers, seed)[1],)


def _without_counter(ema) -> dict:
    return {k: v.clone() for k, v in ema.state_dict().items() if k != "n_averaged"}


_EMA_MISTAKES = [
    (
        lambda ema: ema.state_dict(),
        "your dict holds 'n_averaged', the AveragedModel's own counter: it is not a weight of the "
        "model, which refuses it as an unexpected key. Take the weights of ema.module",
    ),
    (
        _without_counter,
        "the keys still carry AveragedModel's 'module.' prefix ('module.0.weight'): take "
        "ema.module.state_dict(), or remove the prefix once, at the start of each key",
    ),
    (
        lambda ema: {k.replace("module.", ""): v for k, v in _without_counter(ema).items()},
        "a key lost more than AveragedModel's prefix: the check's model has a submodule named "
        "'module', and replace('module.', '') or lstrip('module.') removes more than the prefix. "
        "Remove it only once, at the start (str.removeprefix), or use ema.module.state_dict()",
    ),
    (
        lambda ema: {k: v.detach().clone() for k, v in ema.module.named_parameters()},
        "the buffers are missing: parameters alone leave out BatchNorm's running statistics; a "
        "state_dict holds parameters and buffers",
    ),
    (
        lambda ema: copy.deepcopy(ema.module),
        "you returned a module; return its state_dict(), the dict of tensors a model loads",
    ),
]


@exercise("ema_weights", notebook=NB)
def ema_weights(fn) -> str:
    """``fn(ema)`` returns the averaged weights as a plain state_dict of copies."""
    cases = [
        Case(what, functools.partial(_average_only, factory, buffers, len(what)))
        for factory, buffers, what in _EMA_CASES
    ]
    reference = lambda ema: copy.deepcopy(ema.module.state_dict())  # noqa: E731
    behaves_like(fn, reference, cases, _EMA_MISTAKES)
    model, ema = _trained_average(_bn_model, True, seed=3)
    out = call_answer(fn, ema)
    kept = {k: v.clone() for k, v in out.items()}
    ema.update_parameters(model)  # training goes on: the average moves, in place
    changed = [k for k, v in out.items() if not torch.equal(v, kept[k])]
    if changed:
        raise Wrong(
            f"the tensors you returned share memory with the average: the next "
            f"ema.update_parameters(model) changed {changed[0]!r} in your dict (a state_dict's "
            "tensors are the module's own). Return copies: v.clone() for each tensor, or "
            "copy.deepcopy of the dict"
        )
    return (
        "a plain state_dict of copies: it loads strictly into a fresh model, answers like the "
        "average, and later updates of the average leave it alone."
    )


# --------------------------------------------------------------------------- resume_scaled

_BEFORE, _AFTER = 4, 6


def _schedulers():
    """(name, factory(optimizer)) for each schedule the check resumes."""
    sched = torch.optim.lr_scheduler
    return [
        ("CosineAnnealingLR", lambda opt: sched.CosineAnnealingLR(opt, T_max=12)),
        ("LambdaLR", lambda opt: sched.LambdaLR(opt, lambda e: 1.0 / (1 + e))),
        ("StepLR", lambda opt: sched.StepLR(opt, step_size=3, gamma=0.5)),
        ("ExponentialLR", lambda opt: sched.ExponentialLR(opt, gamma=0.8)),
    ]


def _scheduled(make_scheduler, lrs=(0.1, 0.01)):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    optimizer = torch.optim.AdamW(
        [
            {"params": model[0].parameters(), "lr": lrs[0]},
            {"params": model[2].parameters(), "lr": lrs[1]},
        ]
    )
    return model, optimizer, make_scheduler(optimizer)


def _rates(optimizer, scheduler, steps: int) -> list[list[float]]:
    """The learning rate of each group at each of the next ``steps`` steps (no gradients: only the schedule moves)."""
    rates = []
    for _ in range(steps):
        rates.append([g["lr"] for g in optimizer.param_groups])
        optimizer.zero_grad()
        optimizer.step()
        scheduler.step()
    return rates


def _diagnose(
    got, plan, factor: float, name: str, lr_ratio: list[float], base_ratio: list[float]
) -> str:
    """A hint for rates ``got`` that are not ``factor`` times ``plan``; ``lr_ratio`` and ``base_ratio``: each
    group's rate and each entry of ``base_lrs`` right after the answer, divided by the checkpoint's."""

    def close(r, v):
        return math.isclose(r, v, rel_tol=1e-9)

    ratios = [g / p for row_g, row_p in zip(got, plan) for g, p in zip(row_g, row_p)]
    if all(close(r, factor) for r in ratios):
        return ""
    lr_scaled = [close(r, factor) for r in lr_ratio]
    base_scaled = [close(r, factor) for r in base_ratio]
    if all(close(r, 1.0) for r in lr_ratio + base_ratio):
        return (
            "the rates are the saved ones, not scaled: optimizer.load_state_dict puts the saved rates back (and "
            "scheduler.load_state_dict the saved base_lrs), so scale after loading both"
        )
    if any(lr_scaled) and not all(lr_scaled):
        return (
            "only the first parameter group's rate is scaled; the optimizer has two groups: change every group "
            "in optimizer.param_groups (and every entry of scheduler.base_lrs)"
        )
    if all(close(r, 1.0) for r in lr_ratio) and all(base_scaled):
        return (
            f"the rate in use right after the resume is not scaled, and {name} multiplies the current rate at "
            "each step (it reads base_lrs only in special cases): multiply every optimizer.param_groups[i]['lr'] "
            "by factor as well"
        )
    if all(lr_scaled) and not all(base_scaled):
        return (
            f"the first rate after the resume is scaled, then {name} goes back to the plan: it computes each rate "
            "from scheduler.base_lrs, which scheduler.load_state_dict restored; scale scheduler.base_lrs too"
        )
    if not any(lr_scaled):
        return (
            f"each rate is {lr_ratio[0]:.3g} times the saved one, not {factor} times: multiply the current rates "
            "by factor (group['lr'] *= factor) instead of setting them to a value"
        )
    return (
        f"the rates are not {factor} times the plan at every step: scale every group's current rate and "
        "scheduler.base_lrs, after loading"
    )


def _check_scaled(fn, name: str, make_scheduler, factor: float) -> None:
    model, optimizer, scheduler = _scheduled(make_scheduler)
    for _ in range(_BEFORE):
        optimizer.zero_grad()
        model(torch.randn(5, 3)).pow(2).mean().backward()
        optimizer.step()
        scheduler.step()
    checkpoint = through_file(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    )
    saved = through_file(checkpoint)
    plan = _rates(optimizer, scheduler, _AFTER)

    # the new process
    _, optimizer2, scheduler2 = _scheduled(make_scheduler, lrs=(0.3, 0.03))
    default_lr = optimizer2.defaults["lr"]
    run_answer(fn, checkpoint, optimizer2, scheduler2, factor)
    where = f"with {name} and factor={factor}"
    in_use = [g["lr"] for g in optimizer2.param_groups]
    if optimizer2.defaults["lr"] != default_lr and in_use == [
        g["lr"] for g in saved["optimizer"]["param_groups"]
    ]:
        raise Wrong(
            f"{where}, you changed optimizer.defaults['lr'], which only seeds param groups added "
            "later: the rates in use are each group's 'lr' in optimizer.param_groups (and "
            "scheduler.base_lrs for schedulers that compute from them); scale those"
        )
    if not optimizer2.state:
        raise Wrong(
            f"{where}, the optimizer you were given has no state (AdamW's averages): call "
            "optimizer.load_state_dict(checkpoint['optimizer']) on that object"
        )
    state_ok = all(
        same(s, optimizer2.state_dict()["state"][i]) for i, s in saved["optimizer"]["state"].items()
    )
    if not state_ok:
        raise Wrong(
            f"{where}, the optimizer's state (AdamW's averages) differs from the checkpoint's: load "
            "checkpoint['optimizer'] and change only the learning rates"
        )
    last = scheduler2.last_epoch
    if last == 0:
        raise Wrong(
            f"{where}, the scheduler you were given is at step 0, not {_BEFORE}: call "
            "scheduler.load_state_dict(checkpoint['scheduler'])"
        )
    if last != saved["scheduler"]["last_epoch"]:
        raise Wrong(
            f"{where}, your function moved the scheduler to step {last} (the checkpoint's is "
            f"{saved['scheduler']['last_epoch']}): do not call scheduler.step() in it; the next training step "
            "does"
        )
    lr_ratio = [
        g["lr"] / s["lr"]
        for g, s in zip(optimizer2.param_groups, saved["optimizer"]["param_groups"])
    ]
    base_ratio = [b / s for b, s in zip(scheduler2.base_lrs, saved["scheduler"]["base_lrs"])]
    hint = _diagnose(
        _rates(optimizer2, scheduler2, _AFTER), plan, factor, name, lr_ratio, base_ratio
    )
    if hint:
        raise Wrong(f"{where}, {hint}")


@exercise("resume_scaled", notebook=NB)
def resume_scaled(fn) -> str:
    """``fn(checkpoint, optimizer, scheduler, factor)`` loads both states and scales every rate from now on."""
    for i, (name, make_scheduler) in enumerate(_schedulers()):
        for factor in (0.1, 0.5) if i % 2 == 0 else (0.5, 0.1):
            _check_scaled(fn, name, make_scheduler, factor)
    return (
        "every group's rate is factor times the plan at every later step, for schedulers that scale the current "
        "rate and for LambdaLR, which computes from base_lrs."
    )
