"""Checks for notebooks/12_capstone_lab.ipynb, faults 1-3: a whole-model file, a resume without the
optimizer, a DDP prefix. Each fix is checked against the lesson that teaches it (named in a hint)."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from . import Wrong, as_int, call_answer, crash, exercise, run_answer, same
from .fixtures import cnn_with_moved_statistics, refused_global, scratch_file, snapshot


# --- setups the capstone's checks share (this module and nb12_atomic, nb12_loading)
def net(seed: int = 0) -> nn.Module:
    from ..models import Net

    torch.manual_seed(seed)
    return Net()


def load_cpu(path: Path, **kwargs: Any) -> Any:
    """The check's own torch.load: weights_only=True, on the CPU, quiet."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True, **kwargs)


def run_saver(fn: Any, *args: Any, path: Path) -> None:
    """Run a learner's save function (it returns nothing by design); the file must appear."""
    run_answer(fn, *args)
    if not Path(path).exists():
        raise Wrong(
            f"your function ran, but nothing was written to {Path(path).name}: save to the path it was given"
        )


def same_file(f: Any, path: Path) -> bool:
    """Whether torch.load's ``f`` is the file at ``path`` (a path, or a file object opened on it);
    a file object of unknown origin (a BytesIO of the file's bytes, say) counts as that file."""
    name = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", None)
    if not isinstance(name, (str, os.PathLike)):
        return hasattr(f, "read")
    try:
        return os.path.samefile(name, path)
    except OSError:
        return False


def _serving_refusal(err: BaseException, path: Path) -> str:
    head = path.read_bytes()[:9]  # safetensors: the length of its JSON header (8 bytes), then '{'
    if head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size:
        return "the file is a safetensors file (save_file): a fine format, but this serving host loads with torch.load(path, weights_only=True); save model.state_dict() with torch.save"
    name = refused_global(err)
    if "TorchScript" in str(err):
        return "torch.load refuses the file with weights_only=True: it is a TorchScript archive (torch.jit.save); a server that loads weights wants model.state_dict() saved with torch.save"
    if name in ("getattr", "builtins.getattr"):
        return "the file holds the method model.state_dict itself (pickled as getattr(model, 'state_dict')), not its result: call it, torch.save(model.state_dict(), path)"
    if name.startswith("numpy"):
        return f"torch.load refuses the file with weights_only=True: it holds NumPy arrays ({name}); keep the tensors of model.state_dict() as they are"
    if name:
        return f"torch.load refuses the file with weights_only=True: it holds a whole model object ({name}); save model.state_dict() instead"
    return f"torch.load refuses the file with weights_only=True ({type(err).__name__}); save model.state_dict()"


def _served_hint(saved: Any, model: nn.Module, expected: dict) -> str | None:
    """What is wrong with the file's contents for a server that loads ``model`` (whose tensors
    were ``expected`` before the save), if anything."""
    buffers = {name for name, _ in model.named_buffers() if name in expected}
    what = type(model).__name__
    if not isinstance(saved, Mapping):
        return f"the file holds a {type(saved).__name__}, not a state_dict: save model.state_dict(), a dict of names to tensors"
    if set(saved) != set(expected):
        inner = [v for v in saved.values() if isinstance(v, Mapping)]
        if len(saved) == 1 and inner:
            return f"the file holds a dict around the state_dict ({{{next(iter(saved))!r}: ...}}): the server calls model.load_state_dict(torch.load(path)), so save the state_dict itself"
        missing = sorted(set(expected) - set(saved))
        if missing and set(missing) <= buffers:
            return f"with a {what}, the file misses its buffers ({missing[0]}, ...): named_parameters() leaves out BatchNorm's running statistics; save model.state_dict()"
        extra = sorted(set(saved) - set(expected))
        return f"with a {what}, the keys differ from model.state_dict() (missing {missing[:2]}, extra {extra[:2]}): save exactly model.state_dict()"
    for k, want in expected.items():
        got = saved[k]
        if not isinstance(got, torch.Tensor):
            return (
                f"{k} is a {type(got).__name__} in the file, not a tensor: save model.state_dict()"
            )
        if got.requires_grad:
            return "the file holds parameters that still require grad (named_parameters() or keep_vars=True); save model.state_dict(), whose tensors are detached and include buffers"
        if got.dtype != want.dtype:
            return f"{k} was saved as {str(got.dtype).replace('torch.', '')}, the model holds {str(want.dtype).replace('torch.', '')}: keep the model's dtype"
        if not torch.equal(got, want):
            return f"with a {what}, {k} does not hold the values of the model you were given: save the state_dict of the `model` argument, not of another model"
    return None


