"""Checks for notebooks/15_resume_mid_epoch_and_ema.ipynb."""

from __future__ import annotations

import copy
import functools
import warnings

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import TensorDataset

from . import Case, Wrong, as_int, behaves_like, call_answer, exercise, explained, same
from .fixtures import drew_after_restoring, named, through_file

NB = "15_resume_mid_epoch_and_ema"

_N, _BATCH, _EPOCHS = 64, 16, 2  # 4 steps per epoch
_STEPS = _N // _BATCH
# (stop_at, num_workers): (epoch, step) = stop right after that step; step 0 = before the epoch starts
_CASES = [((0, 2), 0), ((0, _STEPS), 0), ((1, 0), 0), ((0, 0), 0), ((0, 1), 2)]


@functools.lru_cache(maxsize=1)
def _data() -> TensorDataset:
    x = torch.randn(_N, 6, generator=torch.Generator().manual_seed(21))
    return TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long(), torch.arange(_N))


def _objects(seed: int, num_workers: int):
    from torchdata.stateful_dataloader import StatefulDataLoader
    from torchdata.stateful_dataloader.sampler import RandomSampler

    torch.manual_seed(seed)
    layers = [nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.3), nn.Linear(12, 3)]
    model = nn.Sequential(*layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    data = _data()
    # torchdata 0.11 calls torch.set_vital, which torch 2.13 deprecates
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'set_vital' is deprecated")
        loader = StatefulDataLoader(
            data,
            batch_size=_BATCH,
            num_workers=num_workers,
            sampler=RandomSampler(data, generator=torch.Generator().manual_seed(seed + 5)),
            generator=torch.Generator().manual_seed(seed + 6),
            persistent_workers=num_workers > 0,  # started once, not once per epoch
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


@functools.cache
def _reference(num_workers: int) -> tuple:
    model, optimizer, ema, loader = _objects(0, num_workers)
    log = _train(model, optimizer, ema, loader, 0, [])
    return tuple(log), *copy.deepcopy((model.state_dict(), ema.state_dict()))


@functools.cache
def _crashed_run(stop_at, workers: int) -> tuple[dict, tuple]:
    """The run that stops at ``stop_at`` (the same for every answer): its checkpoint and log."""
    from ..toolkit import capture_rng_state

    objects = dict(zip(("model", "optimizer", "ema", "loader"), _objects(0, workers)))
    log = _train(*objects.values(), 0, [], stop_at=stop_at)
    state = {k: v.state_dict() for k, v in objects.items()}
    return through_file({**state, "epoch": stop_at[0], "rng": capture_rng_state()}), tuple(log)


def _where(stop_at, workers: int) -> str:
    epoch, step = stop_at
    last = " (the last)" if step == _STEPS else ""
    moment = (
        f"after step {step}{last} of epoch {epoch}" if step else f"before epoch {epoch} started"
    )
    return f"a checkpoint taken {moment}" + (f" and {workers} workers" if workers else "")


def _restore_hint(saved: dict, model, optimizer, ema, loader) -> str | None:
    """What the answer left unrestored among the objects passed in, if anything."""
    if not same(saved["model"], model.state_dict()):
        return "the model's weights differ from the checkpoint's: call model.load_state_dict(checkpoint['model']) on the model passed in"
    now = optimizer.state_dict()
    if saved["optimizer"]["state"] and not now["state"]:
        return "the optimizer you were given has no momentum buffers: call optimizer.load_state_dict(checkpoint['optimizer']) on that object (training goes on with it)"
    if not same(dict(saved["optimizer"]["state"]), dict(now["state"])):
        return "the optimizer's momentum buffers differ from the checkpoint's: call optimizer.load_state_dict(checkpoint['optimizer'])"
    ema_now = ema.state_dict()
    if int(ema_now["n_averaged"]) == 0 and int(saved["ema"]["n_averaged"]) > 0:
        return "the average you were given was not restored (its n_averaged is 0, so its next update would copy the weights and forget the average): call ema.load_state_dict(checkpoint['ema']) on the AveragedModel passed in"
    if not same(saved["ema"], ema_now):
        return "the average's weights differ from the checkpoint's: load checkpoint['ema'] with ema.load_state_dict (the AveragedModel's own keys, 'module.' prefix and n_averaged)"
    if loader.next_iter_state is None and not loader._initial_iter_for_state_dict:
        # (after load_state_dict, loader.state_dict() builds the iterator the next iter() reuses: fine)
        if loader._iterator is not None:
            return "your function iterated over the loader (iter(loader) or next(iter(loader))): the first iter() after load_state_dict uses the restored position, and the training loop's own iter() then starts a new epoch. Leave the loader to the loop"
        return "the loader you were given has no restored position: call loader.load_state_dict(checkpoint['loader']) on it (training goes on with that loader)"
    saved_rng, now_rng = saved["rng"]["torch"], torch.get_rng_state()
    if not torch.equal(saved_rng, now_rng):
        if drew_after_restoring(saved_rng, now_rng):
            return "your function restored torch's global generator, then drew from it before returning (a forward pass in train mode, torch.randn, building a layer): restore the RNG states last"
        return "torch's global generator (the Dropout masks) is not the checkpoint's: restore_rng_state(checkpoint['rng'])"
    return None


def _run_hint(start: int, stop_at, log: list, workers: int, objects: tuple) -> str | None:
    """How the run resumed at ``start`` differs from the uninterrupted one, if it does."""
    (epoch, step), (ref_log, ref_model, ref_ema) = stop_at, _reference(workers)
    if start == epoch + 1:
        return f"your function returned {start}, the epoch after the checkpoint's: epoch {epoch} is not finished, its loader state holds the batches left; return checkpoint['epoch']"
    if start != epoch:
        return f"your function returned {start}; the run goes on in the checkpoint's epoch ({epoch}): return checkpoint['epoch']"
    _train(*objects, start, log)
    got, expected = ([b for e, b in run if e == epoch] for run in (log, ref_log))
    if got != expected and step > 0 and len(got) == len(expected) + step:
        return f"the loader gave all {len(expected)} batches of epoch {epoch} again, not the {len(expected) - step} left: load checkpoint['loader'] into the loader passed in"
    if got != expected:
        return f"the batches of epoch {epoch} after the resume differ from the uninterrupted run's: load checkpoint['loader'] into the loader passed in, and do not draw batches in your function"
    if log != list(ref_log):
        return "the epochs after the resumed one got other batches than the uninterrupted run: restore every object passed in, and build nothing that draws from the loader's generators"
    if not same(ref_model, objects[0].state_dict()) or not same(ref_ema, objects[2].state_dict()):
        return "the run saw the same batches but ended with other weights: restore the model, the optimizer, the EMA and the RNG states, and draw no random numbers afterwards"
    return None


@exercise("resume_mid_epoch", notebook=NB)
def resume_mid_epoch(fn) -> str:
    """``fn(checkpoint, model, optimizer, ema, loader)`` restores everything and returns the epoch to train next."""
    for stop_at, workers in _CASES:
        _reference(workers)  # first, so that it draws nothing while the resumed run trains
        state, log = _crashed_run(stop_at, workers)
        # the checkpoint, and a copy the answer cannot change
        checkpoint, saved, log = through_file(state), through_file(state), list(log)
        where = _where(stop_at, workers)
        model, optimizer, ema, loader = _objects(99, workers)
        with explained(
            "(?s)^(?=.*n_averaged)(?=.*Unexpected key)",
            "your function raised {error}: checkpoint['ema'] is the AveragedModel's own state_dict (unexpected keys 'n_averaged' and 'module.'...); load it with ema.load_state_dict, not into ema.module",
        ):
            start = call_answer(fn, checkpoint, model, optimizer, ema, loader)
        start = as_int(start, "the epoch your function returned")
        objects = (model, optimizer, ema, loader)
        hint = _restore_hint(saved, *objects) or _run_hint(start, stop_at, log, workers, objects)
        if hint:
            raise Wrong(f"with {where}, {hint}")
    return "the model and its EMA end identical to uninterrupted runs, resumed before the first step, mid-epoch, after an epoch's last step, at an epoch boundary, and with 2 workers."


def _has_module() -> nn.Module:
    """A model with a submodule of its own named ``module``: its keys start with 'module.'."""
    return named(module=nn.Linear(4, 6), relu=nn.ReLU(), head=nn.Linear(6, 3))


def _bn_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


# (factory, use_buffers, description)
_EMA_CASES = [
    (_bn_model, True, "a model with BatchNorm (use_buffers=True)"),
    (_has_module, True, "a model with a submodule named 'module'"),
    (_bn_model, False, "a model with BatchNorm (use_buffers=False)"),
]


def _trained_average(factory, use_buffers: bool, seed: int):
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


def _without_counter(ema) -> dict:
    return {k: v.clone() for k, v in ema.state_dict().items() if k != "n_averaged"}


_EMA_MISTAKES = [
    (
        lambda ema: ema.state_dict(),
        "your dict holds 'n_averaged', the AveragedModel's own counter: it is not a weight of the model, which refuses it as an unexpected key. Take the weights of ema.module",
    ),
    (
        _without_counter,
        "the keys still carry AveragedModel's 'module.' prefix ('module.0.weight'): take ema.module.state_dict(), or remove the prefix once, at the start of each key",
    ),
    (
        lambda ema: {k.replace("module.", ""): v for k, v in _without_counter(ema).items()},
        "a key lost more than AveragedModel's prefix: the check's model has a submodule named 'module', and replace('module.', '') or lstrip('module.') removes more than the prefix. Remove it only once, at the start (str.removeprefix), or use ema.module.state_dict()",
    ),
    (
        lambda ema: {k: v.detach().clone() for k, v in ema.module.named_parameters()},
        "the buffers are missing: parameters alone leave out BatchNorm's running statistics; a state_dict holds parameters and buffers",
    ),
    (
        lambda ema: copy.deepcopy(ema.module),
        "you returned a module; return its state_dict(), the dict of tensors a model loads",
    ),
]


@exercise("ema_weights", notebook=NB)
def ema_weights(fn) -> str:
    """``fn(ema)`` returns the averaged weights as a plain state_dict of copies."""
    make = lambda *args: _trained_average(*args)[1:]  # (ema,)
    cases = [Case(what, functools.partial(make, f, b, len(what))) for f, b, what in _EMA_CASES]
    reference = lambda ema: copy.deepcopy(ema.module.state_dict())
    behaves_like(fn, reference, cases, _EMA_MISTAKES)
    model, ema = _trained_average(_bn_model, True, seed=3)
    out = call_answer(fn, ema)
    kept = {k: v.clone() for k, v in out.items()}
    ema.update_parameters(model)  # training goes on: the average moves, in place
    changed = [k for k, v in out.items() if not torch.equal(v, kept[k])]
    if changed:
        raise Wrong(
            f"the tensors you returned share memory with the average: the next ema.update_parameters(model) changed {changed[0]!r} in your dict (a state_dict's tensors are the module's own). Return copies: v.clone() for each tensor, or copy.deepcopy of the dict"
        )
    return "a plain state_dict of copies: it loads strictly into a fresh model, answers like the average, and later updates of the average leave it alone."


_BEFORE, _AFTER = 4, 6


_sched = torch.optim.lr_scheduler
_SCHEDULERS = [  # (name, factory(optimizer)) for each schedule the check resumes
    ("CosineAnnealingLR", lambda opt: _sched.CosineAnnealingLR(opt, T_max=12)),
    ("LambdaLR", lambda opt: _sched.LambdaLR(opt, lambda e: 1.0 / (1 + e))),
    ("StepLR", lambda opt: _sched.StepLR(opt, step_size=3, gamma=0.5)),
    ("ExponentialLR", lambda opt: _sched.ExponentialLR(opt, gamma=0.8)),
]


def _scheduled(make_scheduler, lrs=(0.1, 0.01)):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    groups = [{"params": model[i].parameters(), "lr": lr} for i, lr in zip((0, 2), lrs)]
    optimizer = torch.optim.AdamW(groups)
    return model, optimizer, make_scheduler(optimizer)


def _rates(optimizer, scheduler, steps: int) -> list[list[float]]:
    rates = []  # each group's rate at each of the next steps (no gradients: only the schedule moves)
    for _ in range(steps):
        rates.append([g["lr"] for g in optimizer.param_groups])
        optimizer.zero_grad()
        optimizer.step()
        scheduler.step()
    return rates


@functools.cache
def _checkpoint_of(make_scheduler) -> dict:
    """The optimizer and scheduler states after a few steps (the same for every answer)."""
    model, optimizer, scheduler = _scheduled(make_scheduler)
    for _ in range(_BEFORE):
        optimizer.zero_grad()
        model(torch.randn(5, 3)).pow(2).mean().backward()
        optimizer.step()
        scheduler.step()
    return through_file({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})


def _resumed(make_scheduler, factor: float) -> tuple:
    _, optimizer, scheduler = _scheduled(make_scheduler, lrs=(0.3, 0.03))
    return through_file(_checkpoint_of(make_scheduler)), optimizer, scheduler, factor


def _afterwards(out, args) -> tuple:
    _, opt, sched, _ = args
    state = copy.deepcopy(opt.state_dict()["state"])
    return state, sched.last_epoch, opt.defaults["lr"], _rates(opt, sched, _AFTER)


def _resume(
    *, before=False, groups=2, bases=2, to=None, load=("optimizer", "scheduler"), step=False
):
    """The reference (no arguments) and its known variants: scale ``groups`` rates and ``bases``
    base_lrs (multiply, or set ``to`` a value), before or after loading what ``load`` names."""

    def answer(checkpoint, optimizer, scheduler, factor):
        def scale():
            for g in optimizer.param_groups[:groups]:
                g["lr"] = g["lr"] * factor if to is None else factor
            for i in range(bases):
                scheduler.base_lrs[i] = scheduler.base_lrs[i] * factor if to is None else factor

        if before:
            scale()
        if "optimizer" in load:
            optimizer.load_state_dict(checkpoint["optimizer"])
        if "scheduler" in load:
            scheduler.load_state_dict(checkpoint["scheduler"])
        if not before:
            scale()
        if step:
            scheduler.step()

    return answer


def _defaults_only(checkpoint, optimizer, scheduler, factor):
    _resume(groups=0, bases=0)(checkpoint, optimizer, scheduler, factor)
    optimizer.defaults["lr"] *= factor


_SCALED_MISTAKES = [
    (
        _resume(before=True),
        "the rates are the saved ones, not scaled: optimizer.load_state_dict puts the saved rates back (and scheduler.load_state_dict the saved base_lrs), so scale after loading both",
    ),
    (
        _defaults_only,
        "you changed optimizer.defaults['lr'], which only seeds param groups added later: the rates in use are each group's 'lr' in optimizer.param_groups (and scheduler.base_lrs for schedulers that compute from them); scale those",
    ),
    (
        _resume(bases=0),
        "the first rate after the resume is scaled, then LambdaLR goes back to the plan: it computes each rate from scheduler.base_lrs, which scheduler.load_state_dict restored; scale scheduler.base_lrs too",
    ),
    (
        _resume(groups=0),
        "the rate in use right after the resume is not scaled, and CosineAnnealingLR, StepLR and ExponentialLR multiply the current rate at each step (they read base_lrs only in special cases): multiply every optimizer.param_groups[i]['lr'] by factor as well",
    ),
    (
        _resume(groups=1, bases=1),
        "only the first parameter group's rate is scaled; the optimizer has two groups: change every group in optimizer.param_groups (and every entry of scheduler.base_lrs)",
    ),
    (
        _resume(to="factor"),
        "each rate became factor itself: multiply the current rates by factor (group['lr'] *= factor) instead of setting them to a value",
    ),
    (
        _resume(load=("optimizer",)),
        "the scheduler you were given starts again from step 0: call scheduler.load_state_dict(checkpoint['scheduler'])",
    ),
    (
        _resume(step=True),
        "your function moved the scheduler one step on: do not call scheduler.step() in it; the next training step does",
    ),
    (
        _resume(groups=0, bases=0, load=("scheduler",)),
        "the optimizer you were given has no state (AdamW's averages): call optimizer.load_state_dict(checkpoint['optimizer']) on that object",
    ),
]


@exercise("resume_scaled", notebook=NB)
def resume_scaled(fn) -> str:
    """``fn(checkpoint, optimizer, scheduler, factor)`` loads both states and scales every rate
    from now on."""
    cases = [
        Case(f"{name} and factor={f}", functools.partial(_resumed, make, f), _afterwards)
        for (name, make), f in zip(_SCHEDULERS, (0.1, 0.5, 0.5, 0.1))
    ]
    behaves_like(fn, _resume(), cases, _SCALED_MISTAKES)
    return "every group's rate is factor times the plan at every later step, for schedulers that scale the current rate and for LambdaLR, which computes from base_lrs."
