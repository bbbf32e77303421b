"""Checks for notebooks/06_devices_and_map_location.ipynb.

They use the two GPU-saved files in ``data/`` (tagged ``cuda:0`` and ``cuda:1``; see
``data/README.md``), so they need the repository checkout, not only the installed package.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from . import Wrong, call_answer, exercise

NB = "06_devices_and_map_location"
DATA = Path(__file__).resolve().parents[2] / "data"
FILES = {"cuda:0": "gpu_weights_cuda0.pth", "cuda:1": "gpu_weights_cuda1.pth"}


def _data_file(tag: str) -> Path:
    path = DATA / FILES[tag]
    if not path.is_file():
        raise Wrong(f"the check needs data/{FILES[tag]} from the repository; run the notebook from a checkout "
                    "of the workbook, or remake it with python data/make_cuda_checkpoint.py")
    return path


def _is_cpu(value) -> bool:
    try:
        return torch.device(value).type == "cpu"
    except (TypeError, RuntimeError, ValueError):
        return False


@exercise("map_two_gpus_to_cpu", notebook=NB, wrong=[
    ({"cuda:0": "cpu"}, "cuda:1"),
    ({"cuda": "cpu"}, "full location tags"),
    ({"cuda:0": "cpu", "cuda:1": "cuda:0"}, "needs a gpu"),
    ("cpu", "dict"),
    ({0: "cpu", 1: "cpu"}, "strings"),
    ({"cuda:0": torch.device("cpu"), "cuda:1": torch.device("cpu")}, "values must be strings"),
])
def map_two_gpus_to_cpu(answer) -> str:
    """``answer``: a dict ``map_location`` that loads files saved on cuda:0 or cuda:1 onto the CPU."""
    if not isinstance(answer, dict):
        raise Wrong(f"a string, device or callable would work, but this exercise asks for a dict from saved tag to "
                    f"device, e.g. {{'cuda:0': 'cpu', ...}}; got {type(answer).__name__}")
    bad = [k for k in answer if not isinstance(k, str)]
    if bad:
        raise Wrong(f"the dict's keys are the location strings saved in the file, such as 'cuda:1', got {bad[0]!r}")
    if any(not isinstance(v, str) for v in answer.values()):
        raise Wrong("in a dict map_location the values must be strings such as 'cpu': torch.load's dict form "
                    "does not accept torch.device objects there (it raises a TypeError)")
    if any(":" not in k and k != "cpu" for k in answer):
        raise Wrong("the keys must be the full location tags as saved in the file, 'cuda:0' and 'cuda:1': "
                    "a key such as 'cuda' matches no tag")
    for tag in FILES:
        if tag not in answer:
            raise Wrong(f"files saved on {tag} keep the tag {tag!r}; a dict only remaps the tags it names, so add "
                        f"{tag!r}: 'cpu'")
        if not _is_cpu(answer[tag]):
            raise Wrong(f"{tag} is mapped to {answer[tag]!r}, which needs a GPU; map it to 'cpu'")
    for tag in FILES:
        sd = torch.load(_data_file(tag), map_location=answer, weights_only=True)
        if any(v.device.type != "cpu" for v in sd.values()):
            raise Wrong(f"loading the {tag} file with your dict left tensors off the CPU")
    return "both files load onto the CPU; tags not in a dict stay where they were saved."


def _devices_after_load(path):
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {str(v.device) for v in sd.values()}


def _no_map_location(path):
    seen = set()

    def record(storage, location):
        seen.add(location)

    torch.load(path, map_location=record, weights_only=True)  # returns None: torch restores as saved
    return seen


def _as_list(path):
    seen = []

    def record(storage, location):
        seen.append(location)
        return storage

    torch.load(path, map_location=record, weights_only=True)
    return seen


@exercise("storage_locations", notebook=NB, wrong=[
    (_devices_after_load, "after loading"),
    (_no_map_location, "return the storage"),
    (_as_list, "set"),
])
def storage_locations(fn) -> str:
    """``fn(path)`` returns the set of location tags stored in a checkpoint, without needing a GPU."""
    cases = {tag: _data_file(tag) for tag in FILES}
    with tempfile.TemporaryDirectory() as tmp:
        cpu_file = Path(tmp) / "cpu.pth"
        torch.save({"w": torch.ones(2)}, cpu_file)
        cases["cpu"] = cpu_file
        for tag, path in cases.items():
            try:
                got = call_answer(fn, path)
            except Wrong as w:
                if "deserialize" in str(w):
                    raise Wrong("torch.load tried to rebuild the CUDA tensors: pass map_location=a function that "
                                "records its second argument (loc) and must return the storage; returning None "
                                "means 'restore it where it was saved'") from None
                raise
            if not isinstance(got, (set, frozenset)):
                raise Wrong(f"return a set of tags such as {{'cuda:1'}}, got {type(got).__name__}")
            if got != {tag}:
                if tag != "cpu" and got == {"cpu"}:
                    raise Wrong("you reported where the tensors are after loading ('cpu'); the tag saved in the "
                                "file is what a map_location callable receives as its second argument")
                raise Wrong(f"for a file saved on {tag} you returned {sorted(got)}; expected {{{tag!r}}}")
    return "a map_location callable sees each storage's saved tag before anything is put on a device."
