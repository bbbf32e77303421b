"""Checks for notebooks/06_devices_and_map_location.ipynb: they read the two GPU-saved files in
``data/`` (see data/README.md), and write files whose storages carry chosen device tags."""

from __future__ import annotations

import collections
import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.serialization

from . import Wrong, call_answer, exercise
from .fixtures import replaced

NB = "06_devices_and_map_location"
DATA = Path(__file__).resolve().parents[2] / "data"
FILES = {"cuda:0": "gpu_weights_cuda0.pth", "cuda:1": "gpu_weights_cuda1.pth"}


def _data_file(tag: str) -> Path:
    path = DATA / FILES[tag]
    if not path.is_file():
        raise Wrong(
            f"the check needs data/{FILES[tag]} from the repository; run the notebook from a checkout of the workbook, or remake it with python data/make_cuda_checkpoint.py"
        )
    return path


def _map_hint(answer: Any) -> str | None:
    """What keeps a dict ``map_location`` from loading cuda:0 and cuda:1 files on the CPU."""
    if not isinstance(answer, dict):
        return f"a string, device or callable would work, but this exercise asks for a dict from saved tag to device, e.g. {{'cuda:0': 'cpu', ...}}; got {type(answer).__name__}"
    bad = [k for k in answer if not isinstance(k, str)]
    if bad:
        return f"the dict's keys are the location strings saved in the file, such as 'cuda:1', got {bad[0]!r} ({type(bad[0]).__name__}): torch.load looks the saved string up in your dict"
    if any(not isinstance(v, str) for v in answer.values()):
        return "in a dict map_location the values must be strings such as 'cpu': torch.load's dict form does not accept torch.device objects there (it raises a TypeError)"
    if not answer and isinstance(answer, collections.defaultdict):
        return "a defaultdict's default is never used: torch.load asks map_location.get(tag, tag), and .get does not call the default factory, so every tag stays as saved; name 'cuda:0' and 'cuda:1' as keys"
    # judge what the dict holds, not what an overridden get/__getitem__/__contains__ answers
    answer = dict(dict.items(answer))
    odd = next((k for k in answer if not re.fullmatch(r"cpu|cuda:\d+", k)), None)
    if odd is not None:
        return f"the keys must be the full location tags as saved in the file, 'cuda:0' and 'cuda:1': a key such as {odd!r} matches no tag (the dict is looked up, not pattern-matched)"
    for tag in FILES:
        if tag not in answer:
            return f"files saved on {tag} keep the tag {tag!r}; a dict only remaps the tags it names, so add {tag!r}: 'cpu'"
        try:
            target = torch.device(answer[tag])
        except (TypeError, RuntimeError, ValueError):
            return f"{tag} is mapped to {answer[tag]!r}, which is not a device name torch knows (they are lower case: 'cpu', 'cuda:0'); map it to 'cpu'"
        if target.type != "cpu":
            why = "tensors on the meta device have a shape but no values, so the weights would be lost"
            return f"{tag} is mapped to {answer[tag]!r}: {why if target.type == 'meta' else 'it needs a GPU'}; map it to 'cpu'"
    return None


@exercise("map_two_gpus_to_cpu", notebook=NB)
def map_two_gpus_to_cpu(answer) -> str:
    """``answer``: a dict ``map_location`` that loads files saved on cuda:0 or cuda:1 onto the CPU."""
    if hint := _map_hint(answer):
        raise Wrong(hint)
    answer = dict(dict.items(answer))  # what the dict holds, as _map_hint judged it
    for tag in FILES:
        try:
            torch.load(_data_file(tag), map_location=answer, weights_only=True)
        except RuntimeError as e:
            raise Wrong(
                f"torch.load does not know the location {answer[tag]!r} (a device name is not always a location tag: {str(e).strip()}); map the tags to 'cpu'"
            ) from None
    return "both files load onto the CPU; tags not in a dict stay where they were saved."


def _cases(folder: Path) -> list[tuple[str, Path, set[str]]]:
    """(what the file is, its path, its storages' tags): data/'s two files, and three written here."""
    g = torch.Generator().manual_seed(6)
    enc, dec = torch.randn(3, 2, generator=g), torch.randn(2, 3, generator=g)
    tags = {enc.untyped_storage().data_ptr(): "cuda:0", dec.untyped_storage().data_ptr(): "cuda:1"}
    real_tag = torch.serialization.location_tag
    with mock.patch.object(
        torch.serialization, "location_tag", lambda s: tags.get(s.data_ptr()) or real_tag(s)
    ):
        torch.save({"w": torch.ones(2)}, folder / "cpu.pth")
        mixed = {"encoder.weight": enc, "decoder.weight": dec, "decoder.bias": torch.zeros(2)}
        torch.save(mixed, folder / "mixed.pth")
    # CPU tensors, and strings that merely read like tags: a byte search of data.pkl finds them
    notes = {"trained_on": "cuda:1", "note": "moved from cuda:3 to the CPU before saving"}
    torch.save({"fc.weight": torch.randn(2, 2, generator=g), **notes}, folder / "notes.pth")
    return [(f"data/{FILES[tag]}", _data_file(tag), {tag}) for tag in FILES] + [
        ("a file saved on the CPU", folder / "cpu.pth", {"cpu"}),
        (
            "a file whose storages were on cuda:0, cuda:1 and the CPU",
            folder / "mixed.pth",
            {"cuda:0", "cuda:1", "cpu"},
        ),
        ("a CPU file with the entry 'trained_on': 'cuda:1'", folder / "notes.pth", {"cpu"}),
    ]


