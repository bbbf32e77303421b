"""Wrong and right answers for the checks in labs_utils/checks/nb06.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import collections
import re
import zipfile

import torch
import torch.serialization


def _devices_after_load(path):
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {str(v.device) for v in sd.values()}


def _no_map_location(path):
    seen = set()

    def record(storage, location):
        seen.add(location)

    # returns None: torch restores as saved
    torch.load(path, map_location=record, weights_only=True)
    return seen


def _as_list(path):
    seen = []

    def record(storage, location):
        seen.append(location)
        return storage

    torch.load(path, map_location=record, weights_only=True)
    return seen


def _byte_search(path):
    """Section 1's quick look, reused: every match of a tag-like string in data.pkl."""
    with zipfile.ZipFile(path) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    return {t.decode() for t in re.findall(rb"(cpu|cuda:\d+)", pkl)}


def _byte_search_after_a_load(path):
    torch.load(path, map_location=lambda storage, location: storage, weights_only=True)
    return _byte_search(path)


def _last_tag_only(path):
    last = None

    def record(storage, location):
        nonlocal last
        last = location
        return storage

    torch.load(path, map_location=record, weights_only=True)
    return {last}


def _returns_the_tag(path):
    seen = set()

    def record(storage, location):
        seen.add(location)
        return location

    torch.load(path, map_location=record, weights_only=True)
    return seen


def _one_argument(path):
    seen = set()
    torch.load(path, map_location=lambda location: seen.add(location), weights_only=True)
    return seen


def _device_objects(path):
    seen = set()

    def record(storage, location):
        seen.add(torch.device(location))
        return storage

    torch.load(path, map_location=record, weights_only=True)
    return seen


def _list_then_set(path):
    seen: list[str] = []
    torch.load(
        path,
        map_location=lambda storage, location: seen.append(location) or storage,
        weights_only=True,
    )
    return set(seen)


def _mmap_and_cpu(path):
    seen = set()

    def record(storage, location):
        seen.add(location)
        return storage.cpu()

    torch.load(path, map_location=record, weights_only=True, mmap=True)
    return frozenset(seen)


def _imported_by_name(path):
    from torch import load

    seen = set()
    load(path, map_location=lambda s, loc: seen.add(loc) or s, weights_only=True)
    return seen


def _counts_tags(path):
    counts = {}

    def record(storage, location):
        counts[location] += 1  # KeyError: the first time a tag is seen
        return storage

    torch.load(path, map_location=record, weights_only=True)
    return set(counts)


def _swallows_the_error(path):
    seen = set()
    try:
        torch.load(path, map_location=lambda s, loc: seen.add(loc), weights_only=True)
    except RuntimeError:
        pass
    return seen


WRONG = {
    "map_two_gpus_to_cpu": [
        ({"cuda:0": "cpu"}, "cuda:1"),
        ({"cuda": "cpu"}, "full location tags"),
        ({"cuda:0": "cpu", "cuda:1": "cuda:0"}, "needs a gpu"),
        ("cpu", "dict"),
        ({0: "cpu", 1: "cpu"}, "strings"),
        (
            {"cuda:0": torch.device("cpu"), "cuda:1": torch.device("cpu")},
            "values must be strings",
        ),
        # a default for every tag: torch.load calls .get(tag, tag), which never uses the default
        (collections.defaultdict(lambda: "cpu"), "default"),
        (
            {torch.device("cuda:0"): "cpu", torch.device("cuda:1"): "cpu"},
            "location strings",
        ),
        ({"cuda:0": "CPU", "cuda:1": "CPU"}, "not a device name"),
        ({"cuda:0": "meta", "cuda:1": "meta"}, "meta"),
        ({"cuda:*": "cpu"}, "full location tags"),
        (
            {"cuda:0": "cpu:0", "cuda:1": "cpu:0"},
            "does not know",
        ),  # a device, but not a location tag
    ],
    "storage_locations": [
        (_devices_after_load, "after loading"),
        (_no_map_location, "return the storage"),
        (_as_list, "set"),
        (_byte_search, "byte search"),
        (_byte_search_after_a_load, "ordinary string"),
        (_last_tag_only, "every call"),
        (_returns_the_tag, "not a storage"),
        (_one_argument, "two arguments"),
        (_device_objects, "strings"),
        (_counts_tags, "callable itself raised KeyError"),
        (_swallows_the_error, "returned None"),
    ],
}
RIGHT = {
    "map_two_gpus_to_cpu": [
        {"cuda:0": "cpu", "cuda:1": "cpu"},
        dict.fromkeys([f"cuda:{i}" for i in range(8)], "cpu"),
        {"cuda:1": "cpu", "cuda:0": "cpu", "cpu": "cpu"},
    ],
    "storage_locations": [_list_then_set, _mmap_and_cpu, _imported_by_name],
}
