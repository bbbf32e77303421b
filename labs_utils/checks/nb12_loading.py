"""Checks for notebooks/12_capstone_lab.ipynb, faults 4-5: a GPU file on a CPU host, unsafe loading."""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from . import Wrong, call_answer, crash, exercise, same
from .calling import isolated_safe_globals, process_changes, run_answer, torch_own
from .nb12 import load_cpu, net, same_file

# What torch says when code asks for a GPU that is not there. The words depend on the build of
# torch and on the machine: the CPU-only build, the CUDA build without an NVIDIA driver, the
# CUDA build with a driver but no visible GPU, torch.load without map_location.
_NO_GPU = re.compile(
    r"Attempting to deserialize object on a CUDA device|torch\.cuda\.is_available\(\) is False"
    r"|Found no NVIDIA driver|Torch not compiled with CUDA enabled|No CUDA GPUs are available"
    r"|no CUDA-capable device is detected|CUDA driver initialization failed"
    r"|CUDA driver version is insufficient|invalid device ordinal",
    re.IGNORECASE,
)


def needs_a_gpu(message: str) -> bool:
    """True when an error message says, in any build's words, that there is no usable GPU."""
    return bool(_NO_GPU.search(message))


@contextlib.contextmanager
def _as_on_a_cpu_only_host():
    """Where CUDA is available, make it look absent (``is_available()`` False, first use fails as
    in a CUDA build without a visible GPU), so the answer runs as on the serving host."""
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


def _maps_to_cpu(map_location: Any) -> bool | None:
    """Whether ``map_location`` sends a tensor saved with the tag 'cuda:0' to the CPU; None when
    that cannot be told without loading (a callable)."""
    if isinstance(map_location, Mapping):
        map_location = map_location.get("cuda:0")
    if callable(map_location):
        return None
    try:
        return map_location is not None and torch.device(map_location).type == "cpu"
    except (TypeError, RuntimeError, ValueError):
        return False


def _gpu_hint(loads: list[dict[str, Any]], error: str) -> str:
    first_line = (error.strip().splitlines() or [""])[0]
    for args in loads:
        ml = args.get("map_location")
        if isinstance(ml, Mapping) and any(not isinstance(v, str) for v in ml.values()):
            return f"in a dict map_location the values must be strings such as 'cpu': torch.load's dict form does not take torch.device objects there ({first_line[:120]}); write {{'cuda:0': 'cpu'}}, or simply map_location=torch.device('cpu')"
        if isinstance(ml, Mapping) and "cuda:0" not in ml:
            keys = ", ".join(repr(k) for k in ml)
            return f"map_location={{{keys}: ...}} remaps only the location tags it names, and a tag is the full device string saved with each tensor: this file's tensors are tagged 'cuda:0' (device index included), so no key matched and torch.load tried the GPU anyway. Use map_location='cpu' (every tag to the CPU) or {{'cuda:0': 'cpu'}}"
        if ml is None:
            return "without map_location, torch.load puts the tensors back on the GPU they were saved from ('cuda:0'), and the serving host has none; nothing outside torch.load (a later .cpu() or .to(), a default device) changes that, it comes too late. Pass map_location='cpu' (or torch.device('cpu')) to torch.load"
        if _maps_to_cpu(ml) is False:
            return f"map_location={ml!r} sends the tensors to a GPU, and the serving host has none: use map_location='cpu' (or torch.device('cpu'))"
    return f"your function moves the model to the GPU, and the serving host has none (torch says: {first_line[:160]}): keep the model on the CPU, or choose the device at run time with torch.cuda.is_available()"


@exercise("capstone_load_gpu_weights", notebook="06_devices_and_map_location")
def capstone_load_gpu_weights(fn) -> str:
    """``fn(path)`` returns a ``SimpleModel`` on the CPU loaded from data/gpu_weights_cuda0.pth."""
    from .. import data_file
    from ..models import SimpleModel

    path = data_file("gpu_weights_cuda0.pth")
    with crash.watching(torch.serialization.load) as seen, _as_on_a_cpu_only_host():
        try:
            model = call_answer(fn, path)
        except Wrong as w:
            error = str(w).removeprefix("your function raised ")
            hint = _gpu_hint(seen.arguments.get(torch.serialization.load, []), error)
            if needs_a_gpu(error) or "must be strings" in hint:
                raise Wrong(hint) from None
            raise
    loads = seen.arguments.get(torch.serialization.load, [])
    if not any(same_file(a.get("f"), path) for a in loads):
        raise Wrong("your function did not torch.load the file it was given (path)")
    for args in loads:  # would fail on the serving host, whatever this one has
        ml = args.get("map_location")
        if ml is None or (isinstance(ml, Mapping) and "cuda:0" not in ml):
            raise Wrong(_gpu_hint([args], ""))
    if not isinstance(model, SimpleModel):
        raise Wrong(f"return the loaded SimpleModel, got {type(model).__name__}")
    reference = load_cpu(path)
    for k, v in reference.items():
        t = model.state_dict()[k]
        if t.device.type != "cpu":
            raise Wrong(
                f"your function moves the model to the GPU ({k} is on {t.device}), and the serving host has none: keep the model on the CPU"
            )
        if not torch.equal(t, v):
            raise Wrong(f"{k} does not hold the file's values: load the state_dict strictly")
    return "the GPU-saved weights are on the CPU, every tensor equal to the file's."