@contextlib.contextmanager
def _watch_torch_load(fn: Any) -> Iterator[dict]:
    """Run the real torch.load, but wrap a callable map_location to see what it returns (or
    raises); also under the names the learner imported it as (``from torch import load``)."""
    real = torch.serialization.load
    watch: dict[str, Any] = {"callables": 0, "returned": [], "error": None}

    def load(f, map_location=None, *args: Any, **kwargs: Any):
        if callable(map_location):
            learner_fn = map_location
            watch["callables"] += 1

            def map_location(storage, location):  # noqa: F811  (the learner's callable, observed)
                try:
                    watch["returned"].append(learner_fn(storage, location))
                except BaseException as e:
                    watch["error"] = e
                    raise
                return watch["returned"][-1]

        return real(f, map_location, *args, **kwargs)

    with replaced(fn, (torch, torch.serialization), load=load):
        yield watch


_GPU = "your map_location callable moved the storages to a GPU (storage.cuda()?), which this machine does not have; return the storage as it is, on the CPU"
# what torch's raw error (a pattern in its message) means for this task
_MEANINGS = {
    r"deserialize|restore_location": "torch.load tried to rebuild the CUDA tensors: your map_location callable returned None (or was not passed), and None means 'restore the storage where it was saved'; record the tag (its second argument) and return the storage it was given",
    r"(?s)^(?=.*positional argument)(?=.*(given|missing))": "torch.load calls a map_location callable with two arguments, (storage, location): define it as def record(storage, location): ...",
    r"TypedStorage|invalid combination of arguments|untyped_storage": "your map_location callable returned something that is not a storage (the tag string?): torch.load builds each tensor from what it returns, so return the storage it was given and keep the tag aside",
    r"(?i)not compiled with cuda|nvidia driver|no cuda gpus|cuda error": _GPU,
}


def _explained(w: Wrong, inside: BaseException | None, what: str) -> Wrong:
    """The hint for an answer that raised: what torch's raw error means, or what its callable raised."""
    meaning = next((m for p, m in _MEANINGS.items() if re.search(p, str(w))), None)
    tb = inside.__traceback__ if inside is not None else None
    while meaning is None and tb is not None:  # from PyTorch's CUDA code: storage.cuda(), ...
        code = tb.tb_frame.f_code
        meaning = (
            _GPU if code.co_name == "cuda" or f"torch{os.sep}cuda" in code.co_filename else None
        )
        tb = tb.tb_next
    if meaning:
        return Wrong(f"with {what}: {meaning} ({str(w).removeprefix('your function raised ')})")
    if inside is not None:
        return Wrong(
            f"with {what}: your map_location callable itself raised {type(inside).__name__}: {inside}. torch.load calls it once per storage with (storage, location), the storage already in CPU memory; note the location and return the storage as it is"
        )
    return w


@exercise("storage_locations", notebook=NB)
def storage_locations(fn) -> str:
    """``fn(path)`` returns the set of location tags stored in a checkpoint, read with a callable
    ``map_location`` (no GPU needed)."""
    used_callable = False
    with tempfile.TemporaryDirectory() as tmp:
        for what, path, expected in _cases(Path(tmp)):
            with _watch_torch_load(fn) as watch:
                try:
                    got = call_answer(fn, path)
                except Wrong as w:
                    raise _explained(w, watch["error"], what) from None
            used_callable = used_callable or watch["callables"] > 0
            if any(out is None for out in watch["returned"]):
                raise Wrong(
                    "your map_location callable returned None: that means 'restore the storage where it was saved', which fails on a machine without that GPU; return the storage it was given"
                )
            if hint := _tags_hint(got, expected, what):
                raise Wrong(hint)
    if not used_callable:
        raise Wrong(
            "the tags are right, but the task asks you to read them with a callable map_location (torch.load(path, map_location=record, weights_only=True), where record(storage, location) notes the location): it sees what torch.load sees, while a byte search of data.pkl also finds any string that merely looks like a tag"
        )
    return (
        "a map_location callable sees each storage's saved tag before anything is put on a device."
    )


def _tags_hint(got, expected: set[str], what: str) -> str | None:
    if not isinstance(got, (set, frozenset)):
        why = ": a list repeats a tag once per storage; set(...) keeps each tag once"
        return f"return a set of tags such as {{'cuda:1'}}, got {type(got).__name__}{why if isinstance(got, (list, tuple)) else ''}"
    if any(isinstance(t, torch.device) for t in got):
        return "return the tags as strings, as torch.load passes them ('cuda:1'), not torch.device objects"
    if got == expected:
        return
    if len(expected) > 1 and len(got) == 1 and got < expected:
        return f"with {what} you returned only {sorted(got)}, expected {sorted(expected)}: the callable is called once per storage, so collect every call's tag (add it to a set), not only the last one"
    if expected != {"cpu"} and got == {"cpu"}:
        return "you reported where the tensors are after loading ('cpu'); the tag saved in the file is what a map_location callable receives as its second argument"
    if got > expected:
        return f"with {what} you returned {sorted(got)}, but no storage was saved on {sorted(got - expected)}: that text is in data.pkl as an ordinary string. A byte search finds every string, not only storage tags; use a callable map_location, which torch.load calls once per storage with its tag"
    return f"with {what} you returned {sorted(map(str, got))}; expected {sorted(expected)}"