@exercise("capstone_save_for_serving", notebook="01_state_dict_basics")
def capstone_save_for_serving(fn) -> str:
    """``fn(model, path)`` writes a file that safe loading accepts and that holds the state_dict
    of the model it was given (tried on a Net and on a SmallCNN with BatchNorm buffers)."""
    for model in (net(5), cnn_with_moved_statistics(5, dropout=0.0)):
        expected = snapshot(model)
        with scratch_file("best.pth") as path:
            run_saver(fn, model, path, path=path)
            try:
                saved = load_cpu(path)
            except Exception as e:
                raise Wrong(_serving_refusal(e, path)) from None
        hint = _served_hint(saved, model, expected)
        if hint:
            raise Wrong(hint)
    return "the serving file is a plain state_dict that loads with weights_only=True."


def _resume_setup(kind: str, seed: int = 0):
    if kind == "adamw":
        model = net(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    else:  # a model with BatchNorm buffers, SGD with momentum, another scheduler
        model = cnn_with_moved_statistics(seed, dropout=0.0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2, 4], gamma=0.3)
    return model, optimizer, scheduler


def _steps(model, optimizer, scheduler, n: int, data: torch.Generator) -> None:
    from ..models import Net

    shape, classes = ((16, 32), 10) if isinstance(model, Net) else ((8, 1, 16, 16), 4)
    for _ in range(n):
        x = torch.randn(*shape, generator=data)
        y = torch.randint(0, classes, (shape[0],), generator=data)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        scheduler.step()


@exercise("capstone_save_for_resume", notebook="04_checkpoints_and_resume")
def capstone_save_for_resume(fn) -> str:
    """``fn(model, optimizer, scheduler, epoch, path)`` writes one dict with the keys "model",
    "optimizer", "scheduler" and "epoch" from which training resumes exactly. Tried with
    Net + AdamW + StepLR and with SmallCNN (BatchNorm buffers) + SGD momentum + MultiStepLR."""
    for kind, epoch in (("adamw", 3), ("sgd", 4)):
        straight = _resume_setup(kind)
        _steps(*straight, n=2 * epoch, data=torch.Generator().manual_seed(1))

        data = torch.Generator().manual_seed(1)
        first = _resume_setup(kind)
        _steps(*first, n=epoch, data=data)
        with scratch_file("last.pth") as path:
            run_saver(fn, *first, epoch, path, path=path)
            try:
                ckpt = load_cpu(path)
            except Exception as e:
                raise Wrong(_resume_refusal(e)) from None
        # fresh objects, as in a new process
        model, optimizer, scheduler = _resume_setup(kind, seed=99)
        hint = _entries_hint(ckpt, first, epoch)
        if hint:
            raise Wrong(hint)
        for key, obj in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler)):
            try:
                obj.load_state_dict(ckpt[key])
            except Exception as e:
                raise Wrong(
                    f"{type(obj).__name__}.load_state_dict refuses the '{key}' entry ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]}): save {key}.state_dict() of the live object"
                ) from None
        if not same(optimizer.state_dict()["state"], first[1].state_dict()["state"]):
            raise Wrong(
                f"with {type(optimizer).__name__}, the optimizer state in the file differs from the live optimizer's (its moments or momentum buffers): save optimizer.state_dict() of the optimizer you were given"
            )
        # the data stream goes on where it stopped
        _steps(model, optimizer, scheduler, n=epoch, data=data)
        for (k, a), b in zip(straight[0].state_dict().items(), model.state_dict().values()):
            if not torch.equal(a, b):
                raise Wrong(
                    f"after resuming, {k} differs from the uninterrupted run: save the live optimizer.state_dict() and scheduler.state_dict()"
                )
    return "resuming from your checkpoint gives bit-identical weights to the uninterrupted run."


def _resume_refusal(err: BaseException) -> str:
    name = refused_global(err)
    if not name:
        return f"the checkpoint does not load with weights_only=True ({type(err).__name__}); save one dict of state_dicts"
    objects = {"torch.optim.lr_scheduler": "scheduler", "torch.optim": "optimizer"}
    for module, what in {**objects, "labs_utils.models": "model"}.items():
        if name.startswith(module):
            return f"the checkpoint holds the {what} object itself ({name}), which weights_only=True refuses: store {what}.state_dict()"
    return f"the checkpoint does not load with weights_only=True (Unsupported global {name}); store plain Python values, e.g. str(torch.__version__) rather than torch.__version__ (a TorchVersion)"