@exercise("capstone_load_safely", notebook="08_safe_loading")
def capstone_load_safely(fn) -> str:
    """``fn(path)`` loads a checkpoint holding weights plus a ``RunInfo``, allowing exactly RunInfo
    for that one load, and refuses a malicious file with an error."""
    from ..capstone import MarkerPayload, RunInfo

    allowed_before = any(_object(e) is RunInfo for e in torch.serialization.get_safe_globals())
    watch = (torch.serialization.add_safe_globals, _ADD)
    # judged on its own allowlist
    with tempfile.TemporaryDirectory() as tmp, isolated_safe_globals():
        tmp = Path(tmp)
        good = tmp / "model_card.pth"
        info = RunInfo("capstone", 5, 0.93)
        torch.save({"model": net().state_dict(), "info": info}, good)
        with crash.watching(*watch, torch.serialization.load) as seen:
            try:
                loaded = call_answer(fn, good)
            except Wrong as w:
                hint = _safe_globals_hint(_allowed(seen), str(w), allowed_before)
                if hint:
                    raise Wrong(hint) from None
                raise
        # judged by what is left afterwards: RunInfo still allowed for every later load
        if any(kind == "safe_globals" and "RunInfo" in hint for kind, hint in process_changes()):
            raise Wrong(
                "RunInfo must be allowed for this one load, but add_safe_globals([RunInfo]) allows it for every later torch.load in the process, files from strangers included",
                covers={"safe_globals"},
            )
        extra = [e for e in _allowed(seen) if _object(e) is not RunInfo and not torch_own(e)]
        if extra:
            name = getattr(_object(extra[0]), "__qualname__", None) or repr(_object(extra[0]))
            raise Wrong(
                f"the file needs RunInfo only, and your allowlist also lets through {name}: every extra entry is something a malicious file may use; allow exactly [RunInfo]"
            )
        if not isinstance(loaded, Mapping) or set(loaded) != {"model", "info"}:
            raise Wrong(
                "return what the file holds (a dict with 'model' and 'info'); to load the RunInfo with weights_only=True, allow exactly that class with torch.serialization.safe_globals([RunInfo])"
            )
        if loaded["info"] != info or not same(dict(loaded["model"]), net().state_dict()):
            raise Wrong(
                "the dict you returned does not hold the file's contents: return what torch.load read"
            )
        marker, bad = tmp / "payload_ran.txt", tmp / "downloaded.pth"
        torch.save({"model": net().state_dict(), "info": MarkerPayload(marker)}, bad)
        refused = True
        with crash.watching(torch.serialization.load) as payload_seen:
            try:
                out = run_answer(fn, bad)
                refused = False
            except Wrong:
                pass
        if marker.exists():
            unsafe = _unsafe_load(payload_seen)
            raise Wrong(
                "loading the malicious file ran its payload (the marker file appeared): "
                + (
                    "torch.load with weights_only=False runs the file's code while it unpickles, so a check of what you got afterwards comes too late, and a retry after a refusal hands the choice to the file. "
                    if unsafe
                    else ""
                )
                + "Keep weights_only=True and allow only RunInfo, never what a refused file asks for"
            )
        if not refused:
            raise Wrong(
                f"your function returned {type(out).__name__} for the malicious file instead of refusing it: let torch.load's UnpicklingError raise, so the caller knows the file was rejected"
            )
    if _unsafe_load(seen):
        raise Wrong(
            "your function loaded the model card with weights_only=False: nothing restricted what the unpickler could build during that load (a look at the file beforehand is only as good as that look); load with weights_only=True and allow exactly RunInfo"
        )
    return "the model card loads with only RunInfo allowed, and the payload never runs."


_ADD = torch._weights_only_unpickler._add_safe_globals  # what every allowlist call reaches


def _object(entry: Any) -> Any:
    """The object of a safe-globals entry (an object, or an (object, name) pair)."""
    return entry[0] if isinstance(entry, tuple) and entry else entry


def _allowed(seen: crash.WriteTrace) -> list:
    """Every entry the answer put on the allowlist, by any route."""
    return [e for args in seen.arguments.get(_ADD, []) for e in args.get("safe_globals") or []]


def _unsafe_load(seen: crash.WriteTrace) -> bool:
    return any(
        a.get("weights_only") is False for a in seen.arguments.get(torch.serialization.load, [])
    )


def _safe_globals_hint(entries: list, message: str, allowed_before: bool) -> str | None:
    strings = [e for e in entries if isinstance(e, str)]
    if strings:
        return f"safe_globals takes the objects themselves, not strings: pass [RunInfo] (the class you imported), not [{strings[0]!r}]; torch cannot turn a name into a class (it raised {message.removeprefix('your function raised ')[:80]})"
    if "RunInfo" in message and allowed_before and not entries:
        return "torch.load refused RunInfo: your function worked in the notebook only because RunInfo was already allowed for the whole process (an add_safe_globals call outside it). Allow it inside the function, for this one load: with torch.serialization.safe_globals([RunInfo]):"
    if "RunInfo" in message:
        return "torch.load refused the file because of RunInfo (not on the default allowlist): allow exactly that class for this load with `with torch.serialization.safe_globals([RunInfo]):`"
    return None
