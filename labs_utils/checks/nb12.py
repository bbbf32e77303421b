"""Checks for notebooks/12_capstone_lab.ipynb. Each fix is checked against the lesson that teaches
it, and a failing check names that notebook to revisit.

The checks try each answer on several cases of their own (two model classes, two optimizers,
DDP and plain files) and look at the effect, not only the return value: the file written, the
arguments ``torch.load`` and ``load_state_dict`` really received (seen with
``crash.watching``, however the answer names them), and, for the atomic save, what a crash
at each of the answer's write calls would leave on disk, confirmed by a real ``SIGKILL``
(``crash.kill_at``).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import stat
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.nn as nn

from . import (
    Wrong,
    as_int,
    call_answer,
    crash,
    exercise,
    isolated_safe_globals,
    process_changes,
    run_answer,
    spy,
)
from .fixtures import cnn_with_moved_statistics, scratch_file, snapshot

__all__: list[str] = []


def _net(seed: int = 0) -> nn.Module:
    from ..models import Net

    torch.manual_seed(seed)
    return Net()


def _cnn(seed: int = 0) -> nn.Module:
    """A SmallCNN whose BatchNorm buffers are not their defaults (one forward pass in train mode)."""
    return cnn_with_moved_statistics(seed, dropout=0.0)


def _load(path: Path, **kwargs: Any) -> Any:
    """The check's own torch.load: weights_only=True, on the CPU, quiet."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True, **kwargs)


def _refused_global(err: BaseException) -> str | None:
    m = re.search(r"GLOBAL (\S+) was not an allowed global", str(err))
    return m.group(1) if m else None