def _entries_hint(ckpt: Any, live: tuple, epoch: int) -> str | None:
    """A specific hint for entries of the wrong kind, before anything is loaded."""
    model, optimizer, scheduler = live
    if not isinstance(ckpt, Mapping):
        return f"the file holds a {type(ckpt).__name__}: save one dict with the keys 'model', 'optimizer', 'scheduler' and 'epoch'"
    for key in ("model", "optimizer", "scheduler", "epoch"):
        if key not in ckpt:
            near = [k for k in ckpt if isinstance(k, str) and key in k.lower() and k != key]
            named = (
                f" (you named it {near[0]!r}; the task and resume() use {key!r})" if near else ""
            )
            return f"the checkpoint has no '{key}' entry{named}: without the {key} state the resumed run is not the run you interrupted"
    state = ckpt["model"]
    if not isinstance(state, Mapping):
        return f"the 'model' entry is a {type(state).__name__}: save model.state_dict()"
    missing = sorted(set(model.state_dict()) - set(state))
    if missing:
        buffers = any("running" in k or "batches" in k for k in missing)
        kind = "buffers (BatchNorm's running statistics)" if buffers else "entries"
        return f"with {type(model).__name__}, the 'model' entry misses {kind}, e.g. {missing[0]}: save model.state_dict(), not named_parameters()"
    opt = ckpt["optimizer"]
    if isinstance(opt, (list, tuple)):
        return "the 'optimizer' entry is a list (param_groups alone?): param_groups alone hold the learning rates but not the optimizer's running state (Adam's moments, SGD's momentum); save optimizer.state_dict(), a dict with 'state' and 'param_groups'"
    if not isinstance(opt, Mapping) or not {"state", "param_groups"} <= set(opt):
        have = sorted(opt) if isinstance(opt, Mapping) else type(opt).__name__
        return f"the 'optimizer' entry should be optimizer.state_dict(), a dict with 'state' and 'param_groups'; got {have}"
    sched = ckpt["scheduler"]
    if isinstance(sched, (list, tuple)):
        return "the 'scheduler' entry is a list (scheduler.get_last_lr()?): the learning rate alone does not tell the scheduler where it is in its schedule; save scheduler.state_dict()"
    if not isinstance(sched, Mapping) or "last_epoch" not in sched:
        return f"the 'scheduler' entry should be scheduler.state_dict() (a dict with 'last_epoch'); got {type(sched).__name__}"
    got = as_int(ckpt["epoch"], "the 'epoch' entry")
    if got != epoch:
        return f"the 'epoch' entry holds {got}, but the function was given epoch={epoch}: store the epoch you were given (the resume code decides where to go on from it)"
    return None


def _ddp_hint(
    model: Any, seen: crash.WriteTrace, path: Path, reference: nn.Module, what: str
) -> str | None:
    """What is wrong with the model an answer loaded from ``path`` (``what`` file), if anything."""
    from ..models import Net

    loads = seen.arguments.get(torch.serialization.load, [])
    if loads and not any(same_file(a.get("f"), path) for a in loads):
        return f"with {what}: your function read another file, not the path it was given"
    non_strict = any(
        not a.get("strict", True) and isinstance(a.get("self"), Net)
        for a in seen.arguments.get(nn.Module.load_state_dict, [])
    )
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return f"with {what}: you returned the Net wrapped in {type(model).__name__}, whose keys start with 'module.'; serving wants the plain Net: strip the prefix from the file's keys instead"
    if not isinstance(model, Net):
        return f"return the loaded model (a Net), got {type(model).__name__}"
    got = model.state_dict()
    missed = [k for k, v in reference.state_dict().items() if not torch.equal(got[k], v)]
    if missed and non_strict:
        return f"with {what}, {missed[0]} was not loaded (strict=False hides this: it skips every key that does not match): strip a leading 'module.' and load strictly"
    if missed:
        return f"with {what}, {missed[0]} was not loaded into the Net you returned: load the file's state_dict (prefix stripped) into that Net"
    if non_strict:
        return f"with {what}, the weights loaded, but with strict=False: the task says strictly, because strict=False also accepts a file that misses weights or holds another model's, without a word. Strip the prefix and keep strict=True"
    return None


@exercise("capstone_load_ddp_weights", notebook="07_ddp_and_wrapper_prefixes")
def capstone_load_ddp_weights(fn) -> str:
    """``fn(path)`` returns a plain ``Net`` loaded strictly from a file saved with or without a
    DDP ``module.`` prefix."""

    reference = net(3)
    ddp = {f"module.{k}": v for k, v in reference.state_dict().items()}
    cases = {"a DDP file (module. prefix)": ddp, "a plain file": reference.state_dict()}
    with tempfile.TemporaryDirectory() as tmp:
        for what, sd in cases.items():
            path = Path(tmp) / "w.pth"
            torch.save(sd, path)
            with crash.watching(torch.serialization.load, nn.Module.load_state_dict) as seen:
                try:
                    model = call_answer(fn, path)
                except Wrong as w:
                    raise Wrong(_ddp_failure(what, str(w))) from None
            hint = _ddp_hint(model, seen, path, reference, what)
            if hint:
                raise Wrong(hint)
    return "DDP and plain files both load, strictly, into the plain model."


def _ddp_failure(what: str, message: str) -> str:
    unexpected = re.search(r'Unexpected key\(s\) in state_dict: "([^"]+)"', message)
    if unexpected and unexpected.group(1).startswith("module.") and "DDP" in what:
        return f"with {what}: the keys still start with 'module.' ({unexpected.group(1)}); strip that leading 'module.' that DDP adds before load_state_dict"
    if unexpected and "plain" in what:
        return f"with {what}: your function changed keys that have no prefix (it produced {unexpected.group(1)!r}); strip 'module.' only where a key starts with it"
    return f"with {what}: {message.removeprefix('your function raised ')}; strip the leading 'module.' that DDP adds"
