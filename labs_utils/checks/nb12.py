"""Checks for notebooks/12_capstone_lab.ipynb. Each fix is checked against the lesson that teaches
it, and a failing check names that notebook to revisit."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

from . import NotAttempted, Wrong, call_answer, exercise, spy

__all__: list[str] = []


def _model(seed: int = 0) -> nn.Module:
    from ..models import Net

    torch.manual_seed(seed)
    return Net()


def _call_saver(fn, *args, path: Path) -> None:
    """Call a learner's save function (it returns nothing by design). A function that neither
    returns nor writes anything is still the placeholder: "not attempted yet"."""
    if not callable(fn):
        raise Wrong(f"expected a function, got {type(fn).__name__}")
    try:
        out = fn(*args)
    except NotImplementedError:
        raise NotAttempted from None
    except Exception as e:
        raise Wrong(f"your function raised {type(e).__name__}: {e}") from None
    if not Path(path).exists():
        if out is None or out is Ellipsis:
            raise NotAttempted
        raise Wrong(f"nothing was written to {Path(path).name}")


# ---------------------------------------------------------------- fault 1: whole-model file
def _save_whole(model, path):
    torch.save(model, path)


def _save_params_only(model, path):
    torch.save(dict(model.named_parameters()), path)


@exercise("capstone_save_for_serving", notebook="01_state_dict_basics", wrong=[
    (_save_whole, "whole model"),
    (_save_params_only, "detach"),
])
def capstone_save_for_serving(fn) -> str:
    """``fn(model, path)`` writes a file that safe loading accepts and that holds the state_dict."""
    model = _model()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "best.pth"
        _call_saver(fn, model, path, path=path)
        try:
            saved = torch.load(path)  # weights_only=True, as a server would load it
        except Exception:
            raise Wrong("torch.load refuses the file with weights_only=True: it holds a whole model object; "
                        "save model.state_dict() instead") from None
    if not isinstance(saved, dict) or not saved:
        raise Wrong("the file should hold model.state_dict(), a dict of names to tensors")
    if any(isinstance(v, torch.Tensor) and v.requires_grad for v in saved.values()):
        raise Wrong("the file holds parameters that still require grad (named_parameters()); "
                    "save model.state_dict(), whose tensors are detached and include buffers")
    if set(saved) != set(model.state_dict()):
        raise Wrong("the keys differ from model.state_dict(); save exactly that")
    return "the serving file is a plain state_dict that loads with weights_only=True."


# ---------------------------------------------------------------- fault 2: resume without optimizer
def _resume_setup(seed: int = 0):
    model = _model(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    return model, optimizer, scheduler


def _steps(model, optimizer, scheduler, n: int, data: torch.Generator) -> None:
    for _ in range(n):
        x = torch.randn(16, 32, generator=data)
        y = torch.randint(0, 10, (16,), generator=data)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        scheduler.step()


def _save_model_only(model, optimizer, scheduler, epoch, path):
    torch.save({"model": model.state_dict(), "epoch": epoch}, path)


def _save_no_scheduler(model, optimizer, scheduler, epoch, path):
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}, path)


def _save_wrong_optimizer_state(model, optimizer, scheduler, epoch, path):
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-2)
    torch.save({"model": model.state_dict(), "optimizer": fresh.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch}, path)


@exercise("capstone_save_for_resume", notebook="04_checkpoints_and_resume", wrong=[
    (_save_model_only, "optimizer"),
    (_save_no_scheduler, "scheduler"),
    (_save_wrong_optimizer_state, "differs"),
])
def capstone_save_for_resume(fn) -> str:
    """``fn(model, optimizer, scheduler, epoch, path)`` writes a checkpoint with the keys
    "model", "optimizer", "scheduler" and "epoch" from which training resumes exactly."""
    straight = _resume_setup()
    _steps(*straight, n=6, data=torch.Generator().manual_seed(1))

    data = torch.Generator().manual_seed(1)
    first = _resume_setup()
    _steps(*first, n=3, data=data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "last.pth"
        _call_saver(fn, *first, 3, path, path=path)
        try:
            ckpt = torch.load(path)
        except Exception as e:
            why = next((line.strip() for line in str(e).splitlines() if "Unsupported global" in line), type(e).__name__)
            raise Wrong(f"the checkpoint does not load with weights_only=True ({why}); store plain Python "
                        "values, e.g. str(torch.__version__) rather than torch.__version__") from None
    if not isinstance(ckpt, dict):
        raise Wrong("save one dict with the keys 'model', 'optimizer', 'scheduler' and 'epoch'")
    for key in ("model", "optimizer", "scheduler", "epoch"):
        if key not in ckpt:
            raise Wrong(f"the checkpoint has no '{key}' entry: without the {key} state the resumed run "
                        "is not the run you interrupted")
    model, optimizer, scheduler = _resume_setup(seed=99)  # fresh objects, as in a new process
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    _steps(model, optimizer, scheduler, n=3, data=data)  # the data stream goes on where it stopped
    for (k, a), b in zip(straight[0].state_dict().items(), model.state_dict().values()):
        if not torch.equal(a, b):
            raise Wrong(f"after resuming, {k} differs from the uninterrupted run: save the live "
                        "optimizer.state_dict() and scheduler.state_dict()")
    return "resuming from your checkpoint gives bit-identical weights to the uninterrupted run."


# ---------------------------------------------------------------- fault 3: DDP prefix
def _load_strict(path):
    from ..models import Net

    model = Net()
    model.load_state_dict(torch.load(path))
    return model


def _load_non_strict(path):
    from ..models import Net

    model = Net()
    model.load_state_dict(torch.load(path), strict=False)
    return model


@exercise("capstone_load_ddp_weights", notebook="07_ddp_and_wrapper_prefixes", wrong=[
    (_load_strict, "module."),
    (_load_non_strict, "not loaded"),
])
def capstone_load_ddp_weights(fn) -> str:
    """``fn(path)`` returns a plain ``Net`` loaded from a file saved with or without a DDP ``module.`` prefix."""
    reference = _model(3)
    cases = {
        "a DDP file (module. prefix)": {f"module.{k}": v for k, v in reference.state_dict().items()},
        "a plain file": reference.state_dict(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for what, sd in cases.items():
            path = Path(tmp) / "w.pth"
            torch.save(sd, path)
            try:
                model = call_answer(fn, path)
            except Wrong as w:
                raise Wrong(f"with {what}: {w}; strip the leading 'module.' that DDP adds") from None
            if not isinstance(model, nn.Module):
                raise Wrong(f"return the loaded model, got {type(model).__name__}")
            for k, v in reference.state_dict().items():
                if k not in model.state_dict() or not torch.equal(model.state_dict()[k], v):
                    raise Wrong(f"with {what}, {k} was not loaded (strict=False hides this): strip a "
                                "leading 'module.' and load strictly")
    return "DDP and plain files both load, strictly, into the plain model."


# ---------------------------------------------------------------- fault 4: a GPU file on a CPU host
def _load_gpu_default(path):
    from ..models import SimpleModel

    model = SimpleModel()
    model.load_state_dict(torch.load(path))
    return model


def _load_gpu_then_cuda(path):
    from ..models import SimpleModel

    model = SimpleModel().to("cuda")  # the code the GPU box ran
    model.load_state_dict(torch.load(path, map_location="cpu"))
    return model


@exercise("capstone_load_gpu_weights", notebook="06_devices_and_map_location", wrong=[
    (_load_gpu_default, "map_location"),
    (_load_gpu_then_cuda, "cuda"),
])
def capstone_load_gpu_weights(fn) -> str:
    """``fn(path)`` returns a ``SimpleModel`` on the CPU loaded from data/gpu_weights_cuda0.pth."""
    from .. import data_file
    from ..models import SimpleModel

    path = data_file("gpu_weights_cuda0.pth")
    with spy(torch, "load") as loads:
        model = call_answer(fn, path)
    for _, _, result in loads:
        tensors = result.values() if isinstance(result, dict) else [result]
        if any(isinstance(t, torch.Tensor) and t.device.type == "cuda" for t in tensors):
            raise Wrong("torch.load put the tensors on the GPU: that works only on a host that has one. "
                        "Pass map_location so the same code runs on the CPU-only serving host")
    if not isinstance(model, SimpleModel):
        raise Wrong(f"return the loaded SimpleModel, got {type(model).__name__}")
    reference = torch.load(path, map_location="cpu")
    for k, v in reference.items():
        t = model.state_dict()[k]
        if t.device.type != "cpu":
            raise Wrong(f"{k} is on {t.device}; this host has no GPU: keep the model on the CPU")
        if not torch.equal(t, v):
            raise Wrong(f"{k} does not hold the file's values: load the state_dict strictly")
    return "the GPU-saved weights are on the CPU, every tensor equal to the file's."


# ---------------------------------------------------------------- fault 5: unsafe loading
def _load_unsafe(path):
    return torch.load(path, weights_only=False)


@exercise("capstone_load_safely", notebook="08_safe_loading", wrong=[
    (_load_unsafe, "marker"),
    (lambda path: torch.load(path), "RunInfo"),
])
def capstone_load_safely(fn) -> str:
    """``fn(path)`` loads a checkpoint holding weights plus a ``RunInfo``, and refuses a malicious file."""
    from ..capstone import MarkerPayload, RunInfo

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        good = tmp / "model_card.pth"
        info = RunInfo("capstone", 5, 0.93)
        torch.save({"model": _model().state_dict(), "info": info}, good)
        loaded = call_answer(fn, good)
        if not isinstance(loaded, dict) or loaded.get("info") != info:
            raise Wrong("return what the file holds (a dict with 'model' and 'info'); to load the RunInfo "
                        "with weights_only=True, allow exactly that class with torch.serialization.safe_globals([RunInfo])")
        marker = tmp / "payload_ran.txt"
        bad = tmp / "downloaded.pth"
        torch.save({"model": _model().state_dict(), "info": MarkerPayload(marker)}, bad)
        try:
            fn(bad)
        except Exception:
            pass
        if marker.exists():
            raise Wrong("loading the malicious file ran its payload (the marker file appeared): keep "
                        "weights_only=True and allow only RunInfo, never the callables a payload uses")
    return "the model card loads with only RunInfo allowed, and the payload never runs."


# ---------------------------------------------------------------- fault 6: a save that can tear
class _Exploding:
    """Pickling this raises: a stand-in for a crash in the middle of a save."""

    def __reduce__(self):
        raise RuntimeError("simulated crash in the middle of torch.save")


def _save_direct(obj, path):
    torch.save(obj, path)


def _save_temp_elsewhere(obj, path):
    tmp = Path(tempfile.gettempdir()) / f"{Path(path).name}.partial"
    torch.save(obj, tmp)
    os.replace(tmp, path)


@exercise("capstone_save_atomically", notebook="04_checkpoints_and_resume", wrong=[
    (_save_direct, "torn"),
    (_save_temp_elsewhere, "another folder"),
])
def capstone_save_atomically(fn) -> str:
    """``fn(obj, path)`` saves so that a crash mid-save leaves the previous file intact and no litter."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ckpt"
        folder.mkdir()
        path = folder / "last.pth"
        first = {"epoch": 1, "w": torch.arange(1000.0)}
        _call_saver(fn, first, path, path=path)
        try:
            if not torch.equal(torch.load(path)["w"], first["w"]):
                raise Wrong("the saved file does not hold the object you were given")
        except Wrong:
            raise
        except Exception as e:
            raise Wrong(f"the saved file does not load ({type(e).__name__})") from None
        with spy(os, "replace") as replaces, spy(os, "rename") as renames:
            _call_saver(fn, {"epoch": 3, "w": torch.ones(1000)}, path, path=path)
        for args, _, _ in replaces + renames:
            if Path(args[0]).resolve().parent != folder.resolve():
                raise Wrong("the temporary file was written in another folder: os.replace is atomic only within "
                            "one file system, so write the temporary file next to the checkpoint")
        crashed = False
        try:
            fn({"epoch": 2, "w": torch.zeros(1000), "boom": _Exploding()}, path)
        except Exception:
            crashed = True
        if not crashed:
            raise Wrong("your function swallowed the error of a failed save: let it propagate so the caller knows")
        try:
            survivor = torch.load(path)
        except Exception:
            raise Wrong("a crash in the middle of the save left a torn file: write to a temporary file in the "
                        "same folder, then os.replace it over the old one") from None
        if survivor.get("epoch") != 3:
            raise Wrong("after the failed save, the file no longer holds the previous checkpoint")
        litter = sorted(p.name for p in folder.iterdir() if p.name != "last.pth")
        stray = [p for p in Path(tempfile.gettempdir()).glob("last.pth*")]
        if litter or stray:
            for p in stray:
                p.unlink(missing_ok=True)
            raise Wrong("the failed save left a temporary file behind "
                        f"({(litter or [s.name for s in stray])[0]}); remove it when the save fails, and keep "
                        "it in the same folder so os.replace stays atomic")
    return "a crash mid-save leaves the previous checkpoint intact and no temporary file behind."