def _run_saver(fn: Any, *args: Any, path: Path) -> None:
    """Run a learner's save function (it returns nothing by design); the file must appear."""
    run_answer(fn, *args)
    if not Path(path).exists():
        raise Wrong(
            f"your function ran, but nothing was written to {Path(path).name}: save to the path "
            "it was given"
        )


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return not (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() != b.keys() or any(_differs(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) != len(b) or any(_differs(x, y) for x, y in zip(a, b))
    return a != b


# ================================================================ fault 1: whole-model file
NB1 = "01_state_dict_basics"


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with the length of its JSON header (8 bytes), then '{'."""
    head = path.read_bytes()[:9]
    return (
        len(head) == 9
        and head[8:9] == b"{"
        and int.from_bytes(head[:8], "little") < path.stat().st_size
    )


def _serving_refusal(err: BaseException) -> str:
    name = _refused_global(err) or ""
    if "TorchScript" in str(err):
        return (
            "torch.load refuses the file with weights_only=True: it is a TorchScript archive (torch.jit.save); "
            "a server that loads weights wants model.state_dict() saved with torch.save"
        )
    if name in ("getattr", "builtins.getattr"):
        return (
            "the file holds the method model.state_dict itself (pickled as getattr(model, 'state_dict')), "
            "not its result: call it, torch.save(model.state_dict(), path)"
        )
    if name.startswith("numpy"):
        return (
            f"torch.load refuses the file with weights_only=True: it holds NumPy arrays ({name}); keep the "
            "tensors of model.state_dict() as they are"
        )
    if name:
        return (
            f"torch.load refuses the file with weights_only=True: it holds a whole model object ({name}); "
            "save model.state_dict() instead"
        )
    return f"torch.load refuses the file with weights_only=True ({type(err).__name__}); save model.state_dict()"


@exercise("capstone_save_for_serving", notebook=NB1)
def capstone_save_for_serving(fn) -> str:
    """``fn(model, path)`` writes a file that safe loading accepts and that holds the state_dict
    of the model it was given (tried on a Net and on a SmallCNN with BatchNorm buffers)."""
    for make in (_net, _cnn):
        model = make(5)
        expected = snapshot(model)
        buffers = {name for name, _ in model.named_buffers() if name in expected}
        with scratch_file("best.pth") as path:
            _run_saver(fn, model, path, path=path)
            try:
                saved = _load(path)
            except Exception as e:
                if _is_safetensors(path):
                    raise Wrong(
                        "the file is a safetensors file (save_file): a fine format, but this serving host "
                        "loads with torch.load(path, weights_only=True); save model.state_dict() with "
                        "torch.save"
                    ) from None
                raise Wrong(_serving_refusal(e)) from None
        what = type(model).__name__
        if not isinstance(saved, Mapping):
            raise Wrong(
                f"the file holds a {type(saved).__name__}, not a state_dict: save model.state_dict(), "
                "a dict of names to tensors"
            )
        if set(saved) != set(expected):
            inner = [v for v in saved.values() if isinstance(v, Mapping)]
            if len(saved) == 1 and inner:
                raise Wrong(
                    f"the file holds a dict around the state_dict ({{{next(iter(saved))!r}: ...}}): the "
                    "server calls model.load_state_dict(torch.load(path)), so save the state_dict itself"
                )
            missing = sorted(set(expected) - set(saved))
            if missing and set(missing) <= buffers:
                raise Wrong(
                    f"with a {what}, the file misses its buffers ({missing[0]}, ...): named_parameters() "
                    "leaves out BatchNorm's running statistics; save model.state_dict()"
                )
            extra = sorted(set(saved) - set(expected))
            raise Wrong(
                f"with a {what}, the keys differ from model.state_dict() (missing {missing[:2]}, extra "
                f"{extra[:2]}): save exactly model.state_dict()"
            )
        for k, want in expected.items():
            got = saved[k]
            if not isinstance(got, torch.Tensor):
                raise Wrong(
                    f"{k} is a {type(got).__name__} in the file, not a tensor: save model.state_dict()"
                )
            if got.requires_grad:
                raise Wrong(
                    "the file holds parameters that still require grad (named_parameters() or "
                    "keep_vars=True); save model.state_dict(), whose tensors are detached and include buffers"
                )
            if got.dtype != want.dtype:
                raise Wrong(
                    f"{k} was saved as {str(got.dtype).replace('torch.', '')}, the model holds "
                    f"{str(want.dtype).replace('torch.', '')}: keep the model's dtype"
                )
            if not torch.equal(got, want):
                raise Wrong(
                    f"with a {what}, {k} does not hold the values of the model you were given: save the "
                    "state_dict of the `model` argument, not of another model"
                )
    return "the serving file is a plain state_dict that loads with weights_only=True."


# ================================================================ fault 2: resume without optimizer
NB2 = "04_checkpoints_and_resume"


def _resume_setup(kind: str, seed: int = 0):
    if kind == "adamw":
        model = _net(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    else:  # a model with BatchNorm buffers, SGD with momentum, another scheduler
        from ..models import SmallCNN

        torch.manual_seed(seed)
        model = SmallCNN(dropout=0.0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2, 4], gamma=0.3)
    return model, optimizer, scheduler


def _steps(model, optimizer, scheduler, n: int, data: torch.Generator) -> None:
    from ..models import Net

    for _ in range(n):
        if isinstance(model, Net):
            x, y = (
                torch.randn(16, 32, generator=data),
                torch.randint(0, 10, (16,), generator=data),
            )
        else:
            x, y = (
                torch.randn(8, 1, 16, 16, generator=data),
                torch.randint(0, 4, (8,), generator=data),
            )
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        scheduler.step()


_OBJECTS = {
    "torch.optim.lr_scheduler": "scheduler",
    "torch.optim": "optimizer",
    "labs_utils.models": "model",
}


@exercise("capstone_save_for_resume", notebook=NB2)
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
            _run_saver(fn, *first, epoch, path, path=path)
            try:
                ckpt = _load(path)
            except Exception as e:
                raise Wrong(_resume_refusal(e)) from None
        # fresh objects, as in a new process
        model, optimizer, scheduler = _resume_setup(kind, seed=99)
        _check_resume_entries(ckpt, first, epoch)
        for key, obj in (
            ("model", model),
            ("optimizer", optimizer),
            ("scheduler", scheduler),
        ):
            try:
                obj.load_state_dict(ckpt[key])
            except Exception as e:
                raise Wrong(
                    f"{type(obj).__name__}.load_state_dict refuses the '{key}' entry "
                    f"({type(e).__name__}: {str(e).strip().splitlines()[0][:200]}): save "
                    f"{key}.state_dict() of the live object"
                ) from None
        if optimizer.state_dict()["state"].keys() != first[1].state_dict()[
            "state"
        ].keys() or _differs(optimizer.state_dict()["state"], first[1].state_dict()["state"]):
            raise Wrong(
                f"with {type(optimizer).__name__}, the optimizer state in the file differs from the live "
                "optimizer's (its moments or momentum buffers): save optimizer.state_dict() of the "
                "optimizer you were given"
            )
        # the data stream goes on where it stopped
        _steps(model, optimizer, scheduler, n=epoch, data=data)
        for (k, a), b in zip(straight[0].state_dict().items(), model.state_dict().values()):
            if not torch.equal(a, b):
                raise Wrong(
                    f"after resuming, {k} differs from the uninterrupted run: save the live "
                    "optimizer.state_dict() and scheduler.state_dict()"
                )
    return "resuming from your checkpoint gives bit-identical weights to the uninterrupted run."


def _resume_refusal(err: BaseException) -> str:
    name = _refused_global(err)
    if name is None:
        return (
            f"the checkpoint does not load with weights_only=True ({type(err).__name__}); save one dict of "
            "state_dicts"
        )
    for module, what in _OBJECTS.items():
        if name.startswith(module):
            return (
                f"the checkpoint holds the {what} object itself ({name}), which weights_only=True refuses: "
                f"store {what}.state_dict()"
            )
    return (
        f"the checkpoint does not load with weights_only=True (Unsupported global {name}); store plain Python "
        "values, e.g. str(torch.__version__) rather than torch.__version__ (a TorchVersion)"
    )


def _check_resume_entries(ckpt: Any, live: tuple, epoch: int) -> None:
    """Specific hints for entries of the wrong kind, before anything is loaded."""
    model, optimizer, scheduler = live
    if not isinstance(ckpt, Mapping):
        raise Wrong(
            f"the file holds a {type(ckpt).__name__}: save one dict with the keys 'model', 'optimizer', "
            "'scheduler' and 'epoch'"
        )
    for key in ("model", "optimizer", "scheduler", "epoch"):
        if key not in ckpt:
            near = [k for k in ckpt if isinstance(k, str) and key in k.lower() and k != key]
            named = (
                f" (you named it {near[0]!r}; the task and resume() use {key!r})" if near else ""
            )
            raise Wrong(
                f"the checkpoint has no '{key}' entry{named}: without the {key} state the resumed run "
                "is not the run you interrupted"
            )
    state = ckpt["model"]
    if not isinstance(state, Mapping):
        raise Wrong(f"the 'model' entry is a {type(state).__name__}: save model.state_dict()")
    missing = sorted(set(model.state_dict()) - set(state))
    if missing:
        kind = (
            "buffers (BatchNorm's running statistics)"
            if any("running" in k or "batches" in k for k in missing)
            else "entries"
        )
        raise Wrong(
            f"with {type(model).__name__}, the 'model' entry misses {kind}, e.g. {missing[0]}: "
            "save model.state_dict(), not named_parameters()"
        )
    opt = ckpt["optimizer"]
    if isinstance(opt, (list, tuple)):
        raise Wrong(
            "the 'optimizer' entry is a list (param_groups alone?): param_groups alone hold the learning "
            "rates but not the optimizer's running state (Adam's moments, SGD's momentum); save "
            "optimizer.state_dict(), a dict with 'state' and 'param_groups'"
        )
    if not isinstance(opt, Mapping) or not {"state", "param_groups"} <= set(opt):
        have = sorted(opt) if isinstance(opt, Mapping) else type(opt).__name__
        raise Wrong(
            f"the 'optimizer' entry should be optimizer.state_dict(), a dict with 'state' and "
            f"'param_groups'; got {have}"
        )
    sched = ckpt["scheduler"]
    if isinstance(sched, (list, tuple)):
        raise Wrong(
            "the 'scheduler' entry is a list (scheduler.get_last_lr()?): the learning rate alone does not "
            "tell the scheduler where it is in its schedule; save scheduler.state_dict()"
        )
    if not isinstance(sched, Mapping) or "last_epoch" not in sched:
        raise Wrong(
            f"the 'scheduler' entry should be scheduler.state_dict() (a dict with 'last_epoch'); got "
            f"{type(sched).__name__}"
        )
    got = as_int(ckpt["epoch"], "the 'epoch' entry")
    if got != epoch:
        raise Wrong(
            f"the 'epoch' entry holds {got}, but the function was given epoch={epoch}: store the epoch "
            "you were given (the resume code decides where to go on from it)"
        )


# ================================================================ fault 3: DDP prefix
NB3 = "07_ddp_and_wrapper_prefixes"


@exercise("capstone_load_ddp_weights", notebook=NB3)
def capstone_load_ddp_weights(fn) -> str:
    """``fn(path)`` returns a plain ``Net`` loaded strictly from a file saved with or without a
    DDP ``module.`` prefix."""
    from ..models import Net

    reference = _net(3)
    cases = {
        "a DDP file (module. prefix)": {
            f"module.{k}": v for k, v in reference.state_dict().items()
        },
        "a plain file": reference.state_dict(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for what, sd in cases.items():
            path = Path(tmp) / "w.pth"
            torch.save(sd, path)
            with crash.watching(torch.serialization.load, nn.Module.load_state_dict) as seen:
                try:
                    model = call_answer(fn, path)
                except Wrong as w:
                    raise Wrong(_ddp_failure(what, str(w))) from None
            loads = seen.arguments.get(torch.serialization.load, [])
            if loads and not any(_same_file(a.get("f"), path) for a in loads):
                raise Wrong(
                    f"with {what}: your function read another file, not the path it was given"
                )
            non_strict = [
                a
                for a in seen.arguments.get(nn.Module.load_state_dict, [])
                if not a.get("strict", True) and isinstance(a.get("self"), Net)
            ]
            if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
                raise Wrong(
                    f"with {what}: you returned the Net wrapped in {type(model).__name__}, whose keys "
                    "start with 'module.'; serving wants the plain Net: strip the prefix from the file's "
                    "keys instead"
                )
            if not isinstance(model, Net):
                raise Wrong(f"return the loaded model (a Net), got {type(model).__name__}")
            for k, v in reference.state_dict().items():
                if not torch.equal(model.state_dict()[k], v):
                    if non_strict:
                        raise Wrong(
                            f"with {what}, {k} was not loaded (strict=False hides this: it skips every key "
                            "that does not match): strip a leading 'module.' and load strictly"
                        )
                    raise Wrong(
                        f"with {what}, {k} was not loaded into the Net you returned: load the file's "
                        "state_dict (prefix stripped) into that Net"
                    )
            if non_strict:
                raise Wrong(
                    f"with {what}, the weights loaded, but with strict=False: the task says strictly, "
                    "because strict=False also accepts a file that misses weights or holds another "
                    "model's, without a word. Strip the prefix and keep strict=True"
                )
    return "DDP and plain files both load, strictly, into the plain model."


def _same_file(f: Any, path: Path) -> bool:
    """Whether torch.load's ``f`` is the file at ``path`` (a path, or a file object opened on it)."""
    name = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", None)
    if isinstance(name, (str, os.PathLike)):
        try:
            return os.path.samefile(name, path)
        except OSError:
            return False
    # a file object of unknown origin (BytesIO of the file's bytes, say)
    return hasattr(f, "read")


def _ddp_failure(what: str, message: str) -> str:
    unexpected = re.search(r'Unexpected key\(s\) in state_dict: "([^"]+)"', message)
    if unexpected and unexpected.group(1).startswith("module.") and "DDP" in what:
        return (
            f"with {what}: the keys still start with 'module.' ({unexpected.group(1)}); strip that leading "
            "'module.' that DDP adds before load_state_dict"
        )
    if unexpected and "plain" in what:
        return (
            f"with {what}: your function changed keys that have no prefix (it produced "
            f"{unexpected.group(1)!r}); strip 'module.' only where a key starts with it"
        )
    return f"with {what}: {message.removeprefix('your function raised ')}; strip the leading 'module.' that DDP adds"


# ================================================================ fault 4: a GPU file on a CPU host
NB4 = "06_devices_and_map_location"

# What torch says when code asks for a GPU that is not there. The words depend on the build of
# torch and on the machine: the CPU-only build, the CUDA build without an NVIDIA driver, the
# CUDA build with a driver but no visible GPU, torch.load without map_location.
_NO_GPU = re.compile(
    "|".join(
        [
            r"Attempting to deserialize object on a CUDA device",
            r"torch\.cuda\.is_available\(\) is False",
            r"Found no NVIDIA driver",
            r"Torch not compiled with CUDA enabled",
            r"No CUDA GPUs are available",
            r"no CUDA-capable device is detected",
            r"CUDA driver initialization failed",
            r"CUDA driver version is insufficient",
            r"invalid device ordinal",
        ]
    ),
    re.IGNORECASE,
)


def needs_a_gpu(message: str) -> bool:
    """True when an error message says, in any build's words, that there is no usable GPU."""
    return bool(_NO_GPU.search(message))


@contextlib.contextmanager
def _as_on_a_cpu_only_host():
    """Run the answer as the serving host would, whatever this machine has: where CUDA is
    available, ``torch.cuda.is_available()`` says False (so torch.load refuses a GPU tag, and
    code that picks its device at run time picks the CPU) and first use of CUDA fails the way a
    CUDA build without a visible GPU does. Where CUDA is not available, nothing is changed."""
    if not torch.cuda.is_available():
        yield
        return

    def no_gpu(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("No CUDA GPUs are available")

    with (
        mock.patch.object(torch.cuda, "is_available", lambda: False),
        mock.patch.object(torch.cuda, "_lazy_init", no_gpu),
    ):
        yield


def _maps_to_cpu(map_location: Any, tag: str = "cuda:0") -> bool | None:
    """Where ``map_location`` sends a tensor saved with the tag ``tag``: True for the CPU, False
    for somewhere else, None when it cannot be told without loading (a callable)."""
    if map_location is None:
        return False
    if isinstance(map_location, Mapping):
        return _maps_to_cpu(map_location[tag], tag) if tag in map_location else False
    if callable(map_location):
        return None
    try:
        return torch.device(map_location).type == "cpu"
    except (TypeError, RuntimeError, ValueError):
        return False


def _gpu_hint(loads: list[dict[str, Any]], error: str) -> str:
    first_line = error.strip().splitlines()[0] if error.strip() else ""
    for args in loads:
        ml = args.get("map_location")
        if isinstance(ml, Mapping) and any(not isinstance(v, str) for v in ml.values()):
            return (
                "in a dict map_location the values must be strings such as 'cpu': torch.load's dict form "
                f"does not take torch.device objects there ({error.strip().splitlines()[0][:120]}); "
                "write {'cuda:0': 'cpu'}, or simply map_location=torch.device('cpu')"
            )
        if isinstance(ml, Mapping) and "cuda:0" not in ml:
            keys = ", ".join(repr(k) for k in ml)
            return (
                f"map_location={{{keys}: ...}} remaps only the location tags it names, and a tag is the full "
                "device string saved with each tensor: this file's tensors are tagged 'cuda:0' (device index "
                "included), so no key matched and torch.load tried the GPU anyway. Use map_location='cpu' "
                "(every tag to the CPU) or {'cuda:0': 'cpu'}"
            )
        if ml is None and _maps_to_cpu(ml) is False:
            return (
                "without map_location, torch.load puts the tensors back on the GPU they were saved from "
                "('cuda:0'), and the serving host has none; nothing outside torch.load (a later .cpu() or "
                ".to(), a default device) changes that, it comes too late. Pass map_location='cpu' (or "
                "torch.device('cpu')) to torch.load"
            )
        if _maps_to_cpu(ml) is False:
            return (
                f"map_location={ml!r} sends the tensors to a GPU, and the serving host has none: use "
                "map_location='cpu' (or torch.device('cpu'))"
            )
    return (
        "your function moves the model to the GPU, and the serving host has none (torch says: "
        + first_line[:160]
        + "): keep the model on the CPU, or choose the device at run time with "
        "torch.cuda.is_available()"
    )


@exercise("capstone_load_gpu_weights", notebook=NB4)
def capstone_load_gpu_weights(fn) -> str:
    """``fn(path)`` returns a ``SimpleModel`` on the CPU loaded from data/gpu_weights_cuda0.pth."""
    from .. import data_file
    from ..models import SimpleModel

    path = data_file("gpu_weights_cuda0.pth")
    with crash.watching(torch.serialization.load) as seen, _as_on_a_cpu_only_host():
        try:
            model = call_answer(fn, path)
        except Wrong as w:
            loads = seen.arguments.get(torch.serialization.load, [])
            dict_values = any(
                isinstance(a.get("map_location"), Mapping)
                and not all(isinstance(v, str) for v in a["map_location"].values())
                for a in loads
            )
            if needs_a_gpu(str(w)) or dict_values:
                raise Wrong(
                    _gpu_hint(loads, str(w).removeprefix("your function raised "))
                ) from None
            raise
    loads = seen.arguments.get(torch.serialization.load, [])
    if not any(_same_file(a.get("f"), path) for a in loads):
        raise Wrong("your function did not torch.load the file it was given (path)")
    for args in loads:  # would fail on the serving host, whatever this one has
        ml = args.get("map_location")
        if ml is None or (isinstance(ml, Mapping) and "cuda:0" not in ml):
            raise Wrong(_gpu_hint([args], ""))
    if not isinstance(model, SimpleModel):
        raise Wrong(f"return the loaded SimpleModel, got {type(model).__name__}")
    reference = _load(path)
    for k, v in reference.items():
        t = model.state_dict()[k]
        if t.device.type != "cpu":
            raise Wrong(
                f"your function moves the model to the GPU ({k} is on {t.device}), and the serving host "
                "has none: keep the model on the CPU"
            )
        if not torch.equal(t, v):
            raise Wrong(f"{k} does not hold the file's values: load the state_dict strictly")
    return "the GPU-saved weights are on the CPU, every tensor equal to the file's."


# ================================================================ fault 5: unsafe loading
NB5 = "08_safe_loading"


@exercise("capstone_load_safely", notebook=NB5)
def capstone_load_safely(fn) -> str:
    """``fn(path)`` loads a checkpoint holding weights plus a ``RunInfo``, allowing exactly RunInfo
    for that one load, and refuses a malicious file with an error."""
    from ..capstone import MarkerPayload, RunInfo

    allowed_before = [
        e
        for e in torch.serialization.get_safe_globals()
        if (e[0] if isinstance(e, tuple) else e) is RunInfo
    ]
    watch = (
        torch.serialization.add_safe_globals,
        torch._weights_only_unpickler._add_safe_globals,
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        isolated_safe_globals(),
    ):  # judged on its own allowlist
        tmp = Path(tmp)
        good = tmp / "model_card.pth"
        info = RunInfo("capstone", 5, 0.93)
        torch.save({"model": _net().state_dict(), "info": info}, good)
        with crash.watching(*watch, torch.serialization.load) as seen:
            try:
                loaded = call_answer(fn, good)
            except Wrong as w:
                _safe_globals_hint(seen, str(w), allowed_before)
                raise
        # judged by what is left afterwards: RunInfo still allowed for every later load
        if any(kind == "safe_globals" and "RunInfo" in hint for kind, hint in process_changes()):
            raise Wrong(
                "RunInfo must be allowed for this one load, but add_safe_globals([RunInfo]) allows it for "
                "every later torch.load in the process, files from strangers included",
                covers={"safe_globals"},
            )
        extra = [
            e
            for args in seen.arguments.get(torch._weights_only_unpickler._add_safe_globals, [])
            for e in (args.get("safe_globals") or [])
            if not _mentions_runinfo([e]) and not _torch_own(e)
        ]
        if extra:
            raise Wrong(
                f"the file needs RunInfo only, and your allowlist also lets through {_entry(extra[0])}: "
                "every extra entry is something a malicious file may use; allow exactly [RunInfo]"
            )
        if not isinstance(loaded, Mapping) or set(loaded) != {"model", "info"}:
            raise Wrong(
                "return what the file holds (a dict with 'model' and 'info'); to load the RunInfo with "
                "weights_only=True, allow exactly that class with "
                "torch.serialization.safe_globals([RunInfo])"
            )
        if loaded["info"] != info or _differs(dict(loaded["model"]), _net().state_dict()):
            raise Wrong(
                "the dict you returned does not hold the file's contents: return what torch.load read"
            )
        marker = tmp / "payload_ran.txt"
        bad = tmp / "downloaded.pth"
        torch.save({"model": _net().state_dict(), "info": MarkerPayload(marker)}, bad)
        refused = True
        with crash.watching(torch.serialization.load) as payload_seen:
            try:
                out = run_answer(fn, bad)
                refused = False
            except Wrong:
                pass
        payload_loads = payload_seen.arguments.get(torch.serialization.load, [])
        if marker.exists():
            unsafe = any(a.get("weights_only") is False for a in payload_loads)
            raise Wrong(
                "loading the malicious file ran its payload (the marker file appeared): "
                + (
                    "torch.load with weights_only=False runs the file's code while it unpickles, so a "
                    "check of what you got afterwards comes too late, and a retry after a refusal hands the "
                    "choice to the file. "
                    if unsafe
                    else ""
                )
                + "Keep weights_only=True and allow only RunInfo, never what a refused file asks for"
            )
        if not refused:
            raise Wrong(
                f"your function returned {type(out).__name__} for the malicious file instead of refusing "
                "it: let torch.load's UnpicklingError raise, so the caller knows the file was rejected"
            )
    if any(a.get("weights_only") is False for a in seen.arguments.get(torch.serialization.load, [])):
        raise Wrong(
            "your function loaded the model card with weights_only=False: nothing restricted what "
            "the unpickler could build during that load (a look at the file beforehand is only as "
            "good as that look); load with weights_only=True and allow exactly RunInfo"
        )
    return "the model card loads with only RunInfo allowed, and the payload never runs."


def _entry(e: Any) -> str:
    obj = e[0] if isinstance(e, tuple) and e else e
    return getattr(obj, "__qualname__", None) or repr(obj)


def _torch_own(e: Any) -> bool:
    obj = e[0] if isinstance(e, tuple) and e else e
    return str(getattr(obj, "__module__", "")).split(".")[0] == "torch"


def _mentions_runinfo(entries: Any) -> bool:
    from ..capstone import RunInfo

    return any((e[0] if isinstance(e, tuple) and e else e) is RunInfo for e in entries or [])


def _safe_globals_hint(seen: crash.WriteTrace, message: str, allowed_before: list) -> None:
    entries = [
        e
        for args in seen.arguments.get(torch._weights_only_unpickler._add_safe_globals, [])
        for e in (args.get("safe_globals") or [])
    ]
    strings = [e for e in entries if isinstance(e, str)]
    if strings:
        raise Wrong(
            f"safe_globals takes the objects themselves, not strings: pass [RunInfo] (the class you "
            f"imported), not [{strings[0]!r}]; torch cannot turn a name into a class (it raised "
            f"{message.removeprefix('your function raised ')[:80]})"
        )
    if "RunInfo" in message and allowed_before and not entries:
        raise Wrong(
            "torch.load refused RunInfo: your function worked in the notebook only because RunInfo was "
            "already allowed for the whole process (an add_safe_globals call outside it). Allow it "
            "inside the function, for this one load: with torch.serialization.safe_globals([RunInfo]):"
        )
    if "RunInfo" in message:
        raise Wrong(
            "torch.load refused the file because of RunInfo (not on the default allowlist): allow "
            "exactly that class for this load with `with torch.serialization.safe_globals([RunInfo]):`"
        )


# ================================================================ fault 6: a save that can tear
NB6 = "04_checkpoints_and_resume"


class _Exploding:
    """Pickling this raises: a stand-in for a save that fails with an exception."""

    def __reduce__(self):
        raise RuntimeError("simulated failure in the middle of torch.save")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _state(path: Path, old: bytes, new: dict) -> str:
    """What a crash left at ``path``: 'old', 'new', 'missing', or 'torn'."""
    if not path.exists():
        return "missing"
    data = path.read_bytes()
    if data == old:
        return "old"
    try:
        got = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:
        return "torn"
    return "new" if not _differs(got, new) else "torn"


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


@dataclass
class _Moment:
    """What a crash just before write call ``k`` (``call``) leaves: ``state`` of last.pth ('torn' or
    'missing'), its size, and the other files of the folder that hold the previous checkpoint."""

    state: str
    k: int
    call: str
    size: int
    backups: list[str]


def _moment(state: str, k: int, call: str, path: Path, folder: Path, old: bytes) -> _Moment:
    size = path.stat().st_size if path.exists() else 0
    backups = sorted(
        p.name for p in folder.iterdir() if p != path and p.is_file() and p.read_bytes() == old
    )
    return _Moment(state, k, call, size, backups)


def _tear_hint(m: _Moment, n_calls: int, trace: crash.WriteTrace, real: bool) -> str:
    how = "a SIGKILL" if real else "a crash"
    when = f"{how} just before its {_ordinal(m.k + 1)} of {n_calls} write calls ({m.call})"
    if m.state == "missing":
        return (
            f"{when} left no last.pth at all: your function removes (or renames away) the old file before "
            "the new one is in place. os.replace puts the new file over the old one in one step; do not "
            "delete the old one first"
        )
    torn = f"{when} left last.pth torn ({m.size} bytes that do not load)"
    if m.backups:
        return (
            f"{torn}. The backup {m.backups[0]} is still there, but the code that would restore it never runs "
            "when the process is killed, and every loader looks only at last.pth. Leave last.pth alone until "
            "the new file is complete: write a temporary file in the same folder and os.replace it over last.pth"
        )
    saves = trace.arguments.get(torch.serialization.save, [])
    if saves and all(isinstance(a.get("f"), io.BytesIO) for a in saves):
        return (
            f"{torn}, and the previous checkpoint is gone. Serialising into memory first protects against a "
            "pickling error, not against a kill: writing the bytes still truncates last.pth first. Write them "
            "to a temporary file in the same folder and os.replace it over last.pth"
        )
    copies = [
        a
        for a in trace.arguments.get(shutil.copyfile, [])
        if _same_name(a.get("dst"), _target(trace))
    ]
    if copies:
        return (
            f"{torn}. Copying the finished temporary file over last.pth rewrites last.pth in place; "
            "os.replace renames the temporary file over it in one step"
        )
    return (
        f"{torn}, and the previous checkpoint is gone: your function writes over last.pth in place. Write the "
        "new checkpoint to a temporary file in the same folder, then os.replace it over last.pth"
    )


def _target(trace: crash.WriteTrace) -> Path:
    return trace.target  # type: ignore[attr-defined]


def _same_name(a: Any, path: Path) -> bool:
    try:
        return isinstance(a, (str, os.PathLike)) and Path(a).resolve() == path.resolve()
    except OSError:
        return False


def _labs_utils_savers() -> list[Any]:
    from ..toolkit.checkpoints import atomic_write, save_checkpoint
    from ..toolkit.manager import CheckpointManager

    return [
        save_checkpoint,
        getattr(atomic_write, "__wrapped__", atomic_write),
        CheckpointManager.save,
    ]


@exercise("capstone_save_atomically", notebook=NB6)
def capstone_save_atomically(fn) -> str:
    """``fn(obj, path)`` saves so that a crash at any moment of the save leaves the previous file or
    the complete new one, a failed save leaves the previous file and no litter, and the data is
    fsynced before the rename.

    Crashes: while ``fn`` saves over an existing file in this process, the disk is examined just
    before each of its write calls (what is on disk then is what a kill then would leave). Then a
    forked child running ``fn`` is really SIGKILLed (``crash.kill_at``): at the first moment that
    tore the file, to confirm it, or, if none did, just before and after its rename, at its first
    write call and at its middle one. The moments are counted in write calls, not timed, so the
    verdict is the same on every run. Without fork (Windows, macOS) the examined moments decide."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ckpt"
        folder.mkdir()
        path = folder / "last.pth"
        first = {"epoch": 1, "w": torch.arange(1000.0)}
        _run_saver(fn, first, path, path=path)
        try:
            if _differs(_load(path), first):
                raise Wrong("the saved file does not hold the object you were given")
        except Wrong:
            raise
        except Exception as e:
            raise Wrong(f"the saved file does not load ({type(e).__name__})") from None

        # 1. a normal save over an existing file, watched: which calls, which folder, fsync
        third = {"epoch": 3, "w": torch.ones(1000)}
        watch = [torch.serialization.save, shutil.copyfile, *_labs_utils_savers()]
        fsynced: list[
            tuple[int, int, bool]
        ] = []  # (position in the write calls, inode, is a folder)
        before = path.read_bytes()
        observed: list[
            _Moment
        ] = []  # the first moment at which a crash would leave last.pth torn or gone

        def observe(
            k: int, call: str
        ) -> None:  # what the disk holds now is what a kill now would leave
            if not observed:
                state = _state(path, before, third)
                if state in ("torn", "missing"):
                    observed.append(_moment(state, k, call, path, folder, before))

        seen = crash.WriteTrace()

        def watched(
            *args: Any,
        ) -> Any:  # count only the answer's own calls, as the killed child does
            nonlocal seen
            with crash.watching(*watch, before_call=observe) as seen:
                return fn(*args)

        with (
            spy(os, "replace") as replaces,
            spy(os, "rename") as renames,
            _recording_fsync(fsynced, lambda: len(seen.calls)),
        ):
            _run_saver(watched, third, path, path=path)
        seen.target = path  # type: ignore[attr-defined]
        if any(f in seen.entered for f in _labs_utils_savers()):
            raise Wrong(
                "the task asks you to write the atomic save yourself, with tempfile and os.replace, not with "
                "labs_utils (save_checkpoint does exactly this; the point is to see how)"
            )
        for args, _, _ in replaces + renames:
            if Path(args[0]).resolve().parent != folder.resolve():
                raise Wrong(
                    "the temporary file was written in another folder: os.replace is atomic only within "
                    "one file system, so write the temporary file next to the checkpoint"
                )
        if _differs(_load(path), third):
            raise Wrong("after a second save, last.pth does not hold the new object")
        old = path.read_bytes()
        saved_inode, saved_mode = (
            os.stat(path).st_ino,
            stat.S_IMODE(os.stat(path).st_mode),
        )

        # 2. crashes: observed at every write call above, and real kills
        second = {"epoch": 2, "w": torch.zeros(1000)}
        _kill(fn, second, path, folder, old, seen, observed)

        # 3. a save that fails with an exception
        for p in folder.iterdir():
            if p != path:
                p.unlink()
        path.write_bytes(old)
        # not the answer's: left alone
        elsewhere = set(Path(tempfile.gettempdir()).glob("last.pth*"))
        try:
            fn({"epoch": 2, "w": torch.zeros(1000), "boom": _Exploding()}, path)
            crashed = False
        except Exception:
            crashed = True
        if not crashed:
            raise Wrong(
                "your function swallowed the error of a failed save: let it propagate so the caller knows"
            )
        if _state(path, old, second) != "old":
            raise Wrong(
                "a save that failed with an exception left last.pth changed: write to a temporary file in "
                "the same folder, then os.replace it over the old one"
            )
        litter = sorted(p.name for p in folder.iterdir() if p.name != "last.pth")
        stray = sorted(set(Path(tempfile.gettempdir()).glob("last.pth*")) - elsewhere)
        if litter or stray:
            for p in stray:
                p.unlink(missing_ok=True)
            raise Wrong(
                "the failed save left a temporary file behind "
                f"({(litter or [s.name for s in stray])[0]}); remove it when the save fails, and keep "
                "it in the same folder so os.replace stays atomic"
            )

        # 4. durability: the data reaches the disk before the name points at it
        replace_at = [i for i, name in enumerate(seen.calls) if name in ("os.replace", "os.rename")]
        synced = [pos for pos, inode, is_dir in fsynced if inode == saved_inode and not is_dir]
        if fsynced or "os.fsync" in seen.calls or "os.fdatasync" in seen.calls:
            if fsynced and not any(replace_at and pos <= replace_at[-1] for pos in synced):
                raise Wrong(
                    "the temporary file was not fsynced before os.replace: a kill leaves it intact, but after "
                    "a power cut the rename can reach the disk before the data. Call f.flush() and "
                    "os.fsync(f.fileno()) before os.replace"
                )
        else:
            raise Wrong(
                "a kill leaves your last.pth intact, but nothing is fsynced: after a power cut the rename can "
                "reach the disk before the data, leaving an empty last.pth. Call f.flush() and "
                "os.fsync(f.fileno()) on the temporary file before os.replace"
            )
        tips = []
        if os.name == "posix":
            want = 0o666 & ~_umask()
            if saved_mode != want:
                tips.append(
                    f"last.pth has mode {oct(saved_mode)} where torch.save would give {oct(want)} (mkstemp and "
                    "NamedTemporaryFile create owner-only files); os.chmod(tmp, 0o666 & ~umask) before "
                    "os.replace keeps it readable by a serving process running as another user"
                )
            if not any(is_dir for _, _, is_dir in fsynced):
                tips.append(
                    "fsync the folder after os.replace (os.open(folder, os.O_RDONLY), os.fsync, os.close) "
                    "so that the rename itself survives a power cut"
                )
    message = (
        "a crash at any of its write calls leaves the previous checkpoint or the complete new one, a failed "
        "save keeps the old file and leaves no temporary file behind, and the data is fsynced."
    )
    if tips:
        message += (
            " Production code adds two details: "
            if len(tips) == 2
            else " One detail for production code: "
        )
        message += "; ".join(tips) + "."
    return message


class _recording_fsync:
    """Record, for each os.fsync/os.fdatasync, where it came in the write calls, the inode it synced
    and whether that is a folder (the real call still runs)."""

    def __init__(self, out: list, position) -> None:
        self.out, self.position = out, position
        self._spies: list[Any] = []

    def __enter__(self):
        for name in ("fsync", "fdatasync"):
            real = getattr(os, name, None)
            if real is None:
                continue

            def wrapper(fd, _real=real):
                try:
                    st = os.fstat(fd if isinstance(fd, int) else fd.fileno())
                    self.out.append((self.position(), st.st_ino, stat.S_ISDIR(st.st_mode)))
                except (OSError, AttributeError, TypeError):
                    pass
                return _real(fd)

            patcher = mock.patch.object(os, name, wrapper)
            patcher.start()
            self._spies.append(patcher)
        return self

    def __exit__(self, *exc):
        for patcher in reversed(self._spies):
            patcher.stop()
        return False


def _confirm_moments(calls: list[str]) -> list[int]:
    """Where to kill an answer that no observed moment tore: its first write call, the middle one,
    and just before and after each rename (where a save that is not atomic shows it)."""
    picks = {0, len(calls) // 2}
    for i, call in enumerate(calls):
        if call in ("os.replace", "os.rename"):
            picks.update({i, i + 1})
    return sorted(p for p in picks if p < len(calls))


def _kill(
    fn,
    obj: dict,
    path: Path,
    folder: Path,
    old: bytes,
    seen: crash.WriteTrace,
    observed: list[_Moment],
) -> None:
    """Kill ``fn(obj, path)`` for real (a forked child, SIGKILL just before a write call) and require
    the previous file or the complete new one afterwards. Where the in-process run already saw a
    moment that tears the file, one kill there confirms it; otherwise a few kills at the moments
    that matter do. Without fork, the moments observed in-process decide alone."""

    def reset() -> None:
        for p in folder.iterdir():
            if p != path:
                p.unlink()
        if not path.exists() or path.read_bytes() != old:
            path.write_bytes(old)

    n_calls = len(seen.calls)
    moments = [observed[0].k] if observed else _confirm_moments(seen.calls)
    if crash.can_fork():
        for moment in moments:
            reset()
            kill = crash.kill_at(fn, (obj, path), moment)
            if kill.hung:
                raise Wrong(
                    "your function did not finish within 10 s when the check ran it in a child process"
                )
            if not kill.killed:
                continue  # it finished (or failed) before that call this time
            state = _state(path, old, obj)
            if state in ("torn", "missing"):
                raise Wrong(
                    _tear_hint(
                        _moment(state, moment, kill.call, path, folder, old),
                        n_calls,
                        seen,
                        real=True,
                    )
                )
    reset()
    if observed:
        raise Wrong(_tear_hint(observed[0], n_calls, seen, real=False))
