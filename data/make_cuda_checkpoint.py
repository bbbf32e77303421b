"""Remake the "saved on a GPU" checkpoints in data/ on a machine without a GPU.

    python data/make_cuda_checkpoint.py          # writes data/gpu_weights_cuda0.pth and _cuda1.pth
    python data/make_cuda_checkpoint.py --check  # remakes them in a temporary folder and compares

What a GPU adds to a ``torch.save`` file is one string per storage, its *location tag*
(``"cuda:0"``, ``"cuda:1"``, ...), written into ``data.pkl`` next to the storage's key. The
tensor bytes are written the same way as for CPU tensors (copied to host memory first).
``torch.save`` asks ``torch.serialization.location_tag(storage)`` for that string, which asks
the taggers registered with the public ``torch.serialization.register_package`` in priority
order. This script registers one more tagger, with the highest priority, that answers
``"cuda:N"`` while ``tagged_as(...)`` is active and ``None`` (no opinion) otherwise, and then
saves ordinary CPU tensors. Nothing else in the file changes, so ``torch.load`` treats it
exactly like a file written on ``cuda:N``: without ``map_location`` on a CPU-only machine it
raises "Attempting to deserialize object on a CUDA device ...".

The weights are those of ``labs_utils.models.SimpleModel`` right after
``torch.manual_seed(0)`` (no training), so they can be remade anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.serialization

HERE = Path(__file__).resolve().parent
FILES = {"cuda:0": "gpu_weights_cuda0.pth", "cuda:1": "gpu_weights_cuda1.pth"}

_active_tag: str | None = None


def _tagger(storage) -> str | None:
    """Answer the active tag while ``tagged_as`` is on; otherwise let PyTorch's taggers answer."""
    return _active_tag


def _no_deserializer(storage, location: str):
    return None  # loading is left entirely to PyTorch's own deserializers


torch.serialization.register_package(0, _tagger, _no_deserializer)  # 0 runs before "cpu" (10)


@contextlib.contextmanager
def tagged_as(location: str) -> Iterator[None]:
    """While active, ``torch.save`` writes ``location`` (e.g. ``"cuda:1"``) as every storage's tag."""
    global _active_tag
    if location != "mps" and not (location.startswith("cuda:") and location[5:].isdigit()):
        raise ValueError(f"location must look like 'cuda:0' or be 'mps', got {location!r}")
    _active_tag = location
    try:
        yield
    finally:
        _active_tag = None


def make_state_dict() -> dict[str, torch.Tensor]:
    sys.path.insert(0, str(HERE.parent))
    from labs_utils.models import SimpleModel

    torch.manual_seed(0)
    return SimpleModel().state_dict()


def write(folder: Path, files: dict[str, str] = FILES) -> list[Path]:
    state_dict = make_state_dict()
    paths = []
    for location, name in files.items():
        path = folder / name
        with tagged_as(location):
            torch.save(state_dict, path)
        paths.append(path)
    return paths


def stored_locations(path: Path) -> set[str]:
    """The location tags in ``path``, read through a map_location callable (needs no GPU)."""
    seen: set[str] = set()

    def record(storage, location):
        seen.add(location)
        return storage

    torch.load(path, map_location=record, weights_only=True)
    return seen


def check(files: dict[str, str] = FILES) -> int:
    """Remake the files in a temporary folder and compare them with the ones in data/."""
    with tempfile.TemporaryDirectory() as tmp:
        for location, new in zip(files, write(Path(tmp), files)):
            old = HERE / files[location]
            a = torch.load(old, map_location="cpu", weights_only=True)
            b = torch.load(new, map_location="cpu", weights_only=True)
            same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
            tags = stored_locations(old)
            print(f"{old.name}: tags {sorted(tags)}, same tensors as a fresh remake: {same}")
            if not same or tags != {location}:
                return 1
    return 0


def main(argv: list[str] | None = None, files: dict[str, str] = FILES, doc: str = __doc__) -> int:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="remake in a temporary folder and compare"
    )
    args = parser.parse_args(argv)
    if args.check:
        return check(files)
    for path in write(HERE, files):
        print(
            f"wrote {path.relative_to(HERE.parent)} ({path.stat().st_size} bytes), tags {sorted(stored_locations(path))}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
